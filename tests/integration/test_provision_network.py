"""Static networks on the real libvirtd (qemu:///system): provisioning onto a host whose cluster
a network serves leases an address and joins the new domain to it.

- On a libvirt network of the test's own (isolated, `enomalism-test-net-<random>`, its own bridge
  and subnet, started; destroyed and undefined afterwards whatever happens): the interface is
  type='network' with the lease's MAC, the network has a DHCP host entry MAC -> address, the
  machine's info shows the lease, the domain starts; totaldelete removes the entry and releases
  the lease. A provision that fails after the entry was added takes it away again.
- On a plain Linux bridge of the test's own (`ip link add enmtb<random> type bridge`, removed
  afterwards): type='bridge', and the address in the domain's <metadata> and in the SMBIOS OEM
  strings, which reach QEMU's command line (what the guest reads with `dmidecode -t 11`).
- An exhausted network refuses the provision at once (409, errno 1301) and leaves nothing.
- Provision requests at the same moment each lease their own address and DHCP entry.

Nothing else on the host is touched: only the networks, bridges, pools and domains these tests
name themselves (the domains and the pool through conftest's `scratch`)."""

import re
import secrets
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

from enomalism.virt.domxml import METADATA_NS
from tests.conftest import expect_error
from tests.integration.conftest import Host, unique, wait_for
from tests.integration.provision_helpers import (
    FeedServer,
    Pkg,
    build_package,
    domain_template,
    feed_item,
    make_qcow2,
    publish,
    running,
    wait_tx,
)

pytestmark = pytest.mark.integration
ENM = {"enm": METADATA_NS}


# -- the test's own libvirt network and Linux bridge -----------------------------------------------


@dataclass
class VNet:
    name: str
    bridge: str
    subnet: str  # the first three octets, e.g. 10.231.17
    subnet6: str  # the first four groups and a colon, e.g. fd00:12ab:34cd:

    def xml(self, conn: libvirt.virConnect) -> ElementTree.Element:
        return ElementTree.fromstring(conn.networkLookupByName(self.name).XMLDesc(0))

    def dhcp_hosts(self, conn: libvirt.virConnect, inactive: bool = False) -> list[dict]:
        flags = libvirt.VIR_NETWORK_XML_INACTIVE if inactive else 0
        root = ElementTree.fromstring(conn.networkLookupByName(self.name).XMLDesc(flags))
        return [dict(h.attrib) for h in root.iter("host")]


def _remove_network(conn: libvirt.virConnect, name: str) -> None:
    assert name.startswith("enomalism-test-")
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return
        raise
    if net.isActive():
        net.destroy()
    if net.isPersistent():
        net.undefine()


@contextmanager
def libvirt_network(host: Host, dual: bool = False) -> Iterator[VNet]:
    """An isolated libvirt network with DHCP (dynamic range .100-.199), started, on a subnet no
    other network of the host uses (libvirt refuses to start one that clashes: another is
    tried); `dual`: an IPv6 <ip> with DHCP too, first (so libvirt's own pick of an <ip> for a
    DHCP host entry would be the IPv6 one). Destroyed and undefined afterwards."""
    name = unique("net")
    bridge = f"enmt{secrets.token_hex(4)}"  # at most 15 characters, as Linux wants
    made = None
    try:
        for _ in range(30):
            subnet = f"10.{secrets.randbelow(64) + 192}.{secrets.randbelow(256)}"
            # groups of four hex digits with no leading zero: the form libvirt answers with
            subnet6 = "fd00:" + "".join(f"{secrets.randbelow(0xf000) + 0x1000:x}:"
                                        for _ in range(2))
            v6 = (f"<ip family='ipv6' address='{subnet6}:1' prefix='64'><dhcp>"
                  f"<range start='{subnet6}:100' end='{subnet6}:1ff'/></dhcp></ip>"
                  if dual else "")
            net = host.conn.networkDefineXML(
                f"<network><name>{name}</name><bridge name='{bridge}' stp='on' delay='0'/>{v6}"
                f"<ip address='{subnet}.1' netmask='255.255.255.0'><dhcp>"
                f"<range start='{subnet}.100' end='{subnet}.199'/></dhcp></ip></network>")
            try:
                net.create()
            except libvirt.libvirtError:
                net.undefine()  # the subnet is in use here: another one
                continue
            made = VNet(name, bridge, subnet, subnet6)
            break
        if made is None:
            pytest.skip("no free 10.x.y.0/24 subnet for a test network")
        yield made
    finally:
        _remove_network(host.conn, name)


