"""DomainXML.rewrite_for_provision, interfaces() and new_mac(): no libvirt needed.

Where libvirt's RelaxNG schema is installed (/usr/share/libvirt/schemas/domain.rng) the rewritten
definitions are also checked against it."""

import copy
import re
from pathlib import Path

import pytest
from lxml import etree

from enomalism.errors import InvalidInput
from enomalism.virt import domxml
from enomalism.virt.domxml import DomainXML, Interface, new_mac

OLD_UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
NEW_UUID = "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")

TEMPLATE = f"""<domain type='kvm' id='7'>
  <name>web-template</name>
  <uuid>{OLD_UUID}</uuid>
  <genid>43dc0cf8-809b-4adb-9bea-a9abb5f3d90e</genid>
  <title>Web server</title>
  <memory unit='KiB'>524288</memory>
  <vcpu>1</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>Enomaly</entry>
      <entry name='serial'>ABC-123</entry>
      <entry name='uuid'>{OLD_UUID}</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'
      >/var/lib/libvirt/qemu/nvram/web-template_VARS.fd</nvram>
    <smbios mode='sysinfo'/>
  </os>
  <devices>
    <emulator>/usr/libexec/qemu-kvm</emulator>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/vg0/web-root'/>
      <target dev='vda' bus='virtio'/>
      <serial>root-disk</serial>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/old/data.qcow2'><seclabel model='dac' relabel='no'/></source>
      <backingStore type='file'><format type='raw'/><source file='/old/base.raw'/></backingStore>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <mac address='52:54:00:12:34:56'/>
      <source bridge='br0'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
    </interface>
    <interface type='network'>
      <source network='default'/>
      <model type='e1000'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:aa:bb:cc'/>
    </interface>
    <channel type='unix'>
      <source mode='bind'
        path='/var/lib/libvirt/qemu/channel/target/domain-7-web-template/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <graphics type='vnc' port='5901' autoport='no' listen='192.168.1.10'>
      <listen type='address' address='192.168.1.10'/>
    </graphics>
    <graphics type='spice' autoport='yes'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
  </devices>
  <seclabel type='dynamic' model='selinux' relabel='yes'>
    <label>system_u:system_r:svirt_t:s0:c10,c20</label>
    <imagelabel>system_u:object_r:svirt_image_t:s0:c10,c20</imagelabel>
  </seclabel>
</domain>"""

PATHS = {"vda": "/var/lib/libvirt/images/web1-vda.qcow2",
         "vdb": "/var/lib/libvirt/images/web1-vdb.img"}
FORMATS = {"vda": "qcow2", "vdb": "raw"}


def rewritten(text: str = TEMPLATE, **kw) -> DomainXML:
    x = DomainXML(text)
    args = dict(name="web1", uuid=NEW_UUID, disk_paths=PATHS, disk_formats=FORMATS,
                domain_type="qemu")
    args.update(kw)
    x.rewrite_for_provision(**args)
    return x


def disk(x: DomainXML, target: str) -> etree._Element:
    (el,) = x.root.xpath(f"devices/disk[target/@dev='{target}']")
    return el


def valid(x: DomainXML) -> None:
    if not SCHEMA.exists():
        return
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    doc = etree.fromstring(x.to_string().encode())
    assert schema.validate(doc), schema.error_log


def test_the_template_itself_is_valid():
    valid(DomainXML(TEMPLATE))


def test_identity_name_uuid_type_and_sysinfo():
    x = rewritten()
    assert (x.name, x.uuid, x.domain_type) == ("web1", NEW_UUID.lower(), "qemu")
    assert x.root.get("id") is None
    entries = {e.get("name"): e.text for e in x.root.iterfind("sysinfo/system/entry")}
    assert entries == {"manufacturer": "Enomaly", "serial": "ABC-123", "uuid": NEW_UUID.lower()}
    assert x.root.find("genid") is not None and not x.root.findtext("genid")
    assert x.root.findtext("title") == "Web server"
    assert OLD_UUID not in x.to_string()
    valid(x)


def test_domain_type_is_kept_when_not_given():
    assert rewritten(domain_type=None).domain_type == "kvm"


def test_disks_become_files_on_their_new_paths():
    x = rewritten()
    disks = {d.target: d for d in x.disks()}
    assert {t: d.path for t, d in disks.items()} == PATHS  # the cdrom is empty now
    for target in ("vda", "vdb"):
        el = disk(x, target)
        assert el.get("type") == "file"
        assert [s.attrib for s in el.findall("source")] == [{"file": PATHS[target]}]
        assert el.find("backingStore") is None
        assert el.find("driver").get("type") == FORMATS[target]
        assert el.find("driver").get("name") == "qemu"
    vda = disk(x, "vda")
    assert (vda.find("driver").get("cache"), vda.find("driver").get("io")) == ("none", "native")
    assert vda.findtext("serial") == "root-disk"
    assert disk(x, "vdb").find("driver").get("discard") == "unmap"
    cdrom = x.root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source") is None and cdrom.find("readonly") is not None
    valid(x)


def test_a_mapped_cdrom_gets_its_medium_and_a_driver_is_added_where_missing():
    t = TEMPLATE.replace("<driver name='qemu' type='raw'/>\n      <source file='/isos/",
                         "<source file='/isos/")
    x = rewritten(t, disk_paths={**PATHS, "sda": "/p/seed.iso"},
                  disk_formats={**FORMATS, "sda": "raw"})
    cdrom = x.root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == "/p/seed.iso"
    assert cdrom.find("driver").attrib == {"name": "qemu", "type": "raw"}
    valid(x)


