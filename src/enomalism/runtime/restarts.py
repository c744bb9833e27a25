"""Restart on failure (issue 19): a machine whose `restart_policy` is `on-failure` is started
again when its guest crashed or its QEMU was killed from outside, by the node that owns its
hypervisor (the one that receives and writes its events).

Which stops count: libvirt's lifecycle event STOPPED with detail FAILED (QEMU went away
without a shutdown: `kill -9` of the process, an OOM kill, a QEMU crash) or CRASHED (the
guest panicked and `on_crash` destroys it). A shutdown from the guest (SHUTDOWN), a poweroff
through the API or `virsh destroy` (DESTROYED), a revert (FROM_SNAPSHOT), a save or a
migration never do (virt/hypervisor.py `stopped_by_failure`).

Back-off and limit: the n-th restart within `window` seconds waits `backoff[n]` seconds first;
after `limit` restarts within the window the machine stays stopped until someone starts it.
Every restart, and every one refused (the limit, a lock, a start that failed), is an entry of
the audit log (`machine.restart`, actor `enomalism`); the times of the restarts that still
count are kept on the machine (`restarts`), so another node that takes the hypervisor over
counts them too.
"""

import logging
import threading
import time

from sqlalchemy.orm import Session

from enomalism.errors import EnomalismError, InvalidState, Locked
from enomalism.store import records
from enomalism.store.db import Database
from enomalism.store.models import Machine

log = logging.getLogger(__name__)

POLICIES = ("never", "on-failure")
WINDOW = 600.0  # seconds over which restarts are counted
LIMIT = 3  # restarts within the window; then the machine stays stopped
BACKOFF = (1.0, 5.0, 25.0)  # seconds before the first, second, third restart in the window
ACTOR = "enomalism"


class Restarter:
    """Started with the registry; `failed` is called from its event callback (libvirt's
    event thread), which must not wait: each restart runs in a thread of its own."""

    def __init__(self, db: Database, connection, node_id: str) -> None:  # noqa: ANN001
        self.db, self._connection, self.node_id = db, connection, node_id
        self.window, self.limit, self.backoff = WINDOW, LIMIT, BACKOFF
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._waiting: set[str] = set()  # machines a restart is pending for

    def stop(self) -> None:
        self._stop.set()

    def failed(self, hv_uuid: str, uuid: str, reason: str) -> None:
        """The domain stopped by a failure (`reason`: failed or crashed)."""
        with self._lock:
            if uuid in self._waiting or self._stop.is_set():
                return
            self._waiting.add(uuid)
        threading.Thread(target=self._run, args=(hv_uuid, uuid, reason),
                         name=f"restart-{uuid[:8]}", daemon=True).start()

    def _run(self, hv_uuid: str, uuid: str, reason: str) -> None:
        try:
            self._restart(hv_uuid, uuid, reason)
        except Exception:
            log.exception("restarting machine %s failed", uuid)
        finally:
            with self._lock:
                self._waiting.discard(uuid)

    def _recent(self, m: Machine, now: float) -> list[float]:
        return [t for t in (m.restarts or []) if now - float(t) < self.window]

    def _restart(self, hv_uuid: str, uuid: str, reason: str) -> None:
        with self.db.session(write=False) as s:
            m = s.get(Machine, uuid)
            if m is None or m.kind != "vm" or not m.managed or m.parent_uuid != hv_uuid \
                    or m.restart_policy != "on-failure":
                return
            count = len(self._recent(m, time.time()))
        if count >= self.limit:
            self._note(uuid, reason, InvalidState(
                f"not restarted: {count} restarts within {self.window / 60:g} min already "
                f"(the limit); start it when its fault is mended"))
            return
        delay = self.backoff[min(count, len(self.backoff) - 1)]
        if self._stop.wait(delay):
            return
        with self.db.session(write=False) as s:  # changed while we waited?
            m = s.get(Machine, uuid)
            if m is None or m.restart_policy != "on-failure" or m.parent_uuid != hv_uuid:
                return
            if m.lock_txid:
                self._note(uuid, reason, Locked(
                    f"not restarted: transaction {m.lock_txid} holds the machine"))
                return
        try:
            conn = self._connection(hv_uuid)
            now = conn.snapshot(uuid, with_xml=False)
            if now is None or now.state != "shutoff":
                return  # started (or removed) by someone else meanwhile
            conn.start(uuid)
        except EnomalismError as e:
            self._note(uuid, reason, e)
            return
        self._note(uuid, reason, None)

    def _note(self, uuid: str, reason: str, error: EnomalismError | None) -> None:
        """The audit entry; after a restart, its time counted on the machine."""
        now = time.time()
        with self.db.session() as s:
            m = s.get(Machine, uuid)
            if m is None:
                return
            recent = self._recent(m, now)
            if error is None:
                recent.append(now)
                m.restarts = recent
            message = error.message if error is not None else (
                f"started again after its guest {reason} ({len(recent)} of {self.limit} "
                f"restarts allowed within {self.window / 60:g} min)")
            _audit(s, m, self.node_id, reason, message, error.errno if error else 0,
                   len(recent))


def _audit(s: Session, m: Machine, node_id: str, reason: str, message: str, errno: int,
           count: int) -> None:
    s.add(records.audit_entry(
        actor_uuid=None, actor_name=ACTOR, source=f"node {node_id}"[:64],
        action="machine.restart", object_type="machine", object_uuid=m.uuid,
        object_name=m.name, errno=errno, message=message,
        detail={"reason": reason, "restarts": count}))
