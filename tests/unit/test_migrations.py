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
