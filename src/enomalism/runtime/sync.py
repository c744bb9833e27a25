"""Writing what libvirt reports into the inventory. Used by the event worker, by full resyncs
and right after an action, so that reads never have to ask libvirt."""

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select, update
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
    if snap.autostart is not None:  # `virsh autostart` sends no event: read at each sync
        m.autostart = snap.autostart
    if snap.xml is not None and not m.xml_pending:
        m.xmldesc = snap.xml
    m.synced_at = now
    return m


# A machine a provision is making has a record before it has a domain: not missing.
NO_DOMAIN_YET = ("missing", "provisioning")


def mark_missing(db: Session, hv_uuid: str, uuid: str) -> None:
    """The domain is gone from its hypervisor: keep the record, say so. One conditional
    UPDATE, not read-then-write: a move committing meanwhile (set_parent) changes the parent,
    and the database then finds the row no longer this hypervisor's."""
    db.execute(update(Machine).where(
        Machine.uuid == uuid, Machine.kind == "vm", Machine.parent_uuid == hv_uuid,
        Machine.state.not_in(NO_DOMAIN_YET)).values(state="missing", synced_at=utcnow()))


def apply_all(db: Session, hv_uuid: str, snaps: list[DomainSnapshot],
              seen: Mapping[str, datetime | None] | None = None) -> list[str]:
    """Bring every machine of one hypervisor in line with a bulk listing read while its rows
    had the `updated_at` values in `seen`. Returns the UUIDs to resync one by one: domains not
    (yet) recorded on this hypervisor (new ones, or moved here) and machines whose row changed
    since `seen` (a request wrote a state newer than this listing's)."""
    now = utcnow()
    seen = seen or {}
    known = {m.uuid: m for m in db.scalars(select(Machine).where(Machine.parent_uuid == hv_uuid))}
    changed = {u for u, m in known.items() if u not in seen or m.updated_at != seen[u]}
    recheck = []
    for snap in snaps:
        if snap.uuid not in known or snap.uuid in changed:
            recheck.append(snap.uuid)
            continue
        apply_snapshot(db, hv_uuid, snap, now=now)
    listed = {s.uuid for s in snaps}
    for uuid, m in known.items():
        if uuid in listed or m.state in NO_DOMAIN_YET:
            continue
        if uuid in changed:
            recheck.append(uuid)
        else:
            m.state = "missing"
            m.synced_at = now
    return recheck


def store(db: Session, hv_uuid: str, uuid: str, snap: DomainSnapshot | None) -> None:
    """Write one domain's snapshot, read before (None: the domain is gone)."""
    if snap is None:
        mark_missing(db, hv_uuid, uuid)
    else:
        apply_snapshot(db, hv_uuid, snap)