@pytest.fixture
def vnet(host: Host) -> Iterator[VNet]:
    with libvirt_network(host) as made:
        yield made


@pytest.fixture
def vnet46(host: Host) -> Iterator[VNet]:
    with libvirt_network(host, dual=True) as made:
        yield made


@pytest.fixture
def linux_bridge() -> Iterator[str]:
    """A Linux bridge that is no libvirt network, up, removed afterwards."""
    name = f"enmtb{secrets.token_hex(4)}"
    r = subprocess.run(["ip", "link", "add", name, "type", "bridge"], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot create a Linux bridge here: {r.stderr.strip()}")
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


# -- packages, the server, the network through the API ---------------------------------------------


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FeedServer, dict[str, Pkg]]]:
    d = tmp_path_factory.mktemp("netprov-pkgs")
    img = make_qcow2(d / "tiny.qcow2", 64, data=b"on a static network\n" * 100)
    pkgs = {"tiny": build_package(d / "tiny.xvm2", img, name="net-tiny"),
            "undefinable": build_package(
                d / "undefinable.xvm2", img, name="net-undefinable",
                domain_xml=domain_template(machine="pc-no-such-machine-0.1"))}
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in pkgs.items()])
        yield srv, pkgs
    finally:
        srv.close()


@dataclass
class Setup:
    qemu: object
    pkgs: dict[str, str]
    pool: str
    cluster: str

    @property
    def api(self):  # noqa: ANN201
        return self.qemu.api

    def network(self, name: str, bridge: str, subnet: str, start: int, end: int) -> str:
        """A static network on the cluster, with the range subnet.start-subnet.end."""
        u = self.api.ok("PUT", "/rest/networks/", data={
            "name": name, "bridge": bridge, "cluster": self.cluster, "ip": f"{subnet}.0",
            "netmask": "255.255.255.0", "gateway": f"{subnet}.1"})["network"]["uuid"]
        self.api.ok("POST", f"/rest/networks/{u}/iprange/",
                    data={"start_ip": f"{subnet}.{start}", "end_ip": f"{subnet}.{end}"})
        return u

    def provision(self, pkg: str = "tiny", name: str | None = None,
                  **extra: str) -> tuple[str, str, str]:
        name = name or self.qemu.scratch.domain_name()
        body = self.api.ok("POST", f"/rest/machine/{self.api.local_host()}/actions/provision/",
                           data={"pkguuid": self.pkgs[pkg], "hvmuuid": self.qemu.hv,
                                 "name": name, "pool": self.pool, **extra})
        self.qemu.scratch.track(body["newuuid"])
        return body["newuuid"], body["txid"], name

    def done(self, txid: str) -> dict:
        body = wait_tx(self.api, txid)
        assert body["data"]["state"] == "done", body
        return body

    def leases(self, net: str) -> list[dict]:
        return self.api.ok("GET", f"/rest/networks/{net}/leases/")["leases"]


@pytest.fixture
def setup(qemu, feed) -> Setup:  # noqa: ANN001
    """The feed added, the scratch pool, and a cluster holding the local host."""
    srv, _pkgs = feed
    body = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")})
    cluster = qemu.api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("cluster")})
    cluster = cluster["cluster"]["uuid"]
    qemu.api.ok("POST", f"/rest/machine/{qemu.api.local_host()}/clusters/",
                data={"clusters": cluster})
    return Setup(qemu, {p["name"].removeprefix("net-"): p["uuid"] for p in body["packages"]},
                 qemu.scratch.pool.name(), cluster)


def interfaces(dom: libvirt.virDomain, flags: int = 0) -> list[dict]:
    root = ElementTree.fromstring(dom.XMLDesc(flags))
    out = []
    for i in root.iter("interface"):
        src = i.find("source")
        out.append({"type": i.get("type"), "mac": i.find("mac").get("address"),
                    "source": {k: v for k, v in src.attrib.items()
                               if k in ("network", "bridge")} if src is not None else None})
    return out


# -- a libvirt network: DHCP host entries ----------------------------------------------------------


