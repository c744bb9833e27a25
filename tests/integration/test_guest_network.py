"""Static networks with a real guest: the tiny kernel + busybox guest (tests/guest) boots under
TCG, runs udhcpc and prints on its serial console the address it got (GUEST-IP), its DHCP host
name and its SMBIOS OEM strings. The address the API leased is the address the guest has:

- on a transient libvirt network (net-create: no persistent config to change) with DHCP: the
  first machine, a second while the first runs, a machine provisioned at once after a
  totaldelete (the freed address again, dnsmasq's old lease released), twice; after a rename
  and a reboot the guest is given its new name with the same address;
- moved with set_parent to a second real libvirtd (tests/secondhost.py) that has a libvirt
  network of the same name, renamed there and booted: the same address and the new name from
  the new host's dnsmasq, the old host's entry and lease gone;
- on a remote hypervisor (qemu+tcp, where dhcp_release cannot reach dnsmasq), a freed address
  is held back while dnsmasq still leases it, and the next guest gets the next address;
- on a plain Linux bridge (no DHCP): the address from the SMBIOS OEM string; and, for a
  machine created from parameters with a cloud-init NoCloud seed, from the seed's
  network-config (the guest mounts the seed CD-ROM and applies it);
- an IPv4 and an IPv6 static network on one dual-stack libvirt network: the IPv4 address by
  DHCP on the NIC with its lease's MAC, both in the OEM strings;
- what cannot work is refused at creation: a subnet the libvirt network does not serve, a
  second network for the same hosts on the same libvirt network and subnet, a bridge that
  exists nowhere.

A machine's serial console goes to a file of the test's own: the provisioned (shut off)
domain's pty serial is turned into a file one through the test's own libvirt connection before
the API starts it."""

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

from tests.conftest import expect_error
from tests.guest import Serial
from tests.integration.conftest import Host, Qemu, unique, wait_for
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    feed_item,
    publish,
)
from tests.integration.relay import libvirtd_listens
from tests.integration.test_create import create, register_image
from tests.integration.test_provision_network import Setup, VNet
from tests.integration.test_provision_network import linux_bridge as linux_bridge  # noqa: F401
from tests.integration.test_provision_network import vnet46 as vnet46  # noqa: F401
from tests.integration.test_second_host import register, shared_pool

pytestmark = [pytest.mark.integration, pytest.mark.guest]
TCP_URI = "qemu+tcp://127.0.0.1/system"

TEMPLATE = (
    "<domain type='qemu'><name>template</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
    "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
    "<features><acpi/><apic/></features><on_poweroff>destroy</on_poweroff>"
    "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
    "<source file='/nowhere/tiny.qcow2'/><target dev='vda' bus='virtio'/></disk>"
    "<interface type='user'><model type='virtio'/></interface>"
    "<serial type='pty'><target port='0'/></serial><memballoon model='none'/></devices>"
    "</domain>")


@pytest.fixture(scope="module")
def guest_feed(tiny_guest: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[FeedServer]:
    d = tmp_path_factory.mktemp("guest-pkg")
    pkg = build_package(d / "guest.xvm2", tiny_guest, name="net-tiny", virt_class="qemu",
                        domain_xml=TEMPLATE)
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, pkg, "/p/guest.xvm2")])
        yield srv
    finally:
        srv.close()


@pytest.fixture
def gsetup(qemu, guest_feed) -> Setup:  # noqa: ANN001
    return guest_setup(qemu, guest_feed)


def guest_setup(qemu: Qemu, guest_feed: FeedServer) -> Setup:
    """The guest's feed added, the scratch pool, and a cluster holding the local host."""
    body = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": guest_feed.url("/feed.xml")})
    cluster = qemu.api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("cluster")})
    cluster = cluster["cluster"]["uuid"]
    qemu.api.ok("POST", f"/rest/machine/{qemu.api.local_host()}/clusters/",
                data={"clusters": cluster})
    return Setup(qemu, {"tiny": body["packages"][0]["uuid"]}, qemu.scratch.pool.name(), cluster)


