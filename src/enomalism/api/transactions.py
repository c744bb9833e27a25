"""Spec section 5: transactions; and a list of them (extension)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services.shown import transactions as shown
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


def get_transaction(uuid: str, ctx: Ctx) -> dict:
    """The transaction's state, completion, result, error and log."""
    return {**shown.transaction(ctx, uuid=uuid), "errno": 0}


def act_on_transaction(uuid: str, ctx: Ctx, v: Annotated[TxVars, http_vars(TxVars)]) -> dict:
    """action=retry (a failed or cancelled one) or action=cancel; without variables, like
    GET."""
    if posted_nothing(v, needs="action"):
        return get_transaction(uuid, ctx)
    return {**shown.act(ctx, uuid=uuid, action=v.action or ""), "errno": 0}


def cancel_transaction(uuid: str, ctx: Ctx) -> dict:
    """Cancel: a queued one at once, a running one at its next step (it cleans up after
    itself)."""
    return {**shown.act(ctx, uuid=uuid, action="cancel"), "errno": 0}


def list_transactions(ctx: Ctx, v: Annotated[ListVars, http_vars(ListVars)]) -> dict:
    """The transactions the caller may read, newest first."""
    return {"transactions": shown.list_transactions(ctx, state=v.state, target=v.target,
                                                    limit=v.limit),
            "errno": 0, "message": ""}


expose(router, "/rest/transaction/{uuid}/", ["GET"], get_transaction,
       response_model=TransactionAnswer, summary="Get a transaction (5.1)",
       dependencies=[refuse_changes_on_get(TxVars)])
expose(router, "/rest/transaction/{uuid}/", ["POST"], act_on_transaction, vars_model=TxVars,
       response_model=TransactionAnswer, summary="Retry or cancel a transaction (5.1)")
expose(router, "/rest/transaction/{uuid}/", ["DELETE"], cancel_transaction,
       response_model=TransactionAnswer, summary="Cancel a transaction (5.1)")
expose(router, "/rest/transactions/", ["GET"], list_transactions, vars_model=ListVars,
       response_model=TransactionsAnswer, summary="List transactions (extension)")
