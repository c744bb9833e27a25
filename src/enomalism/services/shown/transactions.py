"""Transactions as the answers show them (`wire.TransactionData`)."""

from typing import Any

from enomalism.services import transactions
from enomalism.services.context import Context
from enomalism.store.models import Transaction


def data(tx: Transaction, *, names: dict[str, str] | None = None) -> dict:
    """A transaction; `names`: its owner's and target's names by UUID, when read."""
    names = names or {}
    return {"uuid": tx.uuid, "kind": tx.kind, "state": tx.state, "target": tx.target_uuid,
            "completion": tx.completion, "result": tx.result or {}, "error": tx.error,
            "log": tx.log or [], "owner": tx.owner_uuid,
            "owner_name": names.get(tx.owner_uuid or ""),
            "target_name": names.get(tx.target_uuid or ""),
            "cancel_requested": tx.cancel_requested,
            "parent": (tx.params or {}).get("parent"),
            "attempts": tx.attempts, "created_at": tx.created_at, "started_at": tx.started_at,
            "finished_at": tx.finished_at}


def transaction(ctx: Context, *, uuid: str, message: str | None = None) -> dict[str, Any]:
    """One transaction with its completion, and `message` (else its state, or why it
    failed)."""
    tx = transactions.get(ctx, uuid)
    if message is None:
        message = tx.state if tx.state != "failed" else f"failed: {tx.error}"
    return {"data": data(tx, names=transactions.names(ctx, [tx])), "completion": tx.completion,
            "message": message}


def act(ctx: Context, *, uuid: str, action: str) -> dict[str, Any]:
    """action=retry or action=cancel on a transaction; it afterwards, and what was done."""
    message = transactions.act(ctx, uuid, action)
    ctx.db.flush()
    return transaction(ctx, uuid=uuid, message=message)


def list_transactions(ctx: Context, *, state: str | None, target: str | None,
                      limit: int) -> list[dict]:
    """The transactions the caller may read, newest first."""
    found = transactions.list_transactions(ctx, state=state, target=target, limit=limit)
    names = transactions.names(ctx, found)
    return [data(t, names=names) for t in found]
