"""`enomalism feed` and `enomalism package`: VMcast feeds and the packages they list."""

from pathlib import Path
from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, CLIError, command, size
from enomalism.client import Package, Repository

feed_app = typer.Typer(help="VMcast feeds (package repositories).", no_args_is_help=True)
package_app = typer.Typer(help="Packages: VM images to provision.", no_args_is_help=True)

FeedRef = Annotated[str, typer.Argument(help="URL, UUID or unique UUID prefix",
                                        show_default=False)]
PkgRef = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix",
                                       show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def _feed_doc(r: Repository, packages: list[Package], message: str = "") -> dict:
    return {"repository": r, "packages": packages, "message": message}


def _packages_table(cli: Cli, packages: list[Package]) -> None:
    feeds = {}
    if any(p.repository for p in packages):
        feeds = {r.uuid: r.title or r.url for r in cli.client().repositories.list()}
    cli.table(["NAME", "UUID", "VERSION", "STATE", "CLASS", "ARCH", "SIZE", "FEED"], [
        [p.name, p.uuid, p.version, p.state, p.virt_class, p.arch, size(p.size or p.length),
         feeds.get(p.repository, p.repository) if p.repository else "(local)"]
        for p in packages])


# -- feeds ---------------------------------------------------------------------------------

@command(feed_app, "list")
def feed_list(cli: Cli) -> None:
    """List feeds."""
    found = cli.client().repositories.list()
    cli.emit(found, lambda: cli.table(
        ["UUID", "URL", "TITLE", "PACKAGES", "REFRESHED", "ERROR"],
        [[r.uuid, r.url, r.title, r.packages, r.refreshed_at, r.last_error] for r in found]))


@command(feed_app, "show")
def feed_show(cli: Cli, feed: FeedRef) -> None:
    """Show a feed and its packages."""
    c = cli.client()
    r, packages = c.repositories.get(lookup.repository(c, feed).uuid)

    def human() -> None:
        cli.fields([("uuid", r.uuid), ("url", r.url), ("credentials", r.has_credentials),
                      ("title", r.title), ("description", r.description),
                      ("refreshed", r.refreshed_at), ("last error", r.last_error)])
        _packages_table(cli, packages)
    cli.emit(_feed_doc(r, packages), human)


@command(feed_app, "add")
def feed_add(cli: Cli, url: Annotated[str, typer.Argument(
        help="the feed's http(s) URL; user:password@ in it are kept apart and never shown")]
        ) -> None:
    """Add a feed; it is fetched at once."""
    r, packages = cli.client().repositories.add(url)
    cli.emit(_feed_doc(r, packages), lambda: cli.say(
        f"feed {r.url} added: {r.uuid}, {len(packages)} package(s)"))


@command(feed_app, "refresh")
def feed_refresh(cli: Cli, feed: FeedRef) -> None:
    """Fetch a feed again."""
    c = cli.client()
    r, packages = c.repositories.refresh(lookup.repository(c, feed).uuid)
    cli.emit(_feed_doc(r, packages), lambda: cli.say(
        f"feed {r.url} refreshed: {len(packages)} package(s)"))


@command(feed_app, "delete")
def feed_delete(cli: Cli, feed: FeedRef, yes: Yes = False) -> None:
    """Delete a feed with its packages and their cached files."""
    c = cli.client()
    r = lookup.repository(c, feed)
    cli.confirm(f"Delete feed {r.url} ({r.uuid}), its packages and their cached files?", yes)
    message = c.repositories.delete(r.uuid)
    cli.emit({"repository": r.uuid, "message": message}, lambda: cli.say(message))


# -- packages ------------------------------------------------------------------------------

@command(package_app, "list")
def package_list(cli: Cli, state: Annotated[str | None, typer.Option(
        help="remote, retrieving or cached")] = None) -> None:
    """List packages: from every feed, and made here."""
    found = cli.client().packages.list(state=state)
    cli.emit(found, lambda: _packages_table(cli, found))


