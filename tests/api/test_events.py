"""The inventory follows libvirt: changes made behind the API's back arrive through domain
lifecycle events (no polling, no trigger_status_updates); trigger_status_updates (2.1) forces a
resync of one VM or of a whole host."""

import libvirt
import pytest

from tests.conftest import expect_error, manage, vm_uuid
from tests.fakehost import FakeDomain, domain_xml


def conn(api, hv_uuid: str | None = None) -> libvirt.virConnect:  # noqa: ANN001
    """The server's own libvirt connection: what it does there, libvirt reports as events."""
    return api.registry.connection(hv_uuid or api.hypervisors()[0]["uuid"])


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

@pytest.mark.parametrize("managed", [True, False])
@pytest.mark.parametrize("name, change, state", [
    ("web", lambda d: d.destroy(), "shutoff"),
    ("web", lambda d: d.suspend(), "paused"),
    ("db", lambda d: d.resume(), "running"),
    ("idle", lambda d: d.create(), "running"),
    ("web", lambda d: d.shutdown(), "shutoff"),
])
def test_out_of_band_change_shows_up(api, name, change, state, managed):
    uuid = manage(api, name) if managed else vm_uuid(api, name)
    change(conn(api).lookupByUUIDString(uuid))
    api.settle()
    o = obj(api, uuid)
    assert o["state"] == state and o["managed"] is managed
    listed = api.ok("GET", "/rest/machines/", params={"state": state, "kind": "vm"})
    assert uuid in listed["machines"]
    if managed:
        actions = api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"]
        assert ("create" in actions) == (state == "shutoff")


def test_a_domain_defined_outside_appears_unmanaged(api):
    uuid = conn(api).defineXML(domain_xml("newcomer", memory_kib=262144)).UUIDString()
    api.settle()
    o = obj(api, uuid)
    assert (o["name"], o["state"], o["managed"], o["persistent"]) == \
        ("newcomer", "shutoff", False, True)
    assert o["parent"] == api.hypervisors()[0]["uuid"]
    assert api.machine(uuid)["info"]["memory_kib"] == 262144
    assert "<name>newcomer</name>" in o["xmldesc"]


def test_a_transient_domain_appears_not_persistent(api):
    uuid = conn(api).createXML(domain_xml("fleeting"), 0).UUIDString()
    api.settle()
    o = obj(api, uuid)
    assert (o["state"], o["persistent"]) == ("running", False)


@pytest.mark.parametrize("managed", [True, False])
def test_an_undefined_domain_is_marked_missing_not_deleted(api, managed):
    uuid = manage(api, "idle") if managed else vm_uuid(api, "idle")
    conn(api).lookupByUUIDString(uuid).undefine()
    api.settle()
    assert obj(api, uuid)["state"] == "missing"
    assert uuid in api.ok("GET", "/rest/machines/")["machines"]
    assert uuid in api.ok("GET", "/rest/machines/", params={"state": "missing"})["machines"]


def test_a_missing_domain_defined_again_comes_back(api):
    uuid = manage(api, "idle")
    xml = conn(api).lookupByUUIDString(uuid).XMLDesc(0)
    conn(api).lookupByUUIDString(uuid).undefine()
    api.settle()
    assert obj(api, uuid)["state"] == "missing"
    conn(api).defineXML(xml)
    api.settle()
    o = obj(api, uuid)
    assert (o["state"], o["managed"]) == ("shutoff", True)


def test_a_rename_outside_shows_up(api):
    uuid = manage(api, "idle")
    conn(api).lookupByUUIDString(uuid).rename("idle-renamed", 0)
    api.settle()
    assert obj(api, uuid)["name"] == "idle-renamed"


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
def test_trigger_status_updates_on_a_vm(api, method, slash):
    uuid = vm_uuid(api, "web")
    tamper(api, uuid, state="crashed", name="stale", vcpus=64)
    assert obj(api, uuid)["state"] == "crashed"  # lists and reads come from the inventory
    body = api.ok(method, f"/rest/machine/{uuid}/trigger_status_updates{slash}")
    assert body["errno"] == 0 and body["machine"] == uuid and "running" in body["message"]
    o = obj(api, uuid)
    assert (o["state"], o["name"]) == ("running", "web")
    assert api.machine(uuid)["info"]["vcpus"] == 1


def test_trigger_status_updates_marks_a_vanished_domain_missing(api):
    uuid = vm_uuid(api, "idle")
    conn(api).lookupByUUIDString(uuid).undefine()
    api.settle()
    tamper(api, uuid, state="shutoff")  # as if the event had been lost
    api.ok("POST", f"/rest/machine/{uuid}/trigger_status_updates/")
    assert obj(api, uuid)["state"] == "missing"


def test_trigger_status_updates_on_a_host(api):
    from enomalism.store.models import Machine

    web, db, idle = (vm_uuid(api, n) for n in ("web", "db", "idle"))
    tamper(api, web, state="shutoff")
    tamper(api, db, state="running")
    with api.app.state.db.session() as s:  # as if idle had never been seen
        s.delete(s.get(Machine, idle))
    body = api.ok("POST", f"/rest/machine/{api.local_host()}/trigger_status_updates/")
    assert "1 hypervisor" in body["message"]
    assert obj(api, web)["state"] == "running"
    assert obj(api, db)["state"] == "paused"
    found = obj(api, idle)
    assert (found["state"], found["managed"], found["name"]) == ("shutoff", False, "idle")
    assert "<name>idle</name>" in found["xmldesc"]


def test_trigger_status_updates_on_an_unknown_machine(api):
    before = api.ok("GET", "/rest/machines/")
    expect_error(api.post("/rest/machine/00000000-0000-0000-0000-000000000000/"
                          "trigger_status_updates/"), 404, 1200)
    assert api.ok("GET", "/rest/machines/") == before
