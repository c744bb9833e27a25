"""`enomalism events`: follow the server's events stream (GET /rest/events/)."""

import json
from typing import Annotated

import typer

from enomalism.cli.common import Cli

TYPES_HELP = ("event type or family to show (repeatable): machine, machine.state, "
              "machine.created, machine.deleted, machine.renamed, machine.moved, transaction, "
              "transaction.progress, transaction.end, hypervisor, hypervisor.up, "
              "hypervisor.down, audit (administrators)")


def line(event: dict) -> str:
    """One event for people: time, type, the object's name or UUID, what changed."""
    obj = dict(event.get("object") or {})
    who = obj.pop("name", None) or obj.pop("object_name", None) or obj.get("uuid") or ""
    obj.pop("uuid", None)
    rest = " ".join(f"{k}={v}" for k, v in obj.items() if v not in (None, ""))
    return f"{event.get('time') or '-'}  {event.get('type')}  {who}  {rest}".rstrip()


def follow(
    cli: Cli,
    type_: Annotated[list[str] | None, typer.Option("--type", help=TYPES_HELP)] = None,
    since: Annotated[str | None, typer.Option(
        help="start after this event id (what the server still keeps since it)")] = None,
) -> None:
    """Follow the events you may read, a line each (--json: one JSON object a line), until
    interrupted. A broken connection is reopened without losing events."""
    c = cli.client()
    try:
        for event in c.events(types=type_ or [], last_event_id=since):
            if cli.json:
                typer.echo(json.dumps(event, ensure_ascii=False))
            else:
                cli.out.print(line(event), markup=False, highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        pass
