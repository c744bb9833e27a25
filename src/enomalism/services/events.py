"""The events stream's source: what changed, kept in the `events` table for a retention
window, and a hub per server process that hands new rows to the clients of `GET /rest/events/`
(docs/api.md, Events).

Events are written where the change is written, in the same transaction: the inventory's and
the transactions' ORM changes (a `before_flush` hook below: the registry's event workers, the
API, the runner all write through it) and, for the few writes that bypass the ORM (the quick
lifecycle path, job progress, a lost hypervisor link), `emit`. Each is a cheap insert.

A hub reads the rows after its cursor: at once when a commit in this process wrote some (an
in-process wake-up), else every `poll` seconds for the rows other nodes wrote. PostgreSQL
hands out ids at insert, not at commit, so a row may appear after rows with higher ids: the
hub keeps asking for such gaps for a few seconds and delivers them late (at least once, maybe
out of id order; never lost)."""

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, event, func, inspect, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from enomalism.services import access
from enomalism.services.context import Context, Principal
from enomalism.store import records
from enomalism.store.db import Database, changed
from enomalism.store.models import AuditEntry, Event, Hypervisor, Machine, Transaction, User

log = logging.getLogger(__name__)

TYPES = ("machine.state", "machine.created", "machine.deleted", "machine.renamed",
         "machine.moved", "transaction.progress", "transaction.end", "hypervisor.up",
         "hypervisor.down", "audit", "resync")
MODELS: dict[str, Any] = {"machine": Machine, "transaction": Transaction, "hypervisor": Hypervisor}
TEXT = records.EVENT_TEXT  # longer text in an event is cut (store/records.py)
GAP_WAIT = 5.0  # seconds a missing id is asked for again before it counts as rolled back
BATCH = 500
QUEUE_LIMIT = 2000  # a client this far behind is sent `resync` and let go


row = records.event  # an events row, its text values cut


def _now() -> datetime:
    return datetime.now(UTC)


def emit(db: Database, type_: str, object_uuid: str | None, owner_uuid: str | None, /,
         **data: Any) -> None:
    """Write one event in a short transaction of its own (for writes outside the ORM)."""
    try:
        with db.session() as s:
            s.add(row(type_, object_uuid, owner_uuid, **data))
            s.info["events"] = True
    except Exception:  # an event lost is not worth failing the change it tells of
        log.exception("writing a %s event failed", type_)


# -- the ORM's changes ---------------------------------------------------------------------

def _change(obj: Any, attr: str) -> tuple[Any, Any] | None:
    history = inspect(obj).attrs[attr].history
    if not history.added:
        return None
    old = history.deleted[0] if history.deleted else None
    new = history.added[0]
    return None if old == new else (old, new)


def _machine(m: Machine, how: str) -> list[Event]:
    base = {"uuid": m.uuid, "name": m.name, "kind": m.kind}
    if how == "new":
        return [row("machine.created", m.uuid, m.owner_uuid, **base, state=m.state,
                    hypervisor=m.parent_uuid)]
    if how == "deleted":
        return [row("machine.deleted", m.uuid, m.owner_uuid, **base)]
    found = []
    if change := _change(m, "state"):
        found.append(row("machine.state", m.uuid, m.owner_uuid, **base, state=change[1],
                         previous=change[0]))
    if change := _change(m, "name"):
        found.append(row("machine.renamed", m.uuid, m.owner_uuid, **base, previous=change[0]))
    if (change := _change(m, "parent_uuid")) and change[0] is not None:
        found.append(row("machine.moved", m.uuid, m.owner_uuid, **base, hypervisor=change[1],
                         previous=change[0]))
    return found


