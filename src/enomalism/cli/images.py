"""`enomalism image`: disk and ISO images kept in the hypervisors' storage pools; and
`enomalism package upload`, a local .xvm2 file as a package."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from enomalism.cli.common import Cli, CLIError, command, size
from enomalism.cli.feeds import package_app
from enomalism.client import Image

app = typer.Typer(help="Images: qcow2, raw and ISO files to create machines from.",
                  no_args_is_help=True)

ImageRef = Annotated[str, typer.Argument(help="name, UUID or unique UUID prefix",
                                         show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
FORMATS = {".qcow2": "qcow2", ".img": "raw", ".raw": "raw", ".iso": "iso"}


def _fields(i: Image) -> list[tuple[str, object]]:
    return [("name", i.name), ("uuid", i.uuid), ("format", i.format), ("state", i.state),
            ("size", size(i.size)), ("virtual size", size(i.virtual_size)),
            ("sha256", i.sha256), ("hypervisor", i.hypervisor), ("pool", i.pool),
            ("path", i.path), ("url", i.url), ("owner", i.owner), ("created", i.created_at)]


def uploading(cli: Cli, label: str, total: int) -> AbstractContextManager[Callable[[int, int], None]
                                                                 | None]:
    """A progress bar on stderr while a file goes up (a terminal only)."""
    if not cli.err.is_terminal:
        return nullcontext(None)
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    @contextmanager
    def bar() -> Iterator[Callable[[int, int], None]]:
        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                      console=cli.err) as p:
            task = p.add_task(label, total=total)
            yield lambda done, _total: p.update(task, completed=done)
    return bar()


@command(app, "list")
def image_list(cli: Cli) -> None:
    """List the images you may read."""
    found = cli.client().images.list()
    cli.emit(found, lambda: cli.table(
        ["NAME", "UUID", "FORMAT", "STATE", "SIZE", "VIRTUAL", "POOL"],
        [[i.name, i.uuid, i.format, i.state, size(i.size), size(i.virtual_size), i.pool]
         for i in found]))


@command(app, "show")
def image_show(cli: Cli, image: ImageRef) -> None:
    """Show an image."""
    c = cli.client()
    i = c.images.get(c.images.find(image).uuid)
    cli.emit(i, lambda: cli.fields(_fields(i)))


@command(app, "upload")
def image_upload(
    cli: Cli,
    file: Annotated[Path | None, typer.Argument(
        help="the local qcow2, raw or ISO file", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="the image's name [default: the file's "
                                             "name without its extension]")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", help="qcow2, raw or iso [default: from the extension]")] = None,
    url: Annotated[str | None, typer.Option(
        help="register from this http(s) URL instead of a file (the server downloads it)")]
    = None,
    hypervisor: Annotated[str | None, typer.Option(help="the hypervisor's UUID")] = None,
    pool: Annotated[str | None, typer.Option(help="the storage pool's name")] = None,
    sha256: Annotated[str | None, typer.Option(help="the file's expected sha256")] = None,
) -> None:
    """Upload an image (streamed from the file, with a progress bar), or register one from a
    URL."""
    c = cli.client()
    if (file is None) == (url is None):
        raise CLIError("give a FILE or --url", errno=1001)
    source = Path(file) if file is not None else Path((url or "").rsplit("/", 1)[-1] or "image")
    fmt = format or FORMATS.get(source.suffix.lower())
    if fmt is None:
        raise CLIError(f"cannot tell the format of {source.name}: give --format", errno=1001)
    name = name or source.stem
    if url is not None:
        i, txid = c.images.register(url, name=name, format=fmt, hypervisor=hypervisor,
                                    pool=pool, sha256=sha256)
        tx = cli.follow(txid, f"download {name}", None)
        i = c.images.get(i.uuid)
        cli.emit({"image": i, "transaction": tx},
                 lambda: cli.say(f"image {i.name} registered: {i.uuid}"))
        return
    with uploading(cli, f"upload {name}", source.stat().st_size) as progress:
        i = c.images.upload(source, name=name, format=fmt, hypervisor=hypervisor, pool=pool,
                            sha256=sha256, progress=progress)
    cli.emit(i, lambda: cli.say(f"image {i.name} uploaded: {i.uuid} ({size(i.size)})"))


@command(app, "delete")
def image_delete(cli: Cli, image: ImageRef, yes: Yes = False) -> None:
    """Delete an image and its volume."""
    c = cli.client()
    i = c.images.find(image)
    cli.confirm(f"Delete image {i.name} ({i.uuid}) and its volume?", yes)
    message = c.images.delete(i.uuid)
    cli.emit({"image": i.uuid, "message": message}, lambda: cli.say(message))


@command(package_app, "upload")
def package_upload(
    cli: Cli,
    file: Annotated[Path, typer.Argument(help="the local .xvm2 file", show_default=False)],
    name: Annotated[str | None, typer.Option(help="the package's name [default: its "
                                             "manifest's]")] = None,
) -> None:
    """Upload a local .xvm2 file as a new package (checked by the server)."""
    c = cli.client()
    with uploading(cli, f"upload {file.name}", file.stat().st_size) as progress:
        p = c.packages.upload(file, name=name, progress=progress)
    cli.emit(p, lambda: cli.say(f"package {p.name} uploaded: {p.uuid} ({size(p.size)})"))


@command(package_app, "import")
def package_import(
    cli: Cli,
    image: ImageRef,
    name: Annotated[str | None, typer.Option(help="the package's name [default: the image's]")]
    = None,
    description: Annotated[str | None, typer.Option(help="its description")] = None,
) -> None:
    """Turn an image (qcow2 or raw) into a package, following the transaction."""
    c = cli.client()
    i = c.images.find(image)
    txid = c.images.package(i.uuid, name=name, description=description)
    tx = cli.follow(txid, f"package {i.name}", None)
    pkg = (tx.result or {}).get("package")
    cli.emit({"image": i.uuid, "package": pkg, "transaction": tx},
             lambda: cli.say(f"image {i.name} packaged: {pkg}"))
