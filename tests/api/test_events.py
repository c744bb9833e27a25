"""The inventory follows libvirt: changes made behind the API's back arrive through domain
lifecycle events (no polling, no trigger_status_updates); trigger_status_updates (2.1) forces a
resync of one VM or of a whole host.

Every test works on domains of its own in one server per module (`sandbox`)."""

import libvirt
import pytest

from tests.conftest import expect_error, new_vm
from tests.fakehost import FakeDomain, domain_xml


def conn(api, hv_uuid: str | None = None) -> libvirt.virConnect:  # noqa: ANN001
    """The server's own libvirt connection: what it does there, libvirt reports as events."""
    return api.registry.connection(hv_uuid or api.hypervisors()[0]["uuid"]).virconnect


def dom(api, uuid: str) -> libvirt.virDomain:  # noqa: ANN001
    return conn(api).lookupByUUIDString(uuid)


def obj(api, uuid: str) -> dict:  # noqa: ANN001
    return api.machine(uuid)["machine_obj"]


def tamper(api, uuid: str, **columns) -> None:  # noqa: ANN001
    """Write into the inventory directly, as if events had been missed."""
    from enomalism.store.models import Machine

    with api.app.state.db.session() as s:
        m = s.get(Machine, uuid)
        for k, v in columns.items():
            setattr(m, k, v)


# -- changes outside the API arrive as events -------------------------------------------------

@pytest.mark.parametrize("managed", [True, False], ids=["managed", "unmanaged"])
@pytest.mark.parametrize("before, change, after", [
    ("running", lambda d: d.destroy(), "shutoff"),
    ("running", lambda d: d.suspend(), "paused"),
    ("paused", lambda d: d.resume(), "running"),
    ("shutoff", lambda d: d.create(), "running"),
    ("running", lambda d: d.shutdown(), "shutoff"),
], ids=["destroy", "suspend", "resume", "create", "shutdown"])
def test_out_of_band_change_shows_up(sandbox, own, before, change, after, managed):
    api = sandbox
    uuid = new_vm(api, own, before, managed=managed)
    change(dom(api, uuid))
    api.settle()
    o = obj(api, uuid)
    assert (o["state"], o["managed"]) == (after, managed)
    listed = api.ok("GET", "/rest/machines/", params={"state": after, "kind": "vm"})
    assert uuid in listed["machines"]
    actions = api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"]
    assert ("create" in actions) == (managed and after == "shutoff")


def test_a_domain_defined_outside_appears_unmanaged(sandbox):
    api = sandbox
    uuid = conn(api).defineXML(domain_xml("newcomer", memory_kib=262144)).UUIDString()
    api.settle()
    o = obj(api, uuid)
    assert (o["name"], o["state"], o["managed"], o["persistent"]) == \
        ("newcomer", "shutoff", False, True)
    assert o["parent"] == api.hypervisors()[0]["uuid"]
    assert api.machine(uuid)["info"]["memory_kib"] == 262144
    assert "<name>newcomer</name>" in o["xmldesc"]


def test_a_transient_domain_appears_not_persistent(sandbox):
    api = sandbox
    uuid = conn(api).createXML(domain_xml("fleeting"), 0).UUIDString()
    api.settle()
    o = obj(api, uuid)
    assert (o["state"], o["persistent"]) == ("running", False)


@pytest.mark.parametrize("managed", [True, False], ids=["managed", "unmanaged"])
def test_an_undefined_domain_is_marked_missing_not_deleted(sandbox, own, managed):
    api = sandbox
    uuid = new_vm(api, own, managed=managed)
    dom(api, uuid).undefine()
    api.settle()
    assert obj(api, uuid)["state"] == "missing"
    assert uuid in api.ok("GET", "/rest/machines/")["machines"]
    assert uuid in api.ok("GET", "/rest/machines/", params={"state": "missing"})["machines"]


def test_a_missing_domain_defined_again_comes_back(sandbox):
    api = sandbox
    uuid = new_vm(api, "comeback")
    xml = dom(api, uuid).XMLDesc(0)
    dom(api, uuid).undefine()
    api.settle()
    assert obj(api, uuid)["state"] == "missing"
    conn(api).defineXML(xml)
    api.settle()
    o = obj(api, uuid)
    assert (o["state"], o["managed"]) == ("shutoff", True)