def _transaction(tx: Transaction, how: str) -> list[Event]:
    base = {"uuid": tx.uuid, "kind": tx.kind, "target": tx.target_uuid}
    if how == "new":
        return [row("transaction.progress", tx.uuid, tx.owner_uuid, **base,
                    state=tx.state or "queued", completion=tx.completion or 0)]
    if how == "dirty" and _change(tx, "state"):
        if tx.state in ("done", "failed", "cancelled"):
            return [row("transaction.end", tx.uuid, tx.owner_uuid, **base, state=tx.state,
                        completion=tx.completion, error=tx.error)]
        return [row("transaction.progress", tx.uuid, tx.owner_uuid, **base, state=tx.state,
                    completion=tx.completion)]
    return []


def _hypervisor(hv: Hypervisor, how: str) -> list[Event]:
    if how != "dirty" or not (change := _change(hv, "status")):
        return []
    up = change[1] == "connected"
    if not up and change[0] != "connected":
        return []  # from one failed attempt to the next: still down
    return [row("hypervisor.up" if up else "hypervisor.down", hv.uuid, hv.owner_uuid,
                uuid=hv.uuid, uri=hv.virt_url, status=hv.status, error=hv.last_error)]


def _audit(entry: AuditEntry, how: str) -> list[Event]:
    if how != "new":
        return []
    return [Event(**records.audit_event_values({
        k: getattr(entry, k) for k in ("action", "actor_name", "source", "object_type",
                                       "object_uuid", "object_name", "errno", "message")}))]


def streamed(engine: Engine) -> bool:
    """Whether a hub streams this database: only then are its changes written as events (a
    write outside the ORM asks, as the ORM's hook below does)."""
    return engine.url in _databases


_CAPTURE: dict[type, Callable[[Any, str], list[Event]]] = {
    Machine: _machine, Transaction: _transaction, Hypervisor: _hypervisor, AuditEntry: _audit}


_databases: set[URL] = set()  # the databases a hub streams: only theirs get events


@event.listens_for(Session, "before_flush")
def _capture(session: Session, _flush: object, _instances: object) -> None:
    """Every flush that changes what the stream tells of writes its events with it (on a
    database a server streams: not a schema being migrated, not `enomalism admin`'s)."""
    if session.get_bind().engine.url not in _databases:
        return
    found: list[Event] = []
    for how, objs in (("new", session.new), ("deleted", session.deleted),
                      ("dirty", session.dirty)):
        for obj in objs:
            capture = _CAPTURE.get(type(obj))
            if capture is not None:
                found.extend(capture(obj, how))
    if found:
        session.add_all(found)
        session.info["events"] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop("events", False):
        wake_all()


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop("events", None)


_hubs: "weakref.WeakSet[Hub]" = weakref.WeakSet()


def wake_all() -> None:
    """Events were committed in this process: every hub reads them now."""
    for hub in list(_hubs):
        hub.wake()


# -- who reads what ------------------------------------------------------------------------

@dataclass
class Item:
    """An event as the hub hands it out."""

    id: int
    type: str
    at: datetime
    object_uuid: str | None
    owner_uuid: str | None
    data: dict

    def message(self) -> str:
        """The event in the SSE wire format."""
        body = json.dumps({"id": self.id, "type": self.type,
                           "time": self.at.isoformat(timespec="milliseconds"),
                           "object": self.data}, separators=(",", ":"), default=str)
        return f"id: {self.id}\nevent: {self.type}\ndata: {body}\n\n"


def _items(rows: Iterable[Event]) -> list[Item]:
    return [Item(r.id, r.type, r.at, r.object_uuid, r.owner_uuid, dict(r.data or {}))
            for r in rows]


def coalesce(items: list[Item]) -> list[Item]:
    """Of each transaction's progress events read together, only the newest: a job moving
    faster than the stream is read is told once per read, not once per percent."""
    newest: dict[str | None, int] = {}
    for i in items:
        if i.type == "transaction.progress":
            newest[i.object_uuid] = max(i.id, newest.get(i.object_uuid, 0))
    return [i for i in items if i.type != "transaction.progress"
            or newest[i.object_uuid] == i.id]


