"""`enomalism network`: static networks, their IP ranges and leases."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, CLIError, command, pick
from enomalism.client import Network

app = typer.Typer(help="Static networks and IP address management.", no_args_is_help=True)

NetRef = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix",
                                       show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def _clusters(cli: Cli) -> dict[str, str]:
    return {x.uuid: x.name for x in cli.client().clusters.list()}


def _cluster_uuid(cli: Cli, ref: str | None) -> str | None:
    return lookup.cluster(cli.client(), ref).uuid if ref else None


@command(app, "list")
def list_(cli: Cli) -> None:
    """List networks."""
    found = cli.client().networks.list()
    names = _clusters(cli) if any(n.cluster for n in found) else {}
    cli.emit(found, lambda: cli.table(
        ["NAME", "UUID", "NETWORK", "GATEWAY", "BRIDGE", "CLUSTER", "RANGES", "LEASED"],
        [[n.name, n.uuid, f"{n.ip}/{n.prefix}", n.gateway, n.bridge,
          names.get(n.cluster or "", n.cluster),
          [f"{r.start_ip}-{r.end_ip}" for r in n.ranges],
          n.leased] for n in found]))


def _show(cli: Cli, n: Network) -> None:
    names = _clusters(cli) if n.cluster else {}
    cli.fields([
        ("name", n.name), ("uuid", n.uuid), ("description", n.description),
        ("network", f"{n.ip}/{n.prefix}"), ("netmask", n.netmask), ("gateway", n.gateway),
        ("bridge", n.bridge), ("cluster", names.get(n.cluster or "", n.cluster)),
        ("leased", n.leased), ("created", n.created_at)])
    cli.table(["RANGE", "START", "END", "SIZE"],
                [[r.uuid, r.start_ip, r.end_ip, r.size] for r in n.ranges])


@command(app, "show")
def show(cli: Cli, network: NetRef) -> None:
    """Show a network and its IP ranges."""
    c = cli.client()
    n = c.networks.get(lookup.network(c, network).uuid)
    cli.emit(n, lambda: _show(cli, n))


@command(app, "create")
def create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="the network's name")],
    ip: Annotated[str, typer.Option(help="network address, e.g. 10.0.0.0 or 10.0.0.0/24")],
    bridge: Annotated[str, typer.Option(help="host bridge or libvirt network guests join")],
    netmask: Annotated[str | None, typer.Option(
        help="dotted mask or prefix length (not needed with a /prefix in --ip)")] = None,
    gateway: Annotated[str | None, typer.Option(help="the gateway address")] = None,
    cluster: Annotated[str | None, typer.Option(help="the cluster it serves")] = None,
    description: Annotated[str | None, typer.Option(help="a description")] = None,
) -> None:
    """Create a static network (administrators)."""
    if "/" in ip:
        ip, _, prefix = ip.partition("/")
        netmask = netmask or prefix
    if not netmask:
        raise CLIError("give --netmask, or --ip with a /prefix", errno=1001)
    n = cli.client().networks.create(name, bridge=bridge, ip=ip, netmask=netmask,
                                     gateway=gateway, cluster=_cluster_uuid(cli, cluster),
                                     description=description)
    cli.emit(n, lambda: cli.say(f"network {n.name} created: {n.uuid}"))


@command(app, "update")
def update(
    cli: Cli,
    network: NetRef,
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    description: Annotated[str | None, typer.Option(help="new description")] = None,
    bridge: Annotated[str | None, typer.Option(help="new bridge")] = None,
    cluster: Annotated[str | None, typer.Option(help="the cluster it serves")] = None,
    no_cluster: Annotated[bool, typer.Option("--no-cluster", help="serve no cluster")] = False,
) -> None:
    """Change a network's name, description, bridge or cluster."""
    c = cli.client()
    n = lookup.network(c, network)
    if cluster is not None or no_cluster:
        c.networks.set_cluster(n.uuid, None if no_cluster else _cluster_uuid(cli, cluster))
    if name is not None or description is not None or bridge is not None:
        c.networks.update(n.uuid, name=name, description=description, bridge=bridge)
    n = c.networks.get(n.uuid)
    cli.emit(n, lambda: cli.say(f"network {n.name} updated"))


@command(app, "delete")
def delete(cli: Cli, network: NetRef, yes: Yes = False) -> None:
    """Delete a network that has no leases."""
    c = cli.client()
    n = lookup.network(c, network)
    cli.confirm(f"Delete network {n.name} ({n.uuid})?", yes)
    message = c.networks.delete(n.uuid)
    cli.emit({"network": n.uuid, "message": message}, lambda: cli.say(message))


@command(app, "add-range")
def add_range(cli: Cli, network: NetRef,
              start: Annotated[str, typer.Argument(help="first address")],
              end: Annotated[str, typer.Argument(help="last address (included)")]) -> None:
    """Add an IP range to a network."""
    c = cli.client()
    n = lookup.network(c, network)
    r = c.networks.add_range(n.uuid, start, end)
    cli.emit(r, lambda: cli.say(
        f"range {r.start_ip}-{r.end_ip} ({r.size} addresses) added to {n.name}: {r.uuid}"))


@command(app, "remove-range")
def remove_range(cli: Cli, network: NetRef, iprange: Annotated[str, typer.Argument(
        help="the range: UUID, prefix or its start address")]) -> None:
    """Delete an IP range none of whose addresses is in use."""
    c = cli.client()
    n = lookup.network(c, network)
    r = pick("range", iprange, n.ranges, lambda x: x.uuid, lambda x: (x.start_ip,),
             lambda x: f"{x.uuid}  {x.start_ip}-{x.end_ip}")
    message = c.networks.delete_range(n.uuid, r.uuid)
    cli.emit({"network": n.uuid, "iprange": r.uuid, "message": message},
             lambda: cli.say(message))


@command(app, "leases")
def leases(cli: Cli, network: NetRef) -> None:
    """Every address in use on a network, and who holds it."""
    c = cli.client()
    n = lookup.network(c, network)
    found = c.networks.leases(n.uuid)
    names = {m.uuid: m.name for m in c.machines.list()} if any(x.machine for x in found) else {}
    cli.emit(found, lambda: cli.table(
        ["ADDRESS", "MACHINE", "MAC", "NOTE", "SINCE"],
        [[x.address, names.get(x.machine or "", x.machine), x.mac, x.note, x.created_at]
         for x in found]))


@command(app, "reserve")
def reserve(
    cli: Cli,
    network: NetRef,
    address: Annotated[str | None, typer.Argument(help="the address (default: the next "
                                                     "free one)")] = None,
    machine: Annotated[str | None, typer.Option(help="the machine it is for")] = None,
    mac: Annotated[str | None, typer.Option(help="its MAC address")] = None,
    note: Annotated[str | None, typer.Option(help="why it is reserved")] = None,
) -> None:
    """Reserve an address by hand."""
    c = cli.client()
    n = lookup.network(c, network)
    m = lookup.machine(c, machine).uuid if machine else None
    lease = c.networks.reserve(n.uuid, address=address, machine=m, mac=mac, note=note)
    cli.emit(lease, lambda: cli.say(f"{lease.address} reserved on {n.name}"))


@command(app, "release")
def release(cli: Cli, network: NetRef,
            address: Annotated[str, typer.Argument(help="the address to release")]) -> None:
    """Release an address."""
    c = cli.client()
    n = lookup.network(c, network)
    lease = c.networks.release(n.uuid, address)
    cli.emit(lease, lambda: cli.say(f"{lease.address} released on {n.name}"))
