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
