"""`enomalism network ...` against a running server."""

import ipaddress
import itertools

NET_KEYS = {"uuid", "name", "description", "bridge", "cluster", "ip", "netmask", "prefix",
            "gateway", "version", "ranges", "leased", "created_at"}
_subnets = itertools.count(1)


def subnet() -> str:
    """A /24 of the test's own (ranges must not overlap on one bridge)."""
    return f"10.{200 + next(_subnets) // 250}.{next(_subnets) % 250}.0"


def test_network_commands_table(cloud, own):
    name, cluster, vm = own("net"), own("c"), own("vm")
    cloud.run("cluster", "create", cluster)
    cloud.new_vm(vm)
    base = subnet()
    first = str(ipaddress.ip_address(base) + 10)
    last = str(ipaddress.ip_address(base) + 20)
    r = cloud.run("network", "create", name, "--ip", f"{base}/24", "--bridge", "br-cli",
                  "--gateway", str(ipaddress.ip_address(base) + 1), "--cluster", cluster)
    assert r.code == 0, r.all
    assert r.out.startswith(f"network {name} created: ")
    r = cloud.run("network", "add-range", name, first, last)
    assert r.code == 0 and "(11 addresses)" in r.out
    r = cloud.run("network", "list")
    line = next(x for x in r.out.splitlines() if x.split()[:1] == [name])
    assert f"{base}/24" in line and cluster in line and f"{first}-{last}" in line
    r = cloud.run("network", "show", name)
    assert r.code == 0 and "255.255.255.0" in r.out and first in r.out and cluster in r.out
    r = cloud.run("network", "reserve", name, "--machine", vm, "--note", "by a test")
    assert r.code == 0 and r.out == f"{first} reserved on {name}\n"
    r = cloud.run("network", "reserve", name, last)
    assert r.code == 0 and r.out == f"{last} reserved on {name}\n"
    r = cloud.run("network", "leases", name)
    assert r.code == 0
    held = next(x for x in r.out.splitlines() if x.startswith(first))
    assert vm in held and "by a test" in held
    r = cloud.run("network", "release", name, last)
    assert r.code == 0 and r.out == f"{last} released on {name}\n"
    r = cloud.run("network", "delete", name, "--yes")
    assert r.code == 5  # an address is leased
    r = cloud.run("network", "release", name, first)
    assert r.code == 5 and "totaldelete" in r.err  # a machine's address goes with it
    assert cloud.run("machine", "delete", vm, "--yes").code == 0
    assert cloud.run("network", "leases", name, "--json").json == []
    r = cloud.run("network", "remove-range", name, first)
    assert r.code == 0, r.all
    r = cloud.run("network", "delete", name, input="y\n")
    assert r.code == 0, r.all
    assert cloud.run("network", "show", name).code == 3


def test_network_commands_json(cloud, own):
    name, new = own("net"), own("renamed")
    base = subnet()
    doc = cloud.run("network", "create", name, "--ip", base, "--netmask", "255.255.255.0",
                    "--bridge", "br-cli", "--json").json
    assert set(doc) == NET_KEYS and doc["prefix"] == 24 and doc["cluster"] is None
    uuid = doc["uuid"]
    rng = cloud.run("network", "add-range", uuid[:10], str(ipaddress.ip_address(base) + 5),
                    str(ipaddress.ip_address(base) + 6), "--json").json
    assert set(rng) == {"uuid", "network", "start_ip", "end_ip", "size"} and rng["size"] == 2
    assert [n["uuid"] for n in cloud.run("network", "list", "--json").json].count(uuid) == 1
    shown = cloud.run("network", "show", name, "--json").json
    assert shown["ranges"] == [rng]
    lease = cloud.run("network", "reserve", name, "--json").json
    assert lease["address"] == rng["start_ip"] and lease["machine"] is None
    assert set(lease) == {"uuid", "network", "address", "machine", "mac", "note", "created_at"}
    assert cloud.run("network", "leases", name, "--json").json == [lease]
    assert cloud.run("network", "release", name, lease["address"], "--json").json == lease
    c = cloud.run("cluster", "create", own("c"), "--json").json
    doc = cloud.run("network", "update", name, "--name", new, "--description", "d",
                    "--cluster", c["name"], "--json").json
    assert doc["name"] == new and doc["description"] == "d" and doc["cluster"] == c["uuid"]
    assert cloud.run("network", "update", new, "--no-cluster", "--json").json["cluster"] is None
    doc = cloud.run("network", "remove-range", new, rng["uuid"], "--json").json
    assert doc["iprange"] == rng["uuid"]
    doc = cloud.run("network", "delete", new, "--yes", "--json").json
    assert doc["network"] == uuid


def test_network_errors(cloud, own):
    name = own("net")
    base = subnet()
    r = cloud.run("network", "create", name, "--ip", base, "--bridge", "br-cli")
    assert r.code == 1 and "--netmask" in r.err
    r = cloud.run("network", "create", name, "--ip", "not-an-ip/24", "--bridge", "br-cli",
                  "--json")
    assert r.code == 1 and r.json["errno"] == 1000
    r = cloud.as_alice("network", "create", name, "--ip", f"{base}/24", "--bridge", "br-cli")
    assert r.code == 4
    cloud.run("network", "create", name, "--ip", f"{base}/24", "--bridge", "br-cli")
    r = cloud.run("network", "add-range", name, str(ipaddress.ip_address(base) + 5),
                  "192.168.77.1")
    assert r.code == 1
    r = cloud.run("network", "reserve", name)  # no range: nothing free
    assert r.code in (1, 5)
    r = cloud.run("network", "release", name, str(ipaddress.ip_address(base) + 9))
    assert r.code == 3
    assert cloud.run("network", "leases", "no-such-network").code == 3


def test_a_cluster_that_networks_serve_is_deleted_only_by_force(cloud, own):
    name, cluster = own("net"), own("c")
    cloud.run("cluster", "create", cluster)
    r = cloud.run("network", "create", name, "--ip", f"{subnet()}/24", "--bridge", "br-cli",
                  "--cluster", cluster)
    assert r.code == 0, r.all
    r = cloud.run("cluster", "delete", cluster, "--yes")
    assert r.code == 5 and name in r.err and "force" in r.err, r.all
    assert cloud.run("network", "show", name, "--json").json["cluster"] is not None
    r = cloud.run("cluster", "delete", cluster, "--yes", "--force")
    assert r.code == 0 and r.out.strip().endswith(f"networks left serving no cluster: {name}")
    assert cloud.run("network", "show", name, "--json").json["cluster"] is None
