"""A machine's snapshots (issue 19): libvirt's internal snapshots, kept inside the machine's own
qcow2 volumes, so they are removed with the volumes and need no new files (no overlay to own,
move or clean up).

A snapshot of a shut-off machine holds its disks; of a running one with `memory`, its disks and
its memory (QEMU's savevm), so a revert resumes it where it was. libvirt takes internal
snapshots of a running domain only with its memory; a running machine's disk-only snapshot is
refused here, saying so. Deleting a snapshot merges as libvirt does: its children take its
parent. Names are the caller's; the description is kept in libvirt's snapshot metadata.
"""

from dataclasses import dataclass
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import libvirt

from enomalism.errors import (
    BadSnapshotName,
    InvalidState,
    NoSnapshot,
    NotFound,
    SnapshotExists,
)
from enomalism.virt.driver import _lookup
from enomalism.virt.errors import libvirt_errors

NAME_LIMIT = 64


@dataclass(frozen=True)
class Snapshot:
    name: str
    description: str
    parent: str | None  # the snapshot it was taken on top of: the list is a tree
    created: int  # seconds since the epoch
    state: str  # the domain's state when taken: shutoff, running...
    memory: bool  # a revert resumes the running machine


def check_name(name: str) -> str:
    """A snapshot name: letters, digits, '.', '_', '-'; it goes into URLs and file metadata."""
    if not name or len(name) > NAME_LIMIT or name.startswith(".") or not all(
            c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise BadSnapshotName(f"snapshot name '{name[:80]}' must be 1-{NAME_LIMIT} letters, "
                              "digits, '.', '_' or '-', not starting with '.'")
    return name


def _of(snap: libvirt.virDomainSnapshot) -> Snapshot:
    root = ElementTree.fromstring(snap.getXMLDesc(0))
    state = root.findtext("state") or ""
    memory = root.find("memory")
    return Snapshot(name=root.findtext("name") or snap.getName(),
                    description=root.findtext("description") or "",
                    parent=root.findtext("parent/name"),
                    created=int(root.findtext("creationTime") or 0), state=state,
                    memory=state in ("running", "paused") and (
                        memory is None or memory.get("snapshot") != "no"))


def _find(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise NoSnapshot(f"the machine has no snapshot '{name}'") from None
        raise


def create(conn: libvirt.virConnect, uuid: str, *, name: str, description: str = "",
           memory: bool = False) -> Snapshot:
    """Take a snapshot; with `memory` only of a running machine, without only of a stopped
    one (see the module's docstring)."""
    check_name(name)
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        running = dom.isActive()
        if memory and not running:
            raise InvalidState("a snapshot with memory is of a running machine; this one is "
                               "stopped (leave memory out)")
        if running and not memory:
            raise InvalidState("a running machine's snapshot holds its memory too (memory=true)"
                               ", or stop it first for a disk-only one")
        if name in dom.snapshotListNames(0):
            raise SnapshotExists(f"the machine has a snapshot '{name}' already")
        xml = (f"<domainsnapshot><name>{escape(name)}</name>"
               f"<description>{escape(description)}</description></domainsnapshot>")
        return _of(dom.snapshotCreateXML(xml, 0))


def listed(conn: libvirt.virConnect, uuid: str) -> list[Snapshot]:
    """Every snapshot as a tree read depth first: a parent before its children, siblings
    oldest first (creation times have whole seconds: the tree, not the clock, orders)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        snaps = sorted((_of(s) for s in dom.listAllSnapshots(0)),
                       key=lambda s: (s.created, s.name))
    names = {s.name for s in snaps}
    out: list[Snapshot] = []

    def walk(parent: str | None) -> None:
        for s in snaps:
            if (s.parent if s.parent in names else None) == parent:
                out.append(s)
                walk(s.name)

    walk(None)
    return out


def names(conn: libvirt.virConnect, uuid: str) -> list[str]:
    """The snapshots' names only (one call: a request's checks before it queues a job)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        return list(dom.snapshotListNames(0))


def get(conn: libvirt.virConnect, uuid: str, name: str) -> Snapshot:
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        return _of(_find(dom, name))


def revert(conn: libvirt.virConnect, uuid: str, name: str) -> None:
    """Go back to the snapshot: its disks, and (with memory) the running machine."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        dom.revertToSnapshot(_find(dom, name), 0)


def delete(conn: libvirt.virConnect, uuid: str, name: str) -> None:
    """Remove the snapshot; its children take its parent (libvirt merges the metadata, QEMU
    the internal snapshot's clusters)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        _find(dom, name).delete(0)


def delete_all(conn: libvirt.virConnect, uuid: str) -> int:
    """Remove every snapshot (a machine being deleted: the data inside volumes that stay,
    not only libvirt's metadata); returns how many trees went. A domain that is gone has
    none."""
    try:
        dom = _lookup(conn, uuid)
    except NotFound:
        return 0
    with libvirt_errors():
        roots = dom.listAllSnapshots(libvirt.VIR_DOMAIN_SNAPSHOT_LIST_ROOTS)
        for snap in roots:
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN)
        return len(roots)