def test_provision_on_a_libvirt_network(setup, vnet):
    conn = setup.qemu.host.conn
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 20, 29)
    assert vnet.dhcp_hosts(conn) == []
    new, tx, name = setup.provision()
    lease = {"network": net, "address": f"{vnet.subnet}.20", "prefix": 24,
             "gateway": f"{vnet.subnet}.1", "bridge": vnet.name}
    body = setup.done(tx)
    assert body["data"]["result"]["addresses"] == [f"{vnet.subnet}.20"]

    # the machine's info shows the lease; the network lists it as the machine's
    (got,) = setup.api.machine(new)["info"]["leases"]
    mac = got["mac"]
    assert {k: got[k] for k in lease} == lease
    assert [(x["address"], x["machine"], x["mac"]) for x in setup.leases(net)] == \
        [(f"{vnet.subnet}.20", new, mac)]
    # the domain's interface joins the libvirt network with the lease's MAC
    dom = setup.qemu.host.domain(new)
    assert interfaces(dom) == [{"type": "network", "mac": mac, "source": {"network": vnet.name}}]
    # the network hands that MAC its address (live and in the persistent definition)
    for inactive in (False, True):
        assert vnet.dhcp_hosts(conn, inactive) == [
            {"mac": mac, "name": name, "ip": f"{vnet.subnet}.20"}]
    # a rename takes the entry along (dnsmasq hands the name to the guest)
    renamed = f"{name}-renamed"
    setup.qemu.scratch.names.append(renamed)
    body = setup.api.ok("POST", f"/rest/machine/{new}/actions/rename/", data={"name": renamed})
    assert body["message"] == f"machine renamed to {renamed}"
    for inactive in (False, True):
        assert vnet.dhcp_hosts(conn, inactive) == [
            {"mac": mac, "name": renamed, "ip": f"{vnet.subnet}.20"}]
    # the domain starts on it: its live interface is a tap on the network's bridge
    setup.qemu.action(new, "create")
    setup.qemu.check(new, "running")
    live = ElementTree.fromstring(dom.XMLDesc(0)).find("devices/interface")
    assert live.find("source").get("bridge") == vnet.bridge
    assert live.find("mac").get("address") == mac
    # in use: the network cannot go, the range cannot drop the address
    expect_error(setup.api.delete(f"/rest/networks/{net}/"), 409, 1301)

    body = setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
    assert "deleted" in body["message"]
    assert setup.qemu.host.domain(new) is None
    assert vnet.dhcp_hosts(conn) == [] and vnet.dhcp_hosts(conn, True) == []
    assert setup.leases(net) == []
    assert not [v for v in setup.qemu.scratch.volume_names() if v.startswith(name)]
    # the address is free for the next machine, which gets it with its own MAC; its name is
    # no host name (nor safe in XML unescaped): the entry goes without it
    name2 = f"{setup.qemu.scratch.domain_name()} o'brien & <co>"
    setup.qemu.scratch.names.append(name2)
    new2, tx2, _ = setup.provision(name=name2)
    setup.done(tx2)
    assert setup.qemu.host.domain(new2).name() == name2
    (got2,) = setup.api.machine(new2)["info"]["leases"]
    assert got2["address"] == f"{vnet.subnet}.20" and got2["mac"] != mac
    assert vnet.dhcp_hosts(conn) == [{"mac": got2["mac"], "ip": f"{vnet.subnet}.20"}]
    setup.api.ok("POST", f"/rest/machine/{new2}/actions/totaldelete/")
    assert vnet.dhcp_hosts(conn) == []
    setup.api.ok("DELETE", f"/rest/networks/{net}/")


def test_totaldelete_of_a_machine_undefined_behind_our_back(setup, vnet):
    """The domain undefined out of band (virsh undefine): the machine is 'missing'; its
    totaldelete still takes the DHCP entry away, or the next machine given the address could
    not get its own entry."""
    conn = setup.qemu.host.conn
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 60, 60)
    new, tx, _name = setup.provision()
    setup.done(tx)
    setup.qemu.host.domain(new).undefine()
    setup.qemu.wait_api_state(new, "missing")
    assert len(vnet.dhcp_hosts(conn)) == 1
    setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
    assert setup.leases(net) == [] and vnet.dhcp_hosts(conn) == []
    new2, tx2, _ = setup.provision()
    setup.done(tx2)
    assert [x["machine"] for x in setup.leases(net)] == [new2]
    setup.api.ok("POST", f"/rest/machine/{new2}/actions/totaldelete/")


