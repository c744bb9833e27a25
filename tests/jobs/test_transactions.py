"""Transactions (spec section 5) through the real runner threads, with a job kind of the
tests' own: progress, the undo log, cancel, retry, machine locks and crash recovery."""

import threading
import time
from pathlib import Path

import pytest

from enomalism.jobs.runner import JobContext
from enomalism.services import transactions
from enomalism.services.context import Context, Principal
from enomalism.store.models import Machine, Transaction, User, utcnow
from enomalism.wiring.job_table import JOBS
from tests.conftest import expect_error, job_kind, manage

GATES: dict[str, threading.Event] = {}


@job_kind("test.steps")
def steps(job: JobContext) -> dict:
    """Creates one file per step (recorded on the undo log first); may wait on a gate, may
    fail at a given step."""
    made = []
    for i in range(job.params["steps"]):
        path = Path(job.params["dir"]) / f"step{i}"
        job.will_create("file", path=str(path))
        path.write_text("x")
        made.append(str(path))
        if job.params.get("fail_at") == i:
            raise_error()
        gate = GATES.get(job.params.get("gate", ""))
        while gate is not None and not gate.wait(0.05):
            job.check_cancelled()
        job.progress(100 * (i + 1) / job.params["steps"], f"step {i} done")
    return {"files": made}


def raise_error() -> None:
    from enomalism.errors import HypervisorError
    raise HypervisorError("the disk exploded")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Where the test jobs create their files."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def admin_ctx(api, db) -> Context:  # noqa: ANN001
    with api.app.state.db.session(write=False) as s:
        admin = s.query(User).filter_by(username="admin").one()
        who = Principal(uuid=admin.uuid, username="admin", is_admin=True)
    return Context(db=db, registry=api.registry, user=who, jobs=api.app.state.runner)


def enqueue(api, tmp_path, lock=(), **params) -> str:  # noqa: ANN001
    params = {"steps": 3, "dir": str(tmp_path), **params}
    with api.app.state.db.session() as s:
        tx = transactions.enqueue(admin_ctx(api, s), "test.steps", target=None,
                                  params=params, lock=list(lock))
        txid = tx.uuid
    api.app.state.runner.notify()
    return txid


def wait_state(api, txid, states, deadline=60.0) -> dict:  # noqa: ANN001
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        body = api.ok("GET", f"/rest/transaction/{txid}/")
        if body["data"]["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"transaction {txid} never reached {states}: {body}")


def test_a_job_runs_to_done_with_the_spec_keys(api, work):
    txid = enqueue(api, work)
    body = wait_state(api, txid, {"done"})
    assert set(body) >= {"data", "completion", "errno", "message"}
    assert body["completion"] == 100 and body["errno"] == 0
    assert body["data"]["result"]["files"] == [str(work / f"step{i}") for i in range(3)]
    assert all((work / f"step{i}").exists() for i in range(3))  # kept: the job succeeded
    assert [e[2] for e in body["data"]["log"] if e[2].startswith("step")] == \
        ["step 0 done", "step 1 done", "step 2 done"]
    listed = api.ok("GET", "/rest/transactions/", params={"state": "done"})["transactions"]
    assert txid in [t["uuid"] for t in listed]


def test_a_failed_job_removes_what_it_created_and_can_be_retried(api, work):
    txid = enqueue(api, work, fail_at=1)
    body = wait_state(api, txid, {"failed"})
    assert body["data"]["error"] == "the disk exploded"
    assert "failed" in body["message"]
    assert not list(work.iterdir())  # step0 and step1 undone
    with api.app.state.db.session() as s:  # let the retry succeed
        tx = s.get(Transaction, txid)
        tx.params = {**tx.params, "fail_at": None}
    r = api.ok("POST", f"/rest/transaction/{txid}/", data={"action": "retry"})
    assert r["message"] == "transaction queued again"
    body = wait_state(api, txid, {"done"})
    assert body["data"]["attempts"] == 2


def test_cancel_a_running_job_stops_it_and_cleans_up(api, work):
    GATES["hold"] = threading.Event()
    txid = enqueue(api, work, gate="hold")
    wait_state(api, txid, {"running"})
    r = api.ok("DELETE", f"/rest/transaction/{txid}/")
    assert "cancellation requested" in r["message"]
    body = wait_state(api, txid, {"cancelled"})
    assert body["data"]["error"] == "cancelled on request"
    assert not list(work.iterdir())


def test_cancel_a_queued_job_at_once(api, work):
    GATES["hold2"] = threading.Event()
    blockers = [enqueue(api, work, gate="hold2", steps=1) for _ in range(2)]
    for b in blockers:
        wait_state(api, b, {"running", "failed"})
    txid = enqueue(api, work)  # both runner threads are busy: this one stays queued
    assert api.ok("GET", f"/rest/transaction/{txid}/")["data"]["state"] == "queued"
    r = api.ok("POST", f"/rest/transaction/{txid}/", data={"action": "cancel"})
    assert r["data"]["state"] == "cancelled" and r["message"] == "transaction cancelled"
    GATES["hold2"].set()


def test_finished_transactions_cannot_be_cancelled_and_done_ones_not_retried(api, work):
    txid = enqueue(api, work)
    wait_state(api, txid, {"done"})
    expect_error(api.delete(f"/rest/transaction/{txid}/"), 409, 1301)
    expect_error(api.post(f"/rest/transaction/{txid}/", data={"action": "retry"}), 409, 1301)
    expect_error(api.post(f"/rest/transaction/{txid}/", data={"action": "explode"}), 400, 1003)
    assert api.ok("GET", f"/rest/transaction/{txid}/")["data"]["state"] == "done"


def test_unknown_and_malformed_transactions(api):
    expect_error(api.get("/rest/transaction/00000000-0000-0000-0000-000000000000/"), 404, 1200)
    expect_error(api.get("/rest/transaction/nope/"), 400, 1002)
    expect_error(api.get("/rest/transactions/", params={"state": "sleeping"}), 400, 1000)


def test_a_locked_machine_refuses_changes_with_423_and_the_txid(api, work):
    uuid = manage(api, "idle")
    GATES["hold3"] = threading.Event()
    txid = enqueue(api, work, lock=[uuid], gate="hold3")
    wait_state(api, txid, {"running"})
    body = expect_error(api.post(f"/rest/machine/{uuid}/actions/create/"), 423, 1400)
    assert body["txid"] == txid
    assert api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"] == ["unlock"]
    # a second job wanting the same machine is refused the same way, and nothing is queued
    with api.app.state.db.session() as s:
        before = s.query(Transaction).count()
    with pytest.raises(Exception) as e:
        enqueue(api, work, lock=[uuid])
    assert getattr(e.value, "errno", None) == 1400
    with api.app.state.db.session() as s:
        assert s.query(Transaction).count() == before
    GATES["hold3"].set()
    wait_state(api, txid, {"done"})
    assert api.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]["locked_by"] is None


