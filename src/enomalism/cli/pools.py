"""`enomalism pool`: storage pools and the volumes in them (a machine's disks: `enomalism
machine attach-disk|detach-disk|grow-disk`)."""

from typing import Annotated

import typer

from enomalism.cli.common import Cli, command, size

app = typer.Typer(help="Storage pools and their volumes.", no_args_is_help=True)

PoolRef = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix",
                                        show_default=False)]


@command(app, "list")
def pool_list(cli: Cli) -> None:
    """The pools of the hypervisors you may read."""
    found = cli.client().pools.list()
    cli.emit(found, lambda: cli.table(
        ["NAME", "UUID", "HYPERVISOR", "CAPACITY", "ALLOCATION", "AVAILABLE"],
        [[p.name, p.uuid, p.hypervisor, size(p.capacity), size(p.allocation),
          size(p.available)] for p in found]))


@command(app, "volumes")
def pool_volumes(cli: Cli, pool: PoolRef) -> None:
    """A pool's volumes you may see, with owner and machine."""
    found = cli.client().pools.volumes(pool)
    cli.emit(found, lambda: cli.table(
        ["NAME", "CAPACITY", "FORMAT", "OWNER", "MACHINE", "PATH"],
        [[v.name, size(v.capacity), v.format, v.owner, v.machine, v.path] for v in found]))


@command(app, "create-volume")
def create_volume(cli: Cli, pool: PoolRef,
                  name: Annotated[str, typer.Argument(help="the volume's name")],
                  size_gib: Annotated[int, typer.Option("--size", help="GiB", min=1)]) -> None:
    """Make a blank volume of your own."""
    v = cli.client().pools.create_volume(pool, name, size_gib)
    cli.emit(v, lambda: cli.say(f"volume {v.name} created: {v.path}"))


@command(app, "delete-volume")
def delete_volume(cli: Cli, pool: PoolRef,
                  name: Annotated[str, typer.Argument(help="the volume's name")]) -> None:
    """Delete a free volume of yours."""
    message = cli.client().pools.delete_volume(pool, name)
    cli.emit({"pool": pool, "name": name, "message": message}, lambda: cli.say(message))
