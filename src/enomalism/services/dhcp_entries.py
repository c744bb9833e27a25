"""A machine's DHCP host entries on libvirt networks follow it after a rename or a move:
set_parent (services/actions.py) and a `migrate` transaction (services/moves.py) both call
`follow_move`, which is why it is a module of its own (neither imports the other for it)."""

from enomalism.errors import EnomalismError
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import get_hypervisor
from enomalism.services.networks import machine_leases
from enomalism.store.models import Machine
from enomalism.virt.hypervisor import HypervisorConnection


def follow_move(ctx: Context, m: Machine, source_uuid: str, dest: HypervisorConnection,
                message: str) -> str:
    """The machine's DHCP host entries follow it: off the libvirt networks of the hypervisor
    it left, onto those of the one it joined. The old hypervisor's dnsmasq also forgets the
    guest's lease there (where it can, as totaldelete does): that address is the machine's on
    the new host now, and a stale lease for its MAC would outlive a later release of it."""
    source_uri = get_hypervisor(ctx.db, source_uuid).virt_url
    try:
        steps = [(ctx.registry.connection(source_uuid), "delete"), (dest, "modify")]
    except EnomalismError:  # the old hypervisor is out of reach: its entries stay there
        steps = [(dest, "modify")]
    problems = follow(ctx, m, steps, release_uri=source_uri)
    return f"{message}; DHCP entries not moved: {problems}" if problems else message


def follow(ctx: Context, m: Machine, steps: list[tuple[HypervisorConnection, str]], *,
           release_uri: str | None = None) -> str:
    """Apply `steps` (a connection and dhcp_host's command) to each of the machine's leases
    on a libvirt network of that name, after a rename or a move; after a delete, the lease of
    the hypervisor at `release_uri` is released too. The machine has changed already, so what
    fails is returned for the message, not raised; "" when nothing did."""
    problems = []
    leases = list(machine_leases(ctx.db, m.uuid))
    commit_before_slow_work(ctx)  # the machine's record so far, under its lock
    for lease, n in leases:
        for conn, command in steps:
            try:
                if lease.mac and conn.has_network(n.bridge):
                    conn.dhcp_host(n.bridge, mac=lease.mac, ip=lease.address, name=m.name,
                                   command=command)
                    if command == "delete" and release_uri:
                        conn.release_dhcp_lease(release_uri, n.bridge, mac=lease.mac,
                                                ip=lease.address)
            except EnomalismError as e:
                problems.append(f"{command} of {lease.address} on {n.bridge}: {e.message}")
    return "; ".join(problems)
