"""`enomalism machine`: list, show and act on machines; provision and package."""

import functools
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from enomalism.cli import common, lookup
from enomalism.cli import console as term
from enomalism.cli.common import Cli, CLIError, kib, plain, size
from enomalism.client import Client, ClientError, Machine

app = typer.Typer(help="Virtual machines (and hosts): lifecycle, provisioning, packaging.",
                  no_args_is_help=True)

# The API's names of machine actions, as this command's verbs call them.
VERBS = {"create": "start", "shutdown": "stop", "totaldelete": "delete",
         "store_xml": "store-xml", "set_parent": "move"}


def cli_words(message: str) -> str:
    """An API message about actions in the CLI's verbs: 'cannot create a machine that is
    running; possible now: shutdown, ...' reads 'cannot start ...; possible now: stop, ...'."""
    def verbs(m: re.Match) -> str:
        return m[1] + ", ".join(VERBS.get(v, v) for v in m[2].split(", "))
    message = re.sub(r"\bcannot ([a-z_]+)\b",
                     lambda m: f"cannot {VERBS.get(m[1], m[1])}", message)
    return re.sub(r"(possible now: )([a-z_]+(?:, [a-z_]+)*)", verbs, message)


command = functools.partial(common.command, words=cli_words)

Ref = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix", show_default=False)]
Refs = Annotated[list[str], typer.Argument(help="names, UUIDs or unique UUID prefixes",
                                           show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="print the transaction id at once "
                                      "instead of following it")]
Timeout = Annotated[float | None, typer.Option(help="give up waiting after this many "
                                                  "seconds (the work goes on)")]


def brief(m: Machine) -> dict:
    """A machine for listings: everything but its XML description."""
    d = m.to_dict()
    d.pop("xmldesc", None)
    return d


def notes(m: Machine) -> str:
    out = []
    if m.kind == "vm" and not m.managed:
        out.append("unmanaged")
    if m.locked_by:
        out.append(f"locked by {m.locked_by}")
    if m.xml_pending:
        out.append("xml pending")
    if m.is_local:
        out.append("local")
    return ", ".join(out)


@command(app, "list")
def list_(
    cli: Cli,
    kind: Annotated[str | None, typer.Option(help="host or vm")] = None,
    state: Annotated[str | None, typer.Option(help="only machines in this state")] = None,
    hypervisor: Annotated[str | None, typer.Option(
        help="only machines on this hypervisor (UUID, prefix or URL)")] = None,
) -> None:
    """List machines (hosts and VMs)."""
    c = cli.client()
    hv = lookup.hypervisor(c, hypervisor).uuid if hypervisor else None
    found = c.machines.list(kind=kind, state=state, hypervisor=hv)

    def human() -> None:
        names = {m.uuid: m.name for m in found if m.kind == "host"}
        if any(m.host and m.host not in names for m in found):
            names.update({m.uuid: m.name for m in c.machines.list(kind="host")})
        uris = {h.uuid: h.virt_url for h in c.hypervisors.list()} if \
            any(m.parent for m in found) else {}
        cli.table(
            ["NAME", "UUID", "KIND", "STATE", "HOST", "HYPERVISOR", "ADDRESS", "SIZE", "NOTES"],
            [[m.name, m.uuid, m.kind, m.state, names.get(m.host or "", m.host),
              uris.get(m.parent or "", m.parent),
              m.address or ", ".join(a.address for a in m.addresses) or None,
              _size(m), notes(m)] for m in found])
    cli.emit([brief(m) for m in found], human)


def _address_lines(m: Machine, leases: list[dict]) -> list[str]:
    """`10.0.0.5/24 (lease on net1, 52:54:00:...)`: each address with where it came from."""
    networks = {x.get("address"): x.get("network_name") for x in leases}
    out = []
    for a in m.addresses:
        where = f"{a.source} on {networks[a.address]}" \
            if a.source == "lease" and networks.get(a.address) else a.source
        prefix = f"/{a.prefix}" if a.prefix is not None else ""
        out.append(f"{a.address}{prefix} ({where}{', ' + a.mac if a.mac else ''})")
    return out


def _size(m: Machine) -> str:
    if m.vcpus is None and m.memory_kib is None:
        return ""
    return f"{m.vcpus or '?'} vCPU, {kib(m.memory_kib) or '?'}"


