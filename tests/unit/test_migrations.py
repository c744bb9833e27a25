"""The Alembic migrations build exactly the schema the models describe."""

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.store.db import MIGRATIONS, Database
from enomalism.store.models import Base, Hypervisor, Machine, Volume, utcnow


def test_migrations_match_models(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrating_twice_is_harmless(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()


def test_volume_owners_are_backfilled_and_stored_passwords_dropped(tmp_path):
    """Migration 0009: a disk path exactly one managed VM names becomes its volume; a path two
    machines name, and an unmanaged machine's, belong to no one; stored XML loses graphics
    passwords."""
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")

    def xml(name: str, *disks: str, graphics: str = "") -> str:
        return (f"<domain type='kvm'><name>{name}</name><devices>"
                + "".join(f"<disk type='file'><source file='{d}'/></disk>" for d in disks)
                + f"{graphics}</devices></domain>")

    # The rows as the schema of 0008 has them (the models' table has columns added since).
    machines = sa.table("machines", *(sa.column(c) for c in (
        "uuid", "name", "kind", "parent_uuid", "is_local", "candidates", "managed", "state",
        "persistent", "xml_pending", "xmldesc", "created_at", "updated_at")))

    def machine(uuid: str, kind: str = "vm", managed: bool = True, **more: object) -> dict:
        return {"uuid": uuid, "name": uuid, "kind": kind, "parent_uuid": None,
                "is_local": False, "candidates": "[]", "managed": managed,
                "state": "unknown", "persistent": True, "xml_pending": False, "xmldesc": None,
                "created_at": utcnow(), "updated_at": utcnow(), **more}

    with Session(db.engine) as s, s.begin():
        s.execute(sa.insert(machines), [machine("h", kind="host")])
        s.add(Hypervisor(uuid="hv", machine_uuid="h", virt_class="kvm", virt_url="qemu:///x"))
        s.flush()
        s.execute(sa.insert(machines), [
            machine("a", parent_uuid="hv", xmldesc=xml(
                "a", "/p/a.img", "/p/shared.img",
                graphics="<graphics type='vnc' passwd='hush'/>")),
            machine("b", parent_uuid="hv", xmldesc=xml("b", "/p/shared.img")),
            machine("c", parent_uuid="hv", managed=False, xmldesc=xml("c", "/p/c.img")),
        ])
    db.migrate()
    with Session(db.engine) as s:
        rows = s.execute(select(Volume.path, Volume.machine_uuid)).all()
        assert sorted(rows) == [("/p/a.img", "a")]
        stored = s.get(Machine, "a").xmldesc
        assert "hush" not in stored and "<graphics type=\"vnc\"/>" in stored.replace("'", '"')


def test_sessions_opened_before_are_marked_as_sessions(tmp_path):
    """Migration 0020: the dashboard sessions made before it (named 'session ' and 12
    hex digits, with an expiry) are marked; a user's own tokens are not."""
    from sqlalchemy import text

    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0019")
        conn.execute(text("INSERT INTO users (uuid, username, password_hash, is_admin, enabled, "
                          "created_at) VALUES ('u', 'ann', 'x', 0, 1, '2026-12-01')"))
        for uuid, name, expires in (("s", "session 0123456789ab", "'2026-12-07'"),
                                    ("t", "script", "NULL"),
                                    ("e", "session of mine", "'2026-12-09'")):
            conn.execute(text("INSERT INTO api_tokens (uuid, user_uuid, name, secret_hash, "
                              f"created_at, expires_at) VALUES ('{uuid}', 'u', '{name}', "
                              f"'{uuid * 64}', '2026-12-01', {expires})"))
    db.migrate()
    with db.engine.connect() as conn:
        marked = dict(conn.execute(text("SELECT uuid, is_session FROM api_tokens")).all())
    assert marked == {"s": 1, "t": 0, "e": 0}
