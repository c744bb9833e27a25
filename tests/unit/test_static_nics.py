"""virt/domxml.py DomainXML.set_static_addresses: interfaces joined to static networks (a libvirt
network: type='network'; a host bridge: type='bridge') with the lease's MAC, and the addresses
handed to the guest in <metadata> and as SMBIOS OEM strings
`enomalism.net<i>=<mac>,<address>/<prefix>,<gateway>`. Each result is also defined, with schema
validation, on libvirt's test driver and read back, so libvirt keeps what the guest needs.

Also virt/driver.py dhcp_host on the test driver's own network: the host entry is added and
removed, whatever the machine's name holds."""

from collections.abc import Iterator

import libvirt
import pytest
from lxml import etree

from enomalism.virt import driver
from enomalism.virt.domxml import METADATA_NS, DomainXML, StaticNic, new_mac

NS = {"enm": METADATA_NS}
UUID = "0d6a4c53-7f7e-4bd4-9f39-3a1f3c1b2a10"


def template(interfaces: str = "", os_extra: str = "", more: str = "") -> str:
    return (f"<domain type='test'><name>tmpl</name><uuid>{UUID}</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            f"<os><type arch='x86_64'>hvm</type>{os_extra}</os>{more}"
            f"<devices>{interfaces}</devices></domain>")


def nic(i: int = 0, *, libvirt_network: bool = False, gateway: str | None = "10.1.0.1",
        address: str | None = None, prefix: int = 24) -> StaticNic:
    return StaticNic(network=f"net-uuid-{i}", source=f"src{i}", libvirt_network=libvirt_network,
                     mac=f"52:54:00:00:00:{i:02x}", address=address or f"10.1.0.{10 + i}",
                     prefix=prefix, gateway=gateway)


def ifaces(xml: etree._Element) -> list[dict]:
    out = []
    for i in xml.iterfind("devices/interface"):
        src, model = i.find("source"), i.find("model")
        out.append({"type": i.get("type"), "mac": i.find("mac").get("address"),
                    "source": dict(src.attrib) if src is not None else None,
                    "model": model.get("type") if model is not None else None,
                    "children": sorted(c.tag for c in i)})
    return out


def oem(xml: etree._Element) -> list[str]:
    return [e.text for e in xml.iterfind("sysinfo[@type='smbios']/oemStrings/entry")]


def metadata(xml: etree._Element) -> list[dict]:
    return [dict(e.attrib) for e in xml.iterfind("metadata/enm:network/enm:interface", NS)]


@pytest.fixture(scope="module")
def test_conn() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


