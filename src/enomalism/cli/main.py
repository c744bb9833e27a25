"""`enomalism`: serve the API, and drive a running server."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from enomalism.cli import hosts

app = typer.Typer(help="Enomalism cloud control plane.", no_args_is_help=True)
app.add_typer(hosts.app, name="host")


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="address to listen on [ENOMALISM_HOST]")] = None,
    port: Annotated[Optional[int], typer.Option(help="port [ENOMALISM_PORT]")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="data directory [ENOMALISM_DATA_DIR]")] = None,
    database_url: Annotated[Optional[str], typer.Option(
        help="SQLAlchemy URL; default SQLite in the data dir [ENOMALISM_DATABASE_URL]")] = None,
    hypervisor: Annotated[Optional[list[str]], typer.Option(
        help="libvirt URI to add to the local host (repeatable); default qemu:///system "
             "when libvirtd answers")] = None,
) -> None:
    """Run the API server."""
    import logging

    import uvicorn

    from enomalism.api.app import create_app
    from enomalism.config import Settings

    overrides = {k: v for k, v in {
        "host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
        "hypervisors": hypervisor or None}.items() if v is not None}
    settings = Settings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.echo(f"enomalism: serving on http://{settings.host}:{settings.port} "
               f"(data in {settings.data_dir})")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", access_log=False)


if __name__ == "__main__":
    app()
