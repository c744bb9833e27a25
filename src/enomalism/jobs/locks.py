"""Machine locks: a machine changed by a transaction holds the transaction's id. Taken with a
compare-and-swap in the database, so two requests can never both get one."""

from sqlalchemy import update
from sqlalchemy.orm import Session

from enomalism.errors import Locked, NotFound
from enomalism.store.models import Machine


def lock(db: Session, machine_uuid: str, txid: str) -> None:
    done = db.execute(update(Machine).where(
        Machine.uuid == machine_uuid, Machine.lock_txid.is_(None)).values(lock_txid=txid))
    if done.rowcount == 1:
        return
    m = db.get(Machine, machine_uuid)
    if m is None:
        raise NotFound(f"no machine with UUID {machine_uuid}")
    db.refresh(m)
    if m.lock_txid != txid:
        raise Locked(f"machine {m.name} is busy with transaction {m.lock_txid}",
                     txid=m.lock_txid)


def release(db: Session, txid: str) -> None:
    db.execute(update(Machine).where(Machine.lock_txid == txid).values(lock_txid=None))
