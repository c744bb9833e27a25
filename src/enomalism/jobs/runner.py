"""Runner threads that take queued transactions from the database and run them.

A job is claimed with a compare-and-swap on its state (queued -> running), so several threads,
or several server processes sharing one database, never run it twice. A running job writes its
progress (at least every percent or every second), checks for cancellation at each step, and
records what it creates before creating it. When it fails or is cancelled, those things are
removed and its machine locks released in the same step that records its end state. At start,
jobs this node was running (or whose heartbeat stopped) are undone and marked failed.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from enomalism.errors import EnomalismError
from enomalism.jobs import locks, states, undo
from enomalism.runtime.package_sync import PackageSync
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.store import records
from enomalism.store.db import Database, changed
from enomalism.store.models import Event, Machine, Transaction, User, utcnow
from enomalism.store.secrets import SecretBox

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 120.0  # seconds without a heartbeat after which a running job is orphaned
LOG_LIMIT = 200  # log lines kept per transaction


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was asked for."""


class JobTakenOver(Exception):
    """Raised inside a job that another node declared orphaned and undid: this node must
    stop touching it."""


Handler = Callable[["JobContext"], dict[str, Any]]


class JobContext:
    """What a running job uses: its parameters, progress, its log, cancellation, undo."""

    def __init__(self, runner: "Runner", tx: Transaction) -> None:
        self.runner = runner
        self.txid = tx.uuid
        self.kind = tx.kind
        self.params: dict[str, Any] = dict(tx.params or {})
        self.owner_uuid = tx.owner_uuid
        # Which run of the transaction this is: a retry after a take-over has the same id,
        # maybe even the same node, but not the same attempt.
        self.attempt = tx.attempts
        self.target_uuid = tx.target_uuid
        self._completion = tx.completion
        self._written_at = 0.0
        self._checked_at = 0.0
        self.parent: JobContext | None = None  # the job running this one (run_child)

    @property
    def db(self) -> Database:
        return self.runner.db

    @property
    def registry(self) -> HypervisorRegistry:
        return self.runner.registry

    def _update(self, told: Event | None = None, **values: Any) -> None:
        with self.db.session() as s:
            done = changed(s, update(Transaction).where(
                Transaction.uuid == self.txid, Transaction.claimed_by == self.runner.node_id,
                Transaction.attempts == self.attempt).values(heartbeat_at=utcnow(), **values))
            if done == 1 and told is not None:
                s.add(told)
                s.info["events"] = True
        if done != 1:
            raise JobTakenOver()
        self._written_at = time.monotonic()

    def _own_row(self, s: Session) -> Transaction:
        """The transaction's row, held for this write. Every write of a job is fenced so: a
        job another node took over must not touch the row its retry now runs on (its undo
        log above all), so it stops at its next write."""
        tx = s.get(Transaction, self.txid, with_for_update=True)
        if tx is None or not self._still_mine(tx):
            raise JobTakenOver()
        return tx

    def progress(self, completion: float, message: str | None = None) -> None:
        """Report progress (0-100); written when it moved a percent or a second passed."""
        pct = max(0, min(99, int(completion)))  # 100 is written when the job is done
        if message:
            self.log(message)
        if pct != self._completion or time.monotonic() - self._written_at >= 1.0:
            moved = pct != self._completion
            self._completion = pct
            # the hub hands out only the newest of a batch's progress events (coalesced)
            told = records.event("transaction.progress", self.txid, self.owner_uuid,
                              uuid=self.txid, kind=self.kind, target=self.target_uuid,
                              state="running", completion=pct) if moved else None
            self._update(told, completion=pct)
        self.check_cancelled()

    def log(self, message: str, level: str = "info") -> None:
        with self.db.session() as s:
            tx = self._own_row(s)
            entry = [utcnow().isoformat(timespec="seconds"), level, message]
            tx.log = (list(tx.log or []) + [entry])[-LOG_LIMIT:]
            tx.heartbeat_at = utcnow()

    def cancel_requested(self) -> bool:
        """True once a cancel was asked for (for callbacks that cannot raise)."""
        try:
            self.check_cancelled()
        except JobCancelled:
            return True
        return False

    def check_cancelled(self) -> None:
        """Raise JobCancelled when a cancel was asked for (reads the database at most every
        quarter second)."""
        now = time.monotonic()
        if now - self._checked_at < 0.25:
            return
        self._checked_at = now
        row = self._row()
        if not self._still_mine(row):
            raise JobTakenOver()
        if row.cancel_requested:
            raise JobCancelled()
        if self.parent is not None:  # a child stops with its parent
            self.parent._checked_at = 0.0
            self.parent.check_cancelled()

    def taken_over(self) -> bool:
        """True when another node took this job over (its heartbeat had stopped for longer
        than the job timeout: this node was frozen or cut off): that node undid it, and what
        is there now (a retry's files, its state) is not this job's to touch."""
        return not self._still_mine(self._row())

    def _row(self) -> Any:
        with self.db.session(write=False) as s:
            return s.execute(select(Transaction.cancel_requested, Transaction.claimed_by,
                                    Transaction.attempts)
                             .where(Transaction.uuid == self.txid)).one()

    def _still_mine(self, row: Any) -> bool:
        return (row.claimed_by, row.attempts) == (self.runner.node_id, self.attempt)

    def will_create(self, kind: str, **ref: str) -> None:
        """Record, before creating it, something to remove if the job does not finish."""
        with self.db.session() as s:
            tx = self._own_row(s)
            tx.undo = list(tx.undo or []) + [{"kind": kind, **ref}]

    def run_child(self, kind: str, *, target: str | None, params: dict[str, Any],
                  lock: str | None = None) -> tuple[str, dict[str, Any]]:
        """Run a child transaction of this one now, in this thread (Runner.run_child);
        returns its end state and its result (or `error`)."""
        return self.runner.run_child(self, kind, target=target, params=params, lock=lock)

    def created_ok(self, kind: str, **ref: str) -> None:
        """Take an entry off the undo log: it is no longer the job's to remove."""
        entry = {"kind": kind, **ref}
        with self.db.session() as s:
            tx = self._own_row(s)
            tx.undo = [e for e in tx.undo or [] if e != entry]


