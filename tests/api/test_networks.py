"""Spec section 7 (static networks): networks, their IP ranges and cluster, and the extensions
(leases listed, reserved and released by hand, a range deleted). Every endpoint with the spec's
return keys, with and without the trailing slash; IPv4 and IPv6; the netmask as a dotted mask
and as a prefix length. Every bad input of issue 5 is refused with its status and errno and
changes nothing (the networks, ranges, clusters and leases as the API shows them, the lease rows
of the database, and conftest's `unchanged` world). Provision requests lease addresses on the
networks of the target host's clusters: on libvirt's test driver the transaction then fails
(its storage takes no uploads) or is cancelled, and the leases go with the machine.

Tests share one server per module (`sandbox`) and each works on networks, bridges and clusters
named after itself, so the rule that ranges on one bridge never overlap keeps tests apart."""

import ipaddress
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from enomalism.store.models import IPRange, Lease, Network
from tests.api.accounts import grant, new_user
from tests.conftest import Api, expect_error, new_vm, serve, unchanged
from tests.fakehost import add_bridge, write_host
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    feed_item,
    have_qemu_img,
    make_qcow2,
    publish,
    running,
    wait_tx,
)

NO_SUCH = "6f1b2c3d-0000-4000-8000-000000000000"
SLASHES = pytest.mark.parametrize("slash", ["/", ""], ids=["slash", "no-slash"])
NETWORK_KEYS = {"uuid", "name", "description", "bridge", "cluster", "ip", "netmask", "prefix",
                "gateway", "version", "ranges", "leased", "created_at"}
RANGE_KEYS = {"uuid", "network", "start_ip", "end_ip", "size"}
LEASE_KEYS = {"uuid", "network", "address", "machine", "mac", "note", "created_at"}


# -- helpers --------------------------------------------------------------------------------------


def create(api: Api, name: str, *, bridge: str | None = None, ip: str = "10.0.0.0",
           netmask: str = "24", gateway: str | None = "10.0.0.1", **more: str) -> dict:
    data = {"name": name, "bridge": bridge or f"br-{name}", "ip": ip, "netmask": netmask,
            **more}
    add_bridge(api, data["bridge"])
    if gateway is not None:
        data["gateway"] = gateway
    return api.ok("PUT", "/rest/networks/", data=data)["network"]


def add_range(api: Api, net: str, start: str, end: str) -> dict:
    body = api.ok("POST", f"/rest/networks/{net}/iprange/", data={"start_ip": start,
                                                                  "end_ip": end})
    return next(r for r in body["ranges"] if (r["start_ip"], r["end_ip"]) == (start, end))


def reserve(api: Api, net: str, **data: str) -> dict:
    return api.ok("PUT", f"/rest/networks/{net}/leases/", data=data)["lease"]


def leases(api: Api, net: str) -> list[dict]:
    return api.ok("GET", f"/rest/networks/{net}/leases/")["leases"]


def network(api: Api, net: str) -> dict:
    return api.ok("GET", f"/rest/networks/{net}/")["network"]


def new_cluster(api: Api, name: str, *machines: str) -> str:
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": name})["cluster"]["uuid"]
    for m in machines:
        api.ok("POST", f"/rest/machine/{m}/clusters/", data={"clusters": c})
    return c


def lease_rows(api: Api) -> list[tuple]:
    """Every lease as the database holds it."""
    with api.app.state.db.session(write=False) as s:
        return sorted((x.network_uuid, x.address, x.machine_uuid, x.mac, x.note)
                      for x in s.scalars(select(Lease)))


def network_state(api: Api, nets: tuple[str, ...]) -> dict:
    """Every network as the API lists it, the ranges, cluster and leases of `nets` as their
    own GETs answer, and every row of the networks, ranges and leases tables."""
    out = {}
    for u in nets:
        out[u] = (api.ok("GET", f"/rest/networks/{u}/")["network"],
                  api.ok("GET", f"/rest/networks/{u}/iprange/")["ranges"],
                  api.ok("GET", f"/rest/networks/{u}/cluster/")["cluster"], leases(api, u))
    with api.app.state.db.session(write=False) as s:
        rows = (sorted((n.uuid, n.name, n.bridge, n.cluster_uuid, n.address, n.prefix, n.gateway,
                        n.description) for n in s.scalars(select(Network))),
                sorted((r.uuid, r.network_uuid, r.start_ip, r.end_ip)
                       for r in s.scalars(select(IPRange))))
    return {"list": api.ok("GET", "/rest/networks/")["networks"], "detail": out, "rows": rows,
            "leases": lease_rows(api)}


@contextmanager
def nothing_changed(api: Api, *nets: str) -> Iterator[None]:
    """The block changes no network, range, cluster, lease, machine, domain or volume (`nets`:
    the networks whose every GET is compared too)."""
    before = network_state(api, nets)
    with unchanged(api):
        yield
    assert network_state(api, nets) == before


@pytest.fixture
def net4(sandbox: Api, own: str) -> dict:
    """An IPv4 network 10.0.0.0/24 (gateway .1) on its own bridge, with the range .10-.19."""
    n = create(sandbox, own)
    add_range(sandbox, n["uuid"], "10.0.0.10", "10.0.0.19")
    return network(sandbox, n["uuid"])


@pytest.fixture
def net6(sandbox: Api, own: str) -> dict:
    """An IPv6 network fd00:5::/64 (gateway fd00:5::1) with the range fd00:5::100-1ff."""
    n = create(sandbox, own, ip="fd00:5::", netmask="64", gateway="fd00:5::1")
    add_range(sandbox, n["uuid"], "fd00:5::100", "fd00:5::1ff")
    return network(sandbox, n["uuid"])


# -- 7.1 networks ---------------------------------------------------------------------------------


@SLASHES
def test_create_and_list(sandbox, own, slash):
    api = sandbox
    c = new_cluster(api, f"c-{own}")
    body = api.ok("PUT", f"/rest/networks{slash}",
                  data={"name": own, "description": "the office", "bridge": f"br-{own}",
                        "cluster": c, "ip": "192.168.40.0", "netmask": "255.255.255.0",
                        "gateway": "192.168.40.1"})
    assert set(body) >= {"networks", "errno", "message"} and body["errno"] == 0
    n = body["network"]
    assert body["networks"] == [n]
    assert set(n) == NETWORK_KEYS
    assert str(uuidlib.UUID(n["uuid"])) == n["uuid"]
    assert {k: n[k] for k in NETWORK_KEYS - {"uuid", "created_at"}} == {
        "name": own, "description": "the office", "bridge": f"br-{own}", "cluster": c,
        "ip": "192.168.40.0", "netmask": "255.255.255.0", "prefix": 24,
        "gateway": "192.168.40.1", "version": 4, "ranges": [], "leased": 0}
    listed = api.ok("GET", f"/rest/networks{slash}")
    assert set(listed) == {"networks", "errno", "message"} and listed["errno"] == 0
    assert [x for x in listed["networks"] if x["uuid"] == n["uuid"]] == [n]
    names = [x["name"] for x in listed["networks"]]
    assert names == sorted(names)


@pytest.mark.parametrize("ip, netmask, net, mask, prefix", [
    ("10.1.0.0", "255.255.255.0", "10.1.0.0", "255.255.255.0", 24),
    ("10.1.0.0", "24", "10.1.0.0", "255.255.255.0", 24),
    ("10.1.0.0", "/24", "10.1.0.0", "255.255.255.0", 24),
    ("10.64.0.0", "255.192.0.0", "10.64.0.0", "255.192.0.0", 10),
    ("10.64.0.0", "10", "10.64.0.0", "255.192.0.0", 10),
    ("192.168.9.8", "255.255.255.252", "192.168.9.8", "255.255.255.252", 30),
    ("192.168.9.8", "30", "192.168.9.8", "255.255.255.252", 30),
    ("fd00:1::", "64", "fd00:1::", "ffff:ffff:ffff:ffff::", 64),
    ("FD00:0001:0000::", "/48", "fd00:1::", "ffff:ffff:ffff::", 48),
    ("2001:db8:0:0:0:0:0:0", "32", "2001:db8::", "ffff:ffff::", 32),
    ("fd00:1::", "ffff:ffff:ffff:ffff::", "fd00:1::", "ffff:ffff:ffff:ffff::", 64),
], ids=lambda v: str(v))
def test_netmask_as_a_dotted_mask_or_a_prefix_length(sandbox, own, ip, netmask, net, mask,
                                                     prefix):
    n = create(sandbox, own, ip=ip, netmask=netmask, gateway=None)
    assert (n["ip"], n["netmask"], n["prefix"], n["version"]) == \
        (net, mask, prefix, 6 if ":" in net else 4)
    assert network(sandbox, n["uuid"]) == n


