"""Storage as a resource (issue 16) on libvirt's test driver: pools with their sizes, a pool's
volumes with owner and machine, volumes a user makes and deletes, a stopped machine's disks
attached and detached (the test driver has no device calls: live changes and growing are
tested on the real libvirtd, tests/integration/test_storage.py), and the isolation rules:
another user's volume is invisible, the pools other than the default are for administrators,
bad input of each kind changes nothing."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.api.accounts import grant, new_user
from tests.api.test_create import host_file
from tests.conftest import Api, expect_error, manage, unchanged

GIB = 1 << 30


@pytest.fixture
def api(make_api: Callable, tmp_path: Path) -> Iterator[Api]:
    with make_api(host_file(tmp_path / "host1.xml", used_gib=50)) as a:
        yield a


def pool_of(api: Api, name: str, auth: object = "admin") -> dict:
    return next(p for p in api.ok("GET", "/rest/pools/", auth=auth)["pools"] if p["name"] == name)


def volumes(api: Api, pool: str, auth: object = "admin") -> dict[str, dict]:
    return {v["name"]: v for v in api.ok("GET", f"/rest/pools/{pool}/volumes/",
                                         auth=auth)["volumes"]}


def disks(api: Api, uuid: str) -> dict[str, str]:
    hv = api.machine(uuid)["machine_obj"]["parent"]
    dom = api.registry.connection(hv).virconnect.lookupByUUIDString(uuid)
    root = etree.fromstring(dom.XMLDesc(2))
    return {d.find("target").get("dev"): d.find("source").get("file")
            for d in root.iterfind("devices/disk")}


@pytest.fixture
def alice(api: Api):  # noqa: ANN201
    """A user who may control the hypervisor and modify the stopped machine `idle`."""
    user = new_user(api)
    grant(api, api.hypervisors()[0]["uuid"], "control", user=user.uuid)
    grant(api, manage(api, "idle"), "modify", user=user.uuid)
    return user


def test_pools_are_listed_with_their_sizes(api):
    found = {p["name"]: p for p in api.ok("GET", "/rest/pools/")["pools"]}
    assert set(found) == {"default-pool", "other"}
    default = found["default-pool"]
    assert default["hypervisor"] == api.hypervisors()[0]["uuid"] and default["active"]
    assert default["capacity"] == 100 * GIB and default["available"] < 50 * GIB + GIB
    assert found["other"]["active"] and found["other"]["uuid"].startswith("0b5e9f36")
    assert api.ok("GET", "/rest/pools/", auth=new_user(api).auth)["pools"] == []


def test_volumes_show_their_owner_and_machine(api):
    web = manage(api, "web")
    pool = pool_of(api, "default-pool")["uuid"]
    vols = volumes(api, pool)
    assert vols["web.img"]["machine"] == web and vols["spare.img"]["machine"] is None
    assert vols["web.img"]["path"] == "/default-pool/web.img"
    expect_error(api.get("/rest/pools/0b5e9f36-0000-4c55-a3b6-3b1f4c7e2d90/volumes/"), 404, 1200)
    expect_error(api.get("/rest/pools/nope/volumes/"), 400, 1002)


def test_a_user_makes_attaches_detaches_and_deletes_a_volume_of_their_own(api, alice):
    pool = pool_of(api, "default-pool", alice.auth)["uuid"]
    body = api.ok("PUT", f"/rest/pools/{pool}/volumes/", data={"name": "data1", "size": 2},
                  auth=alice.auth)
    assert body["volume"]["owner"] == alice.uuid and body["volume"]["capacity"] == 2 * GIB
    mine = volumes(api, pool, alice.auth)
    assert set(mine) == {"data1"}  # web.img, spare.img are not hers
    assert mine["data1"]["owner"] == alice.uuid and mine["data1"]["machine"] is None
    # another user sees nothing and cannot delete it
    bob = new_user(api)
    grant(api, api.hypervisors()[0]["uuid"], "control", user=bob.uuid)
    assert volumes(api, pool, bob.auth) == {}
    expect_error(api.delete(f"/rest/pools/{pool}/volumes/data1/", auth=bob.auth), 404, 1200)

    idle = idle_uuid(api)
    body = api.ok("POST", f"/rest/machine/{idle}/", data={"action": "attach_disk",
                                                           "volume": "data1"}, auth=alice.auth)
    assert "vda" in body["message"]  # idle had no disk
    assert disks(api, idle)["vda"] == "/default-pool/data1"
    assert volumes(api, pool)["data1"]["machine"] == idle
    expect_error(api.delete(f"/rest/pools/{pool}/volumes/data1/", auth=alice.auth), 404, 1200)
    expect_error(api.delete(f"/rest/pools/{pool}/volumes/data1/"), 409, 1300)
    # a new blank disk: the machine's own
    api.ok("POST", f"/rest/machine/{idle}/actions/attach_disk/", data={"size": 1},
           auth=alice.auth)
    assert set(disks(api, idle)) == {"vda", "vdb"}
    api.ok("POST", f"/rest/machine/{idle}/", data={"action": "detach_disk", "target": "vda"},
           auth=alice.auth)
    assert set(disks(api, idle)) == {"vdb"}
    data1 = volumes(api, pool, alice.auth)["data1"]
    assert data1["machine"] is None and data1["owner"] == alice.uuid  # hers again
    # the disk made for the machine goes to the machine's owner, not to whoever detached it
    api.ok("POST", f"/rest/machine/{idle}/", data={"action": "detach_disk", "target": "vdb"},
           auth=alice.auth)
    made = next(v for v in volumes(api, pool).values() if v["name"].startswith("idle-disk-"))
    assert made["machine"] is None and made["owner"] == api.machine(idle)["machine_obj"]["owner"]
    assert set(volumes(api, pool, alice.auth)) == {"data1"}
    api.ok("DELETE", f"/rest/pools/{pool}/volumes/data1/", auth=alice.auth)


def test_delete_a_free_volume_of_ones_own(api, alice):
    pool = pool_of(api, "default-pool", alice.auth)["uuid"]
    api.ok("PUT", f"/rest/pools/{pool}/volumes/", data={"name": "scratch", "size": 1},
           auth=alice.auth)
    api.ok("DELETE", f"/rest/pools/{pool}/volumes/scratch/", auth=alice.auth)
    assert "scratch" not in volumes(api, pool)
    expect_error(api.delete(f"/rest/pools/{pool}/volumes/scratch/", auth=alice.auth), 404, 1200)


@pytest.mark.parametrize("data, status, errno", [
    ({"size": 1}, 400, 1001),  # no name
    ({"name": "x"}, 400, 1001),  # no size
    ({"name": "x", "size": "big"}, 400, 1000),
    ({"name": "x", "size": 0}, 400, 1000),
    ({"name": "../x", "size": 1}, 400, 1000),
    ({"name": "x", "size": 200}, 400, 1029),  # more than the 100 GiB pool
    ({"name": "x", "size": 60}, 409, 1326),  # more than its 50 GiB available
    ({"name": "spare.img", "size": 1}, 409, 1300),  # the name is taken
])
def test_bad_new_volumes_are_refused(api, alice, data, status, errno):
    pool = pool_of(api, "default-pool", alice.auth)["uuid"]
    with unchanged(api):
        before = volumes(api, pool)
        expect_error(api.put(f"/rest/pools/{pool}/volumes/", data=data, auth=alice.auth),
                     status, errno)
        assert volumes(api, pool) == before


def test_other_pools_are_for_administrators(api, alice):
    other = pool_of(api, "other", alice.auth)["uuid"]
    expect_error(api.put(f"/rest/pools/{other}/volumes/", data={"name": "x", "size": 1},
                         auth=alice.auth), 403, 1126)
    api.ok("PUT", f"/rest/pools/{other}/volumes/", data={"name": "x", "size": 1})
    expect_error(api.put(f"/rest/pools/{other}/volumes/", data={"name": "x", "size": 1},
                         auth=new_user(api).auth), 404, 1200)  # cannot even read the pool


def idle_uuid(api: Api) -> str:
    return next(o["uuid"] for o in api.ok("GET", "/rest/machines/", params={
        "detail": "true"})["machine_objs"] if o["name"] == "idle")


@pytest.mark.parametrize("data, status, errno", [
    ({"action": "attach_disk"}, 400, 1001),
    ({"action": "attach_disk", "volume": "spare.img", "size": 1}, 400, 1001),
    ({"action": "attach_disk", "volume": "missing.img"}, 404, 1200),
    ({"action": "attach_disk", "volume": "spare.img"}, 403, 1111),  # not hers
    ({"action": "attach_disk", "volume": "web.img"}, 403, 1111),
    ({"action": "attach_disk", "size": 200}, 400, 1029),
    ({"action": "attach_disk", "size": 60}, 409, 1326),
    ({"action": "attach_disk", "size": "lots"}, 400, 1000),
    ({"action": "detach_disk"}, 400, 1001),
    ({"action": "detach_disk", "target": "vdq"}, 404, 1200),
    ({"action": "grow_disk", "target": "vda"}, 400, 1001),
    ({"action": "grow_disk", "target": "vdq", "size": 2}, 404, 1200),
])
def test_bad_disk_changes_are_refused(api, alice, data, status, errno):
    idle = idle_uuid(api)
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{idle}/", data=data, auth=alice.auth),
                     status, errno)


def test_disk_changes_need_modify_on_the_machine(api):
    web = manage(api, "web")
    carol = new_user(api)
    grant(api, web, "control", user=carol.uuid)
    with unchanged(api):
        expect_error(api.post(f"/rest/machine/{web}/", data={
            "action": "attach_disk", "size": 1}, auth=carol.auth), 403, 1101)
        expect_error(api.post(f"/rest/machine/{web}/", data={
            "action": "detach_disk", "target": "vda"}, auth=carol.auth), 403, 1101)
