"""The quick path of a lifecycle action (`actions.perform_quick`, on the DBAPI connection) and
its hand-over to `actions.perform`: the common case is answered quickly with the same answer
and the same stored state; every other case (each error, other users' permissions) is left to
`perform` untouched, on SQLite and on PostgreSQL alike."""

import re
import uuid as uuidlib

import pytest

from enomalism.services import actions
from enomalism.store.models import Machine
from tests.api.accounts import grant, new_user, set_owner
from tests.conftest import expect_error, new_vm

NO_SUCH = "6f1b2c3d-0000-4000-8000-000000000000"


class Paths:
    """Which path answered each action request: what perform_quick returned, and how often
    perform ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.quick: list[dict | None] = []
        self.full = 0
        quick, full = actions.perform_quick, actions.perform

        def spy_quick(*args, **kw):
            answer = quick(*args, **kw)
            self.quick.append(answer)
            return answer

        def spy_full(*args, **kw):
            self.full += 1
            return full(*args, **kw)

        monkeypatch.setattr(actions, "perform_quick", spy_quick)
        monkeypatch.setattr(actions, "perform", spy_full)

    def reset(self) -> None:
        self.quick, self.full = [], 0


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


def stored(api, uuid: str) -> Machine:  # noqa: ANN001
    with api.app.state.db.session(write=False) as s:
        return s.get(Machine, uuid)


def libvirt_state(api, uuid: str) -> int:  # noqa: ANN001
    hv = api.hypervisors()[0]["uuid"]
    return api.registry.connection(hv).virconnect.lookupByUUIDString(uuid).state()[0]


def test_the_common_case_is_answered_without_perform(sandbox, own, paths):
    api = sandbox
    uuid = new_vm(api, own, "running")
    before = stored(api, uuid)
    paths.reset()
    for action, state in [("suspend", "paused"), ("resume", "running"), ("reboot", "running"),
                          ("poweroff", "shutoff"), ("create", "running")]:
        body = api.ok("POST", f"/rest/machine/{uuid}/actions/{action}/")
        assert body == {"errno": 0, "message": body["message"]} and own in body["message"]
        m = stored(api, uuid)
        assert m.state == state and m.synced_at > before.synced_at
        assert (m.vcpus, m.memory_kib) == (before.vcpus, before.memory_kib)
        assert m.updated_at >= m.synced_at
    assert paths.full == 0 and len(paths.quick) == 5 and None not in paths.quick


def test_the_answer_is_the_one_perform_gives(sandbox, own, paths):
    """The same action through the `action=` form (FastAPI's route, always `perform`)."""
    api = sandbox
    a, b = new_vm(api, f"{own}-a", "running"), new_vm(api, f"{own}-b", "running")
    paths.reset()
    quick = api.ok("POST", f"/rest/machine/{a}/actions/suspend/")
    full = api.ok("POST", f"/rest/machine/{b}/", data={"action": "suspend"})
    assert paths.full == 1 and paths.quick == [quick]
    assert quick["message"].replace(f"{own}-a", "X") == full["message"].replace(f"{own}-b", "X")
    assert stored(api, a).state == stored(api, b).state == "paused"


def test_the_owner_takes_the_quick_path(sandbox, own, paths):
    api = sandbox
    owner = new_user(api)
    uuid = new_vm(api, own, "running")
    set_owner(api, Machine, uuid, owner.uuid)
    api.ok("GET", f"/rest/machine/{uuid}/", auth=owner.auth)  # the credentials now cached
    paths.reset()
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/", auth=owner.auth)
    assert paths.full == 0 and paths.quick[0] is not None
    assert stored(api, uuid).state == "paused"


@pytest.mark.parametrize("case, action, status, errno", [
    ("granted", "suspend", 200, 0),       # another user's grant: decided by perform only
    ("no-grant", "suspend", 404, 1200),   # may not even read it
    ("read-only", "suspend", 403, 1101),  # may read, not control
    ("locked", "suspend", 423, 1400),
    ("unmanaged", "suspend", 409, 1301),
    ("wrong-state", "resume", 409, 1301),
    ("host", "suspend", 409, 1301),
    ("unknown", "suspend", 404, 1200),
])
def test_everything_else_is_left_to_perform(sandbox, own, paths, case, action, status, errno):
    api = sandbox
    uuid = new_vm(api, own, "running", managed=case != "unmanaged")
    auth = "admin"
    if case in ("granted", "no-grant", "read-only"):
        user = new_user(api)
        if case != "no-grant":
            grant(api, uuid, "control" if case == "granted" else "read", user=user.uuid)
        auth = user.auth
        api.get(f"/rest/machine/{uuid}/", auth=auth)  # the credentials now cached
    if case == "locked":
        with api.app.state.db.session() as s:
            s.get(Machine, uuid).lock_txid = str(uuidlib.uuid4())
    target = {"host": api.local_host(), "unknown": NO_SUCH}.get(case, uuid)
    before = stored(api, uuid)
    paths.reset()
    r = api.post(f"/rest/machine/{target}/actions/{action}/", auth=auth)
    assert paths.quick == [None] and paths.full == 1
    if status == 200:
        assert r.status_code == 200, r.text
        assert stored(api, uuid).state == "paused" and libvirt_state(api, uuid) == 3
        return
    body = expect_error(r, status, errno)
    if case == "locked":
        assert body["txid"] == before.lock_txid
    after = stored(api, uuid)
    assert (after.state, after.updated_at) == (before.state, before.updated_at)
    assert libvirt_state(api, uuid) == 1  # still running


def test_a_domain_gone_behind_the_inventorys_back(sandbox, own, paths):
    """libvirt no longer has the domain the inventory still shows running: the same error as
    perform's, and the inventory learns the truth."""
    api = sandbox
    uuid = new_vm(api, own, "running")
    hv = api.hypervisors()[0]["uuid"]
    dom = api.registry.connection(hv).virconnect.lookupByUUIDString(uuid)
    dom.destroy()
    dom.undefine()
    api.settle()
    with api.app.state.db.session() as s:  # as if the events had not arrived yet
        s.get(Machine, uuid).state = "running"
    paths.reset()
    r = api.post(f"/rest/machine/{uuid}/actions/suspend/")
    assert paths.quick == [] and paths.full == 0  # the quick path raised the error itself
    expect_error(r, 404, 1200)
    assert stored(api, uuid).state == "missing"
    paths.reset()
    with api.app.state.db.session() as s:  # the same again, through perform
        s.get(Machine, uuid).state = "running"
    expect_error(api.post(f"/rest/machine/{uuid}/", data={"action": "suspend"}), 404, 1200)
    assert paths.full == 1 and stored(api, uuid).state == "missing"


# -- the action's own lifecycle event ----------------------------------------------------------

class Resyncs:
    """The machines the event worker resynced one by one."""

    def __init__(self, api, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
        self.uuids: list[str] = []
        registry = api.registry
        real = registry.resync_machine

        def spy(hv_uuid: str, uuid: str, db=None) -> None:  # noqa: ANN001
            self.uuids.append(uuid)
            return real(hv_uuid, uuid, db=db)

        monkeypatch.setattr(registry, "resync_machine", spy)


@pytest.mark.parametrize("route", ["path", "action-variable"])
def test_a_suspend_or_resume_is_not_resynced_again_for_its_own_event(sandbox, own, route,
                                                                     monkeypatch):
    api = sandbox
    uuid = new_vm(api, own, "running")
    resyncs = Resyncs(api, monkeypatch)
    for action, state in [("suspend", "paused"), ("resume", "running")]:
        if route == "path":
            api.ok("POST", f"/rest/machine/{uuid}/actions/{action}/")
        else:
            api.ok("POST", f"/rest/machine/{uuid}/", data={"action": action})
        api.settle()
        assert stored(api, uuid).state == state
    assert resyncs.uuids == []
    hv = api.hypervisors()[0]["uuid"]
    assert (hv, uuid) not in api.registry._expected  # each mark taken by its event
    # the same change made behind the API's back is an event like any other
    api.registry.connection(hv).virconnect.lookupByUUIDString(uuid).suspend()
    api.settle()
    assert resyncs.uuids == [uuid] and stored(api, uuid).state == "paused"


def test_an_event_that_says_something_else_is_resynced(sandbox, own, monkeypatch):
    """A suspend's mark does not swallow a resume event (someone resumed the machine at once)
    nor an event of another machine."""
    from libvirt import (
        VIR_DOMAIN_EVENT_RESUMED,
        VIR_DOMAIN_EVENT_RESUMED_UNPAUSED,
        VIR_DOMAIN_EVENT_SUSPENDED,
        VIR_DOMAIN_EVENT_SUSPENDED_IOERROR,
        VIR_DOMAIN_EVENT_SUSPENDED_PAUSED,
    )

    api = sandbox
    uuid, other = new_vm(api, own, "running"), new_vm(api, f"{own}-o", "running")
    hv = api.hypervisors()[0]["uuid"]
    link = type("Link", (), {"uuid": hv})()
    registry = api.registry
    resyncs = Resyncs(api, monkeypatch)
    with registry.expecting(hv, uuid, "paused"):
        registry.domain_event(link, uuid, VIR_DOMAIN_EVENT_RESUMED,
                              VIR_DOMAIN_EVENT_RESUMED_UNPAUSED)
        registry.domain_event(link, other, VIR_DOMAIN_EVENT_SUSPENDED,
                              VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)
        api.settle()
        assert sorted(resyncs.uuids) == sorted([uuid, other])
        # paused, but by an I/O error: not what the action did
        registry.domain_event(link, uuid, VIR_DOMAIN_EVENT_SUSPENDED,
                              VIR_DOMAIN_EVENT_SUSPENDED_IOERROR)
        api.settle()
        assert sorted(resyncs.uuids) == sorted([uuid, other, uuid])
    registry.domain_event(link, uuid, VIR_DOMAIN_EVENT_SUSPENDED,
                          VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)  # the one it waited for
    api.settle()
    assert sorted(resyncs.uuids) == sorted([uuid, other, uuid])


def test_an_action_that_fails_after_its_event_was_skipped_resyncs(sandbox, own, monkeypatch):
    from libvirt import VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED

    api = sandbox
    uuid = new_vm(api, own, "running")
    hv = api.hypervisors()[0]["uuid"]
    link = type("Link", (), {"uuid": hv})()
    resyncs = Resyncs(api, monkeypatch)
    with pytest.raises(RuntimeError), api.registry.expecting(hv, uuid, "paused"):
        api.registry.domain_event(link, uuid, VIR_DOMAIN_EVENT_SUSPENDED,
                                  VIR_DOMAIN_EVENT_SUSPENDED_PAUSED)  # skipped
        raise RuntimeError("the call failed after all")
    api.settle()
    assert resyncs.uuids == [uuid]
    with pytest.raises(RuntimeError), api.registry.expecting(hv, uuid, "paused"):
        raise RuntimeError("failed before any event")
    api.settle()
    assert resyncs.uuids == [uuid] and (hv, uuid) not in api.registry._expected


def test_timestamps_are_stored_as_the_orm_stores_them(sandbox, own):
    """The quick path's bind values go through the dialect's own types: on SQLite the text
    SQLAlchemy writes, on PostgreSQL a timestamp with time zone."""
    from sqlalchemy import text

    api = sandbox
    uuid = new_vm(api, own, "running")
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")
    with api.app.state.db.session(write=False) as s:
        if s.get_bind().dialect.name == "sqlite":
            updated, created = s.execute(text(
                "SELECT updated_at, created_at FROM machines WHERE uuid = :u"), {"u": uuid}).one()
            stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$"
            assert re.match(stamp, created) and re.match(stamp, updated), (created, updated)
    m = stored(api, uuid)
    assert m.updated_at.tzinfo is not None and m.updated_at >= m.created_at


@pytest.mark.parametrize("route", ["path", "action-variable"])
def test_a_state_write_that_fails_after_the_event_was_skipped_resyncs(sandbox, own, route,
                                                                      monkeypatch):
    """The action happened in libvirt but its state could not be written: its own event,
    skipped, must not leave the inventory behind."""
    api = sandbox
    uuid = new_vm(api, own, "running")
    resyncs = Resyncs(api, monkeypatch)

    def broken(_after):  # noqa: ANN001, ANN202
        raise RuntimeError("the database went away")

    monkeypatch.setattr(actions, "_state_values", broken)
    if route == "path":  # the shortcut answers it as the routes do: errno 1, 500
        r = api.post(f"/rest/machine/{uuid}/actions/suspend/")
        assert r.status_code == 500 and r.json()["errno"] == 1
    else:  # FastAPI's route: the test client hands the server's exception over
        with pytest.raises(RuntimeError, match="went away"):
            api.post(f"/rest/machine/{uuid}/", data={"action": "suspend"})
    assert libvirt_state(api, uuid) == 3  # paused in libvirt
    monkeypatch.undo()
    api.settle()
    assert uuid in resyncs.uuids and stored(api, uuid).state == "paused"


def test_the_audit_entry_and_events_are_the_ones_perform_writes(sandbox, own, paths):
    """The quick path writes its audit entry, the state's event and the entry's event in the
    transaction of the state (store/unit.py `together`): the same rows `perform` and the
    request's audit make."""
    from sqlalchemy import select

    from enomalism.store.models import AuditEntry, Event

    api = sandbox
    a, b = new_vm(api, f"{own}-a", "running"), new_vm(api, f"{own}-b", "running")
    paths.reset()
    api.ok("POST", f"/rest/machine/{a}/actions/suspend/")
    api.ok("POST", f"/rest/machine/{b}/", data={"action": "suspend"})
    assert paths.full == 1 and paths.quick[0] is not None

    def written(uuid: str, name: str) -> tuple[list, list]:
        with api.app.state.db.session(write=False) as s:
            entries = [(e.actor_uuid, e.actor_name, e.source, e.action, e.object_type,
                        e.object_name.replace(name, "X"), e.errno,
                        e.message.replace(name, "X"), e.detail)
                       for e in s.scalars(select(AuditEntry).where(
                           AuditEntry.object_uuid == uuid, AuditEntry.action == "machine.suspend"))]
            told = [(e.type, e.owner_uuid, {k: (v.replace(name, "X").replace(uuid, "U")
                                                if isinstance(v, str) else v)
                                            for k, v in e.data.items()})
                    for e in s.scalars(select(Event).order_by(Event.id))
                    if e.object_uuid == uuid and e.type == "machine.state"
                    and e.data.get("state") == "paused"
                    or e.type == "audit" and e.data.get("object_uuid") == uuid
                    and e.data.get("action") == "machine.suspend"]
        return entries, told

    quick, full = written(a, f"{own}-a"), written(b, f"{own}-b")
    assert len(quick[0]) == 1 and quick[0] == full[0]
    assert [t for t, _, _ in quick[1]].count("machine.state") == 1
    assert sorted(map(repr, quick[1])) == sorted(map(repr, full[1]))
