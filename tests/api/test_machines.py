"""Spec 2.1 to 2.4 (machines, machine, machine/<UUID> with rename, xmldesc and set_parent), the
define extension (PUT /rest/machines/), list filters, and several fake hosts in one server."""

import time
import uuid as uuidlib

import libvirt
import pytest

from tests.conftest import (
    expect_error,
    libvirt_domains,
    new_vm,
    new_volume,
    pool_volumes,
    serve,
    unchanged,
    vm_uuid,
)
from tests.fakehost import FakeDomain, domain_xml, write_host

SLASHES = pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
MACHINE_KEYS = {"machine", "errno", "message", "info", "machine_obj", "hypervisors"}


def only_hv(api) -> str:  # noqa: ANN001
    [hv] = api.hypervisors()
    return hv["uuid"]


def hv_of(api, uri: str) -> str:  # noqa: ANN001
    return next(hv["uuid"] for hv in api.hypervisors() if hv["virt_url"] == uri)


def obj(api, uuid: str) -> dict:  # noqa: ANN001
    return api.machine(uuid)["machine_obj"]


def act(api, uuid: str, action: str, **variables: str):  # noqa: ANN001, ANN201
    return api.post(f"/rest/machine/{uuid}/", data={"action": action, **variables})


def dom(api, uuid: str) -> libvirt.virDomain:  # noqa: ANN001
    """The domain as libvirt itself has it, on the machine's current hypervisor."""
    return api.registry.connection(obj(api, uuid)["parent"]).virconnect.lookupByUUIDString(uuid)


# -- 2.2, 2.3: the machine lists ----------------------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/rest/machines", "/rest/machine"])
def test_machine_lists_hold_every_id(shared_api, path, method, slash):
    api = shared_api
    body = api.ok(method, path + slash)
    assert set(body) == {"machines"}
    domains = libvirt_domains(api, only_hv(api))
    assert sorted(body["machines"]) == sorted([api.local_host(), *domains])


def test_list_without_filters_is_ids_only_and_detail_adds_objects(shared_api):
    api = shared_api
    assert "machine_objs" not in api.ok("GET", "/rest/machines/")
    body = api.ok("GET", "/rest/machines/", params={"detail": "true"})
    assert [o["uuid"] for o in body["machine_objs"]] == body["machines"]


@pytest.mark.parametrize("variables, names", [
    ({"state": "running", "kind": "vm"}, {"web"}),
    ({"state": "paused"}, {"db"}),
    ({"state": "shutoff"}, {"idle"}),
    ({"kind": "vm"}, {"web", "db", "idle"}),
    ({"state": "crashed"}, set()),
])
def test_filters(shared_api, variables, names):
    api = shared_api
    body = api.ok("GET", "/rest/machines/", params={**variables, "detail": "true"})
    assert {o["name"] for o in body["machine_objs"]} == names


def test_kind_host_lists_only_hosts(shared_api):
    api = shared_api
    body = api.ok("GET", "/rest/machines/", params={"kind": "host", "detail": "1"})
    assert [o["uuid"] for o in body["machine_objs"]] == [api.local_host()]


@pytest.mark.parametrize("variables, errno", [
    ({"kind": "toaster"}, 1000),
    ({"hypervisor": "not-a-uuid"}, 1002),
    ({"detail": "maybe"}, 1000),
])
def test_bad_filters(shared_api, variables, errno):
    api = shared_api
    expect_error(api.get("/rest/machines/", params=variables), 400, errno)


# -- several fake hosts at once -------------------------------------------------------------

@pytest.fixture(scope="module")
def hosts(tmp_path_factory):  # noqa: ANN001, ANN201
    """Three fake hosts in one server for the module: a has a stopped VM "app" with a disk and
    a running "web", b a running "web" of its own, c nothing; app and web on a are managed.
    Yields (api, {"a": hv_uuid, ...}, {"a": FakeDomain, ...}). Tests that change things do so
    only to domains of their own."""
    d = tmp_path_factory.mktemp("hosts")
    doms = {"app": FakeDomain("app", state="shutoff", disks=["app.img"]),
            "web": FakeDomain("web", state="running"), "b-web": FakeDomain("web")}
    uris = {"a": write_host(d / "a.xml", [doms["app"], doms["web"]], ["app.img"]),
            "b": write_host(d / "b.xml", [doms["b-web"]]),
            "c": write_host(d / "c.xml", [])}
    with serve(d / "data", *uris.values()) as api:
        for name in ("app", "web"):
            api.ok("POST", f"/rest/machine/{doms[name].uuid}/actions/manage/")
        yield api, {k: hv_of(api, u) for k, u in uris.items()}, doms