def test_the_answer_can_be_sent_back(sandbox, own):
    """What GET shows (ip, netmask, gateway) creates the same network again, IPv4 and IPv6."""
    for i, (ip, mask, gw) in enumerate([("172.16.0.0", "12", "172.16.0.1"),
                                        ("fd00:77::", "56", "fd00:77::1")]):
        n = create(sandbox, f"{own}-{i}", ip=ip, netmask=mask, gateway=gw)
        again = create(sandbox, f"{own}-{i}-again", ip=n["ip"], netmask=n["netmask"],
                       gateway=n["gateway"])
        assert (again["ip"], again["netmask"], again["prefix"], again["gateway"]) == \
            (n["ip"], n["netmask"], n["prefix"], n["gateway"])


# -- 7.2 networks/<UUID> ---------------------------------------------------------------------------


@SLASHES
def test_get_change_and_delete_a_network(sandbox, own, slash, net4):
    api, u = sandbox, net4["uuid"]
    body = api.ok("GET", f"/rest/networks/{u}{slash}")
    assert set(body) == {"network", "errno", "message"}
    assert body["network"] == net4
    assert [(r["start_ip"], r["end_ip"], r["size"]) for r in net4["ranges"]] == \
        [("10.0.0.10", "10.0.0.19", 10)]
    c = new_cluster(api, f"c-{own}")
    body = api.ok("POST", f"/rest/networks/{u}{slash}",
                  data={"name": f"{own}-renamed", "description": "lab", "bridge": f"br2-{own}",
                        "cluster": c})
    assert set(body) == {"network", "errno", "message"} and body["message"]
    changed = body["network"]
    assert (changed["name"], changed["description"], changed["bridge"], changed["cluster"]) == \
        (f"{own}-renamed", "lab", f"br2-{own}", c)
    # the addresses are not changed by POST: only the spec's four variables
    assert {k: changed[k] for k in ("ip", "netmask", "gateway", "ranges")} == \
        {k: net4[k] for k in ("ip", "netmask", "gateway", "ranges")}
    assert network(api, u) == changed
    # one variable at a time; an empty description clears it, an empty cluster unassigns
    api.ok("POST", f"/rest/networks/{u}{slash}", data={"description": ""})
    api.ok("POST", f"/rest/networks/{u}{slash}", data={"cluster": ""})
    now = network(api, u)
    assert (now["name"], now["description"], now["cluster"]) == (f"{own}-renamed", None, None)
    # its own name again is no clash
    api.ok("POST", f"/rest/networks/{u}{slash}", data={"name": f"{own}-renamed"})

    body = api.ok("DELETE", f"/rest/networks/{u}{slash}")
    assert body["errno"] == 0 and body["message"]
    expect_error(api.get(f"/rest/networks/{u}/"), 404, 1200)
    assert u not in [n["uuid"] for n in api.ok("GET", "/rest/networks/")["networks"]]
    with api.app.state.db.session(write=False) as s:  # its ranges went with it
        assert not list(s.scalars(select(IPRange).where(IPRange.network_uuid == u)))


def test_a_network_without_leases_moves_to_another_bridge(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    api.ok("POST", f"/rest/networks/{u}/", data={"bridge": f"other-{own}"})
    assert network(api, u)["bridge"] == f"other-{own}"


# -- 7.3 iprange, 7.4 iprange/<RUUID> --------------------------------------------------------------


@SLASHES
def test_ranges(sandbox, own, slash):
    api = sandbox
    u = create(api, own)["uuid"]
    body = api.ok("GET", f"/rest/networks/{u}/iprange{slash}")
    assert set(body) == {"network", "ranges", "errno", "message"}
    assert body["ranges"] == [] and body["network"]["uuid"] == u
    body = api.ok("POST", f"/rest/networks/{u}/iprange{slash}",
                  data={"start_ip": "10.0.0.2", "end_ip": "10.0.0.99"})
    assert set(body) == {"network", "ranges", "errno", "message"} and body["message"]
    (r,) = body["ranges"]
    assert set(r) == RANGE_KEYS
    assert (r["network"], r["start_ip"], r["end_ip"], r["size"]) == (u, "10.0.0.2",
                                                                     "10.0.0.99", 98)
    assert body["network"]["ranges"] == [r]
    # a second range, and a single address
    api.ok("POST", f"/rest/networks/{u}/iprange{slash}",
           data={"start_ip": "10.0.0.200", "end_ip": "10.0.0.254"})
    api.ok("POST", f"/rest/networks/{u}/iprange{slash}",
           data={"start_ip": "10.0.0.150", "end_ip": "10.0.0.150"})
    ranges = api.ok("GET", f"/rest/networks/{u}/iprange{slash}")["ranges"]
    assert [(x["start_ip"], x["end_ip"], x["size"]) for x in ranges] == [
        ("10.0.0.2", "10.0.0.99", 98), ("10.0.0.200", "10.0.0.254", 55),
        ("10.0.0.150", "10.0.0.150", 1)]
    # POST without variables answers like GET
    assert api.ok("POST", f"/rest/networks/{u}/iprange{slash}")["ranges"] == ranges

    # 7.4: one range
    body = api.ok("GET", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}")
    assert set(body) == {"iprange", "errno", "message"} and body["iprange"] == r
    body = api.ok("PUT", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}",
                  data={"start_ip": "10.0.0.5", "end_ip": "10.0.0.50"})
    assert set(body) == {"iprange", "errno", "message"} and body["message"]
    assert (body["iprange"]["start_ip"], body["iprange"]["end_ip"], body["iprange"]["size"]) == \
        ("10.0.0.5", "10.0.0.50", 46)
    # one end at a time
    api.ok("PUT", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}", data={"end_ip": "10.0.0.60"})
    api.ok("PUT", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}", data={"start_ip": "10.0.0.3"})
    got = api.ok("GET", f"/rest/networks/{u}/iprange/{r['uuid']}/")["iprange"]
    assert (got["start_ip"], got["end_ip"]) == ("10.0.0.3", "10.0.0.60")
    # moved over addresses another range of the network had before: fine once they are free
    api.ok("PUT", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}",
           data={"start_ip": "10.0.0.100", "end_ip": "10.0.0.149"})
    # the extension: delete a range
    body = api.ok("DELETE", f"/rest/networks/{u}/iprange/{r['uuid']}{slash}")
    assert body["errno"] == 0 and body["message"] and body["iprange"] is None
    expect_error(api.get(f"/rest/networks/{u}/iprange/{r['uuid']}/"), 404, 1200)
    assert len(api.ok("GET", f"/rest/networks/{u}/iprange/")["ranges"]) == 2


def test_ipv6_ranges_and_leases(sandbox, own, net6):
    api, u = sandbox, net6["uuid"]
    assert (net6["version"], net6["netmask"]) == (6, "ffff:ffff:ffff:ffff::")
    assert [(r["start_ip"], r["end_ip"], r["size"]) for r in net6["ranges"]] == \
        [("fd00:5::100", "fd00:5::1ff", 256)]
    # addresses are normalized: written any way, they are the same address
    add_range(api, u, "fd00:5::ffff:0", "fd00:5::ffff:ffff")
    r = api.ok("POST", f"/rest/networks/{u}/iprange/",
               data={"start_ip": "FD00:5:0:0::0:1:0", "end_ip": "fd00:5::1:00ff"})
    assert [(x["start_ip"], x["end_ip"]) for x in r["ranges"]][-1] == \
        ("fd00:5::1:0", "fd00:5::1:ff")
    first = reserve(api, u)
    assert first["address"] == "fd00:5::100"
    given = reserve(api, u, address="FD00:5::0:1:0042")
    assert given["address"] == "fd00:5::1:42"
    expect_error(api.put(f"/rest/networks/{u}/leases/", data={"address": "fd00:5::1:42"}),
                 409, 1300)
    # a whole /64 as one range: its size is exact, and the first free address is found at once
    big = create(api, f"{own}-big", ip="fd00:6::", netmask="64", gateway="fd00:6::1")["uuid"]
    r = add_range(api, big, "fd00:6::2", "fd00:6::ffff:ffff:ffff:ffff")
    assert r["size"] == 2 ** 64 - 2
    assert reserve(api, big)["address"] == "fd00:6::2"
    assert reserve(api, big)["address"] == "fd00:6::3"
    # released through the path, written any way
    body = api.ok("DELETE", f"/rest/networks/{u}/leases/FD00:5:0::1:42/")
    assert body["lease"]["address"] == "fd00:5::1:42"
    assert [x["address"] for x in leases(api, u)] == ["fd00:5::100"]