def _user_name(c: Client, uuid: str | None) -> str | None:
    """A user's name and id for display (the id alone when the caller may not read it)."""
    if not uuid:
        return None
    try:
        names = {u.uuid: u.username for u in c.users.list()}
    except ClientError:
        return uuid
    return f"{names[uuid]} ({uuid})" if uuid in names else uuid


@command(app, "show")
def show(
    cli: Cli,
    machine: Ref,
    xml: Annotated[bool, typer.Option("--xml", help="print only the XML description")] = False,
) -> None:
    """Show a machine: state, size, hypervisor, clusters, addresses, actions."""
    c = cli.client()
    d = c.machines.get(lookup.machine(c, machine).uuid)
    m, info = d.machine, d.info
    if xml and not cli.json:
        typer.echo(m.xmldesc or "")
        return
    snaps = _snapshots(c, m)

    def human() -> None:
        host = lookup.host_name(c, m.host)
        hv = d.hypervisors[0] if m.kind == "vm" and d.hypervisors else None
        clusters = {x.uuid: x.name for x in c.machines.clusters(m.uuid)} if m.clusters else {}
        cli.fields([
            ("name", m.name), ("uuid", m.uuid), ("kind", m.kind), ("state", m.state),
            ("managed", m.managed), ("persistent", m.persistent),
            *([("host", host)] if host else []),
            *([("hypervisor", f"{hv.virt_url} ({hv.status})")] if hv else []),
            *([("hypervisors", [f"{h.virt_url} ({h.status})" for h in d.hypervisors])]
              if m.kind == "host" else []),
            *([("address", m.address)] if m.address else []),
            ("vcpus", info.vcpus), ("memory", kib(info.memory_kib)),
            ("clusters", [clusters.get(u, u) for u in m.clusters]),
            ("addresses", _address_lines(m, info.leases)),
            ("locked by", m.locked_by), ("xml pending", m.xml_pending),
            ("owner", _user_name(c, m.owner)),
            *([("restart policy", m.restart_policy), ("autostart", m.autostart),
               ("snapshots", [_snapshot_line(x, snaps) for x in snaps or []]
                if snaps is not None else "(the hypervisor did not answer)")]
              if m.kind == "vm" else []),
            ("actions", [VERBS.get(a, a) for a in m.actions]), ("created", m.created_at),
            ("updated", m.updated_at),
            ("synced", m.synced_at),
        ])
    cli.emit({**plain(d), "snapshots": snaps} if snaps is not None else d, human)


def _snapshots(c: Client, m: Machine) -> list | None:
    """A VM's snapshots ([] for a host or a VM without a domain yet; None: not known now)."""
    if m.kind != "vm" or m.state in ("missing", "provisioning"):
        return []
    try:
        return c.machines.snapshots(m.uuid)
    except ClientError:
        return None


def _snapshot_line(s, snaps: list) -> str:  # noqa: ANN001
    depth, parent = 0, s.parent
    by_name = {x.name: x for x in snaps}
    while parent in by_name and depth < 64:
        depth, parent = depth + 1, by_name[parent].parent
    memory = ", memory" if s.memory else ""
    about = f": {s.description}" if s.description else ""
    return f"{'  ' * depth}{s.name} ({s.state}{memory}, {s.created:%Y-%m-%d %H:%M}){about}"


def _act(cli: Cli, refs: list[str], action: str, done: str, **variables: str) -> list[dict]:
    c = cli.client()
    results: list[dict] = []
    for m in lookup.machines(c, refs):
        try:
            message = c.machines.action(m.uuid, action, **variables)
        except ClientError as e:
            e.partial = results  # what was done before, for the error document
            raise
        results.append({"machine": m.uuid, "name": m.name, "action": action,
                        "message": message})
        cli.say(f"{m.name}: {message or done}")
    return results


def _action_command(name: str, action: str, help_text: str, done: str) -> None:
    @command(app, name, help=help_text)
    def run(cli: Cli, machines: Refs) -> None:
        cli.emit(_act(cli, machines, action, done))
    run.__name__ = f"machine_{name}"


_action_command("start", "create", "Start machines.", "started")
_action_command("poweroff", "poweroff", "Stop machines at once (like pulling the plug).",
                "powered off")