def test_several_hosts_list_each_vm_with_its_parent_and_host(hosts):
    api, hvs, doms = hosts
    assert {hv["uuid"] for hv in api.hypervisors()} == set(hvs.values())
    for name, hv in [("app", "a"), ("web", "a"), ("b-web", "b")]:
        o = obj(api, doms[name].uuid)
        assert (o["parent"], o["host"]) == (hvs[hv], api.local_host())
    objs = api.ok("GET", "/rest/machines/", params={"kind": "vm", "detail": "1"})["machine_objs"]
    for o in objs:  # every VM listed is where libvirt has it
        assert o["uuid"] in libvirt_domains(api, o["parent"])


@pytest.mark.parametrize("which", ["a", "b", "c"])
def test_filter_by_hypervisor(hosts, which):
    api, hvs, _ = hosts
    body = api.ok("GET", "/rest/machines/", params={"hypervisor": hvs[which], "detail": "1"})
    assert sorted(o["uuid"] for o in body["machine_objs"]) == \
        sorted(libvirt_domains(api, hvs[which]))
    assert {o["parent"] for o in body["machine_objs"]} <= {hvs[which]}


def test_host_lists_its_hypervisors(hosts):
    api, hvs, _ = hosts
    body = api.machine(api.local_host())
    assert {hv["uuid"] for hv in body["hypervisors"]} == set(hvs.values())
    assert body["machine_obj"]["kind"] == "host"


# -- 2.4: one machine -----------------------------------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_machine_answers_the_spec_keys(shared_api, method, slash):
    api = shared_api
    uuid = vm_uuid(api, "web")
    body = api.ok(method, f"/rest/machine/{uuid}{slash}")
    assert MACHINE_KEYS <= set(body)
    assert body["machine"] == uuid == body["machine_obj"]["uuid"]
    assert body["info"]["state"] == "running"
    assert [hv["uuid"] for hv in body["hypervisors"]] == [only_hv(api)]
    assert body["machine_obj"]["parent"] == only_hv(api)
    assert body["machine_obj"]["host"] == api.local_host()


def test_machine_uuid_is_case_insensitive(shared_api):
    api = shared_api
    uuid = vm_uuid(api, "web")
    assert api.machine(uuid.upper())["machine"] == uuid


def test_post_with_a_variable_but_no_action_is_refused(shared_api):
    api = shared_api
    uuid = vm_uuid(api, "idle")
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{uuid}/", data={"name": "x"}), 400, 1001)


UUID_PATHS = [
    ("GET", "/rest/machine/{}/"), ("POST", "/rest/machine/{}/"),
    ("GET", "/rest/machine/{}/trigger_status_updates/"),
    ("POST", "/rest/machine/{}/trigger_status_updates/"),
    ("GET", "/rest/machine/{}/hypervisors/"), ("POST", "/rest/machine/{}/hypervisors/"),
    ("GET", "/rest/machine/{}/clusters/"), ("POST", "/rest/machine/{}/clusters/"),
    ("DELETE", "/rest/machine/{}/clusters/"),
    ("GET", "/rest/machine/{}/actions/"), ("POST", "/rest/machine/{}/actions/"),
    *[("POST", f"/rest/machine/{{}}/actions/{a}/") for a in (
        "unlock", "suspend", "resume", "shutdown", "poweroff", "reboot", "create",
        "store_xml", "manage", "totaldelete")],
    ("GET", "/rest/hypervisor/{}/"), ("DELETE", "/rest/hypervisor/{}/"),
    ("GET", "/rest/cluster/{}/"), ("POST", "/rest/cluster/{}/"), ("DELETE", "/rest/cluster/{}/"),
]


