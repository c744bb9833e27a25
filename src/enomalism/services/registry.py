"""The running hypervisor connections and the worker that turns their events into inventory.

Events arrive on libvirt's event thread; they only queue the domain's UUID. One worker thread
takes the queue in order, reads the domain's current state from libvirt and writes it to the
database, so the state stored is always what libvirt says now, whatever events were missed or
merged. A (re)connected hypervisor gets a full bulk resync.
"""

import logging
import threading
from collections import OrderedDict
from contextlib import nullcontext

import libvirt
from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.errors import HypervisorUnreachable
from enomalism.services import sync
from enomalism.store.db import Database
from enomalism.store.models import Hypervisor, Machine, utcnow
from enomalism.virt import driver
from enomalism.virt.connection import HypervisorLink, flush_events, start_event_loop

log = logging.getLogger(__name__)


def _lock_rows(s: Session, where: object) -> None:
    """Take the write lock (SQLite) or lock the machine rows (FOR UPDATE elsewhere) now."""
    s.execute(select(Machine.uuid).where(where).with_for_update()).all()


class HypervisorRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._links: dict[str, HypervisorLink] = {}
        self._lock = threading.Lock()
        self._pending: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._worker: threading.Thread | None = None

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect every registered hypervisor (in the background) and start the worker."""
        start_event_loop()
        self._worker = threading.Thread(target=self._work, name="domain-events", daemon=True)
        self._worker.start()
        with self.db.session() as s:
            rows = s.execute(select(Hypervisor.uuid, Hypervisor.virt_url)).all()
        for hv_uuid, uri in rows:
            self.attach(hv_uuid, uri)

    def stop(self) -> None:
        # The worker first: a resync it is running uses a link's connection, and libvirt
        # crashes the process (SIGSEGV) on a connection closed under it.
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10)
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            link.stop()

    def attach(self, hv_uuid: str, uri: str, conn: libvirt.virConnect | None = None) -> None:
        """Start supervising a hypervisor; with `conn`, its first resync happens before return."""
        link = HypervisorLink(hv_uuid, uri, self)
        with self._lock:
            old = self._links.pop(hv_uuid, None)
            self._links[hv_uuid] = link
        if old is not None:
            old.stop()
        link.start(conn)

    def detach(self, hv_uuid: str) -> None:
        with self._lock:
            link = self._links.pop(hv_uuid, None)
        if link is not None:
            link.stop()

    def connection(self, hv_uuid: str) -> libvirt.virConnect:
        with self._lock:
            link = self._links.get(hv_uuid)
        if link is None:
            raise HypervisorUnreachable(f"hypervisor {hv_uuid} is not connected")
        return link.connection()

    def status(self, hv_uuid: str) -> tuple[str, str | None]:
        with self._lock:
            link = self._links.get(hv_uuid)
        return (link.status, link.last_error) if link else ("disconnected", "not supervised")

    # -- resyncs -----------------------------------------------------------------------

    def resync_hypervisor(self, hv_uuid: str) -> None:
        """Bulk resync: one getAllDomainStats call, then XML only for domains new to us."""
        conn = self.connection(hv_uuid)
        with self.db.session() as s:
            _lock_rows(s, Machine.parent_uuid == hv_uuid)
            new = sync.apply_all(s, hv_uuid, driver.all_snapshots(conn))
        for uuid in new:
            self.resync_machine(hv_uuid, uuid)

    def resync_machine(self, hv_uuid: str, uuid: str, db: Session | None = None) -> None:
        """Read one domain fully (state, size, XML) and store it, in `db` when given (a
        request's own session) or in a session of its own.

        libvirt is read only once the session holds the rows it writes (SQLite: the write lock,
        which a request that acts on a domain holds from its start): a state read before an
        action and written after it would otherwise overwrite the action's newer state."""
        conn = self.connection(hv_uuid)
        with nullcontext(db) if db is not None else self.db.session() as s:
            if db is None:
                _lock_rows(s, Machine.uuid == uuid)
            snap = driver.snapshot(conn, uuid)
            if snap is None:
                sync.mark_missing(s, hv_uuid, uuid)
            else:
                sync.apply_snapshot(s, hv_uuid, snap)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every hypervisor had its first connect (and resync) tried and every
        event libvirt has queued so far has been written (for tests and the CLI)."""
        with self._lock:
            links = list(self._links.values())
        for link in links:
            link.first_attempt.wait(timeout)
        flush_events(timeout)  # events still in libvirt's loop are not in _pending yet
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    # -- LinkListener ------------------------------------------------------------------

    def connected(self, link: HypervisorLink, conn: libvirt.virConnect) -> None:
        info = driver.host_info(conn)
        with self.db.session() as s:
            hv = s.get(Hypervisor, link.uuid)
            if hv is None:
                return
            hv.status, hv.last_error, hv.connected_at = "connected", None, utcnow()
            hv.hostname, hv.driver, hv.libvirt_version = info.hostname, info.driver, \
                info.libvirt_version
            hv.cpus, hv.memory_kib, hv.arch = info.cpus, info.memory_kib, info.arch
        self.resync_hypervisor(link.uuid)

    def disconnected(self, link: HypervisorLink, reason: str) -> None:
        with self.db.session() as s:
            hv = s.get(Hypervisor, link.uuid)
            if hv is not None:
                hv.status, hv.last_error = "disconnected", reason

    def domain_event(self, link: HypervisorLink, uuid: str) -> None:
        with self._cond:
            self._pending[(link.uuid, uuid)] = None
            self._cond.notify_all()

    # -- worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    return
                (hv_uuid, uuid), _ = self._pending.popitem(last=False)
                self._busy = True
            try:
                self.resync_machine(hv_uuid, uuid)
            except HypervisorUnreachable:
                pass  # reconnecting; the resync after it catches up
            except Exception:
                log.exception("syncing domain %s from its event failed", uuid)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