def test_restart_fails_interrupted_jobs_removes_their_files_and_releases_locks(
        make_api, make_host, tmp_path):
    from tests.fakehost import FakeDomain
    uri = make_host("h", [FakeDomain("vm1", state="shutoff")])
    data = tmp_path / "data"
    leftover = tmp_path / "partial.img"
    with make_api(uri, data_dir=data) as api:
        uuid = manage(api, "vm1")
        node = api.app.state.runner.node_id
        leftover.write_text("half a disk")
        with api.app.state.db.session() as s:  # what a crash in the middle leaves behind
            tx = Transaction(kind="test.steps", state="running", claimed_by=node,
                             started_at=utcnow(), heartbeat_at=utcnow(), locks=[uuid],
                             undo=[{"kind": "file", "path": str(leftover)}], params={})
            s.add(tx)
            s.flush()
            txid = tx.uuid
            s.get(Machine, uuid).lock_txid = txid
        api.app.state.runner.stop()  # the process "dies": nothing finishes the job
    with make_api(uri, data_dir=data) as api:
        body = api.ok("GET", f"/rest/transaction/{txid}/")
        assert body["data"]["state"] == "failed"
        assert "interrupted" in body["data"]["error"]
        assert not leftover.exists()
        assert api.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]["locked_by"] is None


def test_other_users_cannot_see_a_transaction(api, work):
    txid = enqueue(api, work)
    api.ok("POST", "/rest/user/create/", data={"username": "eve", "password": "eve-password-1"})
    eve = ("eve", "eve-password-1")
    expect_error(api.get(f"/rest/transaction/{txid}/", auth=eve), 404, 1200)
    assert api.ok("GET", "/rest/transactions/", auth=eve)["transactions"] == []
    api.ok("PUT", f"/rest/permissions/{txid}/", data={"permission": "read", "user": "eve"})
    assert api.ok("GET", f"/rest/transaction/{txid}/", auth=eve)["data"]["uuid"] == txid
    expect_error(api.delete(f"/rest/transaction/{txid}/", auth=eve), 403, 1101)


def test_the_tests_jobs_are_in_the_servers_table():
    assert JOBS["test.steps"] is steps


def test_a_database_error_while_claiming_does_not_stop_the_runner(api, work, monkeypatch):
    """SQLite busy past its time-out, or PostgreSQL gone for a moment: the runner threads log
    it and go on claiming."""
    from sqlalchemy.exc import OperationalError

    runner = api.app.state.runner
    real, failures = runner._claim, []

    def flaky() -> str | None:
        if len(failures) < 2 * runner.threads:  # every thread fails at least once
            failures.append(1)
            raise OperationalError("SELECT", {}, Exception("database is locked"))
        return real()

    monkeypatch.setattr(runner, "_claim", flaky)
    txid = enqueue(api, work)
    assert wait_state(api, txid, {"done"})["completion"] == 100
    assert failures  # the job ran after claims had failed
    assert all(t.is_alive() for t in runner._workers)