def visible(s: Session, user: Principal, items: list[Item]) -> tuple[set[int], set[int]]:
    """(ids the user may read, ids of events about objects now gone that the user may read
    when they read the object before). Audit entries are for administrators only."""
    if user.is_admin:
        return {i.id for i in items}, set()
    ctx = Context(db=s, registry=None, user=user)  # type: ignore[arg-type]
    yes: set[int] = set()
    if_known: set[int] = set()
    for prefix, model in MODELS.items():
        mine = [i for i in items if i.type.startswith(prefix + ".") and i.object_uuid]
        if not mine:
            continue
        uuids = list({i.object_uuid for i in mine})
        q = select(model.uuid).where(model.uuid.in_(uuids))
        existing: set[str] = set(s.scalars(q))
        clause = access.readable(ctx, model)
        readable = existing if clause is None else set(s.scalars(q.where(clause)))
        for i in mine:
            if i.object_uuid in readable or (i.object_uuid not in existing
                                             and i.owner_uuid == user.uuid):
                yes.add(i.id)
            elif i.object_uuid not in existing:
                if_known.add(i.id)
    return yes, if_known


def wanted(types: frozenset[str], type_: str) -> bool:
    """A `type` filter names an event type (machine.state) or a family (machine)."""
    return not types or type_ in types or type_.partition(".")[0] in types


@dataclass(eq=False)
class Subscriber:
    user: Principal
    types: frozenset[str]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    seen: set[str] = field(default_factory=set)  # objects it heard of (for their deletion)
    closed: bool = False

    def put(self, item: Item | None) -> None:
        """From the hub's thread: hand over an event (None: let go, after a `resync`)."""
        if self.closed:
            return
        if item is None or self.queue.qsize() >= QUEUE_LIMIT:
            self.closed = True
            item = None
        elif item.object_uuid and len(self.seen) < 10_000:
            self.seen.add(item.object_uuid)
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # its event loop is gone
            self.closed = True