@command(package_app, "show")
def package_show(cli: Cli, package: PkgRef) -> None:
    """Show a package."""
    c = cli.client()
    p = c.packages.get(lookup.package(c, package).uuid)
    cli.emit(p, lambda: cli.fields([
        ("name", p.name), ("uuid", p.uuid), ("version", p.version),
        ("description", p.description), ("state", p.state), ("class", p.virt_class),
        ("arch", p.arch), ("feed", p.repository or "(made here)"), ("url", p.url),
        ("size", size(p.size or p.length)), ("sha256", p.sha256),
        ("disks", [f"{d.get('target')} {d.get('format')} {size(d.get('virtual_size'))}"
                   for d in p.disks]),
        ("created", p.created_at), ("updated", p.updated_at)]))


@command(package_app, "update")
def package_update(
    cli: Cli,
    package: PkgRef,
    name: Annotated[str | None, typer.Option(help="new name")] = None,
    description: Annotated[str | None, typer.Option(help="new description")] = None,
) -> None:
    """Rename or describe a package."""
    if name is None and description is None:
        raise CLIError("give --name or --description", errno=1001)
    c = cli.client()
    p = c.packages.update(lookup.package(c, package).uuid, name=name, description=description)
    cli.emit(p, lambda: cli.say(f"package {p.name} updated"))


@command(package_app, "retrieve")
def package_retrieve(
    cli: Cli,
    package: PkgRef,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="print the transaction id at "
                                          "once")] = False,
    timeout: Annotated[float | None, typer.Option(
        help="give up waiting after this many seconds (the work goes on)")] = None,
) -> None:
    """Fetch a feed's package into the server's cache."""
    c = cli.client()
    p = lookup.package(c, package)
    txid = c.packages.retrieve(p.uuid)
    doc = {"package": p.uuid, "name": p.name, "txid": txid}
    if txid is None:
        cli.emit({**doc, "state": "cached"},
                 lambda: cli.say(f"package {p.name} is cached already"))
        return
    if no_wait:
        if cli.json:
            cli.emit(doc)
        else:
            cli.note(f"retrieving {p.name}: transaction {txid}")
            typer.echo(txid)
        return
    tx = cli.follow(txid, f"retrieve {p.name}", timeout)
    cli.emit({**doc, "state": c.packages.get(p.uuid).state, "transaction": tx},
             lambda: cli.say(f"package {p.name} retrieved"))


@command(package_app, "delete")
def package_delete(
    cli: Cli,
    package: PkgRef, yes: Yes = False,
    cache_only: Annotated[bool, typer.Option(
        "--cache-only", help="only remove the server's local copy of a feed's package")] = False,
) -> None:
    """Delete a package and its cached file (or, --cache-only, just the cached file)."""
    c = cli.client()
    p = lookup.package(c, package)
    what = "the cached copy of package" if cache_only else "package"
    cli.confirm(f"Delete {what} {p.name} ({p.uuid})?", yes)
    message = c.packages.uncache(p.uuid) if cache_only else c.packages.delete(p.uuid)
    cli.emit({"package": p.uuid, "message": message}, lambda: cli.say(message))


@command(package_app, "download")
def package_download(
    cli: Cli,
    package: PkgRef,
    dest: Annotated[Path, typer.Argument(help="a file, or a directory for <name>.xvm2")] =
    Path("."),
) -> None:
    """Download a cached package file."""
    c = cli.client()
    p = lookup.package(c, package)
    if cli.err.is_terminal:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                      console=cli.err) as bar:
            task = bar.add_task(f"download {p.name}", total=p.size or p.length)
            path = c.packages.download(p.uuid, dest, lambda done, total: bar.update(
                task, completed=done, total=total))
    else:
        path = c.packages.download(p.uuid, dest)
    length = path.stat().st_size
    cli.emit({"package": p.uuid, "path": str(path), "size": length},
             lambda: cli.say(f"package {p.name} saved to {path} ({size(length)})"))