def test_a_job_whose_node_stopped_beating_is_taken_over_and_undone(api, work):
    """Another node died while running a job: once its heartbeat is older than the time-out,
    this node fails it, removes what it made, releases its locks; the old node, should it
    wake up, finds the job is no longer its own."""
    from datetime import timedelta

    from enomalism.jobs.runner import JobTakenOver

    uuid = manage(api, "idle")
    leftover = work / "half.img"
    leftover.write_text("half a disk")
    runner = api.app.state.runner
    long_ago = utcnow() - timedelta(seconds=runner.timeout + 60)
    with api.app.state.db.session() as s:
        tx = Transaction(kind="test.steps", state="running", claimed_by="dead-node",
                         started_at=long_ago, heartbeat_at=long_ago, locks=[uuid],
                         undo=[{"kind": "file", "path": str(leftover)}], params={})
        s.add(tx)
        s.flush()
        txid = tx.uuid
        s.get(Machine, uuid).lock_txid = txid
        fresh = Transaction(kind="test.steps", state="running", claimed_by="live-node",
                            started_at=utcnow(), heartbeat_at=utcnow(), params={})
        s.add(fresh)
        s.flush()
        fresh_id = fresh.uuid
    assert runner.take_over() == [txid]
    body = api.ok("GET", f"/rest/transaction/{txid}/")
    assert body["data"]["state"] == "failed"
    assert "stopped answering" in body["data"]["error"]
    assert not leftover.exists()
    assert api.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]["locked_by"] is None
    assert api.ok("GET", f"/rest/transaction/{fresh_id}/")["data"]["state"] == "running"
    assert runner.take_over() == []  # nothing twice

    class DeadRunner:  # the old node's view of the job it thought it ran
        db, node_id = api.app.state.db, "dead-node"

    with api.app.state.db.session(write=False) as s:
        job = JobContext(DeadRunner(), s.get(Transaction, txid))
    before = api.ok("GET", f"/rest/transaction/{txid}/")
    with api.app.state.db.session(write=False) as s:
        undo = s.get(Transaction, txid).undo
    # every step and every write of the old node's job stops it, and writes nothing
    for step in (job.check_cancelled, lambda: job.progress(50), lambda: job.log("still here"),
                 lambda: job.will_create("file", path=str(leftover)),
                 lambda: job.created_ok("file", path=str(leftover))):
        with pytest.raises(JobTakenOver):
            step()
    assert api.ok("GET", f"/rest/transaction/{txid}/") == before
    with api.app.state.db.session(write=False) as s:
        assert s.get(Transaction, txid).undo == undo
    with api.app.state.db.session() as s:
        s.get(Transaction, fresh_id).state = "failed"


def test_a_named_lock_is_held_across_nodes_and_kept_for_a_retry(api):
    """Named locks live in the database: a second holder waits while the first runs; a job
    taken over leaves alone the lock its retry (the same transaction id) holds now."""
    from enomalism.jobs.locks import named_lock
    from enomalism.store.models import NamedLock

    db = api.app.state.db
    with db.session() as s:
        a = Transaction(kind="test.steps", state="running", claimed_by="node-a", params={})
        b = Transaction(kind="test.steps", state="running", claimed_by="node-b", params={})
        s.add_all([a, b])
        s.flush()
        ta, tb = a.uuid, b.uuid
    tries = []

    def give_up() -> None:
        tries.append(1)
        raise TimeoutError

    with named_lock(db, "package:x", ta, wait=lambda: None):
        with pytest.raises(TimeoutError), named_lock(db, "package:x", tb, wait=give_up):
            pass
        assert tries == [1]
    with named_lock(db, "package:x", tb, wait=give_up, still_mine=lambda: False):
        pass  # b was taken over meanwhile, and its retry holds the lock now
    with db.session() as s:
        assert s.get(NamedLock, "package:x").holder == tb
        s.get(Transaction, tb).state = "failed"  # the holder ends: the lock is free again
    with named_lock(db, "package:x", ta, wait=give_up):
        pass
    with db.session() as s:
        assert s.get(NamedLock, "package:x") is None
        s.get(Transaction, ta).state = "failed"


@job_kind("test.fails_once_cancelled")
def fails_once_cancelled(job: JobContext) -> dict:
    """A step that a cancel cuts short and that then fails (as an upload does): the cancel
    arrives while the step runs, and the step ends with an error, not with JobCancelled."""
    with job.db.session() as s:
        s.get(Transaction, job.txid).cancel_requested = True
    raise_error()
    return {}


def test_a_job_that_fails_after_its_cancel_was_asked_ends_cancelled(api):
    with api.app.state.db.session() as s:
        txid = transactions.enqueue(admin_ctx(api, s), "test.fails_once_cancelled",
                                    target=None, params={}).uuid
    api.app.state.runner.notify()
    body = wait_state(api, txid, {"cancelled", "failed"})
    assert body["data"]["state"] == "cancelled"
    assert body["data"]["error"] == "cancelled on request (the disk exploded)"