# -- 7.5 cluster -----------------------------------------------------------------------------------


@SLASHES
def test_cluster(sandbox, own, slash, net4):
    api, u = sandbox, net4["uuid"]
    body = api.ok("GET", f"/rest/networks/{u}/cluster{slash}")
    assert set(body) == {"cluster", "errno", "message"} and body["cluster"] is None
    c = new_cluster(api, f"c-{own}", api.local_host())
    body = api.ok("PUT", f"/rest/networks/{u}/cluster{slash}", data={"cluster": c})
    assert set(body) == {"cluster", "errno", "message"} and body["message"]
    assert body["cluster"] == api.ok("GET", f"/rest/cluster/{c}/")["cluster"]
    assert body["cluster"]["machines"] == [api.local_host()]
    assert api.ok("GET", f"/rest/networks/{u}/cluster{slash}")["cluster"]["uuid"] == c
    assert network(api, u)["cluster"] == c
    # empty: no cluster
    body = api.ok("PUT", f"/rest/networks/{u}/cluster{slash}", data={"cluster": ""})
    assert body["cluster"] is None and network(api, u)["cluster"] is None
    # a cluster that networks serve is deleted only when forced, and the answer names them
    api.ok("PUT", f"/rest/networks/{u}/cluster/", data={"cluster": c})
    with nothing_changed(api, u):
        body = expect_error(api.request("DELETE", f"/rest/cluster/{c}/"), 409, 1371)
    assert net4["name"] in body["message"] and "force=1" in body["message"]
    body = api.ok("DELETE", f"/rest/cluster/{c}/", params={"force": "1"})
    assert body["message"].endswith(f"networks left serving no cluster: {net4['name']}")
    assert api.ok("GET", f"/rest/networks/{u}/cluster/")["cluster"] is None
    assert network(api, u)["cluster"] is None


# -- leases (extension) ----------------------------------------------------------------------------


@SLASHES
def test_leases_reserved_listed_and_released(sandbox, own, slash, net4):
    api, u = sandbox, net4["uuid"]
    body = api.ok("GET", f"/rest/networks/{u}/leases{slash}")
    assert set(body) == {"leases", "errno", "message"} and body["leases"] == []
    body = api.ok("PUT", f"/rest/networks/{u}/leases{slash}")
    assert set(body) == {"lease", "errno", "message"} and body["message"]
    first = body["lease"]
    assert set(first) == LEASE_KEYS
    assert (first["network"], first["address"], first["machine"]) == (u, "10.0.0.10", None)
    assert first["mac"].startswith("52:54:00:") and first["note"]
    # POST does the same; a given address, MAC (any case) and note
    vm = new_vm(api, own)
    given = api.ok("POST", f"/rest/networks/{u}/leases{slash}",
                   data={"address": "10.0.0.15", "mac": "52:54:00:AB:cd:01",
                         "note": "printer", "machine": vm})["lease"]
    assert (given["address"], given["mac"], given["note"], given["machine"]) == \
        ("10.0.0.15", "52:54:00:ab:cd:01", "printer", vm)
    nxt = reserve(api, u)
    assert nxt["address"] == "10.0.0.11"
    listed = api.ok("GET", f"/rest/networks/{u}/leases{slash}")["leases"]
    assert [x["address"] for x in listed] == ["10.0.0.10", "10.0.0.11", "10.0.0.15"]
    assert listed[2] == given
    assert network(api, u)["leased"] == 3
    # the machine's info shows its lease
    info = api.machine(vm)["info"]
    assert info["leases"] == [{"network": u, "network_name": own, "address": "10.0.0.15",
                               "prefix": 24, "gateway": "10.0.0.1", "mac": "52:54:00:ab:cd:01",
                               "bridge": f"br-{own}"}]
    body = api.ok("DELETE", f"/rest/networks/{u}/leases/10.0.0.11{slash}")
    assert set(body) == {"lease", "errno", "message"} and body["lease"] == nxt
    assert [x["address"] for x in leases(api, u)] == ["10.0.0.10", "10.0.0.15"]
    # the freed address is the next one handed out again
    assert reserve(api, u)["address"] == "10.0.0.11"


def test_next_free_skips_taken_addresses_and_spans_ranges(sandbox, own):
    api = sandbox
    u = create(api, own, gateway="10.0.0.1")["uuid"]
    add_range(api, u, "10.0.0.200", "10.0.0.201")  # ranges are used lowest address first
    add_range(api, u, "10.0.0.2", "10.0.0.3")
    reserve(api, u, address="10.0.0.2")
    got = [reserve(api, u)["address"] for _ in range(3)]
    assert got == ["10.0.0.3", "10.0.0.200", "10.0.0.201"]
    body = expect_error(api.put(f"/rest/networks/{u}/leases/"), 409, 1301)
    assert "no free address" in body["message"]


def test_totaldelete_releases_a_machines_lease(sandbox, own, net4):
    """The leases go with the machine's record."""
    api, u = sandbox, net4["uuid"]
    vm = new_vm(api, own)
    reserve(api, u, machine=vm, address="10.0.0.12")
    reserve(api, u, address="10.0.0.13")  # reserved by hand: stays
    api.ok("POST", f"/rest/machine/{vm}/actions/totaldelete/")
    assert [(x["address"], x["machine"]) for x in leases(api, u)] == [("10.0.0.13", None)]
    assert vm not in [r[2] for r in lease_rows(api)]


# -- methods --------------------------------------------------------------------------------------


def test_methods_not_allowed(sandbox, net4):
    api, u = sandbox, net4["uuid"]
    r = net4["ranges"][0]["uuid"]
    with nothing_changed(api, u):
        for method, path in [
                ("POST", "/rest/networks/"), ("DELETE", "/rest/networks/"),
                ("PUT", f"/rest/networks/{u}/"),
                ("PUT", f"/rest/networks/{u}/iprange/"),
                ("DELETE", f"/rest/networks/{u}/iprange/"),
                ("POST", f"/rest/networks/{u}/iprange/{r}/"),
                ("POST", f"/rest/networks/{u}/cluster/"),
                ("DELETE", f"/rest/networks/{u}/cluster/"),
                ("DELETE", f"/rest/networks/{u}/leases/"),
                ("GET", f"/rest/networks/{u}/leases/10.0.0.10/"),
                ("PUT", f"/rest/networks/{u}/leases/10.0.0.10/")]:
            for p in (path, path.rstrip("/")):
                expect_error(api.request(method, p, data={"name": "x"}), 405, 1005)


# -- bad input: creating ---------------------------------------------------------------------------