_action_command("suspend", "suspend", "Pause machines' vCPUs.", "suspended")
_action_command("resume", "resume", "Resume paused machines.", "resumed")
_action_command("reboot", "reboot", "Ask guests to reboot (ACPI).", "rebooting")
_action_command("manage", "manage", "Adopt discovered (unmanaged) domains.", "managed")
_action_command("unlock", "unlock", "Clear a stale transaction lock (administrators).",
                "unlocked")
_action_command("store-xml", "store_xml", "Define the stored XML description on the "
                "hypervisor.", "stored")


@command(app, "stop")
def stop(
    cli: Cli,
    machines: Refs,
    wait: Annotated[bool, typer.Option("--wait", help="wait until they are shut off")] = False,
    timeout: Annotated[float, typer.Option(help="with --wait: seconds to wait")] = 120,
) -> None:
    """Ask guests to power off (ACPI shutdown); answers at once unless --wait. A guest
    without an OS ignores it: use poweroff."""
    results = _act(cli, machines, "shutdown", "shutting down")
    if wait:
        c = cli.client()
        deadline = time.monotonic() + timeout
        for r in results:
            while (state := c.machines.get(r["machine"]).machine.state) != "shutoff":
                if time.monotonic() > deadline:
                    raise CLIError(f"{r['name']} is still {state} after {timeout:g} s; "
                                   f"`enomalism machine poweroff {r['name']}` stops it at once",
                                   results=results)
                time.sleep(0.5)
            r["state"] = "shutoff"
            cli.say(f"{r['name']}: shut off")
    cli.emit(results)


@command(app, "refresh")
def refresh(cli: Cli, machines: Refs) -> None:
    """Read machines again from libvirt now (a host: all its hypervisors)."""
    c = cli.client()
    results = []
    for m in lookup.machines(c, machines):
        message = c.machines.refresh(m.uuid)
        results.append({"machine": m.uuid, "name": m.name, "action": "trigger_status_updates",
                        "message": message})
        cli.say(f"{m.name}: {message}")
    cli.emit(results)


@command(app, "delete")
def delete(cli: Cli, machines: Refs, yes: Yes = False) -> None:
    """Delete machines for good: stop, undefine, delete their unshared disk volumes
    (totaldelete). Asks first unless --yes."""
    c = cli.client()
    found = lookup.machines(c, machines)
    listed = ", ".join(f"{m.name} ({m.uuid})" for m in found)
    cli.confirm(f"Delete machine {listed} with its disk volumes?" if len(found) == 1 else
                f"Delete machines {listed} with their disk volumes?", yes)
    results = []
    for m in found:
        message = c.machines.delete(m.uuid)
        results.append({"machine": m.uuid, "name": m.name, "action": "totaldelete",
                        "message": message})
        cli.say(f"{m.name}: {message or 'deleted'}")
    cli.emit(results)


@command(app, "rename")
def rename(cli: Cli, machine: Ref,
           new_name: Annotated[str, typer.Argument(help="the new name")]) -> None:
    """Rename a machine (a VM must be shut off)."""
    c = cli.client()
    m = lookup.machine(c, machine)
    message = c.machines.rename(m.uuid, new_name)
    cli.emit({"machine": m.uuid, "name": new_name, "old_name": m.name, "message": message},
             lambda: cli.say(f"{m.name}: {message or 'renamed to ' + new_name}"))


@command(app, "set")
def set_(
    cli: Cli,
    machine: Ref,
    vcpus: Annotated[int | None, typer.Option(help="virtual CPUs", min=1)] = None,
    memory: Annotated[int | None, typer.Option(help="memory in MiB", min=16)] = None,
    restart_policy: Annotated[str | None, typer.Option(
        help="never, or on-failure: started again after its guest crashed or was killed "
             "(with a back-off and a limit)")] = None,
    autostart: Annotated[bool | None, typer.Option(
        "--autostart/--no-autostart", help="start with the host", show_default=False)] = None,
) -> None:
    """Resize a machine: a stopped one takes any size (its new maximum), a running one
    changes live up to the maximums it was started with. Also its restart policy and
    autostart."""
    if vcpus is None and memory is None and restart_policy is None and autostart is None:
        raise CLIError("give --vcpus, --memory, --restart-policy and/or --autostart")
    c = cli.client()
    m = lookup.machine(c, machine)
    said = []
    if restart_policy is not None or autostart is not None:
        said.append(c.machines.set_restart_policy(m.uuid, policy=restart_policy,
                                                  autostart=autostart))
    if vcpus is not None or memory is not None:
        said.append(c.machines.resize(m.uuid, vcpus=vcpus, memory=memory))
    message = "; ".join(said)
    cli.emit({"machine": m.uuid, "name": m.name, "action": "set", "vcpus": vcpus,
              "memory": memory, "restart_policy": restart_policy, "autostart": autostart,
              "message": message},
             lambda: cli.say(f"{m.name}: {message}"))