def test_a_machines_address_is_not_released_by_hand(setup, vnet):
    """Releasing by hand an address a machine holds would leave the guest on it and its DHCP
    entry behind (the next provision given that address would fail to add its own): refused;
    it goes with the machine."""
    conn = setup.qemu.host.conn
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 30, 30)
    new, tx, _name = setup.provision()
    setup.done(tx)
    address = f"{vnet.subnet}.30"
    before = (setup.leases(net), vnet.dhcp_hosts(conn))
    body = expect_error(setup.api.delete(f"/rest/networks/{net}/leases/{address}/"), 409, 1301)
    assert new in body["message"]
    assert (setup.leases(net), vnet.dhcp_hosts(conn)) == before
    setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
    assert setup.leases(net) == [] and vnet.dhcp_hosts(conn) == []


def test_a_failed_provision_takes_its_dhcp_entry_and_lease_away(setup, vnet):
    """QEMU refuses the domain (no such machine type) after the DHCP entry was added: the
    transaction's undo removes it, and the lease goes with the machine record."""
    conn = setup.qemu.host.conn
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 40, 49)
    new, tx, name = setup.provision("undefinable")
    body = wait_tx(setup.api, tx)
    assert body["data"]["state"] == "failed", body
    assert setup.qemu.host.domain(new) is None
    expect_error(setup.api.get(f"/rest/machine/{new}/"), 404, 1200)
    assert setup.leases(net) == []
    assert vnet.dhcp_hosts(conn) == [] and vnet.dhcp_hosts(conn, True) == []
    assert not [v for v in setup.qemu.scratch.volume_names() if v.startswith(name)]


def test_concurrent_provision_requests_get_distinct_addresses(setup, vnet):
    """Six requests at once on a range of four: four provisions with four addresses and DHCP
    entries, two refused at once with "no free address"; all cleaned up by totaldelete."""
    conn = setup.qemu.host.conn
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 50, 53)
    names = [setup.qemu.scratch.domain_name() for _ in range(6)]
    barrier = threading.Barrier(6)
    answers: list = [None] * 6
    host = setup.api.local_host()

    def go(i: int) -> None:
        barrier.wait(timeout=60)
        answers[i] = setup.api.post(f"/rest/machine/{host}/actions/provision/", data={
            "pkguuid": setup.pkgs["tiny"], "hvmuuid": setup.qemu.hv, "name": names[i],
            "pool": setup.pool})

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r.json() for r in answers if r.status_code == 200]
    for b in ok:
        setup.qemu.scratch.track(b["newuuid"])
    refused = [r for r in answers if r.status_code != 200]
    assert len(ok) == 4 and len(refused) == 2
    for r in refused:
        assert "no free address" in expect_error(r, 409, 1301)["message"]
    held = setup.leases(net)
    assert sorted(x["address"] for x in held) == [f"{vnet.subnet}.{i}" for i in range(50, 54)]
    assert sorted(x["machine"] for x in held) == sorted(b["newuuid"] for b in ok)
    for b in ok:
        setup.done(b["txid"])
    entries = vnet.dhcp_hosts(conn)
    assert sorted((h["mac"], h["ip"]) for h in entries) == \
        sorted((x["mac"], x["address"]) for x in held)
    for b in ok:
        mac = next(x["mac"] for x in held if x["machine"] == b["newuuid"])
        assert interfaces(setup.qemu.host.domain(b["newuuid"]))[0]["mac"] == mac
    for b in ok:
        setup.api.ok("POST", f"/rest/machine/{b['newuuid']}/actions/totaldelete/")
    assert setup.leases(net) == [] and vnet.dhcp_hosts(conn) == []