@pytest.mark.parametrize("method, path", UUID_PATHS)
@pytest.mark.parametrize("uuid, status, errno", [
    (str(uuidlib.uuid4()), 404, 1200),
    ("not-a-uuid", 400, 1002),
    ("12345678-1234-1234-1234-1234567890az", 400, 1002),
], ids=["unknown", "malformed", "bad-hex"])
def test_unknown_and_malformed_uuids(shared_api, method, path, uuid, status, errno):
    api = shared_api
    # Variables a changing request would need, so only the UUID can be wrong (a GET takes
    # none: with them it is refused before the UUID is read, test_conformance.py).
    variables = {"clusters": str(uuidlib.uuid4()), "virt_url": "test:///default",
                 "cluster_name": "x", "action": "rename", "name": "x"}
    with unchanged(api):
        r = api.request(method, path.format(uuid), params=variables if method != "GET" else {})
        expect_error(r, status, errno)


# -- PUT /rest/machines/: define a VM from XML (extension) --------------------------------

def define(api, xml: str, hv: str | None = None, slash: str = "/"):  # noqa: ANN001, ANN201
    return api.put(f"/rest/machines{slash}", data={"xmldesc": xml, "hvmuuid": hv or only_hv(api)})


@SLASHES
def test_define_vm(sandbox, own, slash):
    api = sandbox
    disk = new_volume(api, f"{own}.img")
    body = api.ok("PUT", f"/rest/machines{slash}", data={
        "xmldesc": domain_xml(own, disks=[f"{own}.img"]), "hvmuuid": only_hv(api)})
    uuid = body["machine"]
    assert str(uuidlib.UUID(uuid)) == uuid
    assert body["machine_obj"]["managed"] is True and body["machine_obj"]["state"] == "shutoff"
    assert uuid in api.ok("GET", "/rest/machines/")["machines"]
    d = dom(api, uuid)
    assert d.name() == own and d.isPersistent()
    assert d.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert disk in d.XMLDesc(0)


def test_define_keeps_the_uuid_given_in_canonical_form(sandbox, own):
    api = sandbox
    given = str(uuidlib.uuid4())
    body = api.ok("PUT", "/rest/machines/", data={
        "xmldesc": domain_xml(own, uuid=given.upper()), "hvmuuid": only_hv(api)})
    assert body["machine"] == given
    assert dom(api, given).name() == own