@pytest.fixture
def transient_net(host: Host) -> Iterator[VNet]:
    """A transient libvirt network (net-create) with DHCP on a subnet of its own."""
    name, bridge = unique("net"), f"enmt{secrets.token_hex(4)}"
    net = None
    for _ in range(30):
        subnet = f"10.{secrets.randbelow(64) + 192}.{secrets.randbelow(256)}"
        try:
            net = host.conn.networkCreateXML(
                f"<network><name>{name}</name><bridge name='{bridge}' stp='on' delay='0'/>"
                f"<ip address='{subnet}.1' netmask='255.255.255.0'><dhcp>"
                f"<range start='{subnet}.100' end='{subnet}.199'/></dhcp></ip></network>")
            break
        except libvirt.libvirtError:
            continue  # the subnet is in use here: another one
    if net is None:
        pytest.skip("no free 10.x.y.0/24 subnet for a test network")
    try:
        yield VNet(name, bridge, subnet, "")
    finally:
        net.destroy()


def boot(setup: Setup, uuid: str, logs: Path, conn: libvirt.virConnect | None = None
         ) -> Serial:
    """Send the shut-off domain's serial console to a file and make it a TCG guest (a
    provision on a KVM hypervisor makes it kvm, and nested KVM stops real kernels here),
    then start it through the API. `conn`: the hypervisor it is on (the main host's)."""
    conn = conn or setup.qemu.host.conn
    dom = conn.lookupByUUIDString(uuid)
    root = ElementTree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    root.set("type", "qemu")
    devices = root.find("devices")
    for el in devices.findall("serial") + devices.findall("console"):
        devices.remove(el)
    log = logs / f"{uuid}.log"
    ElementTree.SubElement(devices, "serial", type="file").extend([
        ElementTree.Element("source", path=str(log), append="on"),
        ElementTree.Element("target", port="0")])
    conn.defineXML(ElementTree.tostring(root, encoding="unicode"))
    setup.qemu.action(uuid, "create")
    return Serial(log)


def provision_and_boot(setup: Setup, net: str, logs: Path) -> tuple[str, str, dict, Serial]:
    """A new machine, started: (uuid, name, its lease on `net`, its console)."""
    uuid, tx, name = setup.provision()
    setup.done(tx)
    lease = next(x for x in setup.api.machine(uuid)["info"]["leases"] if x["network"] == net)
    return uuid, name, lease, boot(setup, uuid, logs)


def guest_ip(serial: Serial, count: int = 1) -> str:
    serial.wait("GUEST-IP=", count)
    return serial.markers("GUEST-IP")[-1]


def test_the_guest_has_the_leased_address_on_a_libvirt_network(gsetup, transient_net,
                                                               tmp_path):
    setup, vnet = gsetup, transient_net
    tmp_path.chmod(0o755)
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 20, 29)
    first, first_name, lease1, con1 = provision_and_boot(setup, net, tmp_path)
    assert lease1["address"] == f"{vnet.subnet}.20"
    assert guest_ip(con1) == lease1["address"]
    lines = con1.wait("GUEST-READY")
    assert f"GUEST-HOSTNAME={first_name}" in lines
    assert f"GUEST-NIC=eth0 MAC={lease1['mac']}" in lines
    assert con1.markers("GUEST-OEM") == [
        f"enomalism.net0={lease1['mac']},{lease1['address']}/24,{vnet.subnet}.1"]

    # a second machine while the first runs
    second, _, lease2, con2 = provision_and_boot(setup, net, tmp_path)
    assert lease2["address"] == f"{vnet.subnet}.21"
    assert guest_ip(con2) == lease2["address"]
    assert setup.qemu.host.state(first) == "running"

    # deleted and provisioned again at once: the freed address goes to the new guest, twice
    old = first
    for _ in range(2):
        setup.api.ok("POST", f"/rest/machine/{old}/actions/totaldelete/")
        assert lease1["address"] not in {x["ipaddr"] for x in setup.qemu.host.conn
                                         .networkLookupByName(vnet.name).DHCPLeases()}
        old, _, lease, con = provision_and_boot(setup, net, tmp_path)
        assert lease["address"] == lease1["address"] and lease["mac"] != lease1["mac"]
        assert guest_ip(con) == lease["address"]

    # shut down (ACPI), renamed, started: the same address, and DHCP gives the new name
    con2.wait("GUEST-READY")
    setup.qemu.action(second, "shutdown")
    con2.wait("GUEST-ACPI-POWEROFF")
    setup.qemu.wait_api_state(second, "shutoff")
    new_name = unique("renamed")
    setup.qemu.scratch.names.append(new_name)
    setup.api.ok("POST", f"/rest/machine/{second}/actions/rename/", data={"name": new_name})
    setup.qemu.action(second, "create")
    lines = con2.wait("GUEST-READY", 2)
    assert guest_ip(con2, 2) == lease2["address"]
    assert f"GUEST-IP={lease2['address']}" in lines
    assert con2.markers("GUEST-HOSTNAME")[-1] == new_name
    for m in (old, second):
        setup.api.ok("POST", f"/rest/machine/{m}/actions/totaldelete/")
    assert setup.leases(net) == []