class Hub:
    """Reads new events (woken locally, else polling) and hands each to the subscribers that
    may read it; prunes the table to the retention window."""

    def __init__(self, db: Database, *, poll: float = 0.5, retention: float = 3600.0,
                 keep: int = 100_000, prune_every: float = 60.0) -> None:
        self.db, self.poll, self.retention, self.keep = db, poll, retention, keep
        self.prune_every = prune_every
        self.cursor = 0
        self._stale = True  # the cursor may be behind: read it before anyone subscribes
        self._gaps: dict[int, float] = {}  # missing id -> when first missed
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0
        _databases.add(db.engine.url)  # its changes are written as events from now on

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="events-hub", daemon=True)
        self._thread.start()
        _hubs.add(self)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        _hubs.discard(self)
        with self._lock:
            subs, self._subs = list(self._subs), set()
        for sub in subs:
            sub.put(None)

    def wake(self) -> None:
        """New events were committed: read them now, if anyone listens (no one: nothing is
        read, and a thread woken for nothing costs the request that woke it)."""
        if self._subs or self._stopping:
            self._wake.set()

    def subscribe(self, user: Principal, types: frozenset[str],
                  loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, int]:
        """A new subscriber, and the cursor from which it gets live events (earlier ones it
        reads with `replay`). The first one reads where the events are: with no one to hand
        them to, the hub does not read them (a database read for every change, for nobody).
        Blocking (a query): called off the event loop."""
        sub = Subscriber(user, types, loop)
        with self._lock:  # the thread's `_deliver` reads nothing for a stale cursor
            self._subs.add(sub)  # first: from now on a commit wakes the thread
            if self._stale:
                try:
                    with self.db.session(write=False) as s:
                        last = newest(s) or 0
                except BaseException:
                    self._subs.discard(sub)
                    raise
                self.cursor = max(self.cursor, last)
                self._gaps.clear()
                self._stale = False
            return sub, self.cursor

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)
            if not self._subs:  # commits no longer wake the thread: the cursor falls behind
                self._stale = True
        sub.closed = True

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.poll)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self._deliver()
                if time.monotonic() - self._pruned_at >= self.prune_every:
                    self._pruned_at = time.monotonic()
                    prune(self.db, retention=self.retention, keep=self.keep)
            except Exception:
                log.exception("reading new events failed; trying again")

    def _deliver(self) -> None:
        with self._lock:
            if not self._subs:  # nobody listens: nothing is read (`subscribe` catches up)
                self._stale = True
                return
        while True:
            with self.db.session(write=False) as s:
                rows = list(s.scalars(select(Event).where(Event.id > self.cursor)
                                      .order_by(Event.id).limit(BATCH)))
                late = list(s.scalars(select(Event).where(Event.id.in_(list(self._gaps))))) \
                    if self._gaps else []
                items = coalesce(_items(late + rows))
                self._track_gaps(rows, late)
                if items:
                    self._hand_out(s, items)
            if len(rows) < BATCH:
                return

    def _track_gaps(self, rows: list[Event], late: list[Event]) -> None:
        now = time.monotonic()
        for r in late:
            self._gaps.pop(r.id, None)
        expected = self.cursor + 1
        for r in rows:
            for missing in range(expected, min(r.id, expected + 1000)):
                self._gaps.setdefault(missing, now)
            expected = r.id + 1
        if rows:
            self.cursor = rows[-1].id
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_WAIT}

    def _hand_out(self, s: Session, items: list[Item]) -> None:
        with self._lock:
            subs = [sub for sub in self._subs if not sub.closed]
        by_user: dict[str, list[Subscriber]] = {}
        for sub in subs:
            by_user.setdefault(sub.user.uuid, []).append(sub)
        for user_uuid, group in by_user.items():
            user = s.get(User, user_uuid)
            if user is None or not user.enabled:  # deleted or disabled meanwhile
                for sub in group:
                    sub.put(None)
                continue
            principal = Principal(user.uuid, user.username, bool(user.is_admin))
            yes, if_known = visible(s, principal, items)
            for sub in group:
                for item in items:
                    if not wanted(sub.types, item.type):
                        continue
                    if item.id in yes or (item.id in if_known and item.object_uuid in sub.seen):
                        sub.put(item)


def newest(s: Session) -> int | None:
    """The newest event's id (None before the first): a list read after it and a stream
    opened with it as `Last-Event-ID` miss no change between them (docs/events.md)."""
    return s.scalar(select(func.max(Event.id)))


def replay(db: Database, user: Principal, types: frozenset[str], after: int,
           upto: int) -> list[Item] | None:
    """The events after id `after` up to `upto` the user may read; None when some of them
    were pruned already (or `after` is no id of this database): the client must resync."""
    with db.session(write=False) as s:
        low, high = s.execute(select(func.min(Event.id), func.max(Event.id))).one()
        if high is None or after > high or after < low - 1:
            return None
        found: list[Item] = []
        while after < upto:
            items = _items(s.scalars(select(Event).where(Event.id > after, Event.id <= upto)
                                     .order_by(Event.id).limit(BATCH)))
            if not items:
                break
            after = items[-1].id
            yes, _ = visible(s, user, items)
            found.extend(i for i in items if i.id in yes and wanted(types, i.type))
        return coalesce(found)


def prune(db: Database, *, retention: float, keep: int) -> int:
    """Delete events older than `retention` seconds or beyond the newest `keep`; the newest
    one always stays (it says how far ids went, for `replay`)."""
    with db.session() as s:
        high = newest(s)
        if high is None:
            return 0
        cutoff = _now() - timedelta(seconds=retention)
        done = changed(s, delete(Event).where(Event.id < high, Event.at < cutoff))
        return done + changed(s, delete(Event).where(Event.id <= high - keep))
