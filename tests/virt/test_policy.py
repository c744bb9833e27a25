"""virt/policy.py on its own: the corners of the allow-list the API tests
(tests/api/test_xml_policy.py) do not reach one by one."""

import pytest

from enomalism.errors import ElementNotAllowed, VolumeNotAllowed
from enomalism.virt import policy
from enomalism.virt.domxml import DomainXML

MINE = "/pool/mine.img"
RIGHTS = policy.Rights(disk=lambda s: s.path == MINE or (s.pool, s.volume) == ("p", "mine"),
                       network=lambda n: n == "ours", bridge=lambda n: n == "br-ours",
                       emulator=lambda p: p == "/usr/bin/qemu-system-x86_64",
                       loader=lambda p: p == "/usr/share/OVMF/OVMF_CODE.fd")


def check(devices: str = "", root: str = "", os: str = "") -> None:
    policy.check(DomainXML(
        f"<domain type='kvm'><name>x</name><memory>1024</memory><os><type>hvm</type>{os}</os>"
        f"<devices>{devices}</devices>{root}</domain>"), RIGHTS)


def test_what_the_hypervisor_offers_passes():
    check(devices="<emulator>/usr/bin/qemu-system-x86_64</emulator>"
                  f"<disk type='file'><source file='{MINE}'/><target dev='vda'/></disk>"
                  "<disk type='volume'><source pool='p' volume='mine'/>"
                  "<target dev='vdb'/></disk>"
                  "<interface type='network'><source network='ours'/></interface>"
                  "<interface type='bridge'><source bridge='br-ours'/></interface>"
                  "<!-- a comment --><graphics type='vnc' listen='127.0.0.1'/>",
          os="<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>",
          root="<metadata><x:anything xmlns:x='urn:x'><x:y z='1'/></x:anything></metadata>")


@pytest.mark.parametrize("devices, root, words", [
    # a foreign namespace deep inside an otherwise free part
    ("", "<features><q:x xmlns:q='urn:q'/></features>", "<q:x>"),
    ("<controller type='usb'><q:x xmlns:q='urn:q'/></controller>", "", "<q:x>"),
    # the root's attributes
    ("", "", "attribute"),
])
def test_namespaces_and_attributes(devices, root, words):
    extra = " extra='1'" if words == "attribute" else ""
    xml = f"<domain type='kvm'{extra}><name>x</name><devices>{devices}</devices>{root}</domain>"
    with pytest.raises(ElementNotAllowed, match=words):
        policy.check(DomainXML(xml), RIGHTS)


@pytest.mark.parametrize("disk", [
    # libvirt reads the first source; every one must pass
    f"<disk type='file'><source file='{MINE}'/><source file='/etc/shadow'/></disk>",
    # a block disk's device is `dev`, whatever `file` says
    f"<disk type='block'><source dev='/dev/sda' file='{MINE}'/></disk>",
    "<disk type='volume'><source pool='p' volume='theirs'/></disk>",
    "<disk type='volume'><source pool='p'/></disk>",
])
def test_every_disk_source_is_checked(disk):
    with pytest.raises(VolumeNotAllowed):
        check(devices=disk)


@pytest.mark.parametrize("devices, os, words", [
    ("<emulator>/usr/bin/qemu-system-aarch64</emulator>", "", "<emulator>"),
    ("", "<loader>/usr/share/OVMF/OVMF_VARS.fd</loader>", "<loader>"),
    ("<interface type='network'><source network='ours'/><source network='other'/>"
     "</interface>", "", "one <source"),
    ("<interface type='network'><source bridge='br-ours'/></interface>", "", "one <source"),
    ("<interface type='bridge'><source bridge='br-theirs'/></interface>", "", "br-theirs"),
    ("<graphics type='vnc'><listen type='network' network='ours'/></graphics>", "",
     "type='network'"),
])
def test_names_the_caller_may_not_use(devices, os, words):
    with pytest.raises(ElementNotAllowed, match=words):
        check(devices=devices, os=os)


def test_a_package_message_says_where():
    with pytest.raises(ElementNotAllowed, match="in a package's description.xml"):
        policy.check(DomainXML("<domain><name>x</name><devices><hostdev/></devices></domain>"),
                     policy.Rights(who="in a package's description.xml"))