def test_the_guest_reads_its_address_from_smbios_on_a_plain_bridge(gsetup, linux_bridge,
                                                                   tmp_path):
    setup = gsetup
    tmp_path.chmod(0o755)
    net = setup.network(unique("static"), linux_bridge, "10.77.66", 40, 49)
    uuid, _, lease, con = provision_and_boot(setup, net, tmp_path)
    con.wait("GUEST-NIC=")
    assert con.markers("GUEST-OEM") == [
        f"enomalism.net0={lease['mac']},10.77.66.40/24,10.77.66.1"]
    assert f"GUEST-NIC=eth0 MAC={lease['mac']}" in con.lines()
    setup.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")


def test_what_cannot_work_on_a_real_libvirt_network_is_refused(gsetup, transient_net):
    """A subnet the libvirt network does not serve, a second network for the same hosts on the
    same libvirt network and subnet, a bridge that exists nowhere: refused, nothing made."""
    setup, vnet = gsetup, transient_net
    api = setup.api

    def put(**data: str):  # noqa: ANN202
        return api.request("PUT", "/rest/networks/", data={
            "name": unique("static"), "cluster": setup.cluster, "netmask": "24", **data})

    before = api.ok("GET", "/rest/networks/")["networks"]
    body = expect_error(put(bridge=vnet.name, ip="10.99.0.0"), 400, 1070)
    assert f"serves {vnet.subnet}.0/24, not 10.99.0.0/24" in body["message"]
    missing = f"enmtno{secrets.token_hex(4)}"
    body = expect_error(put(bridge=missing, ip="10.99.0.0"), 400, 1071)
    assert missing in body["message"] and "neither a libvirt network nor a host bridge" \
        in body["message"]
    assert api.ok("GET", "/rest/networks/")["networks"] == before
    first = setup.network(unique("static"), vnet.name, vnet.subnet, 20, 29)
    body = expect_error(put(bridge=vnet.name, ip=f"{vnet.subnet}.0"), 409, 1370)
    assert api.ok("GET", f"/rest/networks/{first}/")["network"]["name"] in body["message"]
    # tied to no cluster it is made, and the answer says it serves nothing yet
    body = api.ok("PUT", "/rest/networks/", data={
        "name": unique("static"), "bridge": vnet.name, "ip": f"{vnet.subnet}.0",
        "netmask": "24"})
    assert "warning: the network serves no cluster" in body["message"]
    # tying it to the cluster clashes with the first
    expect_error(api.request("PUT", f"/rest/networks/{body['network']['uuid']}/cluster/",
                             data={"cluster": setup.cluster}), 409, 1370)
    wait_for(lambda: api.ok("GET", f"/rest/networks/{body['network']['uuid']}/")["network"],
             lambda n: n["cluster"] is None, "the network to stay untied")


