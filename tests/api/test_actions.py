"""Spec 2.8 to 2.18: the actions list and every machine action, checked through the API and
through libvirt itself; actions refused in the wrong state, on unmanaged or locked machines."""

import libvirt
import pytest

from tests.conftest import (
    expect_error,
    libvirt_domains,
    manage,
    new_vm,
    new_volume,
    pool_volumes,
    unchanged,
)
from tests.fakehost import FakeDomain, domain_xml

ALWAYS = ["xmldesc", "store_xml", "set_parent", "totaldelete"]
DEVICES = ["set", "attach_disk", "detach_disk", "grow_disk"]  # size and disks
ACTIONS_IN = {  # package (2.19) is a transaction of its own, tested with the transactions
    "running": ["suspend", "shutdown", "reboot", "poweroff", "package", *DEVICES, *ALWAYS],
    "paused": ["resume", "poweroff", "package", *DEVICES, *ALWAYS],
    "shutoff": ["create", "rename", "package", *DEVICES, *ALWAYS],
}
LIBVIRT_STATE = {"running": libvirt.VIR_DOMAIN_RUNNING, "paused": libvirt.VIR_DOMAIN_PAUSED,
                 "shutoff": libvirt.VIR_DOMAIN_SHUTOFF}
LIFECYCLE = ["suspend", "resume", "shutdown", "poweroff", "reboot", "create"]
CHANGING = [*LIFECYCLE, "store_xml", "manage", "totaldelete", "rename", "xmldesc", "set_parent"]
# What a changing action would need, so that only the machine's condition is wrong.
SOME_VARS = {"name": "renamed", "xmldesc": domain_xml("renamed"), "puuid": None}


def hv(api) -> str:  # noqa: ANN001
    [h] = api.hypervisors()
    return h["uuid"]


def run(api, uuid: str, action: str, route: str = "path", **variables):  # noqa: ANN001, ANN201
    """POST an action, by its own path (2.9-2.18), with or without the trailing slash, or as
    `action=` on the machine (2.4)."""
    if route.startswith("path"):
        slash = "" if route == "path-no-slash" else "/"
        return api.post(f"/rest/machine/{uuid}/actions/{action}{slash}", data=variables)
    return api.post(f"/rest/machine/{uuid}/", data={"action": action, **variables})


def api_state(api, uuid: str) -> str:  # noqa: ANN001
    return api.machine(uuid)["machine_obj"]["state"]


def libvirt_state(api, uuid: str) -> int:  # noqa: ANN001
    return api.registry.connection(hv(api)).virconnect.lookupByUUIDString(uuid).state()[0]


def actions_of(api, uuid: str) -> list[str]:  # noqa: ANN001
    return api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"]


def assert_state(api, uuid: str, state: str) -> None:  # noqa: ANN001
    assert api_state(api, uuid) == state
    assert libvirt_state(api, uuid) == LIBVIRT_STATE[state]
    assert actions_of(api, uuid) == ACTIONS_IN[state]


def set_lock(api, uuid: str, txid: str | None) -> None:  # noqa: ANN001
    from enomalism.store.models import Machine

    with api.app.state.db.session() as s:
        s.get(Machine, uuid).lock_txid = txid


# -- 2.8: the actions list ------------------------------------------------------------------

@pytest.fixture(scope="module")
def stage(shared_api):  # noqa: ANN001, ANN201
    """One server for the tests that change nothing: web (running), db (paused) and idle
    (shutoff) managed, stray (defined behind the API's back) unmanaged, held managed and
    locked by a transaction. Yields (api, {name: uuid})."""
    api = shared_api
    uuids = {name: manage(api, name) for name in ("web", "db", "idle")}
    conn = api.registry.connection(hv(api)).virconnect
    for name in ("stray", "held"):
        uuids[name] = conn.defineXML(domain_xml(name)).UUIDString()
    api.settle()
    api.ok("POST", f"/rest/machine/{uuids['held']}/actions/manage/")
    set_lock(api, uuids["held"], "tx-1234")
    uuids["host"] = api.local_host()
    return api, uuids


@pytest.mark.parametrize("slash", ["/", ""])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("name, expected", [
    ("web", ACTIONS_IN["running"]), ("db", ACTIONS_IN["paused"]), ("idle", ACTIONS_IN["shutoff"]),
    ("stray", ["manage"]), ("held", ["unlock"]), ("host", ["evacuate", "provision", "rename"]),
])
def test_actions_list(stage, name, expected, method, slash):
    api, uuids = stage
    body = api.ok(method, f"/rest/machine/{uuids[name]}/actions{slash}")
    assert set(body) >= {"result", "errno", "message"}
    assert body["result"] == expected
    assert api.machine(uuids[name])["machine_obj"]["actions"] == expected


# -- 2.10 to 2.15: lifecycle ------------------------------------------------------------------

