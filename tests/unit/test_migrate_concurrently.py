"""Several servers starting together on one fresh database: each migrates, exactly one does
the work, none fails (PostgreSQL: an advisory lock; SQLite: the write lock)."""

import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from enomalism.store.db import MIGRATIONS
from tests.conftest import NEEDS_POSTGRES, fresh_postgres_database

MIGRATE = (
    "import sys\n"
    "from enomalism.store.db import Database\n"
    "Database(sys.argv[1]).migrate()\n"
)


def migrate_together(url: str, n: int = 4) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(n)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, errors


def head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def check_at_head(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalars().all() \
            == [head()]
        assert {"machines", "hypervisors", "transactions", "nodes", "named_locks"} \
            <= set(inspect(c).get_table_names())
    engine.dispose()


def test_servers_starting_together_on_sqlite_migrate_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'together.db'}"
    migrate_together(url)
    check_at_head(url)


@NEEDS_POSTGRES
def test_servers_starting_together_on_postgresql_migrate_once():
    url = fresh_postgres_database("migrate_together")
    migrate_together(url)
    check_at_head(url)
