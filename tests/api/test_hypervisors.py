"""Spec 2.5 (hypervisor/<UUID>) and 2.6 (machine/<UUID>/hypervisors), and the host registry
extension (/rest/hosts/): adding, listing and removing hypervisors and hosts."""

import pytest

from tests.api.accounts import grant, new_user
from tests.conftest import expect_error, libvirt_domains, unchanged, vm_uuid
from tests.fakehost import FakeDomain, write_host

SLASHES = pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
UNREACHABLE = "qemu+tcp://127.0.0.1:1/system"  # nothing listens on port 1


def hv(api) -> str:  # noqa: ANN001
    [h] = api.hypervisors()
    return h["uuid"]


def host_hypervisors(api, host: str) -> dict:  # noqa: ANN001
    return api.ok("GET", f"/rest/machine/{host}/hypervisors/")


def vms_on(api, hv_uuid: str) -> set[str]:  # noqa: ANN001
    return set(api.ok("GET", "/rest/machines/", params={"hypervisor": hv_uuid})["machines"])


def fake_host(tmp_path, name: str, domains: list[str] = ()) -> str:  # noqa: ANN001
    """A fake host file of the test's own with stopped domains; returns its URI."""
    return write_host(tmp_path / f"{name}.xml", [FakeDomain(d, state="shutoff") for d in domains])


def add_hypervisor(api, uri: str, host: str | None = None) -> str:  # noqa: ANN001
    """Add `uri` to a host (the local one by default) and wait for its domains."""
    host = host or api.local_host()
    body = api.ok("POST", f"/rest/machine/{host}/hypervisors/", data={"virt_url": uri})
    api.settle()
    return next(h["uuid"] for h in body["hypervisors"] if h["virt_url"] == uri)


# -- 2.5: one hypervisor ------------------------------------------------------------------

@SLASHES
def test_get_hypervisor(shared_api, slash):
    api = shared_api
    uuid = hv(api)
    body = api.ok("GET", f"/rest/hypervisor/{uuid}{slash}")
    assert set(body) >= {"uuid", "hypervisor", "errno", "message"}
    obj = body["hypervisor"]
    assert body["uuid"] == obj["uuid"] == uuid
    assert obj["machine"] == api.local_host()
    assert obj["virt_class"] == "test" and obj["virt_url"].startswith("test:///")
    assert obj["status"] == "connected" and obj["last_error"] is None
    assert (obj["driver"], obj["cpus"], obj["memory_kib"]) == ("TEST", 4, 16777216)


@SLASHES
def test_delete_a_hypervisor_with_only_unmanaged_machines(sandbox, tmp_path, own, slash):
    api = sandbox
    uuid = add_hypervisor(api, fake_host(tmp_path, own, [f"{own}-1", f"{own}-2"]))
    vms = vms_on(api, uuid)
    assert len(vms) == 2
    body = api.ok("DELETE", f"/rest/hypervisor/{uuid}{slash}")
    assert body["uuid"] == uuid and body["hypervisor"] is None and body["message"]
    expect_error(api.get(f"/rest/hypervisor/{uuid}/"), 404, 1200)
    assert uuid not in [h["uuid"] for h in api.hypervisors()]
    assert not vms & set(api.ok("GET", "/rest/machines/")["machines"])
    # no longer supervised: no connection, no events
    with pytest.raises(Exception, match="not connected"):
        api.registry.connection(uuid)


def test_delete_takes_forgotten_machines_out_of_their_clusters(sandbox, tmp_path, own):
    api = sandbox
    uuid = add_hypervisor(api, fake_host(tmp_path, own, [own]))
    cluster = api.ok("PUT", "/rest/cluster/", data={"cluster_name": own})["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{vm_uuid(api, own)}/clusters/", data={"clusters": cluster})
    api.ok("DELETE", f"/rest/hypervisor/{uuid}/")
    assert api.ok("GET", f"/rest/cluster/{cluster}/")["cluster"]["machines"] == []


