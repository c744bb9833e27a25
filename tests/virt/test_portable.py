"""DomainXML.portable_consoles: what a package takes of the source host's consoles (issue 16,
item 7). A serial console logging to a file there made the second machine provisioned from
the package fail to start ("Cannot open log file ... busy")."""

from lxml import etree

from enomalism.virt.domxml import DomainXML

XML = """<domain type='qemu'><name>a</name><devices>
<serial type='file'><source path='/var/log/a.log'/><target port='0'/></serial>
<serial type='pty'><log file='/var/log/b.log' append='on'/><target port='1'/></serial>
<console type='unix'><source mode='bind' path='/run/a.sock'/><target type='serial'/></console>
<serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><protocol type='raw'/>
<target port='2'/></serial>
<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
</devices></domain>"""


def test_consoles_on_host_files_and_sockets_become_ptys_without_logs():
    xml = DomainXML(XML)
    xml.portable_consoles()
    root = etree.fromstring(xml.to_string().encode())
    devs = root.findall("devices/serial") + root.findall("devices/console")
    assert [d.get("type") for d in devs] == ["pty", "pty", "pty", "pty"]
    assert all(d.find("source") is None and d.find("log") is None
               and d.find("protocol") is None for d in devs)
    assert [d.find("target").get("port") for d in root.findall("devices/serial")] == \
        ["0", "1", "2"]
    assert root.find("devices/channel").get("type") == "spicevmc"  # not a console: kept


NICS = """<domain type='kvm'><name>a</name><devices>
<interface type='network'><mac address='52:54:00:00:00:01'/><source network='lab-net'/>
<target dev='vnet3'/><model type='virtio'/>
<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>
<interface type='bridge'><source bridge='br-lab'/><virtualport type='openvswitch'/>
<vlan><tag id='42'/></vlan><model type='e1000'/></interface>
<interface type='direct'><source dev='eth3' mode='bridge'/></interface>
<interface type='user'><model type='virtio'/></interface>
</devices></domain>"""


def test_export_leaves_interface_sources_to_the_target():
    """Item 7: the source host's network names do not travel; the guest's view (model, PCI
    address) does. A user-mode interface names nothing of the host: kept."""
    xml = DomainXML(NICS)
    xml.portable_interfaces()
    root = etree.fromstring(xml.to_string().encode())
    ifaces = root.findall("devices/interface")
    assert [i.get("type") for i in ifaces] == ["network", "bridge", "direct", "user"]
    assert all(i.find(t) is None for i in ifaces
               for t in ("source", "target", "virtualport", "vlan"))
    assert ifaces[0].find("address").get("bus") == "0x01"
    assert [i.find("model").get("type") for i in ifaces if i.find("model") is not None] == \
        ["virtio", "e1000", "virtio"]
    assert xml.unsourced_interfaces() == 3


def test_provisioning_fills_the_sources_from_the_targets_network():
    xml = DomainXML(NICS)
    xml.portable_interfaces()
    assert xml.fill_interface_sources("default", libvirt_network=True) == 3
    assert xml.unsourced_interfaces() == 0
    assert [(i.type, i.source) for i in xml.interfaces()] == [
        ("network", "default"), ("network", "default"), ("network", "default"), ("user", None)]
    root = etree.fromstring(xml.to_string().encode())  # <source> follows <mac>, as libvirt writes
    assert [c.tag for c in root.find("devices/interface")][:2] == ["mac", "source"]
    other = DomainXML(NICS)
    other.portable_interfaces()
    other.fill_interface_sources("br0", libvirt_network=False)
    assert {(i.type, i.source) for i in other.interfaces()} == {("bridge", "br0"), ("user", None)}


def test_a_package_that_names_its_networks_keeps_them():
    """A feed's package with sources (made elsewhere): nothing to fill."""
    xml = DomainXML(NICS)
    assert xml.unsourced_interfaces() == 0
    assert xml.fill_interface_sources("default", libvirt_network=True) == 0
    assert xml.interfaces()[0].source == "lab-net"
