"""Issue 12, "no slow I/O under a write lock": the machine writers that call libvirt (define,
store_xml, rename, set_parent, totaldelete) hold no database lock while libvirt works, only the
machine's own lock (423 for any other changing action on it); a failure there leaves the
machine as it was, unlocked. Also a lifecycle action's call (on PostgreSQL too), `manage` and a
package request's libvirt reads; queue_provision's: test_provision_requests.py.
docs/transactions.md, "Slow work and the database".

libvirt's test:/// driver cannot be made slow, so the virt-layer function a writer calls waits
on an event the test sets, after checking what can be done meanwhile."""

import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from enomalism.errors import HypervisorError
from enomalism.store.models import Machine, Transaction
from enomalism.virt import driver
from tests.api.accounts import grant, new_user
from tests.conftest import (
    expect_error,
    libvirt_domains,
    new_vm,
    serve,
    unchanged,
)
from tests.fakehost import domain_xml, write_host


@pytest.fixture(scope="module")
def two(tmp_path_factory):  # noqa: ANN001, ANN201
    """Two empty fake hosts in one server; tests work on domains of their own."""
    d = tmp_path_factory.mktemp("slow")
    a, b = write_host(d / "a.xml", []), write_host(d / "b.xml", [])
    with serve(d / "data", a, b) as api:
        by_url = {h["virt_url"]: h["uuid"] for h in api.hypervisors()}
        yield api, by_url[a], by_url[b]


@contextmanager
def held(monkeypatch, name: str) -> Iterator[tuple[threading.Event, threading.Event]]:  # noqa: ANN001
    """`driver.<name>`, at its first call, waits until the test sets `go`; `entered` says it
    was called. Later calls (other requests') go through."""
    real = getattr(driver, name)
    entered, go = threading.Event(), threading.Event()
    first = threading.Lock()

    def wait_then_call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if first.acquire(blocking=False):
            entered.set()
            assert go.wait(60), "the test never let libvirt go on"
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, name, wait_then_call)
    try:
        yield entered, go
    finally:
        go.set()


@dataclass
class Writer:
    """How to make a machine for the writer, and ask for it: `prepare(api, hv_a, hv_b, name)`
    returns the machine's UUID; `ask(api, uuid, hv_b, name)` sends the request."""
    blocks: str  # the driver function it waits in
    prepare: Callable
    ask: Callable
    gone_after: bool = False  # the machine's record is gone once the work is done


def _define_prepare(api, hv_a, hv_b, name):  # noqa: ANN001, ANN202
    return str(uuidlib.uuid4())


def _define_ask(api, uuid, hv_a, hv_b, name):  # noqa: ANN001, ANN202
    return api.put("/rest/machines/", data={"xmldesc": domain_xml(name, uuid=uuid),
                                            "hvmuuid": hv_a})


def _vm(api, hv_a, hv_b, name):  # noqa: ANN001, ANN202
    return new_vm(api, name, hv_uuid=hv_a)


def _action(action: str, **variables: Callable) -> Callable:
    def ask(api, uuid, hv_a, hv_b, name):  # noqa: ANN001, ANN202
        given = {k: f(uuid=uuid, hv_b=hv_b, name=name) for k, f in variables.items()}
        return api.post(f"/rest/machine/{uuid}/actions/{action}/", data=given)
    return ask


def _with_new_xml(api, hv_a, hv_b, name):  # noqa: ANN001, ANN202
    uuid = new_vm(api, name, hv_uuid=hv_a)
    api.ok("POST", f"/rest/machine/{uuid}/actions/xmldesc/",
           data={"xmldesc": domain_xml(name, uuid=uuid, memory_kib=131072)})
    return uuid


WRITERS = {
    "define": Writer("define", _define_prepare, _define_ask),
    "store_xml": Writer("define", _with_new_xml, _action("store_xml")),
    "rename": Writer("rename", _vm, _action("rename", name=lambda name, **_: f"{name}-new")),
    "set_parent": Writer("define", _vm, _action("set_parent", puuid=lambda hv_b, **_: hv_b)),
    "totaldelete": Writer("undefine", _vm, _action("totaldelete"), gone_after=True),
}


def lock_of(api, uuid: str) -> str | None:  # noqa: ANN001
    with api.app.state.db.session(write=False) as s:
        return s.scalar(select(Machine.lock_txid).where(Machine.uuid == uuid))


def transaction(api, txid: str) -> Transaction | None:  # noqa: ANN001
    with api.app.state.db.session(write=False) as s:
        return s.get(Transaction, txid)


def transactions_of(api, uuid: str) -> list[Transaction]:  # noqa: ANN001
    with api.app.state.db.session(write=False) as s:
        return list(s.scalars(select(Transaction).where(Transaction.target_uuid == uuid)))