def test_ipv4_and_ipv6_networks_on_a_dual_stack_libvirt_network(setup, vnet46):
    """Two static networks on one libvirt network (its IPv6 <ip> first): two interfaces on it.
    The IPv4 address gets its DHCP host entry in the IPv4 <ip>; the IPv6 one none (libvirt keys
    DHCPv6 hosts by DUID, not MAC): the guest has it from the OEM strings, like every address."""
    conn = setup.qemu.host.conn
    net4 = setup.network(unique("static-a"), vnet46.name, vnet46.subnet, 20, 29)
    net6 = setup.api.ok("PUT", "/rest/networks/", data={
        "name": unique("static-b"), "bridge": vnet46.name, "cluster": setup.cluster,
        "ip": f"{vnet46.subnet6}:", "netmask": "64",
        "gateway": f"{vnet46.subnet6}:1"})["network"]["uuid"]
    setup.api.ok("POST", f"/rest/networks/{net6}/iprange/",
                 data={"start_ip": f"{vnet46.subnet6}:20", "end_ip": f"{vnet46.subnet6}:2f"})
    new, tx, name = setup.provision()
    setup.done(tx)
    got = setup.api.machine(new)["info"]["leases"]
    assert sorted((x["network"], x["address"]) for x in got) == sorted(
        [(net4, f"{vnet46.subnet}.20"), (net6, f"{vnet46.subnet6}:20")])
    by_net = {x["network"]: x for x in got}
    dom = setup.qemu.host.domain(new)
    assert sorted((i["type"], i["mac"], i["source"]["network"]) for i in interfaces(dom)) == \
        sorted(("network", x["mac"], vnet46.name) for x in got)
    root = ElementTree.fromstring(conn.networkLookupByName(vnet46.name).XMLDesc(0))
    assert [[dict(h.attrib) for h in ip.iter("host")] for ip in root.findall("ip")] == \
        [[], [{"mac": by_net[net4]["mac"], "name": name, "ip": f"{vnet46.subnet}.20"}]]
    oem = [e.text for e in ElementTree.fromstring(dom.XMLDesc(0)).iterfind(
        "sysinfo/oemStrings/entry")]
    assert sorted(e.split("=", 1)[1] for e in oem) == sorted(
        f"{x['mac']},{x['address']}/{x['prefix']},{x['gateway']}" for x in got)
    setup.qemu.action(new, "create")
    setup.qemu.check(new, "running")
    setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
    assert vnet46.dhcp_hosts(conn) == [] and vnet46.dhcp_hosts(conn, True) == []
    assert setup.leases(net4) == [] and setup.leases(net6) == []


# -- a plain bridge: metadata and SMBIOS OEM strings -----------------------------------------------


def qemu_command_line(name: str) -> list[str]:
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_provision_on_a_plain_bridge(setup, linux_bridge):
    conn = setup.qemu.host.conn
    subnet = f"10.{secrets.randbelow(64) + 128}.{secrets.randbelow(256)}"
    net = setup.network(unique("static"), linux_bridge, subnet, 5, 9)
    setup.api.ok("PUT", f"/rest/networks/{net}/leases/", data={"address": f"{subnet}.5",
                                                               "note": "the router's twin"})
    new, tx, name = setup.provision()
    setup.done(tx)
    (got,) = setup.api.machine(new)["info"]["leases"]
    assert (got["address"], got["prefix"], got["gateway"], got["bridge"]) == \
        (f"{subnet}.6", 24, f"{subnet}.1", linux_bridge)
    mac = got["mac"]
    dom = setup.qemu.host.domain(new)
    assert interfaces(dom) == [{"type": "bridge", "mac": mac, "source": {"bridge": linux_bridge}}]
    root = ElementTree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    # for tools: the domain's metadata (also through libvirt's metadata API)
    meta = root.findall(f"metadata/{{{METADATA_NS}}}network/{{{METADATA_NS}}}interface")
    assert [dict(m.attrib) for m in meta] == [{
        "mac": mac, "address": f"{subnet}.6", "prefix": "24", "gateway": f"{subnet}.1",
        "network": net}]
    text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    assert f'address="{subnet}.6"' in text
    # for the guest: SMBIOS type 11 OEM strings
    oem = [e.text for e in root.iterfind("sysinfo[@type='smbios']/oemStrings/entry")]
    assert oem == [f"enomalism.net0={mac},{subnet}.6/24,{subnet}.1"]
    assert root.find("os/smbios").get("mode") == "sysinfo"
    # no libvirt network is involved: nothing to hand out by DHCP
    assert not [n for n in conn.listAllNetworks(0) if n.name() == linux_bridge]

    # started, QEMU is given the strings (what `dmidecode -t 11` shows the guest)
    setup.qemu.action(new, "create")
    setup.qemu.check(new, "running")
    args = qemu_command_line(name)
    smbios = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-smbios"]
    oem_arg = next(a for a in smbios if a.startswith("type=11"))
    # QEMU's option syntax doubles the commas inside a value
    assert f"enomalism.net0={mac},,{subnet}.6/24,,{subnet}.1" in oem_arg
    # the tap device is on the bridge
    tap = ElementTree.fromstring(dom.XMLDesc(0)).find("devices/interface/target").get("dev")
    master = subprocess.run(["ip", "-o", "link", "show", tap], capture_output=True, text=True)
    assert re.search(rf"master {linux_bridge}\b", master.stdout), master.stdout

    # packaged and provisioned again where no static network serves the host: the copy's
    # guest must not find the first machine's address (it would take it too); the package
    # left its interface to the target (export drops the bridge's name): here, on a libvirt
    # network of the test's own
    setup.api.ok("PUT", f"/rest/networks/{net}/cluster/", data={"cluster": ""})
    body = setup.api.ok("POST", f"/rest/machine/{new}/actions/package/",
                        data={"name": unique("pkg")})
    setup.pkgs["copy"] = setup.done(body["txid"])["data"]["result"]["package"]
    with libvirt_network(setup.qemu.host) as vnet:
        copy, tx3, _ = setup.provision("copy", libvirt_network=vnet.name)
        setup.done(tx3)
        _check_the_copy(setup, copy, mac, {"network": vnet.name})
        setup.api.ok("POST", f"/rest/machine/{copy}/actions/totaldelete/")
    setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
    assert [x["address"] for x in setup.leases(net)] == [f"{subnet}.5"]  # reserved by hand
    assert setup.qemu.host.domain(new) is None