def _disk_change(cli: Cli, machine: str, action: str, call) -> None:  # noqa: ANN001
    c = cli.client()
    m = lookup.machine(c, machine)
    message = call(c.machines, m.uuid)
    cli.emit({"machine": m.uuid, "name": m.name, "action": action, "message": message},
             lambda: cli.say(f"{m.name}: {message}"))


@command(app, "attach-disk")
def attach_disk(
    cli: Cli, machine: Ref,
    volume: Annotated[str | None, typer.Option(help="a free volume of yours (name or path)")]
    = None,
    size_gib: Annotated[int | None, typer.Option("--size", help="GiB of a new blank disk",
                                                 min=1)] = None,
) -> None:
    """Attach a volume of yours, or a new blank disk, to a machine (live when it runs)."""
    if (volume is None) == (size_gib is None):
        raise CLIError("give --volume or --size")
    _disk_change(cli, machine, "attach_disk",
                 lambda ms, u: ms.attach_disk(u, volume=volume, size_gib=size_gib))


@command(app, "detach-disk")
def detach_disk(cli: Cli, machine: Ref,
                target: Annotated[str, typer.Argument(help="the disk, e.g. vdb")]) -> None:
    """Detach a disk; its volume stays, attached to nothing."""
    _disk_change(cli, machine, "detach_disk", lambda ms, u: ms.detach_disk(u, target))


@command(app, "grow-disk")
def grow_disk(cli: Cli, machine: Ref,
              target: Annotated[str, typer.Argument(help="the disk, e.g. vda")],
              size_gib: Annotated[int, typer.Option("--size", help="the new size in GiB",
                                                    min=1)]) -> None:
    """Grow a disk (live by block resize when the machine runs)."""
    _disk_change(cli, machine, "grow_disk", lambda ms, u: ms.grow_disk(u, target, size_gib))


@command(app, "actions")
def actions(cli: Cli, machine: Ref) -> None:
    """The actions valid for a machine now."""
    c = cli.client()
    m = lookup.machine(c, machine)
    result = c.machines.actions(m.uuid)

    def human() -> None:
        for a in result:
            cli.say(VERBS.get(a, a))
    cli.emit({"machine": m.uuid, "name": m.name, "actions": result}, human)


def _rate(n: float | None) -> str:
    return "" if n is None else f"{size(int(n))}/s"


def _top_rows(c: Client) -> list[dict]:
    """Every running VM the caller may read with its current rates, busiest first. A VM
    whose statistics another API node keeps (or that is gone meanwhile) is left out."""
    rows = []
    for m in c.machines.list(kind="vm", state="running"):
        try:
            st = c.machines.stats(m.uuid).stats
        except ClientError:
            continue
        rows.append({"uuid": m.uuid, "name": m.name, **st.to_dict()})
    return sorted(rows, key=lambda r: (r["cpu"] is None, -(r["cpu"] or 0), r["name"]))


def _top_table(cli: Cli, rows: list[dict]) -> None:
    cli.table(
        ["NAME", "CPU %", "MEMORY", "DISK READ", "DISK WRITE", "NET RX", "NET TX", "UUID"],
        [[r["name"], "" if r["cpu"] is None else f"{r['cpu']:.1f}",
          "" if r["mem_used"] is None else
          f"{size(int(r['mem_used']))} / {size(int(r['mem_total'] or 0))}",
          _rate(r["disk_read"]), _rate(r["disk_write"]), _rate(r["net_rx"]),
          _rate(r["net_tx"]), r["uuid"]] for r in rows])


@command(app, "top")
def top(
    cli: Cli,
    once: Annotated[bool, typer.Option("--once", help="print one snapshot and exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes", min=1)] = 10.0,
) -> None:
    """Running machines with their CPU %, memory, disk and network rates, busiest first,
    refreshed until Ctrl-C (the server samples every 10 s)."""
    c = cli.client()
    if once or cli.json:
        rows = _top_rows(c)
        cli.emit(rows, lambda: _top_table(cli, rows))
        return
    try:
        while True:
            rows = _top_rows(c)
            cli.out.clear()
            _top_table(cli, rows)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


