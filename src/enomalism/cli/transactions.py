"""`enomalism tx`: transactions (provision, package, retrieve) and their progress."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, command
from enomalism.client import Transaction

app = typer.Typer(help="Transactions: long work with progress and cancellation.",
                  no_args_is_help=True)

TxRef = Annotated[str, typer.Argument(help="UUID or unique UUID prefix", show_default=False)]


def _log(cli: Cli, tx: Transaction) -> None:
    cli.table(["TIME", "LEVEL", "MESSAGE"], [entry[:3] for entry in tx.log])


@command(app, "list")
def list_(
    cli: Cli,
    state: Annotated[str | None, typer.Option(
        help="queued, running, done, failed or cancelled")] = None,
    target: Annotated[str | None, typer.Option(
        help="only those working on this object (a UUID, or a machine's name)")] = None,
    limit: Annotated[int, typer.Option(help="at most this many (1 to 1000)")] = 100,
) -> None:
    """List transactions, newest first."""
    c = cli.client()
    target_uuid = lookup.any_object(c, target)[1] if target else None
    found = c.transactions.list(state=state, target=target_uuid, limit=limit)
    cli.emit(found, lambda: cli.table(
        ["UUID", "KIND", "STATE", "DONE", "TARGET", "OWNER", "CREATED", "ERROR"],
        [[t.uuid, t.kind, t.state, f"{t.completion}%", t.target_name or t.target,
          t.owner_name or t.owner, t.created_at, t.error] for t in found]))


def _named(name: str | None, uuid: str | None) -> str | None:
    return f"{name} ({uuid})" if name and uuid else uuid


@command(app, "show")
def show(cli: Cli, transaction: TxRef) -> None:
    """Show a transaction with its log."""
    c = cli.client()
    t = lookup.transaction(c, transaction)

    def human() -> None:
        cli.fields([
            ("uuid", t.uuid), ("kind", t.kind), ("state", t.state),
            ("completion", f"{t.completion}%"), ("target", _named(t.target_name, t.target)),
            ("result", ", ".join(f"{k}={v}" for k, v in t.result.items())),
            ("error", t.error), ("owner", _named(t.owner_name, t.owner)),
            ("attempts", t.attempts),
            ("cancel requested", t.cancel_requested), ("created", t.created_at),
            ("started", t.started_at), ("finished", t.finished_at)])
        _log(cli, t)
    cli.emit(t, human)


@command(app, "wait")
def wait(
    cli: Cli,
    transaction: TxRef,
    timeout: Annotated[float | None, typer.Option(
        help="give up after this many seconds (the work goes on)")] = None,
) -> None:
    """Follow a transaction to its end; exits 0 when it is done, 1 when it failed or was
    cancelled."""
    c = cli.client()
    t = lookup.transaction(c, transaction)
    t = cli.follow(t.uuid, f"{t.kind} {t.uuid[:8]}", timeout)
    cli.emit(t, lambda: cli.say(f"transaction {t.uuid} {t.state}"))


def _act(cli: Cli, transaction: str, cancel: bool) -> None:
    c = cli.client()
    t = lookup.transaction(c, transaction)
    t, message = c.transactions.cancel(t.uuid) if cancel else c.transactions.retry(t.uuid)
    cli.emit({"transaction": t, "message": message},
             lambda: cli.say(f"transaction {t.uuid}: {message}"))


@command(app, "cancel")
def cancel(cli: Cli, transaction: TxRef) -> None:
    """Cancel a transaction: a queued one at once, a running one at its next step (it removes
    what it made)."""
    _act(cli, transaction, True)


@command(app, "retry")
def retry(cli: Cli, transaction: TxRef) -> None:
    """Queue a failed or cancelled transaction again."""
    _act(cli, transaction, False)
