"""`enomalism cache`: the base volumes provisioned machines back onto, on each hypervisor."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, command

app = typer.Typer(help="The base-image cache on the hypervisors (administrators only).",
                  no_args_is_help=True)

HvOption = Annotated[str | None, typer.Option(
    "--hypervisor", help="only this hypervisor (UUID, unique prefix or libvirt URI)")]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@command(app, "list")
def list_(cli: Cli, hypervisor: HvOption = None) -> None:
    """List the base volumes with their size, package and users; UNUSED ones go at the next
    sweep (or `cache prune`)."""
    c = cli.client()
    hv = lookup.hypervisor(c, hypervisor).uuid if hypervisor else None
    bases, problems = c.cache.list(hv)
    for problem in problems:
        cli.note(problem)
    cli.emit({"bases": bases, "problems": problems}, lambda: cli.table(
        ["HYPERVISOR", "POOL", "VOLUME", "SIZE", "PACKAGE", "USED BY", "STATE"],
        [[b.hypervisor, b.pool, b.name, _size(b.allocation),
          b.package_name or (f"{b.package} (gone)" if b.package else ""),
          ", ".join(b.domains + b.volumes), "unused" if b.unused else f"kept: {b.kept}"]
         for b in bases]))


@command(app, "prune")
def prune(
    cli: Cli,
    hypervisor: HvOption = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the transaction id at "
                                          "once")] = False,
) -> None:
    """Remove the unused base volumes now (those `cache list` shows as unused)."""
    c = cli.client()
    hv = lookup.hypervisor(c, hypervisor).uuid if hypervisor else None
    txid = c.cache.prune(hv)
    if no_wait:
        cli.emit({"txid": txid}, lambda: typer.echo(txid))
        return
    tx = cli.follow(txid, "cache prune")
    removed = tx.result.get("removed", [])

    def human() -> None:
        for r in removed:
            cli.say(f"removed {r['pool']}/{r['name']} ({_size(r['allocation'])})")
        for why in tx.result.get("skipped", []):
            cli.note(f"skipped {why}")
        cli.say(f"{len(removed)} base volume(s) removed, {tx.result.get('kept', 0)} kept")
    cli.emit({"txid": txid, **tx.result}, human)