@command(app, "console")
def console(
    cli: Cli,
    machine: Ref,
    force: Annotated[bool, typer.Option(
        "--force", help="take the console over from its current viewer (who is told)")] = False,
) -> None:
    """Attach the terminal to the machine's serial console, like `virsh console`: raw mode,
    Ctrl-] detaches; a dropped console is opened again by itself."""
    c = cli.client()
    uuid = c.machines.find(machine).uuid
    def say(message: str) -> None:
        sys.stderr.write(message)
        sys.stderr.flush()
    code = term.attach(lambda: c.machines.console(
                           uuid, force=force, notify=lambda m: say(f"\n{m}\n")),
                       sys.stdin.fileno(), term.stdout_bytes(), say)
    if code:
        raise typer.Exit(code)


@command(app, "define")
def define(
    cli: Cli,
    xml_file: Annotated[Path, typer.Argument(help="libvirt domain XML ('-': stdin)",
                                             allow_dash=True)],
    hypervisor: Annotated[str | None, typer.Option(
        help="the hypervisor (UUID, prefix or URL); needed when there are several")] = None,
) -> None:
    """Define a new VM from libvirt domain XML, like `virsh define`."""
    c = cli.client()
    text = typer.get_text_stream("stdin").read() if str(xml_file) == "-" else \
        _read(xml_file)
    hv = _hypervisor(c, hypervisor, None)
    m = c.machines.define(text, hv.uuid)
    cli.emit(brief(m), lambda: cli.say(f"machine {m.name} defined: {m.uuid}"))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None


@command(app, "move")
def move(cli: Cli, machine: Ref, hypervisor: Annotated[str, typer.Argument(
        help="the hypervisor to move to (UUID, prefix or URL)")],
         pool: Annotated[str | None, typer.Option(
             help="the target's storage pool for copied disks")] = None,
         bandwidth: Annotated[int | None, typer.Option(
             help="limit a live migration to this many MiB/s")] = None,
         no_wait: NoWait = False, timeout: Timeout = None) -> None:
    """Move a machine to another hypervisor (set_parent): a running one live, with its
    disks copied; a stopped one with its disks, or its definition alone where the target
    sees them. A move that takes time is a transaction, followed until it ends."""
    c = cli.client()
    m = lookup.machine(c, machine)
    hv = lookup.hypervisor(c, hypervisor)
    message, txid = c.machines.move(m.uuid, hv.uuid, pool=pool, bandwidth=bandwidth)
    doc = {"machine": m.uuid, "name": m.name, "hypervisor": hv.uuid, "message": message,
           "txid": txid}
    if txid is None:
        cli.emit(doc, lambda: cli.say(f"{m.name}: {message}"))
        return
    if no_wait:
        _queued(cli, doc, f"moving {m.name}")
        return
    tx = cli.follow(txid, f"move {m.name}", timeout)
    downtime = tx.result.get("downtime_ms")
    cli.emit({**doc, "state": tx.state, "transaction": tx},
             lambda: cli.say(f"{m.name}: {tx.result.get('message', 'moved')}"
                             + (f" (downtime {downtime} ms)" if downtime is not None else "")))


def _hypervisor(c, ref: str | None, host_ref: str | None):  # noqa: ANN001, ANN202
    """The hypervisor named, or the only one (of the host, if named)."""
    host_uuid = lookup.host(c, host_ref).uuid if host_ref else None
    if ref:
        return lookup.hypervisor(c, ref, host_uuid)
    hvs = c.hypervisors.list(host_uuid)
    if len(hvs) == 1:
        return hvs[0]
    if not hvs:
        raise CLIError("there is no hypervisor" + (f" on {host_ref}" if host_ref else ""), 3,
                       1200)
    raise CLIError("there are several hypervisors; choose one with --hypervisor:\n"
                   + "\n".join(f"  {h.uuid}  {h.virt_url}" for h in hvs),
                   candidates=[h.uuid for h in hvs])


