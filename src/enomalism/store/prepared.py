"""Core statements compiled once and run on a DBAPI connection of the pool.

For the few statements of the hottest path (a lifecycle action loads one machine and writes its
state), SQLAlchemy's session and execution machinery cost more than the statements: with a
request every few tens of milliseconds its code runs cold, and a transaction took about 1 ms
on this machine through the session against 0.3 ms for the same SQL on the DBAPI cursor (see
docs/performance.md). The statements are still written in Core and compiled by SQLAlchemy for
the engine's dialect, and values go through the column types' own bind processors, so neither
the SQL nor a storage format is written twice.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class Prepared:
    """One statement compiled for one dialect: `args(values)` gives what `cursor.execute(sql,
    ...)` takes, in the dialect's parameter style."""

    def __init__(self, stmt: ClauseElement, engine: Engine) -> None:
        dialect = engine.dialect
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        self.sql = compiled.string
        self._order = compiled.positiontup if compiled.positional else None
        self._processors = {}
        for bind, name in compiled.bind_names.items():
            # the dialect's own implementation of the type (SQLite's DateTime writes its own
            # text format; the generic type has no processor at all)
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor

    def args(self, values: Mapping[str, Any]) -> tuple | dict:
        out = {k: (self._processors[k](v) if k in self._processors else v)
               for k, v in values.items()}
        return tuple(out[k] for k in self._order) if self._order is not None else out


@contextmanager
def raw_connection(engine: Engine) -> Iterator[Any]:
    """A DBAPI connection of the engine's pool, rolled back on any error and given back at the
    end. The caller begins and commits: on SQLite (autocommit mode here, see db.make_engine)
    with an explicit `BEGIN IMMEDIATE`; psycopg begins on the first statement."""
    conn = engine.raw_connection()
    try:
        yield conn
    except BaseException:
        with suppress(Exception):  # the error worth seeing is the one raised
            conn.rollback()
        raise
    finally:
        conn.close()