def test_delete_refused_while_managed_machines_remain(sandbox, tmp_path, own):
    api = sandbox
    uuid = add_hypervisor(api, fake_host(tmp_path, own, [f"{own}-1", f"{own}-2"]))
    api.ok("POST", f"/rest/machine/{vm_uuid(api, f'{own}-1')}/actions/manage/")
    with unchanged(api):
        body = expect_error(api.delete(f"/rest/hypervisor/{uuid}/"), 409, 1301)
    assert "1 managed" in body["message"]
    assert api.registry.connection(uuid) is not None  # still supervised


def test_deleted_hypervisor_can_be_added_again(sandbox, tmp_path, own):
    api = sandbox
    uri = fake_host(tmp_path, own, [own])
    api.ok("DELETE", f"/rest/hypervisor/{add_hypervisor(api, uri)}/")
    uuid = add_hypervisor(api, uri)
    o = api.machine(vm_uuid(api, own))["machine_obj"]
    assert (o["parent"], o["managed"]) == (uuid, False)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_hypervisor_path_methods_not_in_the_spec(shared_api, method):
    with unchanged(shared_api):
        expect_error(shared_api.request(method, f"/rest/hypervisor/{hv(shared_api)}/"), 405, 1005)


# -- 2.6: a machine's hypervisors ------------------------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_host_hypervisors_and_candidates(shared_api, method, slash):
    api = shared_api
    body = api.ok(method, f"/rest/machine/{api.local_host()}/hypervisors{slash}")
    assert set(body) >= {"hypervisors", "candidates", "errno", "message"}
    assert [h["uuid"] for h in body["hypervisors"]] == [hv(api)]
    urls = [c["virt_url"] for c in body["candidates"]]
    assert "test:///default" in urls
    for c in body["candidates"]:
        assert set(c) == {"virt_class", "virt_url", "reachable"}


def test_a_vm_lists_the_hypervisor_it_runs_on(shared_api):
    api = shared_api
    body = api.ok("GET", f"/rest/machine/{vm_uuid(api, 'web')}/hypervisors/")
    assert [h["uuid"] for h in body["hypervisors"]] == [hv(api)]
    assert body["candidates"] == []


@pytest.mark.parametrize("virt_class", [None, "test"])
def test_add_a_hypervisor(sandbox, tmp_path, own, virt_class):
    api = sandbox
    uri = write_host(tmp_path / "second.xml", [FakeDomain(own, state="running")])
    host = api.local_host()
    variables = {"virt_url": uri, **({"virt_class": virt_class} if virt_class else {})}
    body = api.ok("POST", f"/rest/machine/{host}/hypervisors/", data=variables)
    added = next(h for h in body["hypervisors"] if h["virt_url"] == uri)
    assert added["virt_class"] == "test" and added["status"] == "connected"
    assert added["machine"] == host
    api.settle()
    far = vm_uuid(api, own)
    obj = api.machine(far)["machine_obj"]
    assert (obj["parent"], obj["host"], obj["state"]) == (added["uuid"], host, "running")
    assert far in libvirt_domains(api, added["uuid"])


def test_adding_a_candidate_takes_it_off_the_candidates(sandbox):
    api = sandbox
    host = api.local_host()
    body = api.ok("POST", f"/rest/machine/{host}/hypervisors/",
                  data={"virt_url": "test:///default", "virt_class": "test"})
    assert "test:///default" not in [c["virt_url"] for c in body["candidates"]]
    assert "test:///default" in [h["virt_url"] for h in body["hypervisors"]]


def test_post_without_variables_answers_like_get(shared_api):
    api = shared_api
    with unchanged(api):
        body = api.ok("POST", f"/rest/machine/{api.local_host()}/hypervisors/")
    assert [h["uuid"] for h in body["hypervisors"]] == [hv(api)]