@command(app, "provision")
def provision(
    cli: Cli,
    package: Annotated[str, typer.Argument(help="the package: name, UUID or prefix")],
    name: Annotated[str, typer.Argument(help="the new machine's name")],
    hypervisor: Annotated[str | None, typer.Option(
        help="the hypervisor (UUID, prefix or URL); left out, the server picks one")] = None,
    host: Annotated[str | None, typer.Option(
        help="the host whose hypervisor to use (name or UUID): its only one, or --hypervisor "
             "among them")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="let the server pick among the hypervisors of this cluster's hosts (name or "
             "UUID)")] = None,
    pool: Annotated[str | None, typer.Option(
        help="storage pool for the disks (default: 'default', else the first active)")] = None,
    virt_type: Annotated[str | None, typer.Option(
        help="kvm or qemu (TCG); default: the hypervisor's")] = None,
    libvirt_network: Annotated[str | None, typer.Option(
        help="a libvirt network for the interfaces the package leaves to the target "
             "(default: a static network's, else 'default')")] = None,
    user_data: Annotated[Path | None, typer.Option(
        help="a cloud-init user data file (a cloud-config; '-': stdin)", allow_dash=True)] = None,
    ssh_key: Annotated[list[str] | None, typer.Option(
        help="an SSH public key, or a file of them; repeatable")] = None,
    hostname: Annotated[str | None, typer.Option(
        help="the guest's host name (for the cloud-init seed)")] = None,
    no_wait: NoWait = False, timeout: Timeout = None,
) -> None:
    """Provision a package as a new machine (retrieving it first when it is not cached).
    Without --hypervisor or --host, the server places it: on the connected, compatible
    hypervisor with the most free memory, among the cluster's hosts with --cluster."""
    if cluster and (hypervisor or host):
        raise CLIError("--cluster lets the server choose; it does not go with --hypervisor "
                       "or --host", 2)
    c = cli.client()
    p = lookup.package(c, package)
    extra: dict = {"pool": pool, "virt_type": virt_type, "libvirt_network": libvirt_network,
                   "user_data": _user_data(user_data), "ssh_keys": _ssh_keys(ssh_key or []),
                   "hostname": hostname}
    if hypervisor or host:
        hv = _hypervisor(c, hypervisor, host)
        q = c.machines.provision(hv.machine, package=p.uuid, hypervisor=hv.uuid, name=name,
                                 **extra)
    else:
        q = c.machines.provision(package=p.uuid, name=name, **extra,
                                 cluster=lookup.cluster(c, cluster).uuid if cluster else None)
    doc = {"txid": q.txid, "machine": q.machine, "name": name, "package": p.uuid,
           "hypervisor": q.hypervisor}
    if no_wait:
        _queued(cli, doc, f"provisioning {name} as {q.machine} on hypervisor {q.hypervisor}")
        return
    tx = cli.follow(q.txid, f"provision {name}", timeout)
    cli.emit({**doc, "state": tx.state, "transaction": tx},
             lambda: cli.say(f"machine {name} provisioned: {q.machine}"))


def _user_data(path: Path | None) -> str | None:
    """--user-data: the file's text ('-': stdin)."""
    if path is None:
        return None
    return typer.get_text_stream("stdin").read() if str(path) == "-" else _read(path)


def _ssh_keys(values: list[str]) -> list[str]:
    """Each --ssh-key: a public key line, or a file of them (authorized_keys style)."""
    keys = []
    for v in values:
        path = Path(v).expanduser()
        if not v.startswith(("ssh-", "ecdsa-", "sk-")) and path.exists():
            keys += [ln.strip() for ln in _read(path).splitlines()
                     if ln.strip() and not ln.lstrip().startswith("#")]
        else:
            keys.append(v.strip())
    return keys