@pytest.mark.parametrize("change, status, errno, words", [
    ({"name": None}, 400, 1001, "name"),
    ({"name": ""}, 400, 1001, "name"),
    ({"name": "x" * 256}, 400, 1000, "255"),
    ({"bridge": None}, 400, 1001, "bridge"),
    ({"bridge": "br 0"}, 400, 1000, "bridge"),
    ({"bridge": "br'0"}, 400, 1000, "bridge"),
    ({"bridge": "a/b"}, 400, 1000, "bridge"),
    ({"ip": None}, 400, 1001, "ip"),
    ({"ip": "10.0.0"}, 400, 1000, "10.0.0"),
    ({"ip": "10.0.0.256"}, 400, 1000, "10.0.0.256"),
    ({"ip": "10.0.0.0/24"}, 400, 1000, "10.0.0.0/24"),
    ({"ip": "fd00::g"}, 400, 1000, "fd00::g"),
    ({"ip": "office"}, 400, 1000, "office"),
    ({"netmask": None}, 400, 1001, "netmask"),
    ({"netmask": ""}, 400, 1001, "netmask"),
    ({"netmask": "33"}, 400, 1000, "33"),
    ({"netmask": "-1"}, 400, 1000, "-1"),
    ({"netmask": "24.5"}, 400, 1000, "24.5"),
    ({"netmask": "255.0.255.0"}, 400, 1000, "255.0.255.0"),
    ({"netmask": "255.255.255.256"}, 400, 1000, "255.255.255.256"),
    ({"netmask": "0.0.0.255"}, 400, 1000, "0.0.0.255"),  # a host mask, not a netmask
    ({"netmask": "ffff:ffff:ffff:ffff::"}, 400, 1000, "netmask"),  # IPv6 mask, IPv4 address
    ({"netmask": "mask"}, 400, 1000, "mask"),
    ({"ip": "10.0.0.1"}, 400, 1000, "host bits"),
    ({"ip": "10.0.0.128", "netmask": "255.255.255.128", "gateway": "10.0.0.129"}, 200, 0, ""),
    ({"ip": "10.0.0.128", "netmask": "255.255.255.0"}, 400, 1000, "host bits"),
    ({"ip": "fd00::1", "netmask": "64", "gateway": None}, 400, 1000, "host bits"),
    ({"ip": "fd00::", "netmask": "129", "gateway": None}, 400, 1000, "129"),
    ({"ip": "fd00::", "netmask": "255.255.255.0", "gateway": None}, 400, 1000, "netmask"),
    ({"gateway": "10.0.1.1"}, 400, 1000, "not inside"),
    ({"gateway": "10.0.0.0"}, 400, 1000, "network"),
    ({"gateway": "10.0.0.255"}, 400, 1000, "broadcast"),
    ({"gateway": "10.0.0.300"}, 400, 1000, "gateway"),
    ({"gateway": "fd00::1"}, 400, 1000, "not inside"),
    ({"ip": "fd00::", "netmask": "64", "gateway": "10.0.0.1"}, 400, 1000, "not inside"),
    ({"cluster": NO_SUCH}, 404, 1200, "cluster"),
    ({"cluster": "not-a-uuid"}, 400, 1002, "cluster"),
], ids=lambda v: str(v) if not isinstance(v, dict) else None)
def test_create_refusals(sandbox, own, change, status, errno, words):
    api = sandbox
    data = {"name": own, "bridge": f"br-{own}", "ip": "10.0.0.0", "netmask": "24",
            "gateway": "10.0.0.1", **change}
    data = {k: v for k, v in data.items() if v is not None}
    if status == 200:  # the valid one next to the refusals
        api.ok("PUT", "/rest/networks/", data=data)
        return
    with nothing_changed(api):
        for slash in ("/", ""):
            body = expect_error(api.put(f"/rest/networks{slash}", data=data), status, errno)
            assert words in body["message"], body


def test_duplicate_network_names(sandbox, own, net4):
    api = sandbox
    other = create(api, f"{own}-2")
    with nothing_changed(api, net4["uuid"], other["uuid"]):
        body = expect_error(api.put("/rest/networks/", data={
            "name": net4["name"], "bridge": f"elsewhere-{own}", "ip": "10.9.0.0",
            "netmask": "16"}), 409, 1300)
        assert net4["name"] in body["message"]
        # renaming another network to the name
        expect_error(api.post(f"/rest/networks/{other['uuid']}/", data={"name": net4["name"]}),
                     409, 1300)
        # renaming: every other change of the request is refused with it
        expect_error(api.post(f"/rest/networks/{other['uuid']}/",
                              data={"description": "changed", "name": net4["name"]}), 409, 1300)


def test_change_refusals(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    neighbour = create(api, f"{own}-neighbour", bridge=f"busy-{own}")["uuid"]
    add_range(api, neighbour, "10.0.0.15", "10.0.0.30")
    with nothing_changed(api, u):
        # no variables: a read (docs/api.md, Compatibility); an empty name is not that
        assert api.ok("POST", f"/rest/networks/{u}/") == api.ok("GET", f"/rest/networks/{u}/")
        expect_error(api.post(f"/rest/networks/{u}/", data={"name": ""}), 400, 1001)
        expect_error(api.post(f"/rest/networks/{u}/", data={"name": "n" * 256}), 400, 1000)
        expect_error(api.post(f"/rest/networks/{u}/", data={"bridge": "b r"}), 400, 1000)
        expect_error(api.post(f"/rest/networks/{u}/", data={"cluster": NO_SUCH}), 404, 1200)
        expect_error(api.post(f"/rest/networks/{u}/", data={"cluster": "zzz"}), 400, 1002)
        # onto a bridge where another network's range overlaps this one's
        body = expect_error(api.post(f"/rest/networks/{u}/",
                                     data={"bridge": f"busy-{own}", "description": "moved"}),
                            409, 1300)
        assert "overlaps" in body["message"]
        # the rename in the same request is rolled back with the refusal
        expect_error(api.post(f"/rest/networks/{u}/",
                              data={"name": f"{own}-new", "bridge": f"busy-{own}"}), 409, 1300)


def test_a_network_with_leases_keeps_its_bridge_and_cannot_be_deleted(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    reserve(api, u, address="10.0.0.11")
    with nothing_changed(api, u):
        body = expect_error(api.post(f"/rest/networks/{u}/", data={"bridge": f"new-{own}"}),
                            409, 1301)
        assert "lease" in body["message"]
        for slash in ("/", ""):
            body = expect_error(api.delete(f"/rest/networks/{u}{slash}"), 409, 1301)
            assert "lease" in body["message"]
    api.ok("DELETE", f"/rest/networks/{u}/leases/10.0.0.11/")
    api.ok("DELETE", f"/rest/networks/{u}/")


# -- bad input: ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize("start, end, status, errno, words", [
    ("10.0.1.10", "10.0.1.20", 400, 1000, "not inside"),  # outside the network
    ("10.0.0.250", "10.0.1.5", 400, 1000, "not inside"),  # its end outside
    ("9.255.255.250", "10.0.0.5", 400, 1000, "not inside"),  # its start outside
    ("10.0.0.50", "10.0.0.40", 400, 1000, "after"),  # start after end
    ("10.0.0.0", "10.0.0.5", 400, 1000, "network"),  # the network address
    ("10.0.0.250", "10.0.0.255", 400, 1000, "broadcast"),  # the broadcast address
    ("10.0.0.255", "10.0.0.255", 400, 1000, "broadcast"),
    ("10.0.0.1", "10.0.0.1", 400, 1000, "gateway"),  # the gateway
    ("10.0.0.1", "10.0.0.9", 400, 1000, "gateway"),
    ("10.0.0.5", "10.0.0.12", 409, 1300, "overlaps"),  # this network's own range
    ("10.0.0.19", "10.0.0.30", 409, 1300, "overlaps"),
    ("10.0.0.12", "10.0.0.13", 409, 1300, "overlaps"),  # inside it
    ("10.0.0.2", "10.0.0.100", 409, 1300, "overlaps"),  # around it
    ("fd00::1", "fd00::5", 400, 1000, "not inside"),  # IPv6 in an IPv4 network
    ("10.0.0.x", "10.0.0.30", 400, 1000, "start_ip"),
    ("10.0.0.20", "", 400, 1001, "end_ip"),
    ("", "10.0.0.30", 400, 1001, "start_ip"),
    ("10.0.0.20", None, 400, 1001, "end_ip"),
    ("10.0.0.20/30", "10.0.0.30", 400, 1000, "start_ip"),
])
def test_range_refusals(sandbox, net4, start, end, status, errno, words):
    api, u = sandbox, net4["uuid"]
    data = {k: v for k, v in (("start_ip", start), ("end_ip", end)) if v is not None}
    with nothing_changed(api, u):
        for slash in ("/", ""):
            body = expect_error(api.post(f"/rest/networks/{u}/iprange{slash}", data=data),
                                status, errno)
            assert words in body["message"], body


def test_ipv6_range_refusals(sandbox, net6):
    api, u = sandbox, net6["uuid"]
    with nothing_changed(api, u):
        for data, status, errno, words in [
                ({"start_ip": "fd00:5::", "end_ip": "fd00:5::5"}, 400, 1000, "network"),
                ({"start_ip": "fd00:5::1", "end_ip": "fd00:5::5"}, 400, 1000, "gateway"),
                ({"start_ip": "fd00:6::1", "end_ip": "fd00:6::5"}, 400, 1000, "not inside"),
                ({"start_ip": "fd00:5::200", "end_ip": "fd00:5::1"}, 400, 1000, "after"),
                ({"start_ip": "fd00:5::180", "end_ip": "fd00:5::300"}, 409, 1300, "overlaps"),
                ({"start_ip": "10.0.0.1", "end_ip": "10.0.0.5"}, 400, 1000, "not inside"),
                ({"start_ip": "fd00:5::2", "end_ip": "fd00:5:::5"}, 400, 1000, "end_ip")]:
            body = expect_error(api.post(f"/rest/networks/{u}/iprange/", data=data), status,
                                errno)
            assert words in body["message"], body
    # the last address of an IPv6 network is an address like any other (no broadcast)
    add_range(api, u, "fd00:5::ffff:ffff:ffff:fff0", "fd00:5::ffff:ffff:ffff:ffff")