@pytest.mark.parametrize("route", ["path", "path-no-slash", "action-variable"])
@pytest.mark.parametrize("before, action, after", [
    ("running", "suspend", "paused"),
    ("running", "shutdown", "shutoff"),   # the test driver's guests obey at once
    ("running", "reboot", "running"),
    ("running", "poweroff", "shutoff"),
    ("paused", "resume", "running"),
    ("paused", "poweroff", "shutoff"),
    ("shutoff", "create", "running"),
])
def test_lifecycle_action(sandbox, own, before, action, after, route):
    api = sandbox
    uuid = new_vm(api, own, before)
    assert_state(api, uuid, before)
    r = run(api, uuid, action, route)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errno"] == 0 and body["message"]
    if action in ("shutdown", "reboot"):
        # a request to the guest: the inventory follows the guest through its events (the
        # test driver's guests obey at once)
        api.settle()
    assert_state(api, uuid, after)
    api.settle()  # the events of the action change nothing more
    assert_state(api, uuid, after)


def test_a_whole_life(sandbox, own):
    """Define, start, suspend, resume, power off, start again, delete."""
    api = sandbox
    new_volume(api, f"{own}.img")
    uuid = api.ok("PUT", "/rest/machines/", data={
        "xmldesc": domain_xml(own, disks=[f"{own}.img"]), "hvmuuid": hv(api)})["machine"]
    assert_state(api, uuid, "shutoff")
    for action, after in [("create", "running"), ("suspend", "paused"), ("resume", "running"),
                          ("poweroff", "shutoff"), ("create", "running")]:
        assert run(api, uuid, action).json()["errno"] == 0
        assert_state(api, uuid, after)
    assert run(api, uuid, "totaldelete").json()["errno"] == 0
    assert uuid not in libvirt_domains(api, hv(api))
    assert f"{own}.img" not in pool_volumes(api, hv(api))
    expect_error(api.get(f"/rest/machine/{uuid}/"), 404, 1200)


@pytest.mark.parametrize("name, action", [
    ("idle", a) for a in ("suspend", "resume", "shutdown", "reboot", "poweroff")
] + [
    ("web", a) for a in ("resume", "create", "rename")
] + [
    ("db", a) for a in ("suspend", "create", "shutdown", "reboot", "rename")
] + [
    (n, "manage") for n in ("web", "db", "idle")
])
def test_action_invalid_in_the_current_state(stage, name, action):
    api, uuids = stage
    with unchanged(api):
        body = expect_error(run(api, uuids[name], action, **SOME_VARS), 409, 1301)
    assert action in body["message"]


@pytest.mark.parametrize("action", [a for a in CHANGING if a != "manage"])
def test_action_on_an_unmanaged_machine(stage, action):
    api, uuids = stage
    with unchanged(api):
        body = expect_error(run(api, uuids["stray"], action, **SOME_VARS), 409, 1301)
    assert "manage" in body["message"]


@pytest.mark.parametrize("action", ["suspend", "create", "manage", "xmldesc", "totaldelete"])
def test_host_machines_take_no_vm_actions(stage, action):
    api, uuids = stage
    with unchanged(api):
        expect_error(run(api, uuids["host"], action, **SOME_VARS), 409, 1301)


@pytest.mark.parametrize("action", ["bogus", "package ", "SUSPEND", ""])
def test_unknown_action(stage, action):
    api, uuids = stage
    with unchanged(api):  # an empty action too: never errno 0 for nothing done
        expect_error(run(api, uuids["web"], action, "action-variable"), 400, 1003)


def test_an_action_path_that_does_not_exist(stage):
    api, uuids = stage
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{uuids['web']}/actions/bogus/"), 404, 1200)


@pytest.mark.parametrize("action", LIFECYCLE + ["manage", "totaldelete", "store_xml", "unlock"])
def test_action_paths_take_only_post(stage, action):
    api, uuids = stage
    with unchanged(api):
        expect_error(api.get(f"/rest/machine/{uuids['web']}/actions/{action}/"), 405, 1005)


# -- 2.9: locks and unlock ------------------------------------------------------------------

@pytest.mark.parametrize("route", ["path", "action-variable"])
@pytest.mark.parametrize("action", CHANGING)
def test_a_locked_machine_refuses_every_change(stage, action, route):
    api, uuids = stage
    variables = {**SOME_VARS, "puuid": hv(api)}
    with unchanged(api):
        body = expect_error(run(api, uuids["held"], action, route, **variables), 423, 1400)
    assert body["txid"] == "tx-1234" and "tx-1234" in body["message"]


def test_a_locked_machine_says_who_holds_it(stage):
    api, uuids = stage
    assert api.machine(uuids["held"])["machine_obj"]["locked_by"] == "tx-1234"