def _check_the_copy(setup: Setup, copy: str, mac: str, source: dict) -> None:
    """A copy of a machine on a static network: none of its address, its own MAC, started."""
    root = ElementTree.fromstring(setup.qemu.host.domain(copy).XMLDesc(0))
    assert not [e.text for e in root.iterfind("sysinfo/oemStrings/entry")
                if e.text.startswith("enomalism.")]
    assert root.findall(f"metadata/{{{METADATA_NS}}}network") == []
    assert setup.api.machine(copy)["info"]["leases"] == []
    (iface,) = interfaces(setup.qemu.host.domain(copy))
    assert iface["mac"] != mac and iface["source"] == source
    setup.qemu.action(copy, "create")
    setup.qemu.check(copy, "running")


# -- an exhausted network --------------------------------------------------------------------------


def test_an_exhausted_network_refuses_the_provision(setup, linux_bridge):
    api = setup.api
    subnet = f"10.{secrets.randbelow(64) + 128}.{secrets.randbelow(256)}"
    net = setup.network(unique("static"), linux_bridge, subnet, 7, 7)
    api.ok("PUT", f"/rest/networks/{net}/leases/")  # its only address
    name = setup.qemu.scratch.domain_name()
    before = {
        "leases": setup.leases(net),
        "machines": api.ok("GET", "/rest/machines/")["machines"],
        "transactions": api.ok("GET", "/rest/transactions/")["transactions"],
        "volumes": setup.qemu.scratch.volume_names(),
        "domains": sorted(d.name() for d in setup.qemu.host.conn.listAllDomains(0)
                          if d.name().startswith("enomalism-test-")),
    }
    for method in ("POST", "PUT"):
        r = api.request(method, f"/rest/machine/{api.local_host()}/actions/provision/",
                        data={"pkguuid": setup.pkgs["tiny"], "hvmuuid": setup.qemu.hv,
                              "name": name, "pool": setup.pool})
        body = expect_error(r, 409, 1301)
        assert "no free address" in body["message"], body
    after = {
        "leases": setup.leases(net),
        "machines": api.ok("GET", "/rest/machines/")["machines"],
        "transactions": api.ok("GET", "/rest/transactions/")["transactions"],
        "volumes": setup.qemu.scratch.volume_names(),
        "domains": sorted(d.name() for d in setup.qemu.host.conn.listAllDomains(0)
                          if d.name().startswith("enomalism-test-")),
    }
    assert after == before
    assert running(api) == []
    with pytest.raises(libvirt.libvirtError):
        setup.qemu.host.conn.lookupByName(name)
    # an address freed, the same request succeeds
    api.ok("DELETE", f"/rest/networks/{net}/leases/{subnet}.7/")
    new, tx, _ = setup.provision(name=name)
    setup.done(tx)
    assert [x["machine"] for x in setup.leases(net)] == [new]
    wait_for(lambda: setup.qemu.host.state(new), lambda s: s == "shutoff", "the new domain")
    setup.api.ok("POST", f"/rest/machine/{new}/actions/totaldelete/")
