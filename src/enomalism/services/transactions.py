"""Transactions (spec section 5) as the API sees them: queueing, reading, cancelling, retrying.
Reading a transaction needs `read` on it: its owner, an administrator, or a grant."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, select

from enomalism.errors import InvalidInput, InvalidState, NotFound, UnknownAction
from enomalism.jobs import locks, states
from enomalism.services import access
from enomalism.services.context import Context
from enomalism.services.lookup import parse_uuid
from enomalism.store.models import Machine, Package, Transaction, User, utcnow

ACTIONS = ("retry", "cancel")


def _wake_runner_after_commit(ctx: Context) -> None:
    runner = ctx.jobs
    if runner is not None:
        event.listen(ctx.db, "after_commit", lambda _s: runner.notify(), once=True)


def enqueue(ctx: Context, kind: str, *, target: str | None, params: dict[str, Any],
            lock: Sequence[str] = ()) -> Transaction:
    """Queue a job and lock the machines it will change, in the request's transaction: if a
    lock is taken, nothing is queued."""
    if ctx.jobs is not None and kind not in ctx.jobs.handlers:
        raise InvalidInput(f"no transactions of kind '{kind}'")
    tx = Transaction(kind=kind, target_uuid=target, params=params, owner_uuid=ctx.user.uuid,
                     locks=list(lock))
    ctx.db.add(tx)
    ctx.db.flush()
    for machine_uuid in lock:
        locks.lock(ctx.db, machine_uuid, tx.uuid)
    _wake_runner_after_commit(ctx)
    return tx


def get(ctx: Context, uuid: str) -> Transaction:
    tx = ctx.db.get(Transaction, parse_uuid(uuid, "transaction"))
    if tx is None:
        raise NotFound(f"no transaction with UUID {uuid}")
    access.require(ctx, tx, "read", "transaction")
    return tx


def list_transactions(ctx: Context, *, state: str | None = None, target: str | None = None,
                      limit: int = 100) -> list[Transaction]:
    q = select(Transaction).order_by(Transaction.created_at.desc()).limit(limit)
    if state:
        if state not in states.TRANSITIONS:
            raise InvalidInput(f"unknown state '{state}'; use one of "
                               f"{', '.join(states.TRANSITIONS)}")
        q = q.where(Transaction.state == state)
    if target:
        q = q.where(Transaction.target_uuid == parse_uuid(target, "target"))
    if (clause := access.readable(ctx, Transaction)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def cancel(ctx: Context, uuid: str) -> str:
    """A queued job is cancelled at once; a running one stops at its next step and removes
    what it created."""
    tx = get(ctx, uuid)
    access.require(ctx, tx, "control", "transaction")
    if tx.state == "queued":
        states.check(tx.state, "cancelled")
        tx.state, tx.finished_at, tx.error = "cancelled", utcnow(), "cancelled on request"
        locks.release(ctx.db, tx.uuid)
        # What the request made when it queued the job (a provision's machine record) goes
        # too: nothing else exists before a job runs.
        for entry in tx.undo or []:
            if entry.get("kind") == "machine" and (m := ctx.db.get(Machine, entry["uuid"])):
                ctx.db.delete(m)
        tx.undo = []
        return "transaction cancelled"
    if tx.state != "running":
        states.check(tx.state, "cancelled")  # raises: finished transactions stay as they are
    tx.cancel_requested = True
    _wake_runner_after_commit(ctx)
    return "cancellation requested; the transaction stops at its next step"


def retry(ctx: Context, uuid: str) -> str:
    """Queue a failed or cancelled transaction again, with the same parameters."""
    tx = get(ctx, uuid)
    access.require(ctx, tx, "control", "transaction")
    if ctx.jobs is not None and tx.kind not in ctx.jobs.handlers:
        # an action's work done in its request (services/machine_work.py)
        raise InvalidState(f"a {tx.kind} ran in its request and cannot be queued again; "
                           "do the action again")
    states.check(tx.state, "queued")
    for machine_uuid in tx.locks or []:
        if ctx.db.get(Machine, machine_uuid) is not None:
            locks.lock(ctx.db, machine_uuid, tx.uuid)
    tx.state, tx.cancel_requested, tx.error = "queued", False, None
    tx.completion, tx.started_at, tx.finished_at, tx.claimed_by = 0, None, None, None
    _wake_runner_after_commit(ctx)
    return "transaction queued again"


def act(ctx: Context, uuid: str, action: str) -> str:
    if action == "retry":
        return retry(ctx, uuid)
    if action == "cancel":
        return cancel(ctx, uuid)
    raise UnknownAction(f"unknown transaction action '{action}'; use one of {', '.join(ACTIONS)}")


def names(ctx: Context, txs: list[Transaction]) -> dict[str, str]:
    """The names of the transactions' owners and targets (machines, packages), by UUID: two
    or three queries for a whole list, for people who read names, not UUIDs."""
    owners = {t.owner_uuid for t in txs if t.owner_uuid}
    targets = {t.target_uuid for t in txs if t.target_uuid}
    found: dict[str, str] = {}
    if owners:
        found.update(dict(ctx.db.execute(
            select(User.uuid, User.username).where(User.uuid.in_(owners))).all()))
    if targets:
        found.update(dict(ctx.db.execute(
            select(Machine.uuid, Machine.name).where(Machine.uuid.in_(targets))).all()))
        found.update(dict(ctx.db.execute(
            select(Package.uuid, Package.name)
            .where(Package.uuid.in_(targets - found.keys()))).all()))
    return found
