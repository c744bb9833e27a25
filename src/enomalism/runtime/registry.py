"""The running hypervisor connections and the workers that turn their events into inventory.

Events arrive on libvirt's event thread; they only queue the domain's UUID. Worker threads
take the queue in order, read the domain's current state from libvirt and write it to the
database, so the state stored is always what libvirt says now, whatever events were missed or
merged. One hypervisor's events are handled one at a time, in order; different hypervisors'
in parallel, so a host that hangs delays only its own. A (re)connected hypervisor gets a full
bulk resync.

With several API nodes on one database, only the node owning a hypervisor (runtime/nodes.py)
writes its events and resyncs; the others keep a connection to it for their requests and jobs.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from enomalism.errors import EnomalismError, HypervisorUnreachable
from enomalism.runtime import lost_uploads, nodes, sync
from enomalism.runtime.restarts import Restarter
from enomalism.store import records
from enomalism.store.db import Database, changed
from enomalism.store.models import Hypervisor, Machine, utcnow
from enomalism.virt import driver
from enomalism.virt.connection import HypervisorLink, flush_events, start_event_loop
from enomalism.virt.hypervisor import HypervisorConnection, event_state, stopped_by_failure

log = logging.getLogger(__name__)

WORKERS = 4  # threads writing events; one hypervisor's are never handled by two at once
RESYNC_ALL = ""  # a queued "domain" meaning: resync the whole hypervisor
EXPECT_FOR = 5.0  # seconds after an action during which its own event is recognised
# A hypervisor taking longer than this to answer for its capabilities re-probes QEMU on every
# call (on a machine without udev: /dev/kvm not usable by libvirt's QEMU user, see
# scripts/kvm-device.sh): every define then takes as long. Said in the log and in /readyz.
SLOW_CAPABILITIES = 2.0
# How long a request waits for a hypervisor's answer to an extra it shows (a guest's addresses,
# a paused reason) before it answers without it: a hung host must not hang a GET.
ASK_WITHIN = 2.0

T = TypeVar("T")


def _lock_rows(s: Session, where: ColumnElement[bool]) -> int:
    """Take the write lock (SQLite) or lock the machine rows (FOR UPDATE elsewhere) now;
    returns how many rows there were to lock."""
    return len(s.execute(select(Machine.uuid).where(where).with_for_update()).all())


class EventMetrics(Protocol):
    """Where the registry times events (services/metrics.ServerMetrics, GET /metrics): handed
    in by the composition root, so runtime/ imports nothing of services/."""

    def event(self, seconds: float) -> None: ...


class _Untimed:
    def event(self, seconds: float) -> None:
        pass


class HypervisorRegistry:
    def __init__(self, db: Database, node_id: str = "local", *,
                 lease: float = nodes.LEASE, renew: float = nodes.RENEW,
                 metrics: EventMetrics | None = None) -> None:
        self.db = db
        self.metrics = metrics or _Untimed()  # the event lag (GET /metrics)
        self.ownership = nodes.Ownership(db, node_id, lease)
        self._renew = renew
        self._links: dict[str, HypervisorLink] = {}
        self._elsewhere: dict[str, str] = {}  # hypervisors local to another machine: why
        self._lock = threading.Lock()
        # (hypervisor, domain) -> when its oldest unwritten event arrived (None: not an event)
        self._pending: OrderedDict[tuple[str, str], float | None] = OrderedDict()
        self._cond = threading.Condition()
        self._busy: set[str] = set()  # hypervisors a worker is writing events of
        # (hypervisor, machine) -> (state, since): an action of this node leaves it so
        self._expected: dict[tuple[str, str], tuple[str, float]] = {}
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.kept_at = time.monotonic()  # the last heartbeat and claim renewal (for /readyz)
        self.keep_error: str | None = None
        self.slow: dict[str, float] = {}  # hypervisor -> seconds its capabilities took
        self._asking: set[str] = set()  # hypervisors that have not answered a question yet
        # machines whose guest failed, started again under their restart policy
        self.restarts = Restarter(db, self.connection, node_id)

    # -- lifetime ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect every registered hypervisor (in the background) and start the workers."""
        start_event_loop()
        self.ownership.beat()
        targets = [self._work] * WORKERS + [self._keep]
        for i, target in enumerate(targets):
            t = threading.Thread(target=target, name=f"domain-events-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self.reconcile()

    def reconcile(self) -> None:
        """Supervise exactly the registered hypervisors this node can reach: at start, and
        every few seconds after, for those another node added or removed."""
        with self._lock:  # before reading the rows: a link attached after this is kept
            have = set(self._links)
        with self.db.session(write=False) as s:
            rows = s.execute(select(Hypervisor.uuid, Hypervisor.virt_url,
                                    Hypervisor.local_to)).all()
        wanted, elsewhere = {}, {}
        for hv_uuid, uri, local_to in rows:
            if nodes.reachable_here(local_to):
                wanted[hv_uuid] = uri
            else:
                elsewhere[hv_uuid] = (
                    f"hypervisor {uri} is local to the machine {local_to}, and this API node "
                    f"runs on {nodes.this_machine()}: register it with a URI every node can "
                    f"reach (such as qemu+tls://{local_to}/system) to manage it from any node")
        self._elsewhere = elsewhere  # one deleted meanwhile is forgotten
        for hv_uuid in wanted.keys() - have:
            self.attach(hv_uuid, wanted[hv_uuid])
        for hv_uuid in have - wanted.keys():
            self.detach(hv_uuid)

    def stop(self) -> None:
        # The workers first: a resync they are running uses a link's connection, and libvirt
        # crashes the process (SIGSEGV) on a connection closed under it.
        self.restarts.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=10)
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            link.stop()
        try:
            self.ownership.stop()
        except Exception:
            log.exception("letting go of this node's hypervisors failed")

    def attach(self, hv_uuid: str, uri: str, conn: HypervisorConnection | None = None) -> None:
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

    def connection(self, hv_uuid: str) -> HypervisorConnection:
        with self._lock:
            link = self._links.get(hv_uuid)
        if link is None:
            raise HypervisorUnreachable(
                self._elsewhere.get(hv_uuid, f"hypervisor {hv_uuid} is not connected"))
        return link.connection()

    def ask(self, hv_uuid: str, question: Callable[[HypervisorConnection], T], *,
            within: float | None = None) -> T | None:
        """`question` put to the hypervisor for a request that can answer without it: None when
        the hypervisor is not connected, has not answered within `within` seconds, or still owes
        the answer to an earlier question (so a hung host holds one thread, not one per GET)."""
        within = ASK_WITHIN if within is None else within
        try:
            conn = self.connection(hv_uuid)
        except EnomalismError:
            return None
        with self._lock:
            if hv_uuid in self._asking:
                return None
            self._asking.add(hv_uuid)
        answer: list[T] = []
        failed: list[BaseException] = []
        done = threading.Event()

        def put() -> None:
            try:
                answer.append(question(conn))
            except BaseException as e:  # handed to the asker, if it still waits
                failed.append(e)
            finally:
                with self._lock:
                    self._asking.discard(hv_uuid)
                done.set()

        threading.Thread(target=put, name=f"ask-{hv_uuid[:8]}", daemon=True).start()
        if not done.wait(within):
            log.warning("hypervisor %s did not answer within %.0f s; answering without it",
                        hv_uuid, within)
            return None
        if failed:
            raise failed[0]
        return answer[0]

    def status(self, hv_uuid: str) -> tuple[str, str | None]:
        with self._lock:
            link = self._links.get(hv_uuid)
        if link is None and hv_uuid in self._elsewhere:
            return "elsewhere", self._elsewhere[hv_uuid]
        return (link.status, link.last_error) if link else ("disconnected", "not supervised")

    def links(self) -> list[tuple[str, str, str, str | None]]:
        """(uuid, URI, status, last error) of every hypervisor this node supervises."""
        with self._lock:
            links = list(self._links.values())
        return [(link.uuid, link.uri, link.status, link.last_error) for link in links]

    def keep_problem(self) -> str | None:
        """Why this node's heartbeat and claims are not being renewed (None when they are):
        past the lease, other nodes take its hypervisors."""
        if self._threads and not self._threads[-1].is_alive():
            return "the thread renewing this node's claims stopped"
        late = time.monotonic() - self.kept_at
        if late > self.ownership.lease:
            why = f": {self.keep_error}" if self.keep_error else ""
            return (f"this node's heartbeat and hypervisor claims not renewed for {late:.0f} s "
                    f"(lease {self.ownership.lease:.0f} s){why}")
        return None

    # -- resyncs -----------------------------------------------------------------------

    def resync_hypervisor(self, hv_uuid: str) -> None:
        """Bulk resync: one getAllDomainStats call, then XML only for domains new to us.
        libvirt is read with no lock held; a machine whose row changed meanwhile (an action
        wrote it) is left to a resync of its own rather than written from the older listing."""
        conn = self.connection(hv_uuid)
        with self.db.session(write=False) as s:
            seen = dict(s.execute(select(Machine.uuid, Machine.updated_at).where(
                Machine.parent_uuid == hv_uuid)).all())
        snaps = conn.all_snapshots()
        with self.db.session() as s:
            _lock_rows(s, Machine.parent_uuid == hv_uuid)
            recheck = sync.apply_all(s, hv_uuid, snaps, seen=seen)
        new = [u for u in recheck if u not in seen]
        for uuid in [u for u in recheck if u in seen] + self._adopt(hv_uuid, new):
            self.resync_machine(hv_uuid, uuid)

    def _adopt(self, hv_uuid: str, uuids: list[str], batch: int = 500) -> list[str]:
        """Record domains new to us in batches (their full reads first, then one write per
        batch: a first resync of thousands of domains is not thousands of transactions).
        Returns those recorded meanwhile by someone else, to resync one by one."""
        conn = self.connection(hv_uuid)
        again = []
        for i in range(0, len(uuids), batch):
            snaps = {u: conn.snapshot(u) for u in uuids[i:i + batch]}
            with self.db.session() as s:
                taken = set(s.scalars(select(Machine.uuid).where(
                    Machine.uuid.in_(list(snaps))).with_for_update()))
                for uuid, snap in snaps.items():
                    if uuid in taken:
                        again.append(uuid)
                    elif snap is not None:
                        sync.apply_snapshot(s, hv_uuid, snap)
        return again

    def resync_machine(self, hv_uuid: str, uuid: str, db: Session | None = None) -> None:
        """Read one domain fully (state, size, XML) and store it, in `db` when given (a
        request's own session, with no transaction open while libvirt is read: the snapshot is
        read before the session is used) or in a session of its own.

        On its own, libvirt is read before any lock is taken (a host that hangs must not hold
        SQLite's one write lock), and the result is written only if the row did not change in
        between: a state read before an action and written after it would overwrite the
        action's newer state. If it did change, libvirt is read again; after three such
        races the resync is queued for the event worker to try later, never read under the
        row lock."""
        conn = self.connection(hv_uuid)
        if db is not None:
            self._store(db, hv_uuid, uuid, conn.snapshot(uuid))
            return
        for _ in range(3):
            with self.db.session(write=False) as s:
                seen = s.scalar(select(Machine.updated_at).where(Machine.uuid == uuid))
            snap = conn.snapshot(uuid)
            with self.db.session() as s:
                _lock_rows(s, Machine.uuid == uuid)
                now = s.scalar(select(Machine.updated_at).where(Machine.uuid == uuid))
                if now == seen:
                    self._store(s, hv_uuid, uuid, snap)
                    return
        self._queue(hv_uuid, uuid)  # still racing with writers: try again later

    @staticmethod
    def _store(s: Session, hv_uuid: str, uuid: str, snap: driver.DomainSnapshot | None) -> None:
        sync.store(s, hv_uuid, uuid, snap)

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

    def connected(self, link: HypervisorLink, conn: HypervisorConnection) -> None:
        self._time_capabilities(link, conn)
        if not self.ownership.claim(link.uuid):
            return  # another node keeps this hypervisor's machines true
        self._record_connected(link.uuid, conn)
        self.resync_hypervisor(link.uuid)

    def _time_capabilities(self, link: HypervisorLink, conn: HypervisorConnection) -> None:
        started = time.monotonic()
        try:
            conn.capabilities()
        except EnomalismError:
            return  # the resync that follows meets the same error and says it
        took = time.monotonic() - started
        if took < SLOW_CAPABILITIES:
            self.slow.pop(link.uuid, None)
            return
        self.slow[link.uuid] = took
        log.warning("hypervisor %s took %.1f s to answer for its capabilities: libvirt probes "
                    "QEMU again on every call, and every define takes as long (is /dev/kvm "
                    "usable by libvirt's QEMU user? scripts/kvm-device.sh)", link.uri, took)

    def _record_connected(self, hv_uuid: str, conn: HypervisorConnection) -> None:
        info = conn.host_info()
        with self.db.session() as s:
            hv = s.get(Hypervisor, hv_uuid)
            if hv is None:
                return
            hv.status, hv.last_error, hv.connected_at = "connected", None, utcnow()
            hv.hostname, hv.driver, hv.libvirt_version = info.hostname, info.driver, \
                info.libvirt_version
            hv.cpus, hv.memory_kib, hv.arch = info.cpus, info.memory_kib, info.arch

    def disconnected(self, link: HypervisorLink, reason: str) -> None:
        # Written unless another node holds a live claim (it is connected: its word stands).
        with self.db.session() as s:
            was = s.execute(select(Hypervisor.status, Hypervisor.virt_url, Hypervisor.owner_uuid)
                            .where(Hypervisor.uuid == link.uuid)).one_or_none()
            done = changed(s, update(Hypervisor).where(
                Hypervisor.uuid == link.uuid, self.ownership.mine_or_free(utcnow())).values(
                status="disconnected", last_error=reason))
            if done == 1 and was is not None and was.status == "connected":
                s.add(records.event("hypervisor.down", link.uuid, was.owner_uuid,
                                    uuid=link.uuid, uri=was.virt_url, status="disconnected",
                                    error=reason))
                s.info["events"] = True
        if self.ownership.owns(link.uuid):
            self.ownership.release(link.uuid)  # a node still connected takes it over

    def domain_event(self, link: HypervisorLink, uuid: str, event: int, detail: int) -> None:
        if not self.ownership.owns(link.uuid):
            return
        if (failure := stopped_by_failure(event, detail)) is not None:
            self.restarts.failed(link.uuid, uuid, failure)  # if its policy says so
        # an action of this node may wait for this event (`expecting`)
        state = event_state(event, detail)
        if state is not None:
            key = (link.uuid, uuid)
            with self._cond:
                expected = self._expected.get(key)
                if expected is not None and expected[0] == state \
                        and time.monotonic() - expected[1] < EXPECT_FOR:
                    del self._expected[key]  # the action's own event: it stores the state
                    return
        self._queue(link.uuid, uuid, time.monotonic())

    @contextmanager
    def expecting(self, hv_uuid: str, uuid: str, state: str | None) -> Iterator[None]:
        """Around an action that leaves the machine in `state` and stores the state libvirt
        answers after it (suspend: paused, resume: running): the lifecycle event saying just
        that is the action's own, and resyncing the machine for it would only read libvirt
        and write the same row again, competing with the action for the CPU and SQLite's
        write lock. That one event is skipped (it may arrive before the call returns). If the
        action fails after its event was skipped, the machine is resynced after all."""
        if state is None or not self.ownership.owns(hv_uuid):  # its events are not ours
            yield
            return
        key, mark = (hv_uuid, uuid), (state, time.monotonic())
        with self._cond:
            if len(self._expected) > 10_000:  # marks whose event never came (a lost link)
                self._expected = {k: v for k, v in self._expected.items()
                                  if mark[1] - v[1] < EXPECT_FOR}
            self._expected[key] = mark
        try:
            yield
        except BaseException:
            with self._cond:
                skipped = self._expected.get(key) is not mark
                if not skipped:
                    del self._expected[key]
            if skipped:
                self._queue(hv_uuid, uuid)
            raise

    def _queue(self, hv_uuid: str, uuid: str, since: float | None = None) -> None:
        with self._cond:
            key = (hv_uuid, uuid)
            if self._pending.get(key) is None:  # an event already waiting keeps its time
                self._pending[key] = since
            self._cond.notify_all()

    # -- workers -----------------------------------------------------------------------

    def _next(self) -> tuple[str, str] | None:
        """The oldest queued event of a hypervisor no worker is busy with."""
        return next((k for k in self._pending if k[0] not in self._busy), None)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or self._next() is not None)
                if self._stopping:
                    return
                key = self._next()
                assert key is not None  # wait_for saw one, under the same lock
                since = self._pending.pop(key)
                hv_uuid, uuid = key
                self._busy.add(hv_uuid)
            try:
                if uuid == RESYNC_ALL:
                    self.resync_hypervisor(hv_uuid)
                else:
                    self.resync_machine(hv_uuid, uuid)
                    if since is not None:
                        self.metrics.event(time.monotonic() - since)
            except HypervisorUnreachable:
                pass  # reconnecting; the resync after it catches up
            except Exception:
                log.exception("syncing %s of hypervisor %s failed", uuid or "everything",
                              hv_uuid)
            finally:
                with self._cond:
                    self._busy.discard(hv_uuid)
                    self._cond.notify_all()

    def _keep(self) -> None:
        """Say this node is alive; renew its claims, take over hypervisors whose owner went
        silent (and resync them in full), let go of those it lost its connection to."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping, self._renew)
                if self._stopping:
                    return
            try:
                self.ownership.beat()
                self.reconcile()
                with self._lock:
                    connected = [u for u, link in self._links.items()
                                 if link.status == "connected"]
                    lost = [u for u in list(self.ownership.owned)
                            if u not in self._links or self._links[u].status == "disconnected"]
                gained, _lost = self.ownership.renew(connected, lost)
                lost_uploads.reap(self.db, self.connection, lease=self.ownership.lease)
                self.ownership.forget_old()
                self.kept_at, self.keep_error = time.monotonic(), None
                for hv_uuid in gained:
                    log.info("this node now keeps hypervisor %s", hv_uuid)
                    try:
                        self._record_connected(hv_uuid, self.connection(hv_uuid))
                    except HypervisorUnreachable:
                        continue
                    self._queue(hv_uuid, RESYNC_ALL)
            except Exception as e:
                self.keep_error = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.exception("renewing this node's hypervisors failed")
