"""`enomalism host` and `enomalism hypervisor`: hosts and their libvirt connections."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, command, kib
from enomalism.cli.machines import NoWait, Timeout, brief

app = typer.Typer(help="Hosts and their hypervisors.", no_args_is_help=True)
hypervisor_app = typer.Typer(help="Hypervisors: libvirt connections of hosts.",
                             no_args_is_help=True)
node_app = typer.Typer(help="The API nodes (server processes) sharing the database.",
                       no_args_is_help=True)

HvRef = Annotated[str, typer.Argument(help="UUID, unique UUID prefix or libvirt URI",
                                      show_default=False)]


@command(app, "add")
def add(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="the host's name")],
    uri: Annotated[str | None, typer.Argument(
        help="its libvirt URI, e.g. qemu+ssh://root@host/system")] = None,
    address: Annotated[str | None, typer.Option(help="address of the host")] = None,
    virt_class: Annotated[str | None, typer.Option(help="kvm, qemu, xen, lxc, test")] = None,
) -> None:
    """Register a host and connect its hypervisor."""
    r = cli.client().hosts.register(name, virt_url=uri, address=address,
                                    virt_class=virt_class)

    def human() -> None:
        cli.say(f"host {name} registered as {r.machine.uuid}")
        for hv in r.hypervisors:
            cli.say(f"  hypervisor {hv.uuid} {hv.virt_url} ({hv.status})")
    cli.emit({"machine": brief(r.machine), "hypervisors": r.hypervisors,
              "message": r.message}, human)


@command(app, "list")
def list_(cli: Cli) -> None:
    """List registered hosts."""
    hosts = cli.client().hosts.list()
    cli.emit([brief(h) for h in hosts], lambda: cli.table(
        ["UUID", "NAME", "ADDRESS", "LOCAL"],
        [[h.uuid, h.name, h.address, "yes" if h.is_local else ""] for h in hosts]))


@command(app, "evacuate")
def evacuate(cli: Cli, host: Annotated[str, typer.Argument(
        help="the host: name, UUID or prefix", show_default=False)],
             no_wait: NoWait = False, timeout: Timeout = None) -> None:
    """Move every managed machine off the host (live where running) to the hosts the
    placer picks: one transaction, with a child transaction per machine. Administrators."""
    c = cli.client()
    h = lookup.host(c, host)
    txid, message = c.hosts.evacuate(h.uuid)
    doc = {"host": h.uuid, "name": h.name, "txid": txid, "message": message}
    if no_wait:
        cli.emit(doc, lambda: cli.say(txid))
        return
    tx = cli.follow(txid, f"evacuate {h.name}", timeout)
    moved = tx.result.get("moved", 0)
    cli.emit({**doc, "state": tx.state, "transaction": tx},
             lambda: cli.say(f"host {h.name} evacuated: {moved} machine(s) moved"))


# -- hypervisors -------------------------------------------------------------------------

@command(hypervisor_app, "list")
def hv_list(cli: Cli, host: Annotated[str | None, typer.Option(
        help="only this host's (name, UUID or prefix)")] = None) -> None:
    """List hypervisors."""
    c = cli.client()
    hosts = {h.uuid: h.name for h in c.hosts.list()}
    hvs = c.hypervisors.list(lookup.host(c, host).uuid if host else None)
    cli.emit(hvs, lambda: cli.table(
        ["UUID", "HOST", "CLASS", "URI", "STATUS", "CPUS", "MEMORY", "LIBVIRT"],
        [[h.uuid, hosts.get(h.machine, h.machine), h.virt_class, h.virt_url, h.status, h.cpus,
          kib(h.memory_kib), h.libvirt_version] for h in hvs]))


@command(hypervisor_app, "show")
def hv_show(cli: Cli, hypervisor: HvRef) -> None:
    """Show a hypervisor."""
    c = cli.client()
    h = c.hypervisors.get(lookup.hypervisor(c, hypervisor).uuid)
    cli.emit(h, lambda: cli.fields([
        ("uuid", h.uuid), ("host", lookup.host_name(c, h.machine)),
        ("class", h.virt_class), ("uri", h.virt_url), ("status", h.status),
        ("last error", h.last_error), ("hostname", h.hostname), ("driver", h.driver),
        ("libvirt", h.libvirt_version), ("arch", h.arch), ("cpus", h.cpus),
        ("memory", kib(h.memory_kib)), ("connected", h.connected_at)]))


@command(hypervisor_app, "add")
def hv_add(
    cli: Cli,
    host: Annotated[str, typer.Argument(help="the host (name, UUID or prefix)")],
    uri: Annotated[str, typer.Argument(help="libvirt URI, e.g. qemu+ssh://root@host/system")],
    virt_class: Annotated[str | None, typer.Option(
        help="kvm, qemu, xen, lxc or test; derived from the URI when left out")] = None,
) -> None:
    """Connect a hypervisor and add it to a host."""
    c = cli.client()
    h = lookup.host(c, host)
    hv = c.hypervisors.add(h.uuid, uri, virt_class)
    cli.emit(hv, lambda: cli.say(
        f"hypervisor {hv.virt_url} added to {h.name} as {hv.uuid} ({hv.status})"))


@command(hypervisor_app, "delete")
def hv_delete(
    cli: Cli,
    hypervisor: HvRef,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Remove a hypervisor that has no managed machines (its unmanaged ones are forgotten)."""
    c = cli.client()
    h = lookup.hypervisor(c, hypervisor)
    cli.confirm(f"Remove hypervisor {h.virt_url} ({h.uuid})?", yes)
    message = c.hypervisors.delete(h.uuid)
    cli.emit({"hypervisor": h.uuid, "message": message}, lambda: cli.say(message))


@command(hypervisor_app, "candidates")
def hv_candidates(cli: Cli, host: Annotated[str | None, typer.Argument(
        help="the host (default: the local one)")] = None) -> None:
    """Local libvirt URIs the server found and did not add."""
    c = cli.client()
    h = lookup.host(c, host) if host else next((x for x in c.hosts.list() if x.is_local), None)
    found = c.hypervisors.candidates(h.uuid) if h else []
    cli.emit(found, lambda: cli.table(
        ["CLASS", "URI", "REACHABLE"], [[x.virt_class, x.virt_url, x.reachable] for x in found]))


# -- nodes ---------------------------------------------------------------------------------

@command(node_app, "list")
def node_list(cli: Cli) -> None:
    """List the API nodes, whether each is alive, and the hypervisors each keeps."""
    nodes = cli.client().nodes.list()
    cli.emit(nodes, lambda: cli.table(
        ["ID", "MACHINE", "PID", "ALIVE", "LAST SEEN", "HYPERVISORS"],
        [[n.id, n.hostname, n.pid, "yes" if n.alive else "no",
          n.seen_at.isoformat(timespec="seconds") if n.seen_at else "",
          len(n.hypervisors)] for n in nodes]))
