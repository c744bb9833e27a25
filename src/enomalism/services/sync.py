"""Writing what libvirt reports into the inventory. Used by the event worker, by full resyncs
and right after an action, so that reads never have to ask libvirt."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.store.models import Machine, utcnow
from enomalism.virt.driver import DomainSnapshot


def apply_snapshot(
    db: Session, hv_uuid: str, snap: DomainSnapshot, *, now: datetime | None = None
) -> Machine | None:
    """Create or update the machine for one domain. A domain first seen here is unmanaged.
    Returns None when the UUID belongs to a machine on another hypervisor."""
    now = now or utcnow()
    m = db.get(Machine, snap.uuid)
    if m is None:
        m = Machine(uuid=snap.uuid, kind="vm", parent_uuid=hv_uuid, managed=False,
                    name=snap.name, created_at=now)
        db.add(m)
    elif m.kind != "vm" or (m.parent_uuid != hv_uuid and m.state != "missing"):
        return None
    m.parent_uuid = hv_uuid
    m.name = snap.name
    m.state = snap.state
    m.persistent = snap.persistent
    if snap.vcpus is not None:
        m.vcpus = snap.vcpus
    if snap.memory_kib is not None:
        m.memory_kib = snap.memory_kib
    if snap.max_memory_kib is not None:
        m.max_memory_kib = snap.max_memory_kib
    if snap.xml is not None and not m.xml_pending:
        m.xmldesc = snap.xml
    m.synced_at = now
    return m


def mark_missing(db: Session, hv_uuid: str, uuid: str) -> None:
    """The domain is gone from its hypervisor: keep the record, say so."""
    m = db.get(Machine, uuid)
    if m is not None and m.kind == "vm" and m.parent_uuid == hv_uuid:
        m.state = "missing"
        m.synced_at = utcnow()


def apply_all(db: Session, hv_uuid: str, snaps: list[DomainSnapshot]) -> list[str]:
    """Bring every machine of one hypervisor in line with a bulk listing. Returns the UUIDs
    of domains not (yet) recorded on this hypervisor: new ones, or moved here. They are left
    for a resync of their own, which locks the row before reading libvirt (a request may be
    creating it right now, with a newer state than this listing's)."""
    now = utcnow()
    known = {m.uuid: m for m in db.scalars(select(Machine).where(Machine.parent_uuid == hv_uuid))}
    new = []
    for snap in snaps:
        if snap.uuid not in known:
            new.append(snap.uuid)
            continue
        apply_snapshot(db, hv_uuid, snap, now=now)
    seen = {s.uuid for s in snaps}
    for uuid, m in known.items():
        if uuid not in seen and m.state != "missing":
            m.state = "missing"
            m.synced_at = now
    return new
