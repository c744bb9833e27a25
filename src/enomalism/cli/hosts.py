"""`enomalism host`: register and list hosts on a running server."""

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from enomalism.client import Client, ClientError

app = typer.Typer(help="Hosts and their hypervisors.", no_args_is_help=True)
console = Console()

Server = Annotated[str, typer.Option(envvar="ENOMALISM_URL", help="server URL")]
User = Annotated[str, typer.Option(envvar="ENOMALISM_USER", help="user name")]
Password = Annotated[str, typer.Option(envvar="ENOMALISM_PASSWORD", prompt=True,
                                       hide_input=True, help="password")]


def _fail(e: ClientError) -> None:
    console.print(f"[red]error {e.errno}:[/red] {e.message}")
    raise typer.Exit(e.exit_code)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the host's name")],
    uri: Annotated[Optional[str], typer.Argument(
        help="its libvirt URI, e.g. qemu+ssh://root@host/system")] = None,
    address: Annotated[Optional[str], typer.Option(help="address of the host")] = None,
    virt_class: Annotated[Optional[str], typer.Option(help="kvm, qemu, xen, lxc, test")] = None,
    server: Server = "http://127.0.0.1:8080", user: User = "admin", password: Password = "",
) -> None:
    """Register a host and connect its hypervisor."""
    try:
        with Client(server, user, password) as c:
            answer = c.register_host(name=name, virt_url=uri, address=address,
                                     virt_class=virt_class)
    except ClientError as e:
        _fail(e)
    console.print(f"host {name} registered as {answer['machine']}")
    for hv in answer["hypervisors"]:
        console.print(f"  hypervisor {hv['uuid']} {hv['virt_url']} ({hv['status']})")


@app.command("list")
def list_(server: Server = "http://127.0.0.1:8080", user: User = "admin",
          password: Password = "") -> None:
    """List registered hosts."""
    try:
        with Client(server, user, password) as c:
            hosts = c.hosts()
    except ClientError as e:
        _fail(e)
    table = Table("UUID", "NAME", "ADDRESS", "LOCAL")
    for h in hosts:
        table.add_row(h["uuid"], h["name"], h["address"] or "", "yes" if h["is_local"] else "")
    console.print(table)