def test_define_then_start_through_the_api(sandbox, own):
    api = sandbox
    uuid = define(api, domain_xml(own)).json()["machine"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    assert obj(api, uuid)["state"] == "running"
    assert dom(api, uuid).state()[0] == libvirt.VIR_DOMAIN_RUNNING


def _bad_define(api, case: str) -> dict:  # noqa: ANN001
    hv = only_hv(api)
    xml = domain_xml("fresh")
    return {
        "no hvmuuid": {"xmldesc": xml},
        "no xmldesc": {"hvmuuid": hv},
        "empty xmldesc": {"xmldesc": " ", "hvmuuid": hv},
        "unknown hvmuuid": {"xmldesc": xml, "hvmuuid": str(uuidlib.uuid4())},
        "malformed hvmuuid": {"xmldesc": xml, "hvmuuid": "nope"},
        "not xml": {"xmldesc": "<domain><name>x</name>", "hvmuuid": hv},
        "not a domain": {"xmldesc": "<network><name>x</name></network>", "hvmuuid": hv},
        "no name": {"xmldesc": "<domain type='test'><memory>1024</memory></domain>",
                    "hvmuuid": hv},
        "doctype": {"xmldesc": '<!DOCTYPE domain [<!ENTITY n "fresh">]>'
                               + domain_xml("&n;"), "hvmuuid": hv},
        "libvirt refuses": {"xmldesc": xml.replace("524288", "lots"), "hvmuuid": hv},
        "malformed uuid in xml": {"xmldesc": domain_xml("fresh", uuid="zzz"), "hvmuuid": hv},
        "name taken": {"xmldesc": domain_xml("web"), "hvmuuid": hv},
        "uuid taken": {"xmldesc": domain_xml("fresh", uuid=vm_uuid(api, "db")), "hvmuuid": hv},
        "missing disk": {"xmldesc": domain_xml("fresh", disks=["nope.img"]), "hvmuuid": hv},
    }[case]


@pytest.mark.parametrize("case, status, errno", [
    ("no hvmuuid", 400, 1001), ("no xmldesc", 400, 1001), ("empty xmldesc", 400, 1001),
    ("unknown hvmuuid", 404, 1200), ("malformed hvmuuid", 400, 1002),
    ("not xml", 400, 1004), ("not a domain", 400, 1004), ("no name", 400, 1000),
    ("doctype", 400, 1004), ("libvirt refuses", 400, 1004),
    ("malformed uuid in xml", 400, 1002),
    ("name taken", 409, 1300), ("uuid taken", 409, 1300), ("missing disk", 400, 1000),
])
def test_define_refuses_bad_input(shared_api, case, status, errno):
    api = shared_api
    variables = _bad_define(api, case)
    with unchanged(api):
        expect_error(api.put("/rest/machines/", data=variables), status, errno)


def test_define_with_a_name_taken_on_another_hypervisor_is_fine(hosts, own):
    api, hvs, _ = hosts
    new_vm(api, own, managed=False, hv_uuid=hvs["a"])
    body = api.ok("PUT", "/rest/machines/", data={"xmldesc": domain_xml(own),
                                                  "hvmuuid": hvs["b"]})
    assert obj(api, body["machine"])["parent"] == hvs["b"]


# -- rename -----------------------------------------------------------------------------------

def test_rename_a_stopped_vm(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    body = act(api, uuid, "rename", name=f"{own}-renamed").json()
    assert body["errno"] == 0 and body["machine_obj"]["name"] == f"{own}-renamed"
    assert f"<name>{own}-renamed</name>" in body["machine_obj"]["xmldesc"]
    assert dom(api, uuid).name() == f"{own}-renamed"
    conn = api.registry.connection(only_hv(api)).virconnect
    assert conn.lookupByName(f"{own}-renamed").UUIDString() == uuid


def test_rename_to_the_same_name_changes_nothing(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    with unchanged(api):
        assert act(api, uuid, "rename", name=own).json()["errno"] == 0


def test_rename_a_host(sandbox):
    api = sandbox
    host = api.local_host()
    api.ok("POST", f"/rest/machine/{host}/", data={"action": "rename", "name": "node-1"})
    assert obj(api, host)["name"] == "node-1"


TAKEN = object()  # stands for the name of another machine on the same hypervisor


@pytest.mark.parametrize("state, name, status, errno", [
    ("shutoff", None, 400, 1001),
    ("shutoff", "  ", 400, 1001),
    ("shutoff", TAKEN, 409, 1300),
    ("shutoff", "a/b", 400, 1000),
    ("shutoff", "x" * 256, 400, 1000),
    ("running", "other", 409, 1301),         # stop it first
], ids=["missing", "blank", "taken", "slash", "too-long", "running"])
def test_rename_refused(sandbox, own, state, name, status, errno):
    api = sandbox
    uuid, other = new_vm(api, own, state), new_vm(api, f"{own}-other")
    variables = {} if name is None else {"name": f"{own}-other" if name is TAKEN else name}
    with unchanged(api):
        expect_error(act(api, uuid, "rename", **variables), status, errno)
    assert obj(api, other)["name"] == f"{own}-other"


def test_rename_an_unmanaged_vm_is_refused(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own, managed=False)
    with unchanged(api):
        expect_error(act(api, uuid, "rename", name=f"{own}-x"), 409, 1301)


# -- xmldesc and store_xml -------------------------------------------------------------------

def test_xmldesc_is_stored_then_store_xml_applies_it(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    xml = domain_xml(own, uuid=uuid, memory_kib=262144)
    body = act(api, uuid, "xmldesc", xmldesc=xml).json()
    assert body["errno"] == 0 and body["machine_obj"]["xml_pending"] is True
    assert "262144" in body["machine_obj"]["xmldesc"]
    assert dom(api, uuid).maxMemory() == 524288  # not on the hypervisor yet
    api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    assert dom(api, uuid).maxMemory() == 262144
    after = obj(api, uuid)
    assert after["xml_pending"] is False and after["name"] == own


@pytest.mark.parametrize("state", ["shutoff", "running"])
def test_store_xml_applies_a_new_name(sandbox, own, state):
    """libvirt keeps a domain's name when it is defined again: the new name in a stored
    description is applied by renaming, which libvirt allows for a stopped domain only."""
    api = sandbox
    uuid = new_vm(api, own, state)
    act(api, uuid, "xmldesc", xmldesc=domain_xml(f"{own}-new", uuid=uuid, memory_kib=262144))
    r = api.post(f"/rest/machine/{uuid}/actions/store_xml/")
    if state == "running":
        expect_error(r, 409, 1301)
        assert (dom(api, uuid).name(), dom(api, uuid).maxMemory()) == (own, 524288)
        assert obj(api, uuid)["xml_pending"] is True
        return
    assert r.status_code == 200, r.text
    assert (dom(api, uuid).name(), dom(api, uuid).maxMemory()) == (f"{own}-new", 262144)
    assert obj(api, uuid)["name"] == f"{own}-new"


def test_xmldesc_without_uuid_takes_the_machines(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    act(api, uuid, "xmldesc", xmldesc=domain_xml(own, memory_kib=262144))
    assert f"<uuid>{uuid}</uuid>" in obj(api, uuid)["xmldesc"]


def test_xmldesc_survives_events_until_stored(sandbox, own):
    """A pending description is not overwritten by the next resync from libvirt."""
    api = sandbox
    uuid = new_vm(api, own, "running")
    act(api, uuid, "xmldesc", xmldesc=domain_xml(own, uuid=uuid, memory_kib=262144))
    dom(api, uuid).suspend()
    api.settle()
    after = obj(api, uuid)
    assert after["state"] == "paused" and "262144" in after["xmldesc"]


def _bad_xmldesc(own: str, uuid: str, other: str, case: str) -> str | None:
    return {
        "missing": None,
        "not xml": f"<domain><name>{own}",
        "not a domain": "<pool/>",
        "doctype": '<!DOCTYPE domain SYSTEM "file:///etc/passwd">' + domain_xml(own),
        "another machine's uuid": domain_xml(own, uuid=other),
        "malformed uuid": domain_xml(own, uuid="123"),
        "no name": f"<domain type='test'><uuid>{uuid}</uuid></domain>",
        "name of another machine": domain_xml(f"{own}-other", uuid=uuid),
    }[case]


@pytest.mark.parametrize("case, status, errno", [
    ("missing", 400, 1001), ("not xml", 400, 1004), ("not a domain", 400, 1004),
    ("doctype", 400, 1004), ("another machine's uuid", 400, 1000),
    ("malformed uuid", 400, 1002), ("no name", 400, 1000),
    ("name of another machine", 409, 1300),
])
def test_xmldesc_refused(sandbox, own, case, status, errno):
    api = sandbox
    uuid, other = new_vm(api, own), new_vm(api, f"{own}-other")
    xml = _bad_xmldesc(own, uuid, other, case)
    variables = {} if xml is None else {"xmldesc": xml}
    with unchanged(api):
        expect_error(act(api, uuid, "xmldesc", **variables), status, errno)


def test_store_xml_refuses_a_disk_that_does_not_exist(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    act(api, uuid, "xmldesc", xmldesc=domain_xml(own, uuid=uuid, disks=[f"{own}-gone.img"]))
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{uuid}/actions/store_xml/"), 400, 1000)


# -- set_parent ---------------------------------------------------------------------------

def test_set_parent_moves_a_stopped_machine(hosts, own):
    api, hvs, _ = hosts
    uuid = new_vm(api, own, disks=[f"{own}.img"], hv_uuid=hvs["a"])
    new_volume(api, f"{own}.img", hvs["c"])  # the disk must exist on the target too
    body = act(api, uuid, "set_parent", puuid=hvs["c"]).json()
    assert body["errno"] == 0, body
    assert body["machine_obj"]["parent"] == hvs["c"]
    assert body["machine_obj"]["state"] == "shutoff"
    assert uuid not in libvirt_domains(api, hvs["a"])
    assert libvirt_domains(api, hvs["c"])[uuid][0] == own
    api.settle()
    assert obj(api, uuid)["parent"] == hvs["c"]
    assert vm_uuid(api, own) == uuid  # one machine, not two


LAB = ("<network><name>lab</name><bridge name='virbr-lab'/>"
       "<ip address='10.77.0.1' netmask='255.255.255.0'><dhcp>"
       "<range start='10.77.0.100' end='10.77.0.200'/></dhcp></ip></network>")


def test_set_parent_moves_the_machines_dhcp_entries(make_api, tmp_path):
    """A machine with a static address on a libvirt network (as a provision leaves it: a
    lease and a DHCP host entry): moved to a hypervisor that has the network too, its entry
    goes along, so the guest gets its address there."""
    from enomalism.store.models import Lease, Network
    from enomalism.virt import driver

    vm = FakeDomain("mover", state="shutoff")
    a = write_host(tmp_path / "a.xml", [vm], networks=[LAB])
    b = write_host(tmp_path / "b.xml", [], networks=[LAB])
    mac, ip = "52:54:00:77:00:20", "10.77.0.20"
    with make_api(a, b) as api:
        hv_a, hv_b = hv_of(api, a), hv_of(api, b)
        api.ok("POST", f"/rest/machine/{vm.uuid}/actions/manage/")
        with api.app.state.db.session() as s:
            net = Network(name="lab", bridge="lab", address="10.77.0.0", prefix=24)
            s.add(net)
            s.flush()
            s.add(Lease(network_uuid=net.uuid, address=ip, machine_uuid=vm.uuid, mac=mac))
        conn_a = api.registry.connection(hv_a).virconnect
        conn_b = api.registry.connection(hv_b).virconnect
        driver.dhcp_host(conn_a, "lab", mac=mac, ip=ip, name="mover", command="add")

        def entries(conn: libvirt.virConnect) -> list[dict]:
            from lxml import etree
            root = etree.fromstring(conn.networkLookupByName("lab").XMLDesc(0).encode())
            return [dict(h.attrib) for h in root.iterfind("ip/dhcp/host")]

        body = act(api, vm.uuid, "set_parent", puuid=hv_b).json()
        assert body["errno"] == 0 and body["message"] == \
            f"machine moved to hypervisor {b}", body
        assert entries(conn_a) == []
        assert entries(conn_b) == [{"mac": mac, "name": "mover", "ip": ip}]
        # and back, onto an entry someone left there by hand: replaced, not doubled
        driver.dhcp_host(conn_a, "lab", mac=mac, ip=ip, name="stale", command="add")
        assert act(api, vm.uuid, "set_parent", puuid=hv_a).json()["errno"] == 0
        assert entries(conn_b) == []
        assert entries(conn_a) == [{"mac": mac, "name": "mover", "ip": ip}]


def test_set_parent_adopts_a_domain_the_target_already_has(make_api, make_host):
    """The same domain on two hosts (a migration done elsewhere): the machine belongs to the
    hypervisor that reported it first, and set_parent hands it to the other one."""
    moved = FakeDomain("mover", state="shutoff")
    uris = [make_host("a", [moved]),
            make_host("b", [FakeDomain("mover", uuid=moved.uuid, state="running")])]
    with make_api(*uris) as api:
        hvs = [hv_of(api, u) for u in uris]
        source = obj(api, moved.uuid)["parent"]
        [target] = [h for h in hvs if h != source]
        api.ok("POST", f"/rest/machine/{moved.uuid}/actions/manage/")
        body = act(api, moved.uuid, "set_parent", puuid=target).json()
        assert body["errno"] == 0, body
        after = obj(api, moved.uuid)
        assert after["parent"] == target
        # the state is the target's domain's, not the one on the old hypervisor
        target_dom = api.registry.connection(target).virconnect.lookupByUUIDString(moved.uuid)
        expected = "running" if target_dom.isActive() else "shutoff"
        assert after["state"] == expected
        assert libvirt_domains(api, source)[moved.uuid][1] != target_dom.state()[0]


def test_set_parent_to_the_same_hypervisor_is_refused(sandbox, own):
    api = sandbox
    uuid = new_vm(api, own)
    with unchanged(api):
        expect_error(act(api, uuid, "set_parent", puuid=only_hv(api)), 409, 1303)


def _puuid(hvs: dict, case: str) -> dict:
    return {"missing": {}, "unknown": {"puuid": str(uuidlib.uuid4())},
            "malformed": {"puuid": "xyz"}, "c": {"puuid": hvs["c"]},
            "b": {"puuid": hvs["b"]}}[case]


@pytest.mark.parametrize("vm, target, status, errno", [
    ("app", "missing", 400, 1001),
    ("app", "unknown", 404, 1200),
    ("app", "malformed", 400, 1002),
])
def test_set_parent_refused(hosts, vm, target, status, errno):
    api, hvs, doms = hosts
    with unchanged(api):
        r = act(api, doms[vm].uuid, "set_parent", **_puuid(hvs, target))
        expect_error(r, status, errno)


@pytest.mark.parametrize("vm, why", [
    ("web", "running: a live migration"),
    ("app", "its disk app.img is not on c: a move with the disk"),
])
def test_set_parent_that_must_copy_is_a_transaction(hosts, vm, why):
    """libvirt's test driver migrates nothing and streams no volume: the transaction fails,
    and the machine stays where it was, unlocked (the real moves: tests/integration/
    test_migration.py)."""
    api, hvs, doms = hosts
    uuid = doms[vm].uuid
    on_c = pool_volumes(api, hvs["c"])
    body = act(api, uuid, "set_parent", puuid=hvs["c"]).json()
    assert body["errno"] == 0 and body["machine"] == uuid and body["txid"], (why, body)
    deadline = time.monotonic() + 30
    while (tx := api.ok("GET", f"/rest/transaction/{body['txid']}/"))["data"]["state"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, tx
        time.sleep(0.05)
    assert (tx["data"]["kind"], tx["data"]["state"]) == ("migrate", "failed"), tx
    m = obj(api, uuid)
    assert m["parent"] == hvs["a"] and "unlock" not in m["actions"]
    assert uuid in libvirt_domains(api, hvs["a"]) and uuid not in libvirt_domains(api, hvs["c"])
    assert pool_volumes(api, hvs["c"]) == on_c  # nothing left on c


def test_set_parent_refuses_a_name_taken_on_the_target(hosts, own):
    api, hvs, _ = hosts
    uuid = new_vm(api, own, hv_uuid=hvs["a"])
    new_vm(api, own, managed=False, hv_uuid=hvs["b"])
    with unchanged(api):
        expect_error(act(api, uuid, "set_parent", puuid=hvs["b"]), 409, 1300)


def test_only_an_administrator_evacuates_a_host(hosts):
    """It moves every user's machines: a user with every grant on the host is refused, and
    nothing is queued."""
    from tests.api.accounts import new_user

    api, _, _ = hosts
    host = api.local_host()
    alice = new_user(api)
    api.ok("PUT", f"/rest/permissions/{host}/", data={"permission": "control",
                                                      "user": alice.name})
    before = api.ok("GET", "/rest/transactions/")["transactions"]
    r = api.post(f"/rest/machine/{host}/", data={"action": "evacuate"}, auth=alice.auth)
    expect_error(r, 403, 1101)
    assert api.ok("GET", "/rest/transactions/")["transactions"] == before


def test_a_non_administrator_moves_only_into_the_targets_default_pool(hosts, own):
    """Pools carry no grants: `pool` on set_parent is for administrators, as on create."""
    from tests.api.accounts import grant, new_user

    api, hvs, _ = hosts
    uuid = new_vm(api, own, disks=[f"{own}.img"], hv_uuid=hvs["a"])
    alice = new_user(api)
    grant(api, uuid, "modify", user=alice.name)
    grant(api, hvs["c"], "control", user=alice.name)
    with unchanged(api):
        r = api.post(f"/rest/machine/{uuid}/", auth=alice.auth, data={
            "action": "set_parent", "puuid": hvs["c"], "pool": "admins-only"})
        assert "admins-only" in expect_error(r, 403, 1126)["message"]
