"""Spec section 5: transactions; and a list of them (extension)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import transactions
from enomalism.store.models import Transaction
from enomalism.wire import TransactionData

router = APIRouter(tags=["transactions"])


class TransactionAnswer(Status):
    data: TransactionData
    completion: int = Field(description="0 to 100")


class TransactionsAnswer(Status):
    transactions: list[TransactionData]


class TxVars(Vars):
    action: str | None = Field(None, description="retry or cancel (POST only)")


class ListVars(Vars):
    state: str | None = Field(None, description="only transactions in this state")
    target: str | None = Field(None, description="only transactions working on this object")
    limit: int = Field(100, ge=1, le=1000)


def data(tx: Transaction, names: dict[str, str] | None = None) -> dict:
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


def _answer(ctx: Ctx, tx: Transaction, message: str | None = None) -> dict:
    if message is None:
        message = tx.state if tx.state != "failed" else f"failed: {tx.error}"
    return {"data": data(tx, transactions.names(ctx, [tx])), "completion": tx.completion,
            "errno": 0, "message": message}


def get_transaction(uuid: str, ctx: Ctx) -> dict:
    """The transaction's state, completion, result, error and log."""
    return _answer(ctx, transactions.get(ctx, uuid))


def act_on_transaction(uuid: str, ctx: Ctx, v: Annotated[TxVars, http_vars(TxVars)]) -> dict:
    """action=retry (a failed or cancelled one) or action=cancel; without variables, like
    GET."""
    if posted_nothing(v, needs="action"):
        return get_transaction(uuid, ctx)
    message = transactions.act(ctx, uuid, v.action or "")
    ctx.db.flush()
    return _answer(ctx, transactions.get(ctx, uuid), message)


def cancel_transaction(uuid: str, ctx: Ctx) -> dict:
    """Cancel: a queued one at once, a running one at its next step (it cleans up after
    itself)."""
    message = transactions.cancel(ctx, uuid)
    ctx.db.flush()
    return _answer(ctx, transactions.get(ctx, uuid), message)


def list_transactions(ctx: Ctx, v: Annotated[ListVars, http_vars(ListVars)]) -> dict:
    """The transactions the caller may read, newest first."""
    found = transactions.list_transactions(ctx, state=v.state, target=v.target, limit=v.limit)
    names = transactions.names(ctx, found)
    return {"transactions": [data(t, names) for t in found], "errno": 0, "message": ""}


expose(router, "/rest/transaction/{uuid}/", ["GET"], get_transaction,
       response_model=TransactionAnswer, summary="Get a transaction (5.1)",
       dependencies=[refuse_changes_on_get(TxVars)])
expose(router, "/rest/transaction/{uuid}/", ["POST"], act_on_transaction, vars_model=TxVars,
       response_model=TransactionAnswer, summary="Retry or cancel a transaction (5.1)")
expose(router, "/rest/transaction/{uuid}/", ["DELETE"], cancel_transaction,
       response_model=TransactionAnswer, summary="Cancel a transaction (5.1)")
expose(router, "/rest/transactions/", ["GET"], list_transactions, vars_model=ListVars,
       response_model=TransactionsAnswer, summary="List transactions (extension)")
