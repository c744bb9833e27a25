"""Machine locks: a machine changed by a transaction holds the transaction's id. Taken with a
compare-and-swap in the database, so two requests can never both get one. Named locks: a
name held by a running transaction, shared by every node on the database."""

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enomalism.errors import Locked, NotFound
from enomalism.store.db import Database, changed
from enomalism.store.models import Machine, NamedLock, Transaction, utcnow


def lock(db: Session, machine_uuid: str, txid: str) -> None:
    done = changed(db, update(Machine).where(
        Machine.uuid == machine_uuid, Machine.lock_txid.is_(None)).values(lock_txid=txid))
    if done == 1:
        return
    m = db.get(Machine, machine_uuid)
    if m is None:
        raise NotFound(f"no machine with UUID {machine_uuid}")
    db.refresh(m)
    if m.lock_txid != txid:
        raise Locked(f"machine {m.name} is busy with transaction {m.lock_txid}",
                     txid=m.lock_txid)


def release(db: Session, txid: str) -> None:
    """Release every lock the transaction holds: its machines and its names."""
    db.execute(update(Machine).where(Machine.lock_txid == txid).values(lock_txid=None))
    release_named(db, txid)


def _try_named(db: Database, name: str, txid: str) -> bool:
    with db.session() as s:
        # A holder that is no longer running (it ended, or crashed and was recovered) has
        # let go, whatever its row says.
        s.execute(delete(NamedLock).where(NamedLock.name == name, NamedLock.holder.not_in(
            select(Transaction.uuid).where(Transaction.state == "running"))))
        held = s.scalar(select(NamedLock.holder).where(NamedLock.name == name))
        if held == txid:
            return True
        if held is not None:
            return False
        try:
            with s.begin_nested():
                s.add(NamedLock(name=name, holder=txid, taken_at=utcnow()))
        except IntegrityError:
            return False  # another node took it between our look and our insert
    return True


@contextmanager
def named_lock(db: Database, name: str, txid: str, *, wait: Callable[[], None],
               still_mine: Callable[[], bool] = lambda: True,
               poll: float = 0.25) -> Iterator[None]:
    """Hold `name` for the transaction `txid` for the block, waiting while another running
    transaction holds it; `wait` is called between tries (it may raise to give up). At the
    end the lock is let go only if `still_mine()`: a job taken over by another node must not
    free the lock its retry (the same transaction id) holds now."""
    if len(name) > 255:
        name = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    while not _try_named(db, name, txid):
        wait()
        time.sleep(poll)
    try:
        yield
    finally:
        if still_mine():
            with db.session() as s:
                s.execute(delete(NamedLock).where(NamedLock.name == name,
                                                  NamedLock.holder == txid))


def release_named(db: Session, txid: str) -> None:
    db.execute(delete(NamedLock).where(NamedLock.holder == txid))