@command(app, "create")
def create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="the new machine's name")],
    vcpus: Annotated[int | None, typer.Option(help="virtual CPUs (default 1)")] = None,
    memory: Annotated[int | None, typer.Option(help="memory in MiB (default 1024)")] = None,
    disk: Annotated[int | None, typer.Option(
        help="GiB of a blank disk; with --image, the size the disk grows to")] = None,
    image: Annotated[str | None, typer.Option(
        help="a disk image (name or UUID): the disk is a copy-on-write overlay on it")] = None,
    cdrom: Annotated[str | None, typer.Option(help="an ISO image (name or UUID)")] = None,
    network: Annotated[list[str] | None, typer.Option(
        help="a static network (name or UUID) to lease an address on; repeatable")] = None,
    libvirt_network: Annotated[str | None, typer.Option(
        help="a libvirt network to join (its DHCP)")] = None,
    hypervisor: Annotated[str | None, typer.Option(
        help="the hypervisor (UUID, prefix or URL); left out, the server picks one")] = None,
    host: Annotated[str | None, typer.Option(
        help="the host whose hypervisor to use (name or UUID)")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="let the server pick among this cluster's hosts")] = None,
    pool: Annotated[str | None, typer.Option(help="storage pool for the disks")] = None,
    virt_type: Annotated[str | None, typer.Option(help="kvm or qemu (TCG)")] = None,
    firmware: Annotated[str | None, typer.Option(help="bios (default) or uefi")] = None,
    cpu_mode: Annotated[str | None, typer.Option(
        help="host-passthrough (default on kvm), host-model or maximum")] = None,
    user_data: Annotated[Path | None, typer.Option(
        help="a cloud-init user data file (a cloud-config; '-': stdin)", allow_dash=True)] = None,
    ssh_key: Annotated[list[str] | None, typer.Option(
        help="an SSH public key, or a file of them; repeatable")] = None,
    hostname: Annotated[str | None, typer.Option(
        help="the guest's host name (default: the machine's name)")] = None,
    autostart: Annotated[bool, typer.Option(help="start with the host")] = False,
    no_wait: NoWait = False, timeout: Timeout = None,
) -> None:
    """Create a machine from parameters, like `virt-install` or `incus launch`: a blank disk
    (--disk) or a copy-on-write disk on an image (--image), an installer (--cdrom), networks,
    and cloud-init (--user-data, --ssh-key, --hostname: a NoCloud seed)."""
    if cluster and (hypervisor or host):
        raise CLIError("--cluster lets the server choose; it does not go with --hypervisor "
                       "or --host", 2)
    c = cli.client()
    hv = _hypervisor(c, hypervisor, host).uuid if hypervisor or host else None
    text = _user_data(user_data)
    q = c.machines.create(
        name, vcpus=vcpus, memory=memory, disk=disk, image=image, cdrom=cdrom,
        networks=[lookup.network(c, n).uuid for n in network or []],
        libvirt_network=libvirt_network, hypervisor=hv,
        cluster=lookup.cluster(c, cluster).uuid if cluster else None, pool=pool,
        virt_type=virt_type, firmware=firmware, cpu_mode=cpu_mode, user_data=text,
        ssh_keys=_ssh_keys(ssh_key or []), hostname=hostname, autostart=autostart)
    doc = {"txid": q.txid, "machine": q.machine, "name": name, "hypervisor": q.hypervisor}
    if no_wait:
        _queued(cli, doc, f"creating {name} as {q.machine} on hypervisor {q.hypervisor}")
        return
    tx = cli.follow(q.txid, f"create {name}", timeout)
    cli.emit({**doc, "state": tx.state, "transaction": tx},
             lambda: cli.say(f"machine {name} created: {q.machine}"))


def _queued(cli: Cli, doc: dict, what: str) -> None:
    """--no-wait: the transaction id alone on stdout (JSON: the whole document)."""
    if cli.json:
        cli.emit(doc)
    else:
        cli.note(f"{what}: transaction {doc['txid']} (`enomalism tx wait {doc['txid']}`)")
        typer.echo(doc["txid"])


@command(app, "package")
def package(
    cli: Cli,
    machine: Ref,
    name: Annotated[str | None, typer.Option(help="the package's name (default: the "
                                                "machine's)")] = None,
    description: Annotated[str | None, typer.Option(help="its description")] = None,
    version: Annotated[str | None, typer.Option(help="its version (default 1)")] = None,
    compression: Annotated[str | None, typer.Option(
        help="zstd (default) or gzip (for strict XVM2 readers)")] = None,
    no_wait: NoWait = False, timeout: Timeout = None,
) -> None:
    """Export a machine (XML and disks) into a new package; a running machine is paused
    while its disks are read."""
    c = cli.client()
    m = lookup.machine(c, machine)
    q = c.machines.package(m.uuid, name=name, description=description, version=version,
                           compression=compression)
    doc = {"txid": q.txid, "machine": m.uuid, "name": name or m.name}
    if no_wait:
        _queued(cli, doc, f"packaging {m.name}")
        return
    tx = cli.follow(q.txid, f"package {m.name}", timeout)
    pkg = tx.result.get("package")
    cli.emit({**doc, "package": pkg, "state": tx.state, "transaction": tx},
             lambda: cli.say(f"package {name or m.name} created: {pkg}"))
