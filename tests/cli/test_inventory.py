"""`enomalism hypervisor ...` and `enomalism cluster ...` against a running server."""

from tests.fakehost import FakeDomain, write_host

HV_KEYS = {"uuid", "machine", "virt_class", "virt_url", "status", "last_error", "hostname",
           "driver", "libvirt_version", "cpus", "memory_kib", "arch", "connected_at",
           "local_to", "owner_node"}


# -- hypervisors ---------------------------------------------------------------------------

def test_hypervisor_list(cloud):
    r = cloud.run("hypervisor", "list")
    assert r.code == 0, r.all
    assert r.out.splitlines()[0].split()[:4] == ["UUID", "HOST", "CLASS", "URI"]
    assert cloud.h1_uri in r.out and cloud.h2_uri in r.out and "connected" in r.out
    doc = cloud.run("hypervisor", "list", "--json").json
    assert all(set(h) == HV_KEYS for h in doc)
    assert {cloud.h1, cloud.h2} <= {h["uuid"] for h in doc}
    local = cloud.run("hypervisor", "list", "--host", cloud.host[:8], "--json").json
    assert {h["uuid"] for h in local} == {cloud.h1, cloud.h2}


def test_node_list(cloud):
    r = cloud.run("node", "list")
    assert r.code == 0, r.all
    assert r.out.splitlines()[0].split()[:4] == ["ID", "MACHINE", "PID", "ALIVE"]
    (node,) = cloud.run("node", "list", "--json").json
    assert node["alive"] is True
    assert {cloud.h1, cloud.h2} <= set(node["hypervisors"])
    hv = cloud.run("hypervisor", "show", cloud.h1, "--json").json
    assert hv["owner_node"] == node["id"]


def test_hypervisor_show_by_uuid_prefix_or_uri(cloud):
    for ref in (cloud.h1, cloud.h1[:8], cloud.h1_uri):
        r = cloud.run("hypervisor", "show", ref)
        assert r.code == 0, r.all
        assert cloud.h1 in r.out and cloud.h1_uri in r.out and "test" in r.out
    doc = cloud.run("hypervisor", "show", cloud.h2_uri, "--json").json
    assert set(doc) == HV_KEYS and doc["uuid"] == cloud.h2 and doc["machine"] == cloud.host
    r = cloud.run("hypervisor", "show", "test:///nowhere.xml")
    assert r.code == 3


def test_hypervisor_add_and_delete(cloud, own, tmp_path):
    host = own("node")
    cloud.ok("PUT", "/rest/hosts/", json={"name": host})
    uri = write_host(tmp_path / "node.xml", [FakeDomain("far", state="shutoff")])
    r = cloud.run("hypervisor", "add", host, uri)
    assert r.code == 0, r.all
    assert r.out.startswith(f"hypervisor {uri} added to {host} as ")
    hv = r.out.split()[-2]
    r = cloud.run("hypervisor", "add", host, uri, "--json")
    assert r.code == 5  # the URL is taken
    r = cloud.run("hypervisor", "delete", hv, input="n\n")
    assert r.code == 1
    doc = cloud.run("hypervisor", "delete", uri, "--yes", "--json").json
    assert doc["hypervisor"] == hv and doc["message"]
    assert cloud.run("hypervisor", "show", hv).code == 3
    doc = cloud.run("hypervisor", "add", host, uri, "--virt-class", "test", "--json").json
    assert set(doc) == HV_KEYS and doc["virt_url"] == uri and doc["status"] == "connected"


def test_hypervisor_refusals(cloud):
    r = cloud.run("hypervisor", "delete", cloud.h1, "--yes")
    assert r.code == 5 and "managed" in r.err  # it still has managed machines
    r = cloud.run("hypervisor", "add", cloud.host, "qemu+tcp://127.0.0.1:1/system", "--json")
    assert r.code == 1 and r.json["errno"] == 1501 and r.json["status"] == 503
    r = cloud.as_alice("hypervisor", "add", cloud.host, "test:///default")
    assert r.code in (3, 4)


def test_hypervisor_candidates(cloud):
    r = cloud.run("hypervisor", "candidates")
    assert r.code == 0 and r.out.splitlines()[0].split() == ["CLASS", "URI", "REACHABLE"]
    assert isinstance(cloud.run("hypervisor", "candidates", "--json").json, list)


# -- clusters ------------------------------------------------------------------------------

def test_cluster_lifecycle_table(cloud, own):
    name, new = own("c"), own("renamed")
    r = cloud.run("cluster", "create", name)
    assert r.code == 0, r.all
    uuid = r.out.split()[-1]
    assert r.out == f"cluster {name} created: {uuid}\n"
    assert name in cloud.run("cluster", "list").out
    r = cloud.run("cluster", "add-machine", name, "web", "db")
    assert r.code == 0, r.all
    assert "web added to cluster" in r.out and "db added to cluster" in r.out
    r = cloud.run("cluster", "show", uuid[:10])
    assert r.code == 0 and "web" in r.out and "db" in r.out and cloud.names["web"] in r.out
    r = cloud.run("cluster", "remove-machine", name, "db")
    assert r.code == 0 and "db removed from cluster" in r.out
    r = cloud.run("cluster", "rename", name, new)
    assert r.code == 0 and r.out == f"cluster {name} renamed to {new}\n"
    r = cloud.run("cluster", "delete", new, input="y\n")
    assert r.code == 0, r.all
    assert new not in cloud.run("cluster", "list").out


def test_cluster_lifecycle_json(cloud, own):
    name = own("c")
    doc = cloud.run("cluster", "create", name, "--json").json
    assert set(doc) == {"uuid", "name", "machines"} and doc["machines"] == []
    uuid = doc["uuid"]
    doc = cloud.run("cluster", "add-machine", uuid, "web", "--json").json
    assert doc["machines"] == [cloud.names["web"]]
    listed = cloud.run("cluster", "list", "--json").json
    assert {"uuid": uuid, "name": name, "machines": [cloud.names["web"]]} in listed
    assert cloud.run("cluster", "show", name, "--json").json == listed[
        [c["uuid"] for c in listed].index(uuid)]
    assert cloud.run("cluster", "remove-machine", name, "web", "--json").json["machines"] == []
    assert cloud.run("cluster", "rename", name, name + "x", "--json").json["name"] == name + "x"
    doc = cloud.run("cluster", "delete", name + "x", "--yes", "--json").json
    assert doc["cluster"] == uuid


def test_cluster_errors(cloud, own):
    name = own("c")
    cloud.run("cluster", "create", name)
    r = cloud.run("cluster", "create", name)
    assert r.code == 5 and "error 1300" in r.err
    assert cloud.run("cluster", "show", "no-such-cluster").code == 3
    r = cloud.run("cluster", "add-machine", name, "no-such-machine", "--json")
    assert r.code == 3 and r.json["errno"] == 1200
    r = cloud.run("cluster", "remove-machine", name, "web")
    assert r.code == 1 and "not in cluster" in r.err
    # alice cannot see the admin's cluster; her own she may change
    assert cloud.as_alice("cluster", "rename", name, own("x")).code == 3
    mine = own("alices")
    assert cloud.as_alice("cluster", "create", mine).code == 0
    assert cloud.as_alice("cluster", "delete", mine, "--yes").code == 0