def test_every_interface_gets_a_fresh_mac_and_loses_its_tap_name():
    before = DomainXML(TEMPLATE).interfaces()
    assert before == [
        Interface("bridge", "br0", "52:54:00:12:34:56", "virtio"),
        Interface("network", "default", None, "e1000"),
        Interface("user", None, "52:54:00:aa:bb:cc", None),
    ]
    x = rewritten()
    after = x.interfaces()
    assert [(i.type, i.source, i.model) for i in after] == \
        [(i.type, i.source, i.model) for i in before]
    macs = [i.mac for i in after]
    assert len(set(macs)) == 3 and not set(macs) & {i.mac for i in before}
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m) for m in macs)
    assert x.root.find("devices/interface/target") is None
    assert macs != [i.mac for i in rewritten().interfaces()]  # fresh each time
    valid(x)


def test_host_specific_and_old_domain_bound_things_go():
    x = rewritten()
    assert not list(x.root.iter("seclabel"))
    nvram = x.root.find("os/nvram")
    assert nvram.attrib == {"template": "/usr/share/OVMF/OVMF_VARS_4M.fd"}
    assert not nvram.text and not len(nvram)
    assert x.root.findtext("os/loader") == "/usr/share/OVMF/OVMF_CODE_4M.fd"  # kept
    assert x.root.find("os/type").get("machine") == "pc-q35-7.2"  # guest ABI kept
    assert x.root.find("devices/emulator") is None
    vnc, spice = x.root.findall("devices/graphics")
    assert vnc.attrib == {"type": "vnc", "autoport": "yes"} and vnc.find("listen") is None
    assert spice.find("listen").get("address") == "127.0.0.1"
    chan = x.root.find("devices/channel/source")
    assert chan.attrib == {"mode": "bind"}
    assert "web-template" not in x.to_string()
    valid(x)


def test_nvram_without_template_is_removed():
    t = TEMPLATE.replace(" template='/usr/share/OVMF/OVMF_VARS_4M.fd'", "")
    x = rewritten(t)
    assert x.root.find("os/nvram") is None
    assert x.root.find("os/loader") is not None
    valid(x)


def test_the_original_tree_is_untouched_by_a_failed_rewrite_of_a_copy():
    x = DomainXML(TEMPLATE)
    snapshot = copy.deepcopy(x.root)
    with pytest.raises(InvalidInput):
        x.rewrite_for_provision(name="n", uuid="nope", disk_paths=PATHS, disk_formats=FORMATS)
    assert etree.tostring(x.root) == etree.tostring(snapshot)  # input checks come first


@pytest.mark.parametrize("kw, words", [
    ({"disk_paths": {"vda": PATHS["vda"]}}, "disk vdb has no new path"),
    ({"disk_paths": {**PATHS, "vdz": "/x"}, "disk_formats": {**FORMATS, "vdz": "raw"}},
     "no disk with target vdz"),
    ({"disk_formats": {"vda": "qcow2"}}, "disk vdb: format None"),
    ({"disk_formats": {"vda": "vmdk", "vdb": "raw"}}, "'vmdk' is not one of"),
    ({"uuid": "not-a-uuid"}, "not a UUID"),
    ({"name": ""}, "not a usable domain name"),
    ({"name": "a/b"}, "not a usable domain name"),
])
def test_bad_input(kw, words):
    with pytest.raises(InvalidInput, match=re.escape(words)):
        rewritten(**kw)


def test_a_network_disk_without_a_new_path_is_refused():
    t = TEMPLATE.replace(
        "<disk type='block' device='disk'>",
        "<disk type='network' device='disk'><source protocol='rbd' name='pool/img'>"
        "<host name='ceph1'/></source><target dev='vdc' bus='virtio'/></disk>"
        "<disk type='block' device='disk'>", 1)
    with pytest.raises(InvalidInput, match="disk vdc has no new path"):
        rewritten(t)
    x = rewritten(t, disk_paths={**PATHS, "vdc": "/p/c.qcow2"},
                  disk_formats={**FORMATS, "vdc": "qcow2"})
    vdc = disk(x, "vdc")
    assert vdc.get("type") == "file" and vdc.find("source").attrib == {"file": "/p/c.qcow2"}
    assert vdc.find("source/host") is None
    valid(x)


def test_minimal_domain():
    x = DomainXML("<domain type='kvm'><name>a</name><memory>1024</memory>"
                  "<os><type>hvm</type></os><devices><interface type='network'>"
                  "<source network='default'/></interface></devices></domain>")
    x.rewrite_for_provision(name="b", uuid=NEW_UUID, disk_paths={}, disk_formats={})
    assert (x.name, x.uuid) == ("b", NEW_UUID.lower())
    assert x.interfaces()[0].mac.startswith("52:54:00:")
    valid(x)


def test_new_mac(monkeypatch):
    for _ in range(200):
        mac = new_mac()
        assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac)
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
    draws = iter([b"\x00\x00\x01", b"\x00\x00\x01", b"\x00\x00\x02"])
    monkeypatch.setattr(domxml.secrets, "token_bytes", lambda n: next(draws))
    assert new_mac(["52:54:00:00:00:01"]) == "52:54:00:00:00:02"