def _bad_hypervisor(api, case: str) -> dict:  # noqa: ANN001
    taken = api.hypervisors()[0]["virt_url"]
    return {
        "no virt_url": {"virt_class": "test"},
        "not a uri": {"virt_url": "hello"},
        "unknown driver": {"virt_url": "vmware:///x"},
        "unknown class": {"virt_url": "test:///default", "virt_class": "vmware"},
        "class mismatch": {"virt_url": "test:///default", "virt_class": "kvm"},
        "already registered": {"virt_url": taken},
        "unreachable": {"virt_url": UNREACHABLE},
        "no such test host": {"virt_url": "test:///nonexistent/host.xml"},
    }[case]


@pytest.mark.parametrize("case, status, errno", [
    ("no virt_url", 400, 1001), ("not a uri", 400, 1000), ("unknown driver", 400, 1000),
    ("unknown class", 400, 1000), ("class mismatch", 400, 1000),
    ("already registered", 409, 1300), ("unreachable", 503, 1501),
    ("no such test host", 503, 1501),
])
def test_add_hypervisor_refused(shared_api, case, status, errno):
    api = shared_api
    with unchanged(api):
        r = api.post(f"/rest/machine/{api.local_host()}/hypervisors/",
                     data=_bad_hypervisor(api, case))
        expect_error(r, status, errno)


def test_a_vm_cannot_take_a_hypervisor(shared_api):
    api = shared_api
    with unchanged(api):
        r = api.post(f"/rest/machine/{vm_uuid(api, 'web')}/hypervisors/",
                     data={"virt_url": "test:///default"})
        assert "virtual machine" in expect_error(r, 409, 1300)["message"]


# -- /rest/hosts/: register another host (extension) ------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_register_a_host_with_its_hypervisor(sandbox, tmp_path, own, method, slash):
    api = sandbox
    uri = write_host(tmp_path / "node.xml", [FakeDomain(f"{own}-vm", state="paused")])
    body = api.ok(method, f"/rest/hosts{slash}",
                  data={"name": own, "address": "10.0.0.2", "virt_url": uri})
    assert set(body) >= {"machine", "machine_obj", "hypervisors", "errno", "message"}
    node = body["machine"]
    assert body["machine_obj"]["name"] == own and body["machine_obj"]["kind"] == "host"
    assert body["machine_obj"]["address"] == "10.0.0.2"
    assert body["machine_obj"]["is_local"] is False
    [added] = body["hypervisors"]
    assert (added["virt_url"], added["virt_class"], added["machine"]) == (uri, "test", node)
    hosts = api.ok("GET", f"/rest/hosts{slash}")["hosts"]
    assert next(h for h in hosts if h["uuid"] == node)["name"] == own
    api.settle()
    obj = api.machine(vm_uuid(api, f"{own}-vm"))["machine_obj"]
    assert (obj["host"], obj["parent"], obj["state"]) == (node, added["uuid"], "paused")
    assert [h["uuid"] for h in host_hypervisors(api, node)["hypervisors"]] == [added["uuid"]]


def test_register_a_host_then_add_its_hypervisor(sandbox, tmp_path, own):
    api = sandbox
    node = api.ok("PUT", "/rest/hosts/", data={"name": own})["machine"]
    assert host_hypervisors(api, node)["hypervisors"] == []
    uri = fake_host(tmp_path, own)
    add_hypervisor(api, uri, node)
    assert [h["virt_url"] for h in host_hypervisors(api, node)["hypervisors"]] == [uri]


def test_a_host_without_hypervisors_can_be_deleted(sandbox, own):
    api = sandbox
    node = api.ok("PUT", "/rest/hosts/", data={"name": own})["machine"]
    assert api.ok("GET", f"/rest/machine/{node}/actions/")["result"] == ["rename", "totaldelete"]
    api.ok("POST", f"/rest/machine/{node}/actions/totaldelete/")
    expect_error(api.get(f"/rest/machine/{node}/"), 404, 1200)
    assert own not in [h["name"] for h in api.ok("GET", "/rest/hosts/")["hosts"]]


def test_the_local_host_cannot_be_deleted(shared_api):
    api = shared_api
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{api.local_host()}/actions/totaldelete/"),
                     409, 1301)


