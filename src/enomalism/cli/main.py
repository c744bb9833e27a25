"""`enomalism`: serve the API, and drive a running server."""

from pathlib import Path
from typing import Annotated, Any

import typer

from enomalism.cli import (
    admin,
    cache,
    clusters,
    events,
    feeds,
    hosts,
    images,
    machines,
    networks,
    pools,
    session,
    snapshots,
    transactions,
    users,
)
from enomalism.cli.common import command, root_options

app = typer.Typer(no_args_is_help=True)
app.callback()(root_options)
command(app, "login")(session.login)
command(app, "logout")(session.logout)
app.add_typer(machines.app, name="machine")
app.add_typer(hosts.hypervisor_app, name="hypervisor")
app.add_typer(hosts.app, name="host")
app.add_typer(hosts.node_app, name="node")
app.add_typer(clusters.app, name="cluster")
app.add_typer(users.user_app, name="user")
app.add_typer(users.group_app, name="group")
app.add_typer(users.permission_app, name="permission")
app.add_typer(users.token_app, name="token")
app.add_typer(users.audit_app, name="audit")
app.add_typer(feeds.feed_app, name="feed")
app.add_typer(feeds.package_app, name="package")
app.add_typer(networks.app, name="network")
app.add_typer(transactions.app, name="tx")
app.add_typer(cache.app, name="cache")
app.add_typer(images.app, name="image")
app.add_typer(pools.app, name="pool")
app.add_typer(snapshots.app, name="snapshot")
app.add_typer(admin.app, name="admin")
command(app, "events")(events.follow)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(
        help="address to listen on [ENOMALISM_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [ENOMALISM_PORT]")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="data directory [ENOMALISM_DATA_DIR]")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL; default SQLite in the data dir [ENOMALISM_DATABASE_URL]")] = None,
    hypervisor: Annotated[list[str] | None, typer.Option(
        help="libvirt URI to add to the local host (repeatable); default qemu:///system "
             "when libvirtd answers")] = None,
) -> None:
    """Run the API server."""
    import logging
    import os

    import uvicorn
    from pydantic import ValidationError

    from enomalism.api.app import create_app
    from enomalism.config import Settings
    from enomalism.runtime.memory import tune_malloc

    overrides: dict[str, Any] = {k: v for k, v in {
        "host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
        "hypervisors": hypervisor or None}.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:  # a bad ENOMALISM_* value: say which, without a traceback
        for err in e.errors():
            typer.echo(f"enomalism: {err['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    os.umask(0o077)  # whatever the server writes is its own (docs/deployment.md, file modes)
    tune_malloc()  # big buffers reused, not mapped afresh: uploads (runtime/memory.py)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.echo(f"enomalism: serving on http://{settings.host}:{settings.port} "
               f"(data in {settings.data_dir})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", access_log=False,
                timeout_graceful_shutdown=5)  # events streams never end by themselves


if __name__ == "__main__":
    app()