class JobMetrics(Protocol):
    """Where the runner counts jobs by kind and outcome (services/metrics.ServerMetrics, GET
    /metrics): handed in, so jobs/ imports nothing of services/."""

    def job(self, kind: str, outcome: str, seconds: float) -> None: ...


class _Uncounted:
    def job(self, kind: str, outcome: str, seconds: float) -> None:
        pass


class Runner:
    def __init__(self, db: Database, registry: HypervisorRegistry, node_id: str,
                 packages_dir: Path, threads: int = 2,
                 timeout: float = HEARTBEAT_TIMEOUT, secrets: SecretBox | None = None, *,
                 metrics: JobMetrics | None = None, handlers: Mapping[str, Handler]) -> None:
        self.db, self.registry, self.node_id, self.threads = db, registry, node_id, threads
        self.handlers = handlers  # kind -> the function that runs it (wiring/job_table.py)
        self.metrics = metrics or _Uncounted()  # jobs by kind and outcome (GET /metrics)
        self.packages_dir = packages_dir
        self.secrets = secrets  # opens stored feed passwords for retrievals
        self.package_sync = PackageSync(db, node_id, registry.ownership.lease)
        self.timeout = timeout  # seconds without a heartbeat after which a job is orphaned
        self._wake = threading.Condition()
        self._stopping = False
        self._workers: list[threading.Thread] = []
        self.beat_at = time.monotonic()  # the last heartbeat written (for /readyz)
        self.beat_error: str | None = None

    def start(self) -> None:
        self.recover()
        self.package_sync.start()
        targets = [self._loop] * self.threads + [self._heartbeat]
        for i, target in enumerate(targets):
            t = threading.Thread(target=target, name=f"jobs-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for t in self._workers:
            t.join(timeout=30)
        self.package_sync.stop()

    def notify(self) -> None:
        """A job was queued (or cancelled): wake the threads now rather than at their poll."""
        with self._wake:
            self._wake.notify_all()

    def _heartbeat(self) -> None:
        """Keep this node's running jobs from looking orphaned during long steps, and take
        over the jobs of nodes that stopped beating (they died or were cut off)."""
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._stopping, self.timeout / 8)
                if self._stopping:
                    return
            try:
                with self.db.session() as s:
                    s.execute(update(Transaction).where(
                        Transaction.state == "running", Transaction.claimed_by == self.node_id)
                        .values(heartbeat_at=utcnow()))
                self.beat_at, self.beat_error = time.monotonic(), None
                self.take_over()
                self.package_sync.take_over()
            except Exception as e:
                self.beat_error = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.exception("writing the job heartbeat failed")

    def problem(self) -> str | None:
        """Why this node's job runner is not well (None when it is): a thread gone, or no
        heartbeat written for as long as other nodes wait before taking its jobs over."""
        if self._stopping:
            return "the job runner is stopping"
        dead = [t.name for t in self._workers if not t.is_alive()]
        if dead:
            return f"job runner threads stopped: {', '.join(dead)}"
        if not self._workers:
            return "the job runner has not started"
        late = time.monotonic() - self.beat_at
        if late > self.timeout:
            why = f": {self.beat_error}" if self.beat_error else ""
            return f"no job heartbeat written for {late:.0f} s{why}"
        return None

    def take_over(self) -> list[str]:
        """Fail (and undo) running jobs whose heartbeat is older than the timeout: their node
        died or was cut off. Returns their ids."""
        stale = Transaction.heartbeat_at < self._cutoff()
        return [txid for txid in self._running(stale) if self._undo_orphan(
            txid, stale, "interrupted: the node running it stopped answering")]

    # -- claiming and running ----------------------------------------------------------

    def _loop(self) -> None:
        """Claim and run jobs until the runner stops. A database error (SQLite busy past its
        time-out, PostgreSQL gone) must not end the thread: log it, wait, go on."""
        while True:
            with self._wake:
                if self._stopping:
                    return
            try:
                txid = self._claim()
            except Exception:
                log.exception("claiming a transaction failed; trying again")
                txid = None
            if txid is None:
                with self._wake:
                    if not self._stopping:
                        self._wake.wait(1.0)
                continue
            try:
                self._run(txid)
            except Exception:
                log.exception("recording the end of transaction %s failed", txid)
                self._fail_later(txid)

    def _fail_later(self, txid: str) -> None:
        """The job ended but its end could not be written: keep trying to record it failed,
        else its heartbeat, which this node keeps writing, would hold it `running`."""
        for delay in (1, 2, 5, 10, 30):
            with self._wake:
                if self._stopping:
                    return
                self._wake.wait(delay)
            try:
                with self.db.session(write=False) as s:
                    if s.scalar(select(Transaction.state).where(
                            Transaction.uuid == txid)) != "running":
                        return
                self._finish(txid, "failed", error="failed; its end could not be recorded "
                             "at first (see the server log)")
                return
            except Exception:
                log.exception("recording the end of transaction %s failed again", txid)

    def _claim(self) -> str | None:
        with self.db.session() as s:
            candidates = s.execute(select(Transaction.uuid, Transaction.params)
                                   .where(Transaction.state == "queued")
                                   .order_by(Transaction.created_at).limit(20)).tuples().all()
            for txid, params in candidates:
                if not self._can_run_here(s, params or {}):
                    continue
                took = changed(s, update(Transaction).where(
                    Transaction.uuid == txid, Transaction.state == "queued").values(
                    state="running", claimed_by=self.node_id, started_at=utcnow(),
                    heartbeat_at=utcnow(), attempts=Transaction.attempts + 1))
                if took == 1:
                    kind, owner, target = s.execute(
                        select(Transaction.kind, Transaction.owner_uuid,
                               Transaction.target_uuid)
                        .where(Transaction.uuid == txid)).tuples().one()
                    s.add(records.event("transaction.progress", txid, owner, uuid=txid,
                                     kind=kind, target=target, state="running",
                                     completion=0))
                    s.info["events"] = True
                    return txid
        return None

    def _can_run_here(self, s: Session, params: dict[str, Any]) -> bool:
        """False for a job on a hypervisor local to another machine (qemu:///system of
        another node's machine): a node on that machine runs it."""
        hv = params.get("hypervisor")
        if hv is None and params.get("machine"):
            hv = s.scalar(select(Machine.parent_uuid).where(Machine.uuid == params["machine"]))
        return hv is None or self.registry.status(hv)[0] != "elsewhere"

    def _run(self, txid: str) -> None:
        with self.db.session(write=False) as s:
            tx = s.get_one(Transaction, txid)
            job = JobContext(self, tx)
        self._execute(job)

    def run_child(self, parent: JobContext, kind: str, *, target: str | None,
                  params: dict[str, Any], lock: str | None = None) -> tuple[str, dict[str, Any]]:
        """The simplest form of parent and child transactions (an evacuation and its
        moves): the child is a transaction of its own (`params["parent"]` names the parent),
        written `running` and claimed by this node, and run at once in the parent's thread,
        so a parent never waits for a runner thread its children need. The machine `lock`,
        held by the parent, passes to the child, and is released when the child ends. A
        cancel of the parent stops the child too (JobContext.check_cancelled); a crash
        leaves both `running`, and recovery undoes both. Returns the child's end state and
        its result (or {"error": ...})."""
        now = utcnow()
        with self.db.session() as s:
            tx = Transaction(kind=kind, target_uuid=target, owner_uuid=parent.owner_uuid,
                             params={**params, "parent": parent.txid}, state="running",
                             claimed_by=self.node_id, started_at=now, heartbeat_at=now,
                             attempts=1, locks=[lock] if lock else [])
            s.add(tx)
            s.flush()
            if lock:
                s.execute(update(Machine).where(
                    Machine.uuid == lock, Machine.lock_txid == parent.txid).values(
                    lock_txid=tx.uuid, updated_at=Machine.updated_at))
            s.add(records.event("transaction.progress", tx.uuid, tx.owner_uuid, uuid=tx.uuid,
                             kind=kind, target=target, state="running", completion=0))
            s.info["events"] = True
            child = JobContext(self, tx)
        child.parent = parent
        parent.log(f"{kind} of {target}: transaction {child.txid}")
        if kind not in self.handlers:
            self._finish(child.txid, "failed", error=f"no handler for '{kind}'")
        else:
            self._execute(child)
        with self.db.session(write=False) as s:
            row = s.get_one(Transaction, child.txid)
            state, result, error = row.state, dict(row.result or {}), row.error
        return state, result if state == "done" else {"error": error}

    def _execute(self, job: JobContext) -> None:
        txid = job.txid
        started = time.monotonic()
        fn = self.handlers.get(job.kind)
        end: tuple[str, dict[str, Any]] | None = None
        try:
            if fn is None:
                raise EnomalismError(f"no handler for transactions of kind '{job.kind}'")
            job.check_cancelled()
            result = fn(job) or {}
        except JobCancelled:
            end = ("cancelled", {"error": "cancelled on request"})
        except JobTakenOver:
            pass
        except EnomalismError as e:
            end = ("failed", {"error": e.message, "errno": e.errno})
        except Exception as e:  # a bug: say so in the transaction, keep the runner alive
            log.exception("transaction %s failed", txid)
            end = ("failed", {"error": f"internal error: {type(e).__name__}: {e}", "errno": 1})
        else:
            end = ("done", {"result": result})
        # A job that lost its claim while it ran (whatever it then raised, or even if it
        # finished) records nothing and undoes nothing: the transaction is another node's,
        # which undid it and may be running it again.
        if end is None or job.taken_over():
            log.warning("transaction %s was taken over by another node; left to it", txid)
            return
        if end[0] == "failed" and self._cancel_asked(txid):
            # Cancelled in the middle of a step that then failed (an upload cut short): what
            # the user asked for happened; the step's error goes to the log.
            end = ("cancelled", {"error": f"cancelled on request ({end[1]['error']})"})
        self._finish(txid, end[0], **end[1])
        self.metrics.job(job.kind, end[0], time.monotonic() - started)

    def _cancel_asked(self, txid: str) -> bool:
        with self.db.session(write=False) as s:
            return bool(s.scalar(select(Transaction.cancel_requested)
                                 .where(Transaction.uuid == txid)))

    def _finish(self, txid: str, state: str, *, error: str | None = None,
                result: dict | None = None, errno: int = 1) -> None:
        """Record the end state, and in the audit log, under the user who started the job,
        its outcome; on failure or cancel, first undo what the job created."""
        problems: list[str] = []
        if state != "done":
            with self.db.session(write=False) as s:
                entries = list(s.get_one(Transaction, txid).undo or [])
            problems = undo.run(self.db, self.registry, entries)
        with self.db.session() as s:
            tx = s.get_one(Transaction, txid)
            states.check(tx.state, state)
            tx.state, tx.finished_at, tx.heartbeat_at = state, utcnow(), None
            tx.error = error
            tx.undo = []
            if result is not None:
                tx.result = result
            if state == "done":
                tx.completion = 100
            entries = [[utcnow().isoformat(timespec="seconds"), "warning", p] for p in problems]
            entries.append([utcnow().isoformat(timespec="seconds"),
                            "info" if state == "done" else "error", error or state])
            tx.log = (list(tx.log or []) + entries)[-LOG_LIMIT:]
            locks.release(s, txid)
            owner = s.get(User, tx.owner_uuid) if tx.owner_uuid else None
            s.add(records.audit_entry(
                actor_uuid=tx.owner_uuid, actor_name=owner.username if owner else None,
                source=f"job on {self.node_id}"[:64], action=f"transaction.{state}",
                object_type="transaction", object_uuid=txid, object_name=tx.kind,
                errno=errno if state == "failed" else 0, message=error or f"{tx.kind} {state}",
                detail={"kind": tx.kind, "target": tx.target_uuid}))

    # -- crash recovery ----------------------------------------------------------------

    def recover(self) -> list[str]:
        """At start: fail (and undo) the jobs this node ran before it stopped (and any never
        claimed), then those of other nodes whose heartbeat stopped. Returns their ids."""
        orphaned = or_(Transaction.claimed_by == self.node_id, Transaction.claimed_by.is_(None),
                       Transaction.heartbeat_at.is_(None),
                       Transaction.heartbeat_at < self._cutoff())
        return [txid for txid in self._running(orphaned) if self._undo_orphan(
            txid, orphaned, "interrupted: the server stopped while it ran")]

    def _cutoff(self) -> datetime:
        return datetime.fromtimestamp(utcnow().timestamp() - self.timeout, UTC)

    def _running(self, where: Any) -> list[str]:
        with self.db.session(write=False) as s:
            return sorted(s.scalars(select(Transaction.uuid).where(
                Transaction.state == "running", where)))

    def _undo_orphan(self, txid: str, where: Any, error: str) -> bool:
        """Claim an orphaned job with a compare-and-swap (`where` still holding) before undoing
        it: of several nodes looking at once (or starting together), only one undoes each.
        False when another node took it first."""
        with self.db.session() as s:
            took = changed(s, update(Transaction).where(
                Transaction.uuid == txid, Transaction.state == "running", where).values(
                claimed_by=self.node_id, heartbeat_at=utcnow()))
        if took != 1:
            return False
        log.warning("transaction %s was interrupted; undoing what it created", txid)
        self._await_hypervisors(txid)
        self._finish(txid, "failed", error=error)
        return True

    def _await_hypervisors(self, txid: str, timeout: float = 30.0) -> None:
        """Recovery runs as the server starts, while the connections to the hypervisors are
        still being opened in the background: wait (bounded) until those the job's undo log
        names are connected or have failed to connect, else its domains and volumes stay."""
        with self.db.session(write=False) as s:
            entries = list(s.get_one(Transaction, txid).undo or [])
        end = time.monotonic() + timeout
        for hv in {e["hypervisor"] for e in entries if e.get("hypervisor")}:
            while self.registry.status(hv)[0] == "connecting" and time.monotonic() < end:
                time.sleep(0.05)
