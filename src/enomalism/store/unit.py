"""The unit of work: where a session commits before a request's end, and what differs between
SQLite and PostgreSQL.

A request's session is committed once, at its end, by api/deps.py (rolled back on an error);
jobs, the registry's threads and other background work use short sessions of their own
(`Database.session`). Every other commit, and every choice made by the SQL dialect, is a named
operation here, so services say why they commit and never call `commit()` or look at the
dialect (tests/unit/test_unit_of_work.py holds that). docs/transactions.md, "Slow work and the
database", says when each is used.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from enomalism.store.prepared import Prepared, raw_connection


def commit_before_slow_work(s: Session) -> None:
    """Let go of the database's write locks before slow work (a network fetch, a libvirt
    call): SQLite's one write lock, taken at a writing session's first statement, and
    PostgreSQL's row locks. What the session wrote so far is durable from here, and stays
    even if the request then fails: commit either nothing yet (checks only) or a state that
    stands on its own (a machine's lock, services/machine_work.py). The request's end commits
    what follows; whatever the session reads afterwards may have changed meanwhile, and is
    checked again."""
    s.commit()


def keep_now(s: Session) -> None:
    """Make what the session wrote durable now, whatever the request does next: an outcome
    that must stand though the request then fails and its end rolls back (a resync that found
    the inventory behind libvirt; held work's result written with its lock's release,
    services/machine_work.py), or a row other sessions must see at once (a hypervisor the
    registry's threads start resyncing). The request's end commits what follows."""
    s.commit()


def serialize(s: Session, key: int) -> None:
    """Take turns, until this transaction ends, with every transaction on any node that
    serializes on `key` (placements: services/placement.py). PostgreSQL: a transaction-level
    advisory lock (not row locks, which other writers take many at a time, in no fixed order:
    a deadlock). SQLite: nothing more, a session that may write holds the database's one write
    lock from its first statement."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class Autocommit:
    """A pooled DBAPI connection on which every statement is a transaction of its own: no
    BEGIN or COMMIT is sent, no lock outlives its statement (SQLite's write lock is taken by a
    write and let go at its end, with the busy timeout of any writer); `together()` makes a
    few statements one transaction."""

    def __init__(self, conn: Any, postgresql: bool) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._postgresql = postgresql

    @contextmanager
    def together(self) -> Iterator[None]:
        """The block's statements as one transaction, committed at its end, rolled back on
        an error: a write and the rows that tell of it (its event, its audit entry). SQLite
        takes its write lock at the BEGIN, as a writing session does."""
        if self._postgresql:
            with self._conn.driver_connection.transaction():
                yield
            return
        self._cur.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.rollback()
            raise
        self._conn.commit()

    def one(self, stmt: Prepared, values: Mapping[str, Any]) -> tuple | None:
        """The first row `stmt` reads, or None."""
        self._cur.execute(stmt.sql, stmt.args(values))
        return self._cur.fetchone()

    def run(self, stmt: Prepared, values: Mapping[str, Any]) -> int:
        """Carry out a write; how many rows it changed."""
        self._cur.execute(stmt.sql, stmt.args(values))
        return self._cur.rowcount


@contextmanager
def autocommit(engine: Engine) -> Iterator[Autocommit]:
    """Statements of the hottest path (the quick lifecycle action) on a pooled DBAPI
    connection, each in a transaction of its own (store/prepared.py says why not the ORM).
    SQLite's connections are in autocommit mode already (db.make_engine); psycopg's is set
    for the block (a local setting, no round trip) and put back before the pool has the
    connection again."""
    with raw_connection(engine) as conn:
        if engine.dialect.name != "postgresql":
            yield Autocommit(conn, postgresql=False)
            return
        driver_conn = conn.driver_connection
        driver_conn.autocommit = True
        try:
            yield Autocommit(conn, postgresql=True)
        finally:
            driver_conn.autocommit = False