def test_a_rename_outside_shows_up(sandbox):
    api = sandbox
    uuid = new_vm(api, "before-rename")
    dom(api, uuid).rename("after-rename", 0)
    api.settle()
    assert obj(api, uuid)["name"] == "after-rename"


def test_events_of_each_fake_host_reach_its_own_machines(make_api, make_host):
    a = FakeDomain("same-name", state="running")
    b = FakeDomain("same-name", state="running")
    uri_a, uri_b = make_host("a", [a]), make_host("b", [b])
    with make_api(uri_a, uri_b) as api:
        hv_b = next(h["uuid"] for h in api.hypervisors() if h["virt_url"] == uri_b)
        conn(api, hv_b).lookupByUUIDString(b.uuid).suspend()
        api.settle()
        assert obj(api, b.uuid)["state"] == "paused"
        assert obj(api, a.uuid)["state"] == "running"


# -- 2.1 trigger_status_updates ---------------------------------------------------------------

@pytest.mark.parametrize("slash", ["/", ""])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_trigger_status_updates_on_a_vm(sandbox, own, method, slash):
    api = sandbox
    uuid = new_vm(api, own, "running")
    tamper(api, uuid, state="crashed", name="stale", vcpus=64)
    assert obj(api, uuid)["state"] == "crashed"  # lists and reads come from the inventory
    body = api.ok(method, f"/rest/machine/{uuid}/trigger_status_updates{slash}")
    assert body["errno"] == 0 and body["machine"] == uuid and "running" in body["message"]
    o = obj(api, uuid)
    assert (o["state"], o["name"]) == ("running", own)
    assert api.machine(uuid)["info"]["vcpus"] == 1


def test_trigger_status_updates_marks_a_vanished_domain_missing(sandbox):
    api = sandbox
    uuid = new_vm(api, "vanished", managed=False)
    dom(api, uuid).undefine()
    api.settle()
    tamper(api, uuid, state="shutoff")  # as if the event had been lost
    api.ok("POST", f"/rest/machine/{uuid}/trigger_status_updates/")
    assert obj(api, uuid)["state"] == "missing"


def test_trigger_status_updates_on_a_host(sandbox):
    from enomalism.store.models import Machine

    api = sandbox
    running, paused = new_vm(api, "t-running", "running"), new_vm(api, "t-paused", "paused")
    unseen, vanished = new_vm(api, "t-unseen", managed=False), new_vm(api, "t-vanished")
    dom(api, vanished).undefine()
    api.settle()
    tamper(api, vanished, state="shutoff")  # as if the event had been lost
    tamper(api, running, state="shutoff")
    tamper(api, paused, state="running")
    with api.app.state.db.session() as s:  # as if it had never been seen
        s.delete(s.get(Machine, unseen))
    body = api.ok("POST", f"/rest/machine/{api.local_host()}/trigger_status_updates/")
    assert "1 hypervisor" in body["message"]
    assert obj(api, running)["state"] == "running"
    assert obj(api, paused)["state"] == "paused"
    assert obj(api, vanished)["state"] == "missing"
    found = obj(api, unseen)
    assert (found["state"], found["managed"], found["name"]) == ("shutoff", False, "t-unseen")
    assert "<name>t-unseen</name>" in found["xmldesc"]


def test_trigger_status_updates_on_an_unknown_machine(sandbox):
    before = sandbox.ok("GET", "/rest/machines/")
    expect_error(sandbox.post("/rest/machine/00000000-0000-0000-0000-000000000000/"
                              "trigger_status_updates/"), 404, 1200)
    assert sandbox.ok("GET", "/rest/machines/") == before


def test_a_full_resync_leaves_a_machine_being_provisioned_alone(sandbox):
    """A provision records its machine before the domain exists: a full resync meanwhile (a
    reconnect, another node taking the hypervisor over) must not call it missing."""
    from enomalism.store.models import Machine

    hv = sandbox.hypervisors()[0]["uuid"]
    with sandbox.app.state.db.session() as s:
        m = Machine(kind="vm", name="being-made", parent_uuid=hv, state="provisioning",
                    managed=True)
        s.add(m)
        s.flush()
        uuid = m.uuid
    try:
        sandbox.registry.resync_hypervisor(hv)
        sandbox.registry.resync_machine(hv, uuid)
        assert sandbox.machine(uuid)["machine_obj"]["state"] == "provisioning"
    finally:
        with sandbox.app.state.db.session() as s:
            s.delete(s.get(Machine, uuid))