def test_unlock_clears_the_lock(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own, "running")
    set_lock(api, uuid, "tx-stale")
    assert actions_of(api, uuid) == ["unlock"]
    body = api.ok("POST", f"/rest/machine/{uuid}/actions/unlock")
    assert "tx-stale" in body["message"]
    assert api.machine(uuid)["machine_obj"]["locked_by"] is None
    assert actions_of(api, uuid) == ACTIONS_IN["running"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")
    assert_state(api, uuid, "paused")


@pytest.mark.parametrize("name", ["web", "stray", "host"])
def test_unlock_of_an_unlocked_machine(stage, name):
    api, uuids = stage
    with unchanged(api):
        expect_error(run(api, uuids[name], "unlock"), 409, 1301)


# -- 2.16, 2.17: store_xml and manage ---------------------------------------------------------

def test_manage_adopts_a_domain(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own, managed=False)
    assert actions_of(api, uuid) == ["manage"]
    body = api.ok("POST", f"/rest/machine/{uuid}/actions/manage/")
    assert "managed" in body["message"]
    o = api.machine(uuid)["machine_obj"]
    assert o["managed"] is True and o["owner"] is not None
    assert o["actions"] == ACTIONS_IN["shutoff"]
    assert libvirt_state(api, uuid) == libvirt.VIR_DOMAIN_SHUTOFF  # libvirt untouched


def test_store_xml_brings_back_a_missing_domain(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    api.registry.connection(hv(api)).virconnect.lookupByUUIDString(uuid).undefine()
    api.settle()
    assert api_state(api, uuid) == "missing"
    assert actions_of(api, uuid) == ALWAYS
    api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    assert_state(api, uuid, "shutoff")


def test_store_xml_refuses_a_name_another_domain_took(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    conn = api.registry.connection(hv(api)).virconnect
    conn.lookupByUUIDString(uuid).undefine()
    conn.defineXML(domain_xml(own))  # a different domain, same name
    api.settle()
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{uuid}/actions/store_xml/"), 409, 1300)


# -- 2.18: totaldelete ------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["path", "action-variable"])
def test_totaldelete_deletes_its_volumes_but_not_shared_ones(sandbox, own, route):
    api = sandbox
    new_volume(api, f"{own}-shared.img")
    uuid = new_vm(api, own, "running", disks=[f"{own}-own.img"])
    xml = domain_xml(own, disks=[f"{own}-own.img", f"{own}-shared.img"])  # add the shared disk
    api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "xmldesc", "xmldesc": xml})
    api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    other = api.registry.connection(hv(api)).virconnect.defineXML(
        domain_xml(f"{own}-other", disks=[f"{own}-shared.img"])).UUIDString()
    body = run(api, uuid, "totaldelete", route).json()
    assert body["errno"] == 0 and "1 volume" in body["message"]
    volumes = pool_volumes(api, hv(api))
    assert f"{own}-own.img" not in volumes and f"{own}-shared.img" in volumes
    domains = libvirt_domains(api, hv(api))
    assert uuid not in domains and other in domains
    expect_error(api.get(f"/rest/machine/{uuid}/"), 404, 1200)
    api.settle()
    assert uuid not in api.ok("GET", "/rest/machines/")["machines"]


def test_totaldelete_keeps_readonly_and_cdrom_volumes(sandbox, own):
    api = sandbox
    iso = new_volume(api, f"{own}.iso")
    new_volume(api, f"{own}.img")
    extra = (f"<disk type='file' device='cdrom'><source file='{iso}'/>"
             "<target dev='hdc' bus='ide'/><readonly/></disk>")
    xml = domain_xml(own, disks=[f"{own}.img"]).replace("</devices>", extra + "</devices>")
    uuid = api.ok("PUT", "/rest/machines/", data={"xmldesc": xml, "hvmuuid": hv(api)})["machine"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    volumes = pool_volumes(api, hv(api))
    assert f"{own}.img" not in volumes and f"{own}.iso" in volumes


def test_totaldelete_forgets_a_missing_machine(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own, "running", disks=[f"{own}.img"])
    dom = api.registry.connection(hv(api)).virconnect.lookupByUUIDString(uuid)
    dom.destroy()
    dom.undefine()
    api.settle()
    assert api_state(api, uuid) == "missing"
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    expect_error(api.get(f"/rest/machine/{uuid}/"), 404, 1200)
    assert f"{own}.img" in pool_volumes(api, hv(api))  # nothing known to delete


def test_a_hypervisor_that_is_gone(make_api, make_host):
    """With the hypervisor's connection gone, actions answer 503 and change nothing; reads and
    lists still answer from the inventory."""
    with make_api(make_host("gone", [FakeDomain("vm", state="running")])) as api:
        uuid = manage(api, "vm")
        before = {k: v for k, v in api.machine(uuid).items() if k != "info"}
        [h] = api.hypervisors()
        with api.unplugged(h["uuid"], h["virt_url"]):
            for action in ("suspend", "shutdown", "reboot", "poweroff", "store_xml",
                           "totaldelete"):
                expect_error(run(api, uuid, action), 503, 1501)
            renaming = domain_xml("vm-renamed", uuid=uuid)  # the new name is checked on libvirt
            expect_error(run(api, uuid, "xmldesc", xmldesc=renaming), 503, 1501)
            expect_error(api.post(f"/rest/machine/{uuid}/trigger_status_updates/"), 503, 1501)
            now = api.machine(uuid)
            assert [h["status"] for h in now["hypervisors"]] == ["disconnected"]
            assert {k: v for k, v in now.items() if k not in ("info", "hypervisors")} == \
                {k: v for k, v in before.items() if k != "hypervisors"}
            assert uuid in api.ok("GET", "/rest/machines/",
                                  params={"state": "running"})["machines"]
