"""A hypervisor's allocation and its libvirt networks (extensions the dashboard's hosts page
and create form read): the sums over its machines, and the networks a caller may join."""

from tests.api.accounts import grant, new_user
from tests.conftest import expect_error, new_vm

NET = ("<network><name>{0}</name><bridge name='vb{0}'/>"
       "<ip address='10.{1}.0.1' netmask='255.255.255.0'/></network>")


def _hv(api) -> str:  # noqa: ANN001
    return api.hypervisors()[0]["uuid"]


def test_allocation_sums_the_machines_that_run_and_those_defined(sandbox, own):
    api = sandbox
    hv = _hv(api)
    before = api.ok("GET", f"/rest/hypervisor/{hv}/allocation/")
    run = new_vm(api, f"{own}-r", "running")
    new_vm(api, f"{own}-p", "paused")
    new_vm(api, f"{own}-s", "shutoff")
    after = api.ok("GET", f"/rest/hypervisor/{hv}/allocation/")
    m = api.ok("GET", f"/rest/machine/{run}/")["machine_obj"]
    assert (after["cpus"], after["memory_kib"]) == (4, 16777216)  # the host's capacity
    active, defined = after["active"], after["defined"]
    assert active["machines"] - before["active"]["machines"] == 2  # running and paused
    assert defined["machines"] - before["defined"]["machines"] == 3
    assert active["vcpus"] - before["active"]["vcpus"] == 2 * m["vcpus"]
    assert active["memory_kib"] - before["active"]["memory_kib"] == 2 * m["memory_kib"]
    assert defined["memory_kib"] - before["defined"]["memory_kib"] == 3 * m["memory_kib"]


def test_a_user_reads_the_allocation_only_of_a_hypervisor_they_may_read(sandbox):
    api = sandbox
    hv = _hv(api)
    user = new_user(api)
    expect_error(api.get(f"/rest/hypervisor/{hv}/allocation/", auth=user.auth), 404, 1200)
    grant(api, hv, "read", user=user.name)
    assert api.ok("GET", f"/rest/hypervisor/{hv}/allocation/", auth=user.auth)["uuid"] == hv


def test_networks_list_what_the_caller_may_join(sandbox):
    api = sandbox
    hv = _hv(api)
    conn = api.registry.connection(hv).virconnect
    for i, name in enumerate(("lvnone", "lvmine"), start=70):
        conn.networkDefineXML(NET.format(name, i)).create()
    nets = api.ok("GET", f"/rest/hypervisor/{hv}/networks/")["networks"]
    by_name = {n["name"]: n for n in nets}
    assert by_name["lvmine"] == {"name": "lvmine", "active": True, "bridge": "vblvmine"}
    assert "lvnone" in by_name
    user = new_user(api)
    grant(api, hv, "read", user=user.name)
    assert api.ok("GET", f"/rest/hypervisor/{hv}/networks/", auth=user.auth)["networks"] == []
    # a static network on 'lvmine' the user may read: create would let them join it
    net = api.ok("PUT", "/rest/networks/", data={"name": "lvmine-static", "ip": "10.71.0.0",
                                                  "netmask": "24", "bridge": "lvmine"})
    grant(api, net["network"]["uuid"], "read", user=user.name)
    mine = api.ok("GET", f"/rest/hypervisor/{hv}/networks/", auth=user.auth)["networks"]
    assert [n["name"] for n in mine] == ["lvmine"]
    r = api.get("/rest/hypervisor/not-a-uuid/networks/")
    assert r.status_code == 400 and r.json()["errno"], r.text
