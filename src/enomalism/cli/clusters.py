"""`enomalism cluster`: named groups of machines."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, command

app = typer.Typer(help="Clusters: named groups of machines.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix", show_default=False)]
Machines = Annotated[list[str], typer.Argument(help="machines: names, UUIDs or prefixes",
                                               show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


@command(app, "list")
def list_(cli: Cli) -> None:
    """List clusters."""
    found = cli.client().clusters.list()
    cli.emit(found, lambda: cli.table(
        ["NAME", "UUID", "MACHINES"], [[x.name, x.uuid, len(x.machines)] for x in found]))


@command(app, "show")
def show(cli: Cli, cluster: Ref) -> None:
    """Show a cluster and its machines."""
    c = cli.client()
    x = c.clusters.get(lookup.cluster(c, cluster).uuid)

    def human() -> None:
        cli.fields([("name", x.name), ("uuid", x.uuid), ("machines", len(x.machines))])
        if x.machines:
            known = {m.uuid: m for m in c.machines.list()}
            cli.table(["NAME", "UUID", "KIND", "STATE"], [
                [known[u].name, u, known[u].kind, known[u].state] if u in known else
                ["", u, "", ""] for u in x.machines])
    cli.emit(x, human)


@command(app, "create")
def create(cli: Cli, name: Annotated[str, typer.Argument(help="the new cluster's name")]) -> None:
    """Create a cluster (you own it)."""
    x = cli.client().clusters.create(name)
    cli.emit(x, lambda: cli.say(f"cluster {x.name} created: {x.uuid}"))


@command(app, "rename")
def rename(cli: Cli, cluster: Ref,
           new_name: Annotated[str, typer.Argument(help="the new name")]) -> None:
    """Rename a cluster."""
    c = cli.client()
    old = lookup.cluster(c, cluster)
    x = c.clusters.rename(old.uuid, new_name)
    cli.emit(x, lambda: cli.say(f"cluster {old.name} renamed to {x.name}"))


@command(app, "delete")
def delete(cli: Cli, cluster: Ref, yes: Yes = False, force: Annotated[bool, typer.Option(
        help="also when static networks serve it (they are left serving none)")] = False
           ) -> None:
    """Delete a cluster; its machines only leave it."""
    c = cli.client()
    x = lookup.cluster(c, cluster)
    cli.confirm(f"Delete cluster {x.name} ({x.uuid})?", yes)
    message = c.clusters.delete(x.uuid, force=force)
    cli.emit({"cluster": x.uuid, "message": message}, lambda: cli.say(message))


def _members(cli: Cli, cluster: str, machines: list[str], add: bool) -> None:
    c = cli.client()
    x = lookup.cluster(c, cluster)
    for m in lookup.machines(c, machines):
        if add:
            c.machines.add_to_clusters(m.uuid, [x.uuid])
        else:
            c.machines.remove_from_clusters(m.uuid, [x.uuid])
        cli.say(f"{m.name} {'added to' if add else 'removed from'} cluster {x.name}")
    cli.emit(c.clusters.get(x.uuid))


@command(app, "add-machine")
def add_machine(cli: Cli, cluster: Ref, machines: Machines) -> None:
    """Add machines to a cluster."""
    _members(cli, cluster, machines, True)


@command(app, "remove-machine")
def remove_machine(cli: Cli, cluster: Ref, machines: Machines) -> None:
    """Take machines out of a cluster."""
    _members(cli, cluster, machines, False)
