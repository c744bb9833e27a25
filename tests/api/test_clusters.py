"""Spec 2.7 (machine/<UUID>/clusters, with the DELETE extension) and 2.21 to 2.23 (cluster,
cluster/list, cluster/<UUID>)."""

import uuid as uuidlib

import pytest

from tests.conftest import expect_error, new_vm, unchanged, vm_uuid

SLASHES = pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])


def create(api, name: str) -> dict:  # noqa: ANN001
    return api.ok("PUT", "/rest/cluster/", data={"cluster_name": name})["cluster"]


def names(api) -> list[str]:  # noqa: ANN001
    return [c["name"] for c in api.ok("GET", "/rest/cluster/list/")["clusters"]]


def members(api, cluster: str) -> list[str]:  # noqa: ANN001
    return api.ok("GET", f"/rest/cluster/{cluster}/")["cluster"]["machines"]


def clusters_of(api, machine: str) -> list[str]:  # noqa: ANN001
    return [c["uuid"] for c in api.ok("GET", f"/rest/machine/{machine}/clusters/")["clusters"]]


@pytest.fixture(scope="module")
def two(shared_api):  # noqa: ANN001, ANN201
    """The shared server with clusters "east" (holding web) and "west" (empty)."""
    api = shared_api
    east, west = create(api, "east"), create(api, "west")
    api.ok("POST", f"/rest/machine/{vm_uuid(api, 'web')}/clusters/",
           data={"clusters": east["uuid"]})
    return api, {"east": east["uuid"], "west": west["uuid"]}


# -- 2.21 cluster, 2.22 cluster/list -----------------------------------------------------------

@SLASHES
def test_create_a_cluster(sandbox, own, slash):
    api = sandbox
    body = api.ok("PUT", f"/rest/cluster{slash}", data={"cluster_name": own})
    assert set(body) >= {"cluster", "errno", "message"}
    c = body["cluster"]
    assert c["name"] == own and c["machines"] == []
    assert str(uuidlib.UUID(c["uuid"])) == c["uuid"]
    assert own in names(api)


@SLASHES
def test_cluster_lists(two, slash):
    api, ids = two
    listed = api.ok("GET", f"/rest/cluster{slash}")["cluster"]
    assert [(c["name"], c["uuid"]) for c in listed] == [("east", ids["east"]),
                                                        ("west", ids["west"])]
    for method in ("GET", "POST"):
        body = api.ok(method, f"/rest/cluster/list{slash}")
        assert set(body) >= {"clusters", "errno", "message"}
        assert body["clusters"] == listed


@pytest.mark.parametrize("variables, status, errno", [
    ({}, 400, 1001),
    ({"cluster_name": "  "}, 400, 1001),
    ({"cluster_name": "east"}, 409, 1300),
    ({"cluster_name": "x" * 256}, 400, 1000),
])
def test_create_refused(two, variables, status, errno):
    api, _ = two
    with unchanged(api):
        expect_error(api.put("/rest/cluster/", data=variables), status, errno)


@pytest.mark.parametrize("method, path", [
    ("POST", "/rest/cluster/"), ("DELETE", "/rest/cluster/"), ("PUT", "/rest/cluster/list/"),
])
def test_methods_the_spec_does_not_list(two, method, path):
    api, _ = two
    with unchanged(api):
        expect_error(api.request(method, path, data={"cluster_name": "x"}), 405, 1005)


# -- 2.23 cluster/<UUID> ------------------------------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_get_a_cluster(two, method, slash):
    api, ids = two
    body = api.ok(method, f"/rest/cluster/{ids['east']}{slash}")
    assert set(body) >= {"errno", "message"}
    assert body["cluster"] == {"uuid": ids["east"], "name": "east",
                               "machines": [vm_uuid(api, "web")]}


@SLASHES
def test_rename_a_cluster(sandbox, own, slash):
    api = sandbox
    c = create(api, own)
    body = api.ok("POST", f"/rest/cluster/{c['uuid']}{slash}",
                  data={"action": "rename", "cluster_name": f"{own}-new"})
    assert body["cluster"]["name"] == f"{own}-new"
    assert f"{own}-new" in names(api) and own not in names(api)


def test_rename_to_its_own_name(sandbox, own):
    api = sandbox
    c = create(api, own)
    api.ok("POST", f"/rest/cluster/{c['uuid']}/", data={"action": "rename", "cluster_name": own})
    assert api.ok("GET", f"/rest/cluster/{c['uuid']}/")["cluster"]["name"] == own


@pytest.mark.parametrize("variables, status, errno", [
    ({"action": "rename"}, 400, 1001),
    ({"action": "rename", "cluster_name": "west"}, 409, 1300),
    ({"action": "explode", "cluster_name": "x"}, 400, 1003),
])
def test_cluster_update_refused(two, variables, status, errno):
    api, ids = two
    with unchanged(api):
        expect_error(api.post(f"/rest/cluster/{ids['east']}/", data=variables), status, errno)