def test_overlap_with_another_network_on_the_same_bridge(sandbox, own, net4):
    """Two networks on one bridge (say 10.0.0.0/24 and 10.0.0.0/16 both routed there) may not
    hand out the same address; on another bridge the same addresses are another segment."""
    api = sandbox
    same = create(api, f"{own}-same", bridge=net4["bridge"], ip="10.0.0.0", netmask="16",
                  gateway="10.0.255.254")["uuid"]
    with nothing_changed(api, net4["uuid"], same):
        body = expect_error(api.post(f"/rest/networks/{same}/iprange/",
                                     data={"start_ip": "10.0.0.19", "end_ip": "10.0.1.20"}),
                            409, 1300)
        assert net4["name"] in body["message"] and "overlaps" in body["message"]
    add_range(api, same, "10.0.0.20", "10.0.1.20")  # next to it: fine
    elsewhere = create(api, f"{own}-elsewhere")["uuid"]  # its own bridge
    add_range(api, elsewhere, "10.0.0.10", "10.0.0.19")  # the very same addresses
    # moving a range of one network over the other's on the shared bridge
    r = network(api, same)["ranges"][0]["uuid"]
    with nothing_changed(api, net4["uuid"], same, elsewhere):
        expect_error(api.put(f"/rest/networks/{same}/iprange/{r}/",
                             data={"start_ip": "10.0.0.15"}), 409, 1300)
        # moving a network with ranges onto the bridge of one whose ranges overlap
        expect_error(api.post(f"/rest/networks/{elsewhere}/", data={"bridge": net4["bridge"]}),
                     409, 1300)