def defined(conn: libvirt.virConnect, text: str) -> etree._Element:
    """Define on the test driver (validated against libvirt's schema), read back, undefine."""
    dom = conn.defineXMLFlags(text, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        return etree.fromstring(dom.XMLDesc(0).encode())
    finally:
        dom.undefine()


def test_a_bridge_and_a_libvirt_network_with_the_leases_macs(test_conn):
    xml = DomainXML(template())
    xml.set_static_addresses([nic(0), nic(1, libvirt_network=True, gateway=None)])
    for root in (xml.root, defined(test_conn, xml.to_string())):
        assert [(x["type"], x["mac"], x["source"], x["model"]) for x in ifaces(root)] == [
            ("bridge", "52:54:00:00:00:00", {"bridge": "src0"}, "virtio"),
            ("network", "52:54:00:00:00:01", {"network": "src1"}, "virtio")]
        assert oem(root) == ["enomalism.net0=52:54:00:00:00:00,10.1.0.10/24,10.1.0.1",
                             "enomalism.net1=52:54:00:00:00:01,10.1.0.11/24,"]
        assert metadata(root) == [
            {"mac": "52:54:00:00:00:00", "address": "10.1.0.10", "prefix": "24",
             "gateway": "10.1.0.1", "network": "net-uuid-0"},
            {"mac": "52:54:00:00:00:01", "address": "10.1.0.11", "prefix": "24",
             "gateway": "", "network": "net-uuid-1"}]
        # the guest sees the sysinfo only with <smbios mode='sysinfo'/>
        assert root.find("os/smbios").get("mode") == "sysinfo"


def test_the_templates_interfaces_are_joined_in_order(test_conn):
    """Interface i joins nics[i]: its host-specific parts (source, MAC, tap device, virtual
    port, VLAN) go; its model, driver, PCI address and boot order stay. Interfaces beyond the
    nics are left as they are."""
    xml = DomainXML(template(
        "<interface type='direct'><mac address='52:54:00:aa:aa:aa'/>"
        "<source dev='eth7' mode='vepa'/><target dev='macvtap3'/>"
        "<model type='e1000'/><boot order='2'/>"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></interface>"
        "<interface type='bridge'><mac address='52:54:00:bb:bb:bb'/><source bridge='br7'/>"
        "<virtualport type='openvswitch'/><vlan><tag id='42'/></vlan>"
        "<model type='virtio'/><driver name='vhost' queues='2'/></interface>"
        "<interface type='user'><mac address='52:54:00:cc:cc:cc'/><model type='rtl8139'/>"
        "</interface>"))
    xml.set_static_addresses([nic(0, libvirt_network=True), nic(1)])
    got = ifaces(xml.root)
    assert got[0] == {"type": "network", "mac": "52:54:00:00:00:00",
                      "source": {"network": "src0"}, "model": "e1000",
                      "children": ["address", "boot", "mac", "model", "source"]}
    assert got[1] == {"type": "bridge", "mac": "52:54:00:00:00:01", "source": {"bridge": "src1"},
                      "model": "virtio", "children": ["driver", "mac", "model", "source"]}
    assert got[2] == {"type": "user", "mac": "52:54:00:cc:cc:cc", "source": None,
                      "model": "rtl8139", "children": ["mac", "model"]}
    back = defined(test_conn, xml.to_string())
    assert [(x["type"], x["mac"], x["source"]) for x in ifaces(back)] == \
        [(x["type"], x["mac"], x["source"]) for x in got]
    assert back.find("devices/interface/boot").get("order") == "2"


def test_more_nics_than_interfaces_adds_virtio_ones(test_conn):
    xml = DomainXML(template("<interface type='user'><model type='e1000'/></interface>"))
    xml.set_static_addresses([nic(0), nic(1), nic(2)])
    back = defined(test_conn, xml.to_string())
    assert [(x["type"], x["source"], x["model"]) for x in ifaces(back)] == [
        ("bridge", {"bridge": "src0"}, "e1000"), ("bridge", {"bridge": "src1"}, "virtio"),
        ("bridge", {"bridge": "src2"}, "virtio")]
    assert [e.split("=")[0] for e in oem(back)] == ["enomalism.net0", "enomalism.net1",
                                                    "enomalism.net2"]


def test_a_domain_without_devices_gets_them():
    xml = DomainXML(f"<domain type='test'><name>x</name><uuid>{UUID}</uuid>"
                    "<memory>65536</memory><os><type>hvm</type></os></domain>")
    xml.set_static_addresses([nic(0)])
    assert [x["source"] for x in ifaces(xml.root)] == [{"bridge": "src0"}]


def test_ipv6_addresses(test_conn):
    xml = DomainXML(template())
    xml.set_static_addresses([nic(0, address="fd00:5::100", prefix=64, gateway="fd00:5::1")])
    back = defined(test_conn, xml.to_string())
    assert oem(back) == ["enomalism.net0=52:54:00:00:00:00,fd00:5::100/64,fd00:5::1"]
    assert metadata(back)[0]["address"] == "fd00:5::100"


def test_the_templates_own_sysinfo_and_metadata_are_kept(test_conn):
    """An existing SMBIOS sysinfo keeps its other fields and OEM strings (ours replace only
    ours); other metadata is left alone; setting the addresses again replaces, never adds."""
    xml = DomainXML(template(
        more="<metadata><app:info xmlns:app='https://example.com/app'>keep</app:info>"
             "</metadata>"
             "<sysinfo type='smbios'><system><entry name='manufacturer'>ACME</entry></system>"
             "<oemStrings><entry>vendor=acme</entry><entry>enomalism.net0=stale</entry>"
             "</oemStrings></sysinfo>"))
    xml.set_static_addresses([nic(0)])
    xml.set_static_addresses([nic(3)])
    back = defined(test_conn, xml.to_string())
    assert oem(back) == ["vendor=acme",
                         "enomalism.net0=52:54:00:00:00:03,10.1.0.13/24,10.1.0.1"]
    assert back.findtext("sysinfo/system/entry[@name='manufacturer']") == "ACME"
    assert len(back.findall("sysinfo")) == 1
    assert [m["mac"] for m in metadata(back)] == ["52:54:00:00:00:03"]
    assert back.find("metadata/{https://example.com/app}info").text == "keep"


def test_an_existing_smbios_mode_is_left_alone():
    xml = DomainXML(template(os_extra="<smbios mode='host'/>"))
    xml.set_static_addresses([nic(0)])
    assert [s.get("mode") for s in xml.root.findall("os/smbios")] == ["host"]


def test_after_the_provision_rewrite(test_conn):
    """The order provisioning uses: rewrite for the new domain, then join the networks; the
    leases' MACs win over the fresh ones the rewrite gave."""
    xml = DomainXML(template("<interface type='network'><mac address='52:54:00:11:22:33'/>"
                             "<source network='default'/><target dev='vnet9'/>"
                             "<model type='virtio'/></interface>"))
    xml.rewrite_for_provision(name="fresh", uuid="5f0e8c1e-5b43-4c8b-8d8f-0b5b2d9c1d01",
                              disk_paths={}, disk_formats={}, domain_type="test")
    xml.set_static_addresses([nic(0)])
    back = defined(test_conn, xml.to_string())
    assert [(x["type"], x["mac"], x["source"]) for x in ifaces(back)] == \
        [("bridge", "52:54:00:00:00:00", {"bridge": "src0"})]
    assert back.findtext("name") == "fresh"


def test_a_template_made_from_a_provisioned_machine_keeps_none_of_its_addresses(test_conn):
    """A package of a provisioned machine carries its static addresses (metadata, OEM strings).
    Provisioned again, on a host with no static network, the new guest must not find the old
    machine's address and take it too: the rewrite drops them, and nothing else."""
    old = DomainXML(template(
        "<interface type='user'><model type='virtio'/></interface>",
        more="<metadata><app:info xmlns:app='https://example.com/app'>keep</app:info></metadata>"
             "<sysinfo type='smbios'><oemStrings><entry>vendor=acme</entry></oemStrings>"
             "</sysinfo>"))
    old.set_static_addresses([nic(0)])
    packaged = defined(test_conn, old.to_string())  # as libvirt hands it to the package
    assert oem(packaged) and metadata(packaged)
    xml = DomainXML(etree.tostring(packaged, encoding="unicode"))
    xml.rewrite_for_provision(name="copy", uuid="5f0e8c1e-5b43-4c8b-8d8f-0b5b2d9c1d02",
                              disk_paths={}, disk_formats={}, domain_type="test")
    back = defined(test_conn, xml.to_string())
    assert oem(back) == ["vendor=acme"]
    assert metadata(back) == []
    assert back.find("metadata/{https://example.com/app}info").text == "keep"
    assert ifaces(back)[0]["mac"] != "52:54:00:00:00:00"


def test_the_addresses_were_all_the_sysinfo_there_was(test_conn):
    """A template whose only SMBIOS sysinfo was our OEM strings: none of it is left (libvirt
    takes no empty <oemStrings>), and the machine starts."""
    old = DomainXML(template())
    old.set_static_addresses([nic(0), nic(1)])
    xml = DomainXML(etree.tostring(defined(test_conn, old.to_string()), encoding="unicode"))
    xml.rewrite_for_provision(name="copy", uuid="5f0e8c1e-5b43-4c8b-8d8f-0b5b2d9c1d03",
                              disk_paths={}, disk_formats={}, domain_type="test")
    assert xml.root.find("sysinfo") is None and xml.root.find("os/smbios") is None
    dom = test_conn.defineXMLFlags(xml.to_string(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    try:
        dom.create()
        dom.destroy()
    finally:
        dom.undefine()


def test_new_mac_is_local_unicast_and_avoids_taken():
    macs = {new_mac() for _ in range(200)}
    for mac in macs:
        first = int(mac[:2], 16)
        assert mac.startswith("52:54:00:") and first & 0x02 and not first & 0x01
    taken = {f"52:54:00:00:00:{i:02x}" for i in range(256)}
    assert new_mac(taken) not in taken


# -- dhcp_host on the test driver's network --------------------------------------------------


def hosts(conn: libvirt.virConnect) -> list[dict]:
    root = etree.fromstring(conn.networkLookupByName("default").XMLDesc(0).encode())
    return [dict(h.attrib) for h in root.iterfind("ip/dhcp/host")]


@pytest.mark.parametrize("name, kept", [
    ("web", True), ("web-01", True), ("Web.example.com", True), ("x" * 63, True),
    ("1st", False), ("o'brien & co", False), ("a b", False), ("<x>", False), ("é", False),
    ("x" * 64, False), ("a,b", False), ("-a", False), ("a-", False), ("", False)])
def test_dhcp_host_entries_for_any_machine_name(name, kept):
    """Added with a name the network accepts (an invalid host name is left out, never breaks
    the XML), removed by MAC and address."""
    conn = libvirt.open("test:///default")  # a fresh test driver: its own network
    try:
        before = hosts(conn)
        driver.dhcp_host(conn, "default", mac="52:54:00:00:10:01", ip="192.168.122.50",
                         name=name, command="add")
        (entry,) = [h for h in hosts(conn) if h not in before]
        assert (entry["mac"], entry["ip"]) == ("52:54:00:00:10:01", "192.168.122.50")
        assert entry.get("name") == (name if kept else None)
        driver.dhcp_host(conn, "default", mac="52:54:00:00:10:01", ip="192.168.122.50",
                         name="", command="delete")
        assert hosts(conn) == before
        # removing it again is no error
        driver.dhcp_host(conn, "default", mac="52:54:00:00:10:01", ip="192.168.122.50",
                         name="", command="delete")
    finally:
        conn.close()


@pytest.mark.parametrize("new_name, kept", [("web-02", True), ("o'brien & co", False)])
def test_a_dhcp_host_entry_is_renamed_in_place(new_name, kept):
    """A rename replaces the entry found by its MAC (live and persistent), and one that is not
    there (removed by hand) is made."""
    conn = libvirt.open("test:///default")
    mac, ip = "52:54:00:00:10:02", "192.168.122.51"
    try:
        before = hosts(conn)
        driver.dhcp_host(conn, "default", mac=mac, ip=ip, name="web-01", command="add")
        driver.dhcp_host(conn, "default", mac=mac, ip=ip, name=new_name, command="modify")
        (entry,) = [h for h in hosts(conn) if h not in before]
        assert (entry["mac"], entry["ip"], entry.get("name")) == \
            (mac, ip, new_name if kept else None)
        driver.dhcp_host(conn, "default", mac=mac, ip=ip, name="", command="delete")
        assert hosts(conn) == before
        driver.dhcp_host(conn, "default", mac=mac, ip=ip, name="web-03", command="modify")
        (entry,) = [h for h in hosts(conn) if h not in before]
        assert (entry["mac"], entry["ip"], entry.get("name")) == (mac, ip, "web-03")
    finally:
        driver.dhcp_host(conn, "default", mac=mac, ip=ip, name="", command="delete")
        conn.close()


def test_has_network(test_conn):
    assert driver.has_network(test_conn, "default")
    assert not driver.has_network(test_conn, "virbr0")
    assert not driver.has_network(test_conn, "enomalism-no-such-network")


DUAL = ("<network><name>{name}</name><bridge name='virbr{n}'/>"
        "<ip family='ipv6' address='fd00:78::1' prefix='64'><dhcp>"
        "<range start='fd00:78::100' end='fd00:78::1ff'/></dhcp></ip>"
        "<ip address='10.251.{n}.1' netmask='255.255.255.0'><dhcp>"
        "<range start='10.251.{n}.100' end='10.251.{n}.200'/></dhcp></ip></network>")


def test_dhcp_host_on_a_dual_stack_network():
    """The entry goes to the <ip> element holding the address (libvirt's own pick would be the
    first with DHCP, here the IPv6 one, which takes no MAC); an IPv6 address gets no entry
    (libvirt keys DHCPv6 hosts by DUID): the guest reads it from the OEM strings."""
    conn = libvirt.open("test:///default")
    try:
        net = conn.networkDefineXML(DUAL.format(name="dual", n=7))
        net.create()

        def entries() -> list[tuple]:
            root = etree.fromstring(net.XMLDesc(0).encode())
            return [(i, dict(h.attrib)) for i, ip in enumerate(root.iterfind("ip"))
                    for h in ip.iterfind("dhcp/host")]

        driver.dhcp_host(conn, "dual", mac="52:54:00:00:20:01", ip="10.251.7.20", name="v4",
                         command="add")
        driver.dhcp_host(conn, "dual", mac="52:54:00:00:20:02", ip="fd00:78::20", name="v6",
                         command="add")
        assert entries() == [(1, {"mac": "52:54:00:00:20:01", "name": "v4",
                                  "ip": "10.251.7.20"})]
        driver.dhcp_host(conn, "dual", mac="52:54:00:00:20:02", ip="fd00:78::20", name="",
                         command="delete")
        driver.dhcp_host(conn, "dual", mac="52:54:00:00:20:01", ip="10.251.7.20", name="",
                         command="delete")
        assert entries() == []
    finally:
        conn.close()


# -- the boot script of docs/networks.md ---------------------------------------------------------

DMIDECODE = """# dmidecode 3.4
Getting SMBIOS data from sysfs.
SMBIOS 2.8 present.

Handle 0x0F00, DMI type 11, 5 bytes
OEM Strings
\tString 1: vendor=acme
\tString 2: enomalism.net0=52:54:00:00:00:0a,10.1.0.10/24,10.1.0.1
\tString 3: enomalism.net1=52:54:00:00:00:0b,fd00:5::100/64,fd00:5::1
\tString 4: enomalism.net2=52:54:00:00:00:0c,192.168.7.9/30,
\tString 5: enomalism.net3=52:54:00:00:00:0d,10.9.0.2/24,10.9.0.1

"""


def test_the_documented_boot_script(tmp_path):
    """The script docs/networks.md gives images, run with `dmidecode` and `ip` stood in for and
    a fake /sys/class/net: each interface found by MAC gets its address and default route."""
    import os
    import re
    import subprocess
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "networks.md").read_text()
    script = re.search(r"```sh\n(#!/bin/sh\n.*?)```", doc, re.S).group(1)
    (tmp_path / "enomalism-net").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "dmi.txt").write_text(DMIDECODE)
    (bin_dir / "dmidecode").write_text(
        f"#!/bin/sh\n[ \"$*\" = '-t 11' ] || exit 2\ncat {tmp_path / 'dmi.txt'}\n")
    (bin_dir / "ip").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path / 'ip.log'}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    sysfs = tmp_path / "net"
    for dev, mac in (("lo", "00:00:00:00:00:00"), ("ens3", "52:54:00:00:00:0a"),
                     ("ens4", "52:54:00:00:00:0b"), ("ens5", "52:54:00:00:00:0c")):
        (sysfs / dev).mkdir(parents=True)
        (sysfs / dev / "address").write_text(mac + "\n")
    r = subprocess.run(["sh", str(tmp_path / "enomalism-net")], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                            "SYSFS_NET": str(sysfs)}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ip.log").read_text().splitlines() == [
        "link set dev ens3 up", "address replace 10.1.0.10/24 dev ens3",
        "route replace default via 10.1.0.1 dev ens3",
        "link set dev ens4 up", "address replace fd00:5::100/64 dev ens4",
        "-6 route replace default via fd00:5::1 dev ens4",
        "link set dev ens5 up", "address replace 192.168.7.9/30 dev ens5"]
    assert r.stdout.splitlines() == ["enomalism-net: ens3 is 10.1.0.10/24 via 10.1.0.1",
                                     "enomalism-net: ens4 is fd00:5::100/64 via fd00:5::1",
                                     "enomalism-net: ens5 is 192.168.7.9/30"]
    assert "no interface has MAC 52:54:00:00:00:0d" in r.stderr