def _bad_host(api, case: str) -> dict:  # noqa: ANN001
    local = next(h["name"] for h in api.ok("GET", "/rest/hosts/")["hosts"])
    return {
        "no name": {"virt_url": "test:///default"},
        "name taken": {"name": local},
        "unreachable": {"name": "n", "virt_url": UNREACHABLE},
        "class mismatch": {"name": "n", "virt_url": "test:///default", "virt_class": "xen"},
        "uri taken": {"name": "n", "virt_url": api.hypervisors()[0]["virt_url"]},
        "not a uri": {"name": "n", "virt_url": "nope"},
    }[case]


@pytest.mark.parametrize("case, status, errno", [
    ("no name", 400, 1001), ("name taken", 409, 1300), ("unreachable", 503, 1501),
    ("class mismatch", 400, 1000), ("uri taken", 409, 1300), ("not a uri", 400, 1000),
])
def test_register_host_refused(shared_api, case, status, errno):
    api = shared_api
    with unchanged(api):
        expect_error(api.put("/rest/hosts/", data=_bad_host(api, case)), status, errno)
    assert len(api.ok("GET", "/rest/hosts/")["hosts"]) == 1  # no host left behind


# -- several fake hosts, each a hypervisor of its own host -----------------------------------

def test_three_hosts_each_with_its_hypervisor(sandbox, tmp_path, own):
    api = sandbox
    nodes = {}
    for i in range(3):
        uri = fake_host(tmp_path, f"{own}-{i}", [f"{own}-{i}-vm"])
        nodes[i] = api.ok("PUT", "/rest/hosts/", data={"name": f"{own}-{i}", "virt_url": uri})
    api.settle()
    for i, body in nodes.items():
        obj = api.machine(vm_uuid(api, f"{own}-{i}-vm"))["machine_obj"]
        assert obj["host"] == body["machine"]
        assert obj["parent"] == body["hypervisors"][0]["uuid"]
    hosts = api.ok("GET", "/rest/machines/", params={"kind": "host"})["machines"]
    assert {b["machine"] for b in nodes.values()} <= set(hosts)


def test_renaming_a_host_to_another_hosts_name_is_a_conflict(sandbox, own):
    """Host names are unique (registering a second 'node' is refused), renames included."""
    api = sandbox
    api.ok("PUT", "/rest/hosts/", data={"name": own})
    other = api.ok("PUT", "/rest/hosts/", data={"name": f"{own}-2"})["machine"]
    with unchanged(api):
        r = api.post(f"/rest/machine/{other}/", data={"action": "rename", "name": own})
        expect_error(r, 409, 1300)


# -- /rest/hypervisors/: the ones a caller may read (extension) ----------------------------


def test_the_hypervisor_list_holds_those_one_may_read_without_their_host(sandbox, tmp_path):
    """A user granted a hypervisor finds it (to name it in hvmuuid) though its host, and the
    host's other hypervisors, stay hidden; the administrator gets every one."""
    api = sandbox
    mine = api.hypervisors()[0]["uuid"]
    other = add_hypervisor(api, fake_host(tmp_path, "listed"))
    every = {h["uuid"]: h for h in api.ok("GET", "/rest/hypervisors/")["hypervisors"]}
    assert {mine, other} <= set(every)
    assert every[other]["virt_url"].startswith("test://")
    user = new_user(api)
    assert api.ok("GET", "/rest/hypervisors/", auth=user.auth)["hypervisors"] == []
    grant(api, other, "control", user=user.name)
    seen = api.ok("GET", "/rest/hypervisors/", auth=user.auth)["hypervisors"]
    assert seen == [every[other]], (seen, every)
    assert api.ok("GET", "/rest/hosts/", auth=user.auth)["hosts"] == []


def test_the_hypervisor_list_takes_no_change(shared_api):
    expect_error(shared_api.post("/rest/hypervisors/", data={"virt_url": "test:///default"}),
                 405, 1005)
