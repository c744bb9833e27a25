"""virt/builder.py: the domain XML of a machine created from parameters, compared as XML
(canonical form: attribute order and whitespace do not matter), and within the domain-XML
policy as the project's own XML must be."""

import pytest
from lxml import etree

from enomalism.errors import ElementNotAllowed, VolumeNotAllowed
from enomalism.virt import builder, policy
from enomalism.virt.domxml import DomainXML

UUID = "6f1c1f6e-6f0b-4a43-9c61-3a3b0e7f2a11"


def canonical(xml: str | etree._Element) -> str:
    el = etree.fromstring(xml) if isinstance(xml, str) else xml
    return etree.tostring(el, method="c14n2", strip_text=True).decode()


def spec(**kw: object) -> builder.Spec:
    return builder.Spec(**{"name": "web", "uuid": UUID, "domain_type": "kvm", "vcpus": 2,
                           "memory_mib": 1024, **kw})


def test_a_kvm_machine_with_an_overlay_a_seed_and_two_interfaces():
    got = builder.to_xml(spec(
        cpu_mode="host-passthrough",
        disks=[builder.Disk("/pool/web-vda.qcow2", "vda"),
               builder.Disk("/pool/web-cidata.iso", "sdb", "raw", "cdrom", seed=True)],
        nics=[builder.Nic("default", "52:54:00:00:00:01"),
              builder.Nic("br0", "52:54:00:00:00:02", libvirt_network=False)]))
    assert canonical(got) == canonical(f"""
<domain type="kvm">
  <name>web</name><uuid>{UUID}</uuid>
  <memory unit="MiB">1024</memory><vcpu placement="static">2</vcpu>
  <os><type arch="x86_64" machine="q35">hvm</type><boot dev="hd"/><boot dev="cdrom"/></os>
  <features><acpi/><apic/></features>
  <cpu mode="host-passthrough" check="none"/>
  <clock offset="utc"/>
  <devices>
    <disk type="file" device="disk"><driver name="qemu" type="qcow2"/>
      <source file="/pool/web-vda.qcow2"/><target dev="vda" bus="virtio"/></disk>
    <controller type="scsi" index="0" model="virtio-scsi"/>
    <disk type="file" device="cdrom"><driver name="qemu" type="raw"/>
      <source file="/pool/web-cidata.iso"/><target dev="sdb" bus="scsi"/><readonly/>
      <address type="drive" controller="0" bus="0" target="0" unit="0"/></disk>
    <interface type="network"><mac address="52:54:00:00:00:01"/>
      <source network="default"/><model type="virtio"/></interface>
    <interface type="bridge"><mac address="52:54:00:00:00:02"/>
      <source bridge="br0"/><model type="virtio"/></interface>
    <serial type="pty"><target port="0"/></serial>
    <console type="pty"><target type="serial" port="0"/></console>
    <graphics type="vnc"><listen type="socket"/></graphics>
    <rng model="virtio"><backend model="random">/dev/urandom</backend></rng>
  </devices>
</domain>""")


def test_uefi_asks_libvirt_for_efi_firmware():
    os_el = builder.domain(spec(firmware="uefi")).find("os")
    assert os_el.get("firmware") == "efi"
    assert builder.domain(spec()).find("os").get("firmware") is None


def test_no_cpu_element_without_a_mode_and_no_machine_type_on_the_test_driver():
    root = builder.domain(spec(domain_type="test"))
    assert root.find("cpu") is None
    assert root.find("os/type").get("machine") is None
    assert [b.get("dev") for b in root.iterfind("os/boot")] == ["hd"]


@pytest.mark.parametrize("name", ["a<b>&'\"", "x" * 200])
def test_a_name_is_text_never_markup(name):
    root = etree.fromstring(builder.to_xml(spec(name=name)))
    assert root.findtext("name") == name
    assert [c.tag for c in root].count("name") == 1


def rights(ours: set[str], networks: set[str]) -> policy.Rights:
    return policy.Rights(disk=lambda s: s.path in ours, network=lambda n: n in networks,
                         bridge=lambda n: n in networks, emulator=lambda _p: False,
                         loader=lambda _p: False, who="in a created machine")


def test_the_built_xml_is_within_the_policy_and_a_foreign_disk_is_not():
    xml = builder.to_xml(spec(firmware="uefi", cpu_mode="host-model",
                              disks=[builder.Disk("/pool/a.qcow2", "vda")],
                              nics=[builder.Nic("br0", "52:54:00:00:00:03", False)]))
    policy.check(DomainXML(xml), rights({"/pool/a.qcow2"}, {"br0"}))
    with pytest.raises(VolumeNotAllowed) as e:
        policy.check(DomainXML(xml), rights(set(), {"br0"}))
    assert "/pool/a.qcow2" in str(e.value)
    with pytest.raises(ElementNotAllowed):
        policy.check(DomainXML(xml), rights({"/pool/a.qcow2"}, set()))


def test_a_seed_is_marked_in_metadata_of_its_own_namespace():
    xml = DomainXML(builder.to_xml(spec()))
    assert xml.seed_paths() == set()
    xml.mark_seed("/pool/web-cidata.iso")
    xml.mark_seed("/pool/web-cidata.iso")  # once, however often marked
    again = DomainXML(xml.to_string())
    assert again.seed_paths() == {"/pool/web-cidata.iso"}
    assert len(again.root.find("metadata")) == 1


def test_the_seed_gets_a_virtio_scsi_controller_of_its_own():
    """Added to a package's XML that has a SCSI controller of another model on index 0 and an
    sda: the seed is sdb on a new virtio-scsi controller, index 1, its first unit."""
    root = etree.fromstring(
        "<domain><devices><controller type='scsi' index='0' model='lsilogic'/>"
        "<disk type='file' device='disk'><source file='/p/a.qcow2'/>"
        "<target dev='sda' bus='scsi'/></disk></devices></domain>")
    assert builder.add_seed(root, "/p/web-cidata.iso") == "sdb"
    assert [(c.get("index"), c.get("model")) for c in root.iterfind("devices/controller")] == [
        ("0", "lsilogic"), ("1", "virtio-scsi")]
    seed = root.findall("devices/disk")[-1]
    assert (seed.get("device"), seed.find("target").get("bus")) == ("cdrom", "scsi")
    assert seed.find("address").attrib == {"type": "drive", "controller": "1", "bus": "0",
                                           "target": "0", "unit": "0"}
    assert seed.find("readonly") is not None
