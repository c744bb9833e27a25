"""Engine and session factory. SQLite runs in WAL mode with foreign keys on; PostgreSQL is used
as is. The schema is created and upgraded by Alembic migrations only."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Delete, Engine, Update, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            # Writers take the lock up front: a deferred transaction that read first and then
            # writes fails at once when another writer committed in between.
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


# pg_advisory_xact_lock key held while migrating: nodes starting together migrate in turn.
MIGRATION_LOCK = 0x656E6F6D  # "enom"
# pg_advisory_lock key held while a starting server makes what only the first start makes (the
# admin user, the local host and its hypervisors): nodes starting together make them in turn,
# so the second finds the first one's rather than failing on a unique constraint.
SETUP_LOCK = MIGRATION_LOCK + 1


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration up to head, once even when several servers start
    together: PostgreSQL takes an advisory lock for the migrating transaction, SQLite its
    write lock (BEGIN IMMEDIATE). The server that waited then finds the schema at head."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def changed(s: Session, stmt: Update | Delete) -> int:
    """How many rows an UPDATE or DELETE changed: a compare-and-swap's answer (1: it took)."""
    return cast(CursorResult[Any], s.execute(stmt)).rowcount


class Database:
    """The engine and its session factory, created once per server."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.readers = sessionmaker(self.engine, expire_on_commit=False)
        self.writers = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )

    def migrate(self) -> None:
        migrate(self.engine)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """A session committed on success and rolled back on any error. Sessions that may
        write take SQLite's write lock at their first statement."""
        with (self.writers if write else self.readers)() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def exclusive(self, key: int) -> Iterator[None]:
        """Hold, for the block, a lock every server on this database respects: on PostgreSQL
        a session advisory lock on a connection of its own (the block's sessions commit what
        they make before it is let go; a server that dies lets go with its connection). On
        SQLite nothing more: its sessions that may write hold the database's write lock."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            conn.commit()  # the lock is the session's: it outlives this transaction
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()

    def pool_status(self) -> dict[str, int]:
        """This process's connections: the pool's size, those in use, idle and over the size
        (for GET /metrics)."""
        pool = self.engine.pool
        size = getattr(pool, "size", lambda: 0)()
        return {"size": size, "in_use": getattr(pool, "checkedout", lambda: 0)(),
                "idle": getattr(pool, "checkedin", lambda: 0)(),
                "overflow": max(0, getattr(pool, "overflow", lambda: 0)())}

    def dispose(self) -> None:
        self.engine.dispose()
