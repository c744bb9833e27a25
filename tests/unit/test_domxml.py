"""virt/domxml.py: domain XML read and patched as a tree; unsafe or unusable XML refused."""

import pytest
from lxml import etree

from enomalism.errors import InvalidXML
from enomalism.virt.domxml import Disk, DomainXML

DOMAIN = """<domain type='kvm'>
  <name>web</name>
  <uuid>3e2f4c43-5f0b-4c38-9d5e-8f1ad51b7c14</uuid>
  <memory unit='KiB'>524288</memory>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/web.qcow2'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='lun'>
      <source dev='/dev/sdb'/><target dev='sda' bus='scsi'/><shareable/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/isos/install.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdd' bus='ide'/></disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/image'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file'><source file='/plain.img'/></disk>
  </devices>
</domain>"""


def test_reads_name_uuid_and_type():
    xml = DomainXML(DOMAIN)
    assert xml.name == "web"
    assert xml.uuid == "3e2f4c43-5f0b-4c38-9d5e-8f1ad51b7c14"
    assert xml.domain_type == "kvm"


def test_disks_with_a_local_source_only():
    assert DomainXML(DOMAIN).disks() == [
        Disk("/var/lib/libvirt/images/web.qcow2", "disk", "vda", False, False),
        Disk("/dev/sdb", "lun", "sda", False, True),
        Disk("/isos/install.iso", "cdrom", "hdc", True, False),
        Disk("/plain.img", "disk", None, False, False),  # device defaults to disk
    ]


def test_setters_change_the_tree_and_survive_a_round_trip():
    xml = DomainXML(DOMAIN)
    xml.name = "db"
    xml.uuid = "00000000-0000-0000-0000-000000000001"
    again = DomainXML(xml.to_string())
    assert (again.name, again.uuid) == ("db", "00000000-0000-0000-0000-000000000001")
    assert again.disks() == xml.disks()
    assert again.root.find("memory").text == "524288"


def test_setters_add_missing_elements():
    xml = DomainXML("<domain type='test'><memory>1024</memory></domain>")
    assert xml.name is None and xml.uuid is None
    xml.name, xml.uuid = "new", "00000000-0000-0000-0000-000000000002"
    root = etree.fromstring(xml.to_string())
    assert [root.findtext("name"), root.findtext("uuid")] == \
        ["new", "00000000-0000-0000-0000-000000000002"]


def test_a_name_that_looks_like_markup_stays_text():
    xml = DomainXML("<domain><name>a</name></domain>")
    xml.name = "</name><evil/>"
    root = etree.fromstring(xml.to_string())
    assert root.findtext("name") == "</name><evil/>" and root.find("evil") is None


def test_blank_name_reads_as_none():
    assert DomainXML("<domain><name>  </name></domain>").name is None


def test_an_xml_declaration_is_accepted():
    assert DomainXML('<?xml version="1.0" encoding="UTF-8"?>\n<domain><name>x</name></domain>'
                     ).name == "x"


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("   \n", "empty"),
    ("<domain><name>x</name>", "well-formed"),
    ("not xml at all", "well-formed"),
    ("<network><name>x</name></network>", "<domain>"),
    ("<x:domain xmlns:x='urn:x'><name>x</name></x:domain>", "<domain>"),
    ("<domain><name>&undefined;</name></domain>", "well-formed"),
])
def test_unusable_xml_is_refused(text, words):
    with pytest.raises(InvalidXML) as e:
        DomainXML(text)
    assert words in e.value.message
    assert e.value.errno == 1004 and e.value.status == 400


@pytest.mark.parametrize("text", [
    # an internal entity
    '<!DOCTYPE domain [<!ENTITY n "web">]><domain><name>&n;</name></domain>',
    # an external entity reading a local file
    '<!DOCTYPE domain [<!ENTITY n SYSTEM "file:///etc/passwd">]><domain><name>&n;</name></domain>',
    # an external DTD
    '<!DOCTYPE domain SYSTEM "http://127.0.0.1:1/evil.dtd"><domain><name>x</name></domain>',
    # a plain DOCTYPE
    "<!DOCTYPE domain><domain><name>x</name></domain>",
    # entity expansion ("billion laughs")
    '<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><domain><name>&c;</name></domain>',
    # a parameter entity
    '<!DOCTYPE domain [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><domain/>',
])
def test_doctypes_and_entities_are_refused(text):
    with pytest.raises(InvalidXML) as e:
        DomainXML(text)
    assert "root:" not in e.value.message  # nothing of /etc/passwd leaks into the message