def test_change_range_refusals(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    r = net4["ranges"][0]["uuid"]
    other = add_range(api, u, "10.0.0.100", "10.0.0.110")
    reserve(api, u, address="10.0.0.14")
    reserve(api, u, address="10.0.0.104")
    with nothing_changed(api, u):
        for data, status, errno, words in [
                ({"start_ip": "10.0.1.10"}, 400, 1000, "not inside"),
                ({"end_ip": "10.0.0.5"}, 400, 1000, "after"),
                ({"start_ip": "10.0.0.1"}, 400, 1000, "gateway"),
                ({"start_ip": "10.0.0.0"}, 400, 1000, "network"),
                ({"end_ip": "10.0.0.255"}, 400, 1000, "broadcast"),
                ({"end_ip": "10.0.0.100"}, 409, 1300, "overlaps"),
                ({"start_ip": "10.0.0.15"}, 409, 1301, "10.0.0.14"),  # shrinks past a lease
                ({"end_ip": "10.0.0.13"}, 409, 1301, "10.0.0.14"),
                ({"start_ip": "10.0.0.15", "end_ip": "10.0.0.60"}, 409, 1301, "10.0.0.14"),
                ({"start_ip": "bad"}, 400, 1000, "start_ip")]:
            for slash in ("/", ""):
                body = expect_error(api.put(f"/rest/networks/{u}/iprange/{r}{slash}", data=data),
                                    status, errno)
                assert words in body["message"], (data, body)
        # deleting a range with an address in use
        for rng, addr in ((r, "10.0.0.14"), (other["uuid"], "10.0.0.104")):
            body = expect_error(api.delete(f"/rest/networks/{u}/iprange/{rng}/"), 409, 1301)
            assert addr in body["message"]
    # growing, or shrinking while keeping the lease, is fine
    api.ok("PUT", f"/rest/networks/{u}/iprange/{r}/", data={"start_ip": "10.0.0.14",
                                                            "end_ip": "10.0.0.40"})
    api.ok("PUT", f"/rest/networks/{u}/iprange/{other['uuid']}/", data={"start_ip": "10.0.0.104",
                                                                        "end_ip": "10.0.0.104"})


# -- bad input: leases -----------------------------------------------------------------------------


def test_lease_refusals(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    reserve(api, u, address="10.0.0.10")
    with nothing_changed(api, u):
        for data, status, errno, words in [
                ({"address": "10.0.0.10"}, 409, 1300, "already leased"),
                ({"address": "10.0.0.20"}, 400, 1000, "not in any IP range"),
                ({"address": "10.0.0.1"}, 400, 1000, "not in any IP range"),  # the gateway
                ({"address": "10.0.1.12"}, 400, 1000, "not in any IP range"),
                ({"address": "fd00::12"}, 400, 1000, "not in any IP range"),
                ({"address": "10.0.0.1x"}, 400, 1000, "address"),
                ({"address": "10.0.0.12/32"}, 400, 1000, "address"),
                ({"mac": "52:54:00:12:34"}, 400, 1000, "MAC"),
                ({"mac": "52:54:00:12:34:5g"}, 400, 1000, "MAC"),
                ({"mac": "52-54-00-12-34-56"}, 400, 1000, "MAC"),
                ({"mac": "525400123456"}, 400, 1000, "MAC"),
                ({"mac": "52:54:00:12:34:567"}, 400, 1000, "MAC"),
                ({"mac": "52:54:00:12:34:5"}, 400, 1000, "MAC"),
                ({"mac": "52:54:00:12:34:56:78"}, 400, 1000, "MAC"),
                ({"machine": NO_SUCH}, 404, 1200, "machine"),
                ({"machine": "not-a-uuid"}, 400, 1002, "machine")]:
            for method in ("PUT", "POST"):
                body = expect_error(api.request(method, f"/rest/networks/{u}/leases/", data=data),
                                    status, errno)
                assert words in body["message"], (data, body)
        # releasing what is not leased, or not an address
        expect_error(api.delete(f"/rest/networks/{u}/leases/10.0.0.11/"), 404, 1200)
        expect_error(api.delete(f"/rest/networks/{u}/leases/10.0.0.99/"), 404, 1200)
        expect_error(api.delete(f"/rest/networks/{u}/leases/ten/"), 400, 1000)


def test_a_machines_lease_goes_only_with_the_machine(sandbox, own, net4):
    """Released by hand, a machine's address could go to another machine while its guest still
    uses it (and a libvirt network's DHCP entry still names it): refused."""
    api, u = sandbox, net4["uuid"]
    vm = new_vm(api, own)
    reserve(api, u, machine=vm, address="10.0.0.16")
    with nothing_changed(api, u):
        body = expect_error(api.delete(f"/rest/networks/{u}/leases/10.0.0.16/"), 409, 1301)
        assert vm in body["message"] and "totaldelete" in body["message"]
    api.ok("POST", f"/rest/machine/{vm}/actions/totaldelete/")
    assert leases(api, u) == []


def test_an_exhausted_network(sandbox, own):
    api = sandbox
    u = create(api, own)["uuid"]
    with nothing_changed(api, u):  # no range at all
        body = expect_error(api.put(f"/rest/networks/{u}/leases/"), 409, 1301)
        assert "no free address" in body["message"]
    add_range(api, u, "10.0.0.2", "10.0.0.3")
    reserve(api, u)
    reserve(api, u)
    with nothing_changed(api, u):
        for method in ("PUT", "POST"):
            body = expect_error(api.request(method, f"/rest/networks/{u}/leases/"), 409, 1301)
            assert "no free address" in body["message"]


# -- unknown and malformed UUIDs -----------------------------------------------------------------


def test_unknown_and_malformed_uuids(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    r = net4["ranges"][0]["uuid"]
    other = create(api, f"{own}-other")
    other_range = add_range(api, other["uuid"], "10.0.0.50", "10.0.0.60")["uuid"]
    with nothing_changed(api, u):
        for bad, status, errno in ((NO_SUCH, 404, 1200), ("not-a-uuid", 400, 1002)):
            for method, path, data in [
                    ("GET", "/rest/networks/{n}/", None),
                    ("POST", "/rest/networks/{n}/", {"name": "x"}),
                    ("DELETE", "/rest/networks/{n}/", None),
                    ("GET", "/rest/networks/{n}/iprange/", None),
                    ("POST", "/rest/networks/{n}/iprange/", {"start_ip": "10.0.0.1",
                                                             "end_ip": "10.0.0.2"}),
                    ("GET", "/rest/networks/{n}/iprange/{r}/", None),
                    ("PUT", "/rest/networks/{n}/iprange/{r}/", {"start_ip": "10.0.0.11"}),
                    ("DELETE", "/rest/networks/{n}/iprange/{r}/", None),
                    ("GET", "/rest/networks/{n}/cluster/", None),
                    ("PUT", "/rest/networks/{n}/cluster/", {"cluster": ""}),
                    ("GET", "/rest/networks/{n}/leases/", None),
                    ("PUT", "/rest/networks/{n}/leases/", None),
                    ("DELETE", "/rest/networks/{n}/leases/10.0.0.10/", None)]:
                for slash in ("/", ""):
                    p = path.format(n=bad, r=r).rstrip("/") + slash
                    body = expect_error(api.request(method, p, data=data), status, errno)
                    assert "network" in body["message"], (method, p, body)
            # an unknown or malformed range of a network that exists
            for method, data in (("GET", None), ("PUT", {"start_ip": "10.0.0.11"}),
                                 ("DELETE", None)):
                expect_error(api.request(method, f"/rest/networks/{u}/iprange/{bad}/",
                                         data=data), status, errno)
        # a range of another network is not this network's
        for method, data in (("GET", None), ("PUT", {"start_ip": "10.0.0.51"}),
                             ("DELETE", None)):
            expect_error(api.request(method, f"/rest/networks/{u}/iprange/{other_range}/",
                                     data=data), 404, 1200)
        # an unknown or malformed cluster
        expect_error(api.put(f"/rest/networks/{u}/cluster/", data={"cluster": NO_SUCH}),
                     404, 1200)
        expect_error(api.put(f"/rest/networks/{u}/cluster/", data={"cluster": "abc"}), 400, 1002)


def test_assigning_a_cluster_needs_the_variable(sandbox, own, net4):
    """PUT cluster without `cluster` is a missing variable, not a silent unassignment."""
    api, u = sandbox, net4["uuid"]
    c = new_cluster(api, f"c-{own}")
    api.ok("PUT", f"/rest/networks/{u}/cluster/", data={"cluster": c})
    with nothing_changed(api, u):
        expect_error(api.put(f"/rest/networks/{u}/cluster/"), 400, 1001)
    assert network(api, u)["cluster"] == c


# -- permissions -----------------------------------------------------------------------------------


def test_only_an_administrator_creates_networks(sandbox, own):
    api = sandbox
    alice = new_user(api)
    with nothing_changed(api):
        for slash in ("/", ""):
            body = expect_error(api.put(f"/rest/networks{slash}", auth=alice.auth, data={
                "name": own, "bridge": "br0", "ip": "10.0.0.0", "netmask": "24"}), 403, 1101)
            assert "administrator" in body["message"]
        # refused before anything else is looked at (even bad input)
        expect_error(api.put("/rest/networks/", auth=alice.auth, data={"ip": "x"}), 403, 1101)
    expect_error(api.put("/rest/networks/", auth=("nobody", "x"), data={"name": own}), 401, 1100)


def test_permissions_on_networks(sandbox, own, net4):
    """Nothing without a grant (404, and absent from the list); `read` shows the network, its
    ranges, cluster and leases; `modify` changes it, its ranges and cluster, reserves and
    releases; `delete` deletes it."""
    api, u = sandbox, net4["uuid"]
    r = net4["ranges"][0]["uuid"]
    reserve(api, u, address="10.0.0.10")
    c = new_cluster(api, f"c-{own}")
    alice = new_user(api)
    a = alice.auth

    reads = [("GET", f"/rest/networks/{u}/", None), ("GET", f"/rest/networks/{u}/iprange/", None),
             ("GET", f"/rest/networks/{u}/iprange/{r}/", None),
             ("GET", f"/rest/networks/{u}/cluster/", None),
             ("GET", f"/rest/networks/{u}/leases/", None)]
    changes = [("POST", f"/rest/networks/{u}/", {"description": "alice was here"}),
               ("POST", f"/rest/networks/{u}/iprange/", {"start_ip": "10.0.0.30",
                                                         "end_ip": "10.0.0.31"}),
               ("PUT", f"/rest/networks/{u}/iprange/{r}/", {"end_ip": "10.0.0.20"}),
               ("DELETE", f"/rest/networks/{u}/iprange/{r}/", None),
               ("PUT", f"/rest/networks/{u}/cluster/", {"cluster": ""}),
               ("PUT", f"/rest/networks/{u}/leases/", None),
               ("POST", f"/rest/networks/{u}/leases/", {"address": "10.0.0.12"}),
               ("DELETE", f"/rest/networks/{u}/leases/10.0.0.10/", None)]
    with nothing_changed(api, u):
        assert u not in [n["uuid"] for n in api.ok("GET", "/rest/networks/", auth=a)["networks"]]
        for method, path, data in reads + changes + [("DELETE", f"/rest/networks/{u}/", None)]:
            expect_error(api.request(method, path, data=data, auth=a), 404, 1200)

    grant(api, u, "read", user=alice.uuid)
    assert [n["uuid"] for n in api.ok("GET", "/rest/networks/", auth=a)["networks"]] == [u]
    for method, path, data in reads:
        assert api.request(method, path, data=data, auth=a).status_code == 200, path
    with nothing_changed(api, u):
        for method, path, data in changes + [("DELETE", f"/rest/networks/{u}/", None)]:
            expect_error(api.request(method, path, data=data, auth=a), 403, 1101)

    grant(api, u, "modify", user=alice.uuid)
    with nothing_changed(api, u):
        expect_error(api.delete(f"/rest/networks/{u}/", auth=a), 403, 1101)
        # a cluster alice may not read cannot be assigned
        for method, path in (("PUT", f"/rest/networks/{u}/cluster/"),
                             ("POST", f"/rest/networks/{u}/")):
            expect_error(api.request(method, path, data={"cluster": c}, auth=a), 404, 1200)
    for method, path, data in changes:
        r = api.request(method, path, data=data, auth=a)
        if method == "DELETE" and "iprange" in path:  # allowed, but 10.0.0.10 is in use
            expect_error(r, 409, 1301)
        else:
            assert r.status_code == 200 and r.json()["errno"] == 0, (path, r.text)
    assert network(api, u)["description"] == "alice was here"
    grant(api, c, "read", user=alice.uuid)
    api.ok("PUT", f"/rest/networks/{u}/cluster/", data={"cluster": c}, auth=a)
    assert network(api, u)["cluster"] == c
    for x in leases(api, u):
        api.ok("DELETE", f"/rest/networks/{u}/leases/{x['address']}/", auth=a)
    grant(api, u, "delete", user=alice.uuid)
    api.ok("DELETE", f"/rest/networks/{u}/", auth=a)
    expect_error(api.get(f"/rest/networks/{u}/"), 404, 1200)


def test_reserving_for_a_machine_the_user_cannot_see(sandbox, own, net4):
    api, u = sandbox, net4["uuid"]
    vm = new_vm(api, own)
    alice = new_user(api)
    grant(api, u, "modify", user=alice.uuid)
    with nothing_changed(api, u):
        expect_error(api.put(f"/rest/networks/{u}/leases/", data={"machine": vm},
                             auth=alice.auth), 404, 1200)


def test_a_network_created_by_an_admin_is_not_shown_to_users(sandbox, own, net4):
    api = sandbox
    bob = new_user(api)
    names = [n["name"] for n in api.ok("GET", "/rest/networks/", auth=bob.auth)["networks"]]
    assert net4["name"] not in names


# -- provision requests lease addresses ------------------------------------------------------------


@pytest.fixture(scope="module")
def prov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, FeedServer, dict]]:
    """A server of its own on a fake host (host1) and a second fake host (node2), with a feed
    of a test-driver package and a slow one (held at the feed server by a gate)."""
    if not have_qemu_img():
        pytest.skip("qemu-img is needed for images")
    d = tmp_path_factory.mktemp("netprov")
    img = make_qcow2(d / "tiny.qcow2", 16, data=b"tiny" * 1000)
    slow = make_qcow2(d / "slow.qcow2", 16, data=os.urandom(2 << 20))
    built = {"test": build_package(d / "test.xvm2", img, name="for-test", virt_class="test"),
             "slow": build_package(d / "slow.xvm2", slow, name="slow", virt_class="test")}
    srv = FeedServer()
    srv.gates["/p/slow.xvm2"] = threading.Event()
    srv.gate_after = 0
    srv.rate = 4 << 20  # the slow package takes half a second once its gate opens
    try:
        url = publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in built.items()])
        with serve(d / "data", write_host(d / "host1.xml", [])) as api:
            packages = api.ok("PUT", "/rest/vmfeed/", data={"url": url})["packages"]
            by_name = {p["name"]: p["uuid"] for p in packages}
            node2 = api.ok("PUT", "/rest/hosts/", data={
                "name": "node2", "virt_url": write_host(d / "node2.xml", [])})["machine"]
            yield api, srv, {"test": by_name["for-test"], "slow": by_name["slow"],
                             "node2": node2}
    finally:
        srv.close()


