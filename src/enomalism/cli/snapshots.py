"""`enomalism snapshot`: a machine's snapshots (create, list, revert, delete). The changes are
transactions: followed to their end unless --no-wait."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli
from enomalism.cli.machines import NoWait, Ref, Timeout, _queued, command
from enomalism.client import Queued, Snapshot

app = typer.Typer(help="A machine's snapshots: create, list, revert, delete.",
                  no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="the snapshot's name", show_default=False)]


def tree_rows(found: list[Snapshot]) -> list[list]:
    """The snapshots as table rows, each indented under its parent."""
    depth: dict[str, int] = {}
    rows = []
    for s in found:
        depth[s.name] = depth.get(s.parent or "", -1) + 1 if s.parent else 0
        rows.append(["  " * depth[s.name] + s.name, s.state, "yes" if s.memory else "no",
                     s.created, s.description])
    return rows


@command(app, "list")
def snapshot_list(cli: Cli, machine: Ref) -> None:
    """A machine's snapshots as a tree (a child under its parent)."""
    c = cli.client()
    m = lookup.machine(c, machine)
    found = c.machines.snapshots(m.uuid)
    cli.emit(found, lambda: cli.table(["NAME", "STATE", "MEMORY", "CREATED", "DESCRIPTION"],
                                      tree_rows(found)))


def _follow(cli: Cli, q: Queued, what: str, doc: dict, no_wait: bool,
            timeout: float | None) -> None:
    doc = {**doc, "txid": q.txid}
    if no_wait:
        _queued(cli, doc, what)
        return
    tx = cli.follow(q.txid, what, timeout)
    cli.emit({**doc, "state": tx.state, "transaction": tx}, lambda: cli.say(f"{what}: done"))


@command(app, "create")
def snapshot_create(
    cli: Cli, machine: Ref, name: Name,
    description: Annotated[str | None, typer.Option(help="what it is for")] = None,
    memory: Annotated[bool, typer.Option("--memory", help="a running machine's memory too "
                                         "(a revert resumes it)")] = False,
    no_wait: NoWait = False, timeout: Timeout = None,
) -> None:
    """Take a snapshot: disks only of a stopped machine, --memory of a running one."""
    c = cli.client()
    m = lookup.machine(c, machine)
    q = c.machines.take_snapshot(m.uuid, name, description=description, memory=memory)
    _follow(cli, q, f"snapshot {name} of {m.name}", {"machine": m.uuid, "snapshot": name},
            no_wait, timeout)


@command(app, "revert")
def snapshot_revert(cli: Cli, machine: Ref, name: Name, no_wait: NoWait = False,
                    timeout: Timeout = None) -> None:
    """Go back to a snapshot (a snapshot with memory: the machine runs as it was)."""
    c = cli.client()
    m = lookup.machine(c, machine)
    q = c.machines.revert_snapshot(m.uuid, name)
    _follow(cli, q, f"revert of {m.name} to {name}", {"machine": m.uuid, "snapshot": name},
            no_wait, timeout)


@command(app, "delete")
def snapshot_delete(cli: Cli, machine: Ref, name: Name, no_wait: NoWait = False,
                    timeout: Timeout = None) -> None:
    """Delete a snapshot; its children take its parent."""
    c = cli.client()
    m = lookup.machine(c, machine)
    q = c.machines.delete_snapshot(m.uuid, name)
    _follow(cli, q, f"deletion of snapshot {name} of {m.name}",
            {"machine": m.uuid, "snapshot": name}, no_wait, timeout)
