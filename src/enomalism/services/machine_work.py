"""A request's slow work on one machine (libvirt define, rename, undefine, volume deletion,
DHCP host entries) with the machine locked as a job locks it, and no database transaction
open while libvirt works (docs/transactions.md, "Slow work and the database").

`locked` writes a transaction of the action's kind, `running` and claimed by this node, takes
the machine's lock for it (`lock_txid`, as jobs/locks.py takes one) and commits. Meanwhile
every changing action on the machine answers 423 with the transaction's id. The block works
on libvirt without a database transaction open (what it reads of the database it reads and
commits first), and at its end records what libvirt did in the request's session; that write,
the lock's release and the transaction's removal commit together: the answer and the audit
log say how the action went, and the transaction list keeps jobs, not every rename. Taking
and releasing the lock leaves the machine's `updated_at` as it was.

On any failure (in libvirt, or writing the result) the session is rolled back, the
transaction's undo log is carried out (a domain defined for a new machine is undefined again,
the machine record goes), and the lock is released and the transaction removed the same way.
Should the server die in between, the lock goes as a dead job's does: the transaction is
`running` with this node's heartbeat (jobs/runner.py), so the node undoes it and marks it
`failed` ("interrupted") as it starts again, or another node once the heartbeat stops; an
administrator's `unlock` frees the machine sooner.
"""

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm.attributes import set_committed_value

from enomalism.errors import Locked
from enomalism.jobs import undo
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.store import unit
from enomalism.store.db import changed
from enomalism.store.models import Machine, Transaction, utcnow

log = logging.getLogger(__name__)


class Work:
    """The running work: its transaction id, and its undo log."""

    def __init__(self, ctx: Context, txid: str) -> None:
        self.ctx, self.txid = ctx, txid

    @contextmanager
    def reading(self) -> Iterator[Context]:
        """The request's context on a read-only session, for checks that read the database
        and libvirt together (the domain-XML policy): a reader holds no write lock."""
        with self.ctx.registry.db.session(write=False) as s:
            yield dataclasses.replace(self.ctx, db=s)

    def will_create(self, kind: str, **ref: str) -> None:
        """Put a thing on the undo log before libvirt makes it (jobs/undo.py kinds), in a
        short session of its own: the request's stays closed while libvirt works."""
        with self.ctx.registry.db.session() as s:
            tx = s.get_one(Transaction, self.txid)
            tx.undo = [*(tx.undo or []), {"kind": kind, **ref}]


@contextmanager
def locked(ctx: Context, m: Machine, action: str, *,
           undo_log: list[dict[str, Any]] | None = None) -> Iterator[Work]:
    """Lock `m` (already checked and unlocked, its row in the session) for `action`, commit,
    and run the block; see the module's docstring. `undo_log`: what the request wrote that a
    failure removes (a new machine's record)."""
    now = utcnow()
    tx = Transaction(kind=action, target_uuid=m.uuid, state="running", owner_uuid=ctx.user.uuid,
                     claimed_by=ctx.jobs.node_id if ctx.jobs is not None else None,
                     started_at=now, heartbeat_at=now, attempts=1, locks=[m.uuid],
                     params={"machine": m.uuid}, undo=list(undo_log or []))
    ctx.db.add(tx)
    ctx.db.flush()
    # A compare-and-swap; `updated_at` stays (resyncs compare it to tell a newer write).
    took = changed(ctx.db, update(Machine).where(
        Machine.uuid == m.uuid, Machine.lock_txid.is_(None)).values(
        lock_txid=tx.uuid, updated_at=Machine.updated_at))
    if took != 1:
        holder = ctx.db.scalar(select(Machine.lock_txid).where(Machine.uuid == m.uuid))
        raise Locked(f"machine {m.uuid} is locked by transaction {holder}", txid=holder)
    set_committed_value(m, "lock_txid", tx.uuid)
    commit_before_slow_work(ctx)
    work = Work(ctx, tx.uuid)
    try:
        yield work
        _end(ctx, work.txid)
        unit.keep_now(ctx.db)  # inside the try: a failing write is undone below
    except BaseException:
        ctx.db.rollback()
        _fail(ctx, work.txid)
        raise
    if m in ctx.db:
        set_committed_value(m, "lock_txid", None)


def _end(ctx: Context, txid: str) -> None:
    """Remove the transaction, unless recovery ended it already (then it stays, `failed`, and
    its lock is gone too), and let go of the machine."""
    ctx.db.execute(delete(Transaction).where(Transaction.uuid == txid,
                                             Transaction.state == "running"))
    ctx.db.execute(update(Machine).where(Machine.lock_txid == txid).values(
        lock_txid=None, updated_at=Machine.updated_at))


def _fail(ctx: Context, txid: str) -> None:
    """Undo what the work made, let go of the machine. Errors here are logged: the one worth
    answering is the work's."""
    try:
        with ctx.registry.db.session(write=False) as s:
            tx = s.get(Transaction, txid)
            entries = list(tx.undo or []) if tx is not None and tx.state == "running" else []
        for problem in undo.run(ctx.registry.db, ctx.registry, entries):
            log.warning("transaction %s: %s", txid, problem)
        _end(ctx, txid)
        unit.keep_now(ctx.db)  # the request's end rolls back on the work's error
    except Exception:
        log.exception("ending transaction %s failed; its lock is released when it is "
                      "recovered (or by 'unlock')", txid)
        ctx.db.rollback()