@SLASHES
def test_delete_a_cluster_keeps_its_machines(sandbox, own, slash):
    api = sandbox
    c = create(api, own)
    vm = new_vm(api, own, managed=False)
    api.ok("POST", f"/rest/machine/{vm}/clusters/", data={"clusters": c["uuid"]})
    body = api.ok("DELETE", f"/rest/cluster/{c['uuid']}{slash}")
    assert body["errno"] == 0 and own in body["message"]
    expect_error(api.get(f"/rest/cluster/{c['uuid']}/"), 404, 1200)
    assert own not in names(api)
    assert clusters_of(api, vm) == []
    assert api.machine(vm)["machine_obj"]["clusters"] == []


# -- 2.7 machine/<UUID>/clusters -------------------------------------------------------------

@SLASHES
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_machine_clusters(two, method, slash):
    api, ids = two
    web = vm_uuid(api, "web")
    if method == "POST":  # POST adding a cluster it is already in changes nothing
        with unchanged(api):
            body = api.ok(method, f"/rest/machine/{web}/clusters{slash}",
                          data={"clusters": ids["east"]})
    else:
        body = api.ok(method, f"/rest/machine/{web}/clusters{slash}")
    assert set(body) >= {"clusters", "errno", "message"}
    assert [c["uuid"] for c in body["clusters"]] == [ids["east"]]
    assert api.machine(web)["machine_obj"]["clusters"] == [ids["east"]]


@pytest.mark.parametrize("how", ["comma", "repeated"])
def test_add_a_machine_to_several_clusters(sandbox, own, how):
    api = sandbox
    a, b = create(api, f"{own}-a")["uuid"], create(api, f"{own}-b")["uuid"]
    idle = new_vm(api, own, managed=False)
    data = {"clusters": f"{a},{b}"} if how == "comma" else {"clusters": [a, b]}
    api.ok("POST", f"/rest/machine/{idle}/clusters/", data=data)
    assert clusters_of(api, idle) == [a, b]
    assert members(api, a) == members(api, b) == [idle]


def test_hosts_join_clusters_too(sandbox, own):
    api = sandbox
    c = create(api, own)["uuid"]
    api.ok("POST", f"/rest/machine/{api.local_host()}/clusters/", data={"clusters": c})
    assert members(api, c) == [api.local_host()]


@SLASHES
def test_remove_a_machine_from_a_cluster(sandbox, own, slash):
    api = sandbox
    a, b = create(api, f"{own}-a")["uuid"], create(api, f"{own}-b")["uuid"]
    web = new_vm(api, own, managed=False)
    api.ok("POST", f"/rest/machine/{web}/clusters/", data={"clusters": f"{a},{b}"})
    body = api.ok("DELETE", f"/rest/machine/{web}/clusters{slash}", params={"clusters": a})
    assert [c["uuid"] for c in body["clusters"]] == [b]
    assert members(api, a) == [] and members(api, b) == [web]


def _bad_membership(ids: dict, case: str) -> dict:
    return {
        "none": {},
        "unknown": {"clusters": str(uuidlib.uuid4())},
        "one unknown of two": {"clusters": f"{ids['west']},{uuidlib.uuid4()}"},
        "malformed": {"clusters": "rack-1"},
        "not a member": {"clusters": ids["west"]},
    }[case]


@pytest.mark.parametrize("method, case, status, errno", [
    ("POST", "unknown", 404, 1200),
    ("POST", "one unknown of two", 404, 1200),
    ("POST", "malformed", 400, 1002),
    ("DELETE", "none", 400, 1001),
    ("DELETE", "unknown", 404, 1200),
    ("DELETE", "malformed", 400, 1002),
    ("DELETE", "not a member", 400, 1000),
])
def test_membership_refused(two, method, case, status, errno):
    api, ids = two
    web = vm_uuid(api, "web")
    with unchanged(api):
        r = api.request(method, f"/rest/machine/{web}/clusters/",
                        params=_bad_membership(ids, case))
        expect_error(r, status, errno)


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_cluster_named_twice_counts_once(sandbox, own, method):
    api = sandbox
    c = create(api, own)["uuid"]
    vm = new_vm(api, own, managed=False)
    if method == "DELETE":
        api.ok("POST", f"/rest/machine/{vm}/clusters/", data={"clusters": c})
    body = api.ok(method, f"/rest/machine/{vm}/clusters/", params={"clusters": f"{c},{c}"})
    assert [x["uuid"] for x in body["clusters"]] == ([c] if method == "POST" else [])
    assert members(api, c) == ([vm] if method == "POST" else [])