def test_on_a_remote_hypervisor_a_freed_address_waits_for_its_dhcp_lease(
        scratch, host, make_api, guest_feed, transient_net, tmp_path):  # noqa: ANN001
    if not libvirtd_listens():
        pytest.skip("libvirtd does not listen on TCP (ENOMALISM_LIBVIRT_TCP=1 "
                    "scripts/start-libvirt.sh)")
    tmp_path.chmod(0o755)
    vnet = transient_net
    with make_api(TCP_URI) as api:
        hv = next(h["uuid"] for h in api.hypervisors() if h["virt_url"] == TCP_URI)
        qemu = Qemu(api, hv, host, scratch)
        qemu.wait_hypervisor("connected")
        setup = guest_setup(qemu, guest_feed)
        net = setup.network(unique("static"), vnet.name, vnet.subnet, 20, 21)
        first, _, lease1, con1 = provision_and_boot(setup, net, tmp_path)
        assert guest_ip(con1) == lease1["address"] == f"{vnet.subnet}.20"
        setup.api.ok("POST", f"/rest/machine/{first}/actions/totaldelete/")
        leased = host.conn.networkLookupByName(vnet.name).DHCPLeases()
        assert [(x["mac"], x["ipaddr"]) for x in leased] == [(lease1["mac"], lease1["address"])]
        second, _, lease2, con2 = provision_and_boot(setup, net, tmp_path)
        assert lease2["address"] == f"{vnet.subnet}.21"
        assert guest_ip(con2) == lease2["address"]
        # the range's other address is still held: a third machine is refused, saying why
        r = api.request("POST", f"/rest/machine/{api.local_host()}/actions/provision/",
                        data={"pkguuid": setup.pkgs["tiny"], "hvmuuid": hv,
                              "name": scratch.domain_name(), "pool": setup.pool})
        body = expect_error(r, 409, 1301)
        assert body["message"].endswith("no free address left in its ranges (1 held by its "
                                        "DHCP server's leases until they end)")
        setup.api.ok("POST", f"/rest/machine/{second}/actions/totaldelete/")


@contextmanager
def same_network(conn: libvirt.virConnect, vnet: VNet) -> Iterator[None]:
    """On another host (its own network namespace), a transient libvirt network like `vnet`:
    the same name, bridge and subnet, DHCP on."""
    net = conn.networkCreateXML(
        f"<network><name>{vnet.name}</name><bridge name='{vnet.bridge}' stp='on' delay='0'/>"
        f"<ip address='{vnet.subnet}.1' netmask='255.255.255.0'><dhcp>"
        f"<range start='{vnet.subnet}.100' end='{vnet.subnet}.199'/></dhcp></ip></network>")
    try:
        yield
    finally:
        net.destroy()


def host_entries(conn: libvirt.virConnect, network: str) -> list[dict]:
    root = ElementTree.fromstring(conn.networkLookupByName(network).XMLDesc(0))
    return [dict(h.attrib) for h in root.iterfind("ip/dhcp/host")]


@pytest.mark.multihost
def test_a_renamed_machine_moved_to_another_host_keeps_its_address(
        gsetup, transient_net, second_host, second_scratch, own, tmp_path):  # noqa: ANN001
    """Booted on the main host (dnsmasq leases it the address), shut down, moved with
    set_parent to the second host, renamed there and booted: the guest has the same address
    and its new name from the second host's dnsmasq; the main host's network has neither
    the entry nor the lease any more."""
    setup, vnet = gsetup, transient_net
    here, there = setup.qemu.host.conn, second_scratch.host.conn
    for d in ("a", "b"):
        (tmp_path / d).mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    net = setup.network(unique("static"), vnet.name, vnet.subnet, 20, 29)
    uuid, _, lease, con = provision_and_boot(setup, net, tmp_path / "a")
    second_scratch.track(uuid)
    assert guest_ip(con) == lease["address"]
    con.wait("GUEST-READY")
    assert (lease["mac"], lease["address"]) in {(x["mac"], x["ipaddr"])
                                                for x in here.networkLookupByName(vnet.name)
                                                .DHCPLeases()}
    setup.qemu.action(uuid, "shutdown")
    setup.qemu.wait_api_state(uuid, "shutoff")

    _, hv = register(setup.qemu, second_host, own)
    with same_network(there, vnet), shared_pool(there, f"{own}-shared",
                                                setup.qemu.scratch.dir):
        body = setup.api.ok("POST", f"/rest/machine/{uuid}/",
                            data={"action": "set_parent", "puuid": hv})
        assert "DHCP entries not moved" not in body["message"], body["message"]
        assert lease["mac"] not in {h.get("mac") for h in host_entries(here, vnet.name)}
        assert lease["mac"] not in {x["mac"] for x in here.networkLookupByName(vnet.name)
                                    .DHCPLeases()}  # released, not left for an hour
        new_name = unique("moved")
        setup.qemu.scratch.names.append(new_name)
        second_scratch.names.append(new_name)
        setup.api.ok("POST", f"/rest/machine/{uuid}/actions/rename/", data={"name": new_name})
        assert {"mac": lease["mac"], "ip": lease["address"], "name": new_name} \
            in host_entries(there, vnet.name)
        con = boot(setup, uuid, tmp_path / "b", there)
        lines = con.wait("GUEST-READY")
        assert guest_ip(con) == lease["address"]
        assert f"GUEST-HOSTNAME={new_name}" in lines
        assert [(x["address"], x["mac"]) for x in setup.api.machine(uuid)["info"]["leases"]
                ] == [(lease["address"], lease["mac"])]
        setup.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
        assert host_entries(there, vnet.name) == []
    assert setup.leases(net) == []