def cancel(api: Api, srv: FeedServer, txids: list[str]) -> None:
    """End provisions held at the feed server's gate: each is cancelled, or (when it got past
    its download before it noticed) fails at the test driver's storage."""
    gate = srv.gates["/p/slow.xvm2"]
    try:
        for txid in txids:
            api.delete(f"/rest/transaction/{txid}/")
    finally:
        gate.set()
        try:
            for txid in txids:
                tx = wait_tx(api, txid)
                assert tx["data"]["state"] in ("cancelled", "failed"), tx
        finally:
            gate.clear()


@pytest.fixture
def clusters(prov) -> Iterator:  # noqa: ANN001
    """new(name, *machines) makes a cluster; each is deleted after the test, so the networks
    of one test no longer serve the host in the next."""
    api = prov[0]
    made: list[str] = []

    def new(name: str, *machines: str) -> str:
        made.append(new_cluster(api, name, *machines))
        return made[-1]
    yield new
    for c in made:
        api.ok("DELETE", f"/rest/cluster/{c}/", params={"force": "1"})


def test_a_provision_request_leases_on_every_network_of_the_hosts_clusters(prov, own, clusters):
    """Networks of the host's clusters each lend one address (lowest free first); a network of a
    cluster without the host, or of no cluster, does not. The machine's info shows the leases
    while the provision runs; cancelled, the machine and its leases are gone."""
    api, srv, ids = prov
    host = api.local_host()
    c1, c2 = clusters(f"a-{own}", host), clusters(f"b-{own}", host)
    far = clusters(f"far-{own}", ids["node2"])
    n1 = create(api, f"{own}-1", cluster=c1)["uuid"]
    n2 = create(api, f"{own}-2", ip="fd00:9::", netmask="64", gateway="fd00:9::1",
                cluster=c2)["uuid"]
    n3 = create(api, f"{own}-3", cluster=far)["uuid"]
    n4 = create(api, f"{own}-4")["uuid"]
    for n in (n1, n3, n4):
        add_range(api, n, "10.0.0.20", "10.0.0.29")
    add_range(api, n2, "fd00:9::10", "fd00:9::1f")
    reserve(api, n1, address="10.0.0.20")
    before = lease_rows(api)
    body = api.ok("POST", f"/rest/machine/{host}/actions/provision/", data={
        "pkguuid": ids["slow"], "hvmuuid": api.hypervisors()[0]["uuid"], "name": own})
    new, txid = body["newuuid"], body["txid"]
    try:
        got = api.machine(new)["info"]["leases"]
        assert [(x["network"], x["address"], x["prefix"], x["gateway"]) for x in got] == \
            [(n1, "10.0.0.21", 24, "10.0.0.1"), (n2, "fd00:9::10", 64, "fd00:9::1")]
        assert got[0]["bridge"] == f"br-{own}-1" and got[0]["network_name"] == f"{own}-1"
        assert len({x["mac"] for x in got}) == 2
        held = [x for x in leases(api, n1) if x["machine"] == new]
        assert [(x["address"], x["mac"]) for x in held] == [("10.0.0.21", got[0]["mac"])]
        assert own in held[0]["note"]
        assert leases(api, n3) == [] and leases(api, n4) == []
        params = api.ok("GET", f"/rest/transaction/{txid}/")["data"]
        assert params["kind"] == "provision"
        # the network cannot go, nor lose the address, while the machine holds it
        expect_error(api.delete(f"/rest/networks/{n1}/"), 409, 1301)
        r1 = network(api, n1)["ranges"][0]["uuid"]
        expect_error(api.put(f"/rest/networks/{n1}/iprange/{r1}/",
                             data={"start_ip": "10.0.0.22"}), 409, 1301)
    finally:
        cancel(api, srv, [txid])
    expect_error(api.get(f"/rest/machine/{new}/"), 404, 1200)
    assert lease_rows(api) == before
    assert running(api) == []


def test_a_provision_that_fails_releases_its_leases(prov, own, clusters):
    api, _srv, ids = prov
    c = clusters(f"c-{own}", api.local_host())
    n = create(api, own, cluster=c)["uuid"]
    add_range(api, n, "10.0.0.30", "10.0.0.39")
    before = lease_rows(api)
    body = api.ok("POST", f"/rest/machine/{api.local_host()}/actions/provision/", data={
        "pkguuid": ids["test"], "hvmuuid": api.hypervisors()[0]["uuid"], "name": own})
    tx = wait_tx(api, body["txid"])
    assert tx["data"]["state"] == "failed", tx
    expect_error(api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)
    assert lease_rows(api) == before and leases(api, n) == []


def test_an_exhausted_network_refuses_the_provision(prov, own, clusters):
    """The provision is refused at the request (409, errno 1301) and leaves nothing: no machine,
    no transaction, no lease on any other network either."""
    api, _srv, ids = prov
    c = clusters(f"c-{own}", api.local_host())
    fine = create(api, f"{own}-a", cluster=c)["uuid"]  # sorted first: leased first
    full = create(api, f"{own}-b", cluster=c)["uuid"]
    add_range(api, fine, "10.0.0.40", "10.0.0.49")
    add_range(api, full, "10.0.0.40", "10.0.0.41")
    reserve(api, full)
    reserve(api, full)
    txs = len(api.ok("GET", "/rest/transactions/")["transactions"])
    with nothing_changed(api, fine, full):
        for method in ("POST", "PUT"):
            r = api.request(method, f"/rest/machine/{api.local_host()}/actions/provision/",
                            data={"pkguuid": ids["test"], "hvmuuid": api.hypervisors()[0]["uuid"],
                                  "name": own})
            body = expect_error(r, 409, 1301)
            assert "no free address" in body["message"] and f"{own}-b" in body["message"]
        r = api.post(f"/rest/machine/{api.local_host()}/", data={
            "action": "provision", "pkguuid": ids["test"],
            "hvmuuid": api.hypervisors()[0]["uuid"], "name": own})
        expect_error(r, 409, 1301)
    assert len(api.ok("GET", "/rest/transactions/")["transactions"]) == txs
    assert running(api) == []
    assert own not in [m["name"] for m in api.ok("GET", "/rest/machines/",
                                                 params={"detail": "true"})["machine_objs"]]


