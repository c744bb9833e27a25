"""The quick path of a lifecycle action (`actions.perform_quick`, on the DBAPI connection) and
its hand-over to `actions.perform`: the common case is answered quickly with the same answer
and the same stored state; every other case (each error, other users' permissions) is left to
`perform` untouched, on SQLite and on PostgreSQL alike."""

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
    return api.registry.connection(hv).lookupByUUIDString(uuid).state()[0]


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
    dom = api.registry.connection(hv).lookupByUUIDString(uuid)
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