def test_the_guest_reads_its_address_from_the_cloud_init_seed_on_a_plain_bridge(
        gsetup, linux_bridge, tiny_guest, tmp_path):  # noqa: ANN001
    """Created from parameters on the tiny guest's disk with a NoCloud seed, on a plain bridge
    (no DHCP): the guest mounts the seed (a CD-ROM on virtio-scsi, which its Debian cloud
    kernel reads; it has no AHCI) and puts the address from its network-config on the NIC
    with the lease's MAC: the leased address."""
    setup = gsetup
    tmp_path.chmod(0o755)
    scratch = setup.qemu.scratch
    net = setup.network(unique("static"), linux_bridge, "10.77.67", 40, 49)
    pool_dir = ElementTree.fromstring(scratch.pool.XMLDesc(0)).findtext("target/path")
    disk = Path(pool_dir) / f"{unique('tiny')}.qcow2"
    shutil.copyfile(tiny_guest, disk)
    disk.chmod(0o644)
    img = register_image(setup.qemu, scratch, unique("tiny"), disk, "qcow2")
    name = scratch.domain_name()
    uuid = create(setup.qemu, scratch, name=name, image=img, hostname="seeded-guest",
                  network=net, memory=128)
    [lease] = setup.api.machine(uuid)["info"]["leases"]
    con = boot(setup, uuid, tmp_path)
    lines = con.wait("GUEST-READY")
    assert [m for m in lines if m.startswith("GUEST-SEED")] == [
        "GUEST-SEED=/dev/sr0", "GUEST-SEED-HOSTNAME=seeded-guest",
        f"GUEST-SEED-ADDRESS=eth0 {lease['address']}/24"]
    assert f"GUEST-NIC=eth0 MAC={lease['mac']}" in lines
    assert con.markers("GUEST-IP") == [lease["address"]] == ["10.77.67.40"]
    assert not con.markers("GUEST-DHCP-FAILED")  # no DHCP asked for: the seed gave it
    setup.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    assert setup.leases(net) == []


def test_two_networks_on_one_dual_stack_libvirt_network(gsetup, vnet46, tmp_path):
    """An IPv4 and an IPv6 static network on one libvirt network (the only two that may share
    it, docs/networks.md): the guest's NIC with the IPv4 lease's MAC gets that address from
    dnsmasq, and both addresses reach it in the OEM strings."""
    setup = gsetup
    tmp_path.chmod(0o755)
    net4 = setup.network(unique("static-a"), vnet46.name, vnet46.subnet, 20, 29)
    net6 = setup.api.ok("PUT", "/rest/networks/", data={
        "name": unique("static-b"), "bridge": vnet46.name, "cluster": setup.cluster,
        "ip": f"{vnet46.subnet6}:", "netmask": "64",
        "gateway": f"{vnet46.subnet6}:1"})["network"]["uuid"]
    setup.api.ok("POST", f"/rest/networks/{net6}/iprange/",
                 data={"start_ip": f"{vnet46.subnet6}:20", "end_ip": f"{vnet46.subnet6}:2f"})
    uuid, _, lease4, con = provision_and_boot(setup, net4, tmp_path)
    lease6 = next(x for x in setup.api.machine(uuid)["info"]["leases"] if x["network"] == net6)
    lines = con.wait("GUEST-READY")
    after = lines[lines.index(next(x for x in lines if x.endswith(f"MAC={lease4['mac']}"))):]
    assert next(x for x in after if x.startswith("GUEST-IP=")) == \
        f"GUEST-IP={lease4['address']}" == f"GUEST-IP={vnet46.subnet}.20"
    assert sorted(m.split("=", 1)[1] for m in con.markers("GUEST-OEM")) == sorted(
        f"{x['mac']},{x['address']}/{x['prefix']},{x['gateway']}"
        for x in setup.api.machine(uuid)["info"]["leases"])
    assert lease6["address"] == f"{vnet46.subnet6}:20"
    setup.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    assert setup.leases(net4) == [] and setup.leases(net6) == []