def test_concurrent_provision_requests_get_distinct_addresses(prov, own, clusters):
    """Provision requests at the same moment (held at the feed server, so their leases stay):
    each gets its own address; as many as the range holds succeed, the rest are refused."""
    api, srv, ids = prov
    c = clusters(f"c-{own}", api.local_host())
    n = create(api, own, cluster=c)["uuid"]
    add_range(api, n, "10.0.0.50", "10.0.0.55")
    hv = api.hypervisors()[0]["uuid"]
    host = api.local_host()
    workers = 10
    barrier = threading.Barrier(workers)
    answers: list = [None] * workers

    def go(i: int) -> None:
        barrier.wait()
        answers[i] = api.post(f"/rest/machine/{host}/actions/provision/", data={
            "pkguuid": ids["slow"], "hvmuuid": hv, "name": f"{own}-{i}"})

    threads = [threading.Thread(target=go, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r.json() for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    try:
        assert len(ok) == 6
        for r in refused:
            assert "no free address" in expect_error(r, 409, 1301)["message"]
        held = leases(api, n)
        assert sorted(x["address"] for x in held) == [f"10.0.0.{i}" for i in range(50, 56)]
        assert sorted(x["machine"] for x in held) == sorted(b["newuuid"] for b in ok)
        assert len({x["mac"] for x in held}) == 6
        for b in ok:
            (mine,) = api.machine(b["newuuid"])["info"]["leases"]
            assert mine["address"] in [x["address"] for x in held if x["machine"] == b["newuuid"]]
    finally:
        cancel(api, srv, [b["txid"] for b in ok])
    assert leases(api, n) == []
    assert running(api) == []


def test_ip_address_arithmetic_is_ipaddress(sandbox, own):
    """Ranges crossing octet boundaries count and hand out addresses as integers do."""
    api = sandbox
    u = create(api, own, ip="10.8.0.0", netmask="255.255.252.0", gateway="10.8.3.254")["uuid"]
    r = add_range(api, u, "10.8.0.250", "10.8.1.5")
    assert r["size"] == int(ipaddress.ip_address("10.8.1.5")) - \
        int(ipaddress.ip_address("10.8.0.250")) + 1 == 12
    got = [reserve(api, u)["address"] for _ in range(8)]
    assert got[-3:] == ["10.8.0.255", "10.8.1.0", "10.8.1.1"]  # not broadcasts inside a /22


# -- what the hypervisors say: bridge, subnet, clashes (issue 14) ------------------------------


def lv_network(api: Api, name: str, subnet: str) -> None:
    """A libvirt network `name` serving subnet.0/24 with DHCP on every fake host."""
    from enomalism.store.models import Hypervisor

    with api.app.state.db.session(write=False) as s:
        uuids = list(s.scalars(select(Hypervisor.uuid)))
    for hv in uuids:
        api.registry.connection(hv).virconnect.networkCreateXML(
            f"<network><name>{name}</name><bridge name='{name[:15]}'/>"
            f"<ip address='{subnet}.1' netmask='255.255.255.0'><dhcp>"
            f"<range start='{subnet}.100' end='{subnet}.199'/></dhcp></ip></network>")


def test_a_subnet_its_libvirt_network_does_not_serve_is_refused(prov, own, clusters):
    """On creation, a bridge change and a tie to a cluster: the static network's subnet must be
    the libvirt network's (the DHCP entry would land in another <ip>); another IP version than
    any <ip> is fine (its address goes by the OEM strings)."""
    api, _srv, _ids = prov
    c = clusters(f"c-{own}", api.local_host())
    lv = f"lv{abs(hash(own)) % 10**8}"
    lv_network(api, lv, "10.61.7")
    data = {"name": own, "bridge": lv, "ip": "10.99.0.0", "netmask": "24", "cluster": c}
    with nothing_changed(api):
        body = expect_error(api.put("/rest/networks/", data=data), 400, 1070)
    assert f"libvirt network {lv}" in body["message"] and "serves 10.61.7.0/24, not " \
        "10.99.0.0/24" in body["message"]
    with nothing_changed(api):  # a wider or narrower subnet is another subnet too
        expect_error(api.put("/rest/networks/", data={**data, "ip": "10.61.0.0",
                                                      "netmask": "16"}), 400, 1070)
    untied = api.ok("PUT", "/rest/networks/", data={**data, "cluster": ""})["network"]
    with nothing_changed(api, untied["uuid"]):  # no cluster, nothing checked: until tied
        expect_error(api.put(f"/rest/networks/{untied['uuid']}/cluster/",
                             data={"cluster": c}), 400, 1070)
        expect_error(api.post(f"/rest/networks/{untied['uuid']}/", data={"cluster": c}),
                     400, 1070)
    good = api.ok("PUT", "/rest/networks/", data={**data, "name": f"{own}-ok",
                                                  "ip": "10.61.7.0"})
    assert good["message"] == f"network {own}-ok created"
    v6 = api.ok("PUT", "/rest/networks/", data={**data, "name": f"{own}-v6", "ip": "fd00:61::",
                                                "netmask": "64"})
    assert v6["network"]["bridge"] == lv


def test_a_bridge_that_exists_nowhere_is_refused(prov, own, clusters):
    """Neither a libvirt network nor a host bridge on a hypervisor of the cluster: refused on
    creation, bridge change and tie; with no cluster, or a cluster without hypervisors, it
    cannot be checked and the answer says so."""
    api, _srv, ids = prov
    c = clusters(f"c-{own}", api.local_host())
    data = {"name": own, "bridge": f"nowhere-{own}"[:60], "ip": "10.63.0.0", "netmask": "24"}
    with nothing_changed(api):
        body = expect_error(api.put("/rest/networks/", data={**data, "cluster": c}), 400, 1071)
    assert f"{data['bridge']} is neither a libvirt network nor a host bridge on test://" \
        in body["message"]
    body = api.ok("PUT", "/rest/networks/", data=data)
    assert body["message"] == (f"network {own} created; warning: the network serves no "
                               "cluster: provisioning leases no address on it until it is "
                               "assigned one")
    u = body["network"]["uuid"]
    with nothing_changed(api, u):
        expect_error(api.put(f"/rest/networks/{u}/cluster/", data={"cluster": c}), 400, 1071)
        expect_error(api.post(f"/rest/networks/{u}/", data={"cluster": c}), 400, 1071)
    empty = clusters(f"e-{own}")
    body = api.ok("PUT", f"/rest/networks/{u}/cluster/", data={"cluster": empty})
    assert "warning: its cluster has no hypervisor yet" in body["message"]
    # a host bridge that exists passes; moving to one that does not is refused
    add_bridge(api, f"br-{own}")
    api.ok("POST", f"/rest/networks/{u}/", data={"bridge": f"br-{own}"})
    assert api.ok("PUT", f"/rest/networks/{u}/cluster/", data={"cluster": c})["message"] \
        == "cluster assigned"
    with nothing_changed(api, u):
        expect_error(api.post(f"/rest/networks/{u}/", data={"bridge": f"gone-{own}"}),
                     400, 1071)
    # a host of the cluster that cannot be reached: a warning naming it, not a refusal
    far = clusters(f"far-{own}", ids["node2"])
    hv2 = api.ok("GET", f"/rest/machine/{ids['node2']}/hypervisors/")["hypervisors"][0]
    with api.unplugged(hv2["uuid"], hv2["virt_url"]):
        body = api.ok("PUT", "/rest/networks/", data={**data, "name": f"{own}-far",
                                                      "cluster": far})
        assert f"warning: {data['bridge']} not checked on {hv2['virt_url']}" in body["message"]


def test_two_networks_for_the_same_hosts_on_one_segment_clash(prov, own, clusters):
    """A second network with an overlapping subnet on the same bridge, serving a host the first
    serves, would give a machine two interfaces on one segment and subnet (and, on a libvirt
    network, two DHCP entries with its name): refused when made or tied, and by a provision
    when a host joined both networks' clusters since."""
    api, _srv, ids = prov
    host = api.local_host()
    c1, c2, far = clusters(f"a-{own}", host), clusters(f"b-{own}", host), \
        clusters(f"far-{own}", ids["node2"])
    first = create(api, f"{own}-1", ip="10.64.0.0", gateway=None, cluster=c1,
                   bridge=f"br-{own}")
    data = {"name": f"{own}-2", "bridge": f"br-{own}", "ip": "10.64.0.0", "netmask": "25"}
    for c in (c1, c2):
        with nothing_changed(api, first["uuid"]):
            body = expect_error(api.put("/rest/networks/", data={**data, "cluster": c}),
                                409, 1370)
        assert f"network {own}-1 already puts 10.64.0.0/24 on br-{own}" in body["message"]
    # other hosts, another IP version, another subnet: no clash
    add_bridge(api, f"br-{own}")
    second = api.ok("PUT", "/rest/networks/", data={**data, "cluster": far})["network"]
    create(api, f"{own}-6", ip="fd00:64::", netmask="64", gateway=None, cluster=c1,
           bridge=f"br-{own}")
    create(api, f"{own}-3", ip="10.65.0.0", gateway=None, cluster=c2, bridge=f"br-{own}")
    with nothing_changed(api, second["uuid"]):
        expect_error(api.put(f"/rest/networks/{second['uuid']}/cluster/",
                             data={"cluster": c2}), 409, 1370)
    # the host joins the far cluster: its provision is refused before anything is made
    add_range(api, first["uuid"], "10.64.0.10", "10.64.0.19")
    api.ok("POST", f"/rest/machine/{host}/clusters/", data={"clusters": far})
    with nothing_changed(api, first["uuid"], second["uuid"]):
        body = expect_error(api.post(f"/rest/machine/{host}/actions/provision/", data={
            "pkguuid": ids["test"], "hvmuuid": api.hypervisors()[0]["uuid"], "name": own}),
            409, 1370)
    assert f"{own}-1" in body["message"] and f"{own}-2" in body["message"]


def test_a_provision_refuses_a_bridge_gone_from_its_hypervisor(prov, own, clusters):
    api, _srv, ids = prov
    c = clusters(f"c-{own}", api.local_host())
    n = create(api, own, ip="10.66.0.0", gateway=None, cluster=c)
    add_range(api, n["uuid"], "10.66.0.10", "10.66.0.19")
    conn = api.registry.connection(api.hypervisors()[0]["uuid"]).virconnect
    conn.interfaceLookupByName(n["bridge"]).undefine()
    with nothing_changed(api, n["uuid"]):
        body = expect_error(api.post(f"/rest/machine/{api.local_host()}/actions/provision/",
                                     data={"pkguuid": ids["test"], "name": own,
                                           "hvmuuid": api.hypervisors()[0]["uuid"]}), 400, 1071)
    assert body["message"].startswith(f"network {own}: {n['bridge']} is neither")