def assert_no_database_lock(api, uuid: str) -> None:  # noqa: ANN001
    """Another writer gets through at once: a user is created through the API (SQLite's one
    write lock), and the machine's own row can be locked without waiting (PostgreSQL)."""
    new_user(api)
    with api.app.state.db.session() as s:
        rows = s.execute(select(Machine.uuid).where(Machine.uuid == uuid)
                         .with_for_update(nowait=True)).all()  # SQLite: a BEGIN IMMEDIATE
    assert rows == [(uuid,)]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_no_database_lock_while_libvirt_works(two, own, monkeypatch, writer):
    """While libvirt works, other writes go through and the machine answers 423 (with the
    holder, a running transaction of the action's kind) to any other changing action; after,
    the work is recorded, the machine free again and the transaction gone."""
    api, hv_a, hv_b = two
    w = WRITERS[writer]
    uuid = w.prepare(api, hv_a, hv_b, own)
    answer = {}
    with held(monkeypatch, w.blocks) as (entered, go):
        t = threading.Thread(target=lambda: answer.setdefault(
            "r", w.ask(api, uuid, hv_a, hv_b, own)))
        t.start()
        assert entered.wait(30), "libvirt was never asked"
        assert_no_database_lock(api, uuid)
        txid = lock_of(api, uuid)
        assert txid is not None
        body = expect_error(api.post(f"/rest/machine/{uuid}/actions/create/"), 423, 1400)
        assert body["txid"] == txid
        expect_error(api.post(f"/rest/machine/{uuid}/actions/rename/", data={"name": "x"}),
                     423, 1400)
        tx = api.ok("GET", f"/rest/transaction/{txid}/")["data"]
        assert (tx["kind"], tx["state"], tx["target"]) == (writer, "running", uuid)
        assert t.is_alive(), "the other requests waited for libvirt"
        go.set()
        t.join(60)
    assert not t.is_alive()
    r = answer["r"]
    assert r.status_code == 200 and r.json()["errno"] == 0, r.text
    assert transaction(api, txid) is None
    if w.gone_after:
        assert uuid not in libvirt_domains(api, hv_a)
        expect_error(api.get(f"/rest/machine/{uuid}/"), 404, 1200)
        return
    assert lock_of(api, uuid) is None
    obj = api.machine(uuid)["machine_obj"]
    assert obj["locked_by"] is None
    if writer == "rename":
        assert obj["name"] == f"{own}-new"
        assert libvirt_domains(api, hv_a)[uuid][0] == f"{own}-new"
    elif writer == "set_parent":
        assert obj["parent"] == hv_b and uuid in libvirt_domains(api, hv_b)
        assert uuid not in libvirt_domains(api, hv_a)
    else:
        assert uuid in libvirt_domains(api, hv_a)
        assert obj["managed"] is True


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_libvirt_failure_leaves_the_machine_unlocked_and_unchanged(two, own, monkeypatch,
                                                                     writer):
    api, hv_a, hv_b = two
    w = WRITERS[writer]
    uuid = w.prepare(api, hv_a, hv_b, own)

    def refuse(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise HypervisorError("the test's hypervisor refuses")

    with unchanged(api):
        monkeypatch.setattr(driver, w.blocks, refuse)
        r = w.ask(api, uuid, hv_a, hv_b, own)
        monkeypatch.undo()
        body = expect_error(r, 502, 1500)
        assert "the test's hypervisor refuses" in body["message"]
    assert lock_of(api, uuid) is None
    assert transactions_of(api, uuid) == []
    if writer == "define":
        assert uuid not in libvirt_domains(api, hv_a)
    else:
        api.ok("POST", f"/rest/machine/{uuid}/actions/create/")  # free for the next action


def test_a_define_whose_record_cannot_be_written_is_undefined_again(two, own, monkeypatch):
    """libvirt defined the domain, writing the machine's record failed: nothing is left."""
    from enomalism.runtime import sync

    api, hv_a, _ = two
    uuid = str(uuidlib.uuid4())

    def fail(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise HypervisorError("the record could not be written")

    with unchanged(api):
        monkeypatch.setattr(sync, "store", fail)
        r = api.put("/rest/machines/", data={"xmldesc": domain_xml(own, uuid=uuid),
                                             "hvmuuid": hv_a})
        monkeypatch.undo()
        expect_error(r, 502, 1500)
    assert uuid not in libvirt_domains(api, hv_a)


def test_a_server_that_stopped_mid_work_leaves_no_lock(two, own, monkeypatch):
    """The action's transaction runs under this node's heartbeat: recovery at the next start
    (as for a job) fails it and frees the machine. It cannot be retried: it ran in its
    request."""
    api, hv_a, _ = two
    uuid = new_vm(api, own, hv_uuid=hv_a)
    with held(monkeypatch, "rename") as (entered, go):
        t = threading.Thread(target=lambda: api.post(
            f"/rest/machine/{uuid}/actions/rename/", data={"name": f"{own}-new"}))
        t.start()
        assert entered.wait(30)
        txid = lock_of(api, uuid)
        assert txid is not None
        # what the node does as it starts again after a crash (jobs/runner.py)
        assert txid in api.app.state.runner.recover()
        assert lock_of(api, uuid) is None
        tx = transaction(api, txid)
        assert tx.state == "failed" and tx.error.startswith("interrupted")
        go.set()
        t.join(60)
    assert transaction(api, txid).state == "failed"  # not removed by the late end
    assert lock_of(api, uuid) is None
    expect_error(api.post(f"/rest/transaction/{txid}/", data={"action": "retry"}), 409, 1301)
    assert transaction(api, txid).state == "failed"


@pytest.mark.parametrize("path", ["quick", "full"])
def test_a_lifecycle_action_holds_no_lock_through_the_call(two, own, monkeypatch, path):
    """The machine's row is not locked while libvirt starts it, on PostgreSQL too (the quick
    path for its owner, the full one for a user with a grant): other writers of that row
    and of the database go on."""
    from enomalism.services import actions

    api, hv_a, _ = two
    uuid = new_vm(api, own, hv_uuid=hv_a)
    auth = "admin"
    if path == "full":
        bob = new_user(api)
        grant(api, uuid, "control", user=bob.uuid)
        auth = (bob.name, bob.password)
    call, message = actions._LIFECYCLE["create"]
    entered, go = threading.Event(), threading.Event()

    def held_start(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        entered.set()
        assert go.wait(60)
        return call(*args, **kwargs)

    monkeypatch.setitem(actions._LIFECYCLE, "create", (held_start, message))
    monkeypatch.setitem(actions._HANDLERS, "create", actions._lifecycle("create"))
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("r", api.post(
        f"/rest/machine/{uuid}/actions/create/", auth=auth)))
    t.start()
    try:
        assert entered.wait(30)
        assert_no_database_lock(api, uuid)
        assert t.is_alive()
    finally:
        go.set()
        t.join(60)
    assert answer["r"].status_code == 200, answer["r"].text
    assert api.machine(uuid)["machine_obj"]["state"] == "running"


def test_manage_asks_libvirt_for_its_volumes_with_no_database_lock(two, own, monkeypatch):
    """An administrator's `manage` looks the disks' volumes up with no transaction open, then
    adopts them."""
    from enomalism.store.models import Volume

    api, hv_a, _ = two
    uuid = new_vm(api, own, managed=False, disks=[f"{own}.img"], hv_uuid=hv_a)
    answer = {}
    with held(monkeypatch, "volume_path") as (entered, go):
        t = threading.Thread(target=lambda: answer.setdefault(
            "r", api.post(f"/rest/machine/{uuid}/actions/manage/")))
        t.start()
        assert entered.wait(30), "libvirt was never asked"
        assert_no_database_lock(api, uuid)
        assert t.is_alive()
        go.set()
        t.join(60)
    assert answer["r"].status_code == 200, answer["r"].text
    assert api.machine(uuid)["machine_obj"]["managed"] is True
    with api.app.state.db.session(write=False) as s:
        owned = list(s.scalars(select(Volume.path).where(Volume.machine_uuid == uuid)))
    assert [p.rsplit("/", 1)[-1] for p in owned] == [f"{own}.img"]


def test_a_package_request_asks_libvirt_with_no_database_lock(two, own, monkeypatch):
    """The check that every disk is one of the machine's own volumes asks libvirt with no
    transaction open; the machine is then checked again and the job queued."""
    from tests.api.test_access_isolation import wait_done

    api, hv_a, _ = two
    uuid = new_vm(api, own, disks=[f"{own}.img"], hv_uuid=hv_a)
    answer = {}
    with held(monkeypatch, "volume_path") as (entered, go):
        t = threading.Thread(target=lambda: answer.setdefault("r", api.post(
            f"/rest/machine/{uuid}/actions/package/", data={"name": f"{own}-copy"})))
        t.start()
        assert entered.wait(30), "libvirt was never asked"
        assert_no_database_lock(api, uuid)
        assert t.is_alive()
        go.set()
        t.join(60)
    assert answer["r"].status_code == 200, answer["r"].text
    done = wait_done(api, answer["r"].json()["txid"])  # (the test driver cannot export it)
    assert (done["data"]["kind"], done["data"]["target"]) == ("package", uuid)


def test_a_resync_that_keeps_racing_is_queued_not_read_under_the_lock(two, own, monkeypatch):
    """A per-machine resync whose row changes while libvirt is read, three times over, gives
    up and queues the resync for the event worker, which writes it later; libvirt is never
    read with the row locked."""
    from datetime import timedelta

    from sqlalchemy import update

    from enomalism.store.models import utcnow

    api, hv_a, _ = two
    uuid = new_vm(api, own, hv_uuid=hv_a)
    real, me, reads = driver.snapshot, threading.current_thread(), []

    def racing(conn, u, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if threading.current_thread() is me:
            reads.append(u)
            with api.app.state.db.session() as s:  # another writer, meanwhile (no wait)
                s.execute(update(Machine).where(Machine.uuid == u).values(
                    updated_at=utcnow() + timedelta(seconds=len(reads))))
        return real(conn, u, **kwargs)

    monkeypatch.setattr(driver, "snapshot", racing)
    with api.app.state.db.session() as s:
        s.execute(update(Machine).where(Machine.uuid == uuid).values(state="crashed"))
    api.registry.resync_machine(hv_a, uuid)
    assert reads == [uuid] * 3
    api.settle()  # the event worker's resync
    assert api.machine(uuid)["machine_obj"]["state"] == "shutoff"
