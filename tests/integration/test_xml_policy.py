"""Issue 12 on the real libvirtd (qemu:///system): a non-administrator's VM as virt-manager
writes it (with QEMU's emulator path) is defined, QEMU's own namespace is not; a graphics
password an administrator set reaches no answer and no package, and survives the owner's
store_xml. tests/api/test_xml_policy.py has every element class on the test driver."""

from xml.etree import ElementTree

import libvirt
import pytest

from enomalism.feeds import archive
from tests.api.accounts import grant, new_user
from tests.conftest import expect_error
from tests.integration.provision_helpers import wait_tx

pytestmark = pytest.mark.integration

SECRET = "s3cr3tpw"  # VNC takes 8 characters at most


def _xml(qemu, name: str, disk: str, devices: str = "", root: str = "") -> str:
    caps = ElementTree.fromstring(qemu.host.conn.getCapabilities())
    emulator = caps.find("guest/arch[@name='x86_64']/emulator").text
    return (f"<domain type='{qemu.host.domain_type()}'><name>{name}</name>"
            "<memory unit='MiB'>64</memory><vcpu placement='static'>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"
            "<features><acpi/><apic/></features><clock offset='utc'/>"
            f"<devices><emulator>{emulator}</emulator>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            "<serial type='pty'><target port='0'/></serial>"
            "<console type='pty'><target type='serial' port='0'/></console>"
            "<channel type='unix'><source mode='bind'/>"
            "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
            "<input type='tablet' bus='usb'/>"
            "<graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>"
            "<video><model type='vga'/></video><memballoon model='virtio'/>"
            "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
            f"{devices}</devices>{root}</domain>")


def test_a_non_admin_vm_on_qemu(qemu):
    """The admin's machine owns its volume; a user granted `modify` on it defines a VM of
    her own on that volume (QEMU's emulator named), and starts it; QEMU's namespace is
    refused."""
    base, _name, vol = qemu.define()
    user = new_user(qemu.api)
    grant(qemu.api, base, "modify", user=user.uuid)
    grant(qemu.api, qemu.hv, "control", user=user.uuid)
    name = qemu.scratch.domain_name()
    r = qemu.api.put("/rest/machines/", auth=user.auth, data={
        "xmldesc": _xml(qemu, name, vol.path()), "hvmuuid": qemu.hv})
    assert r.status_code == 200, r.text
    uuid = r.json()["machine"]
    qemu.scratch.track(uuid)
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/create/", auth=user.auth)
    qemu.check(uuid, "running")
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/poweroff/", auth=user.auth)
    # what she reads back from libvirt (with what libvirt added), edited, passes again
    shown = qemu.api.machine(uuid)["machine_obj"]["xmldesc"]
    assert "<memory unit='KiB'>65536</memory>" in shown, shown
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", auth=user.auth, data={
        "action": "xmldesc", "xmldesc": shown.replace("<memory unit='KiB'>65536</memory>",
                                                      "<memory unit='KiB'>131072</memory>")})
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/", auth=user.auth)
    assert qemu.api.machine(uuid)["info"]["max_memory_kib"] == 131072

    evil = _xml(qemu, qemu.scratch.domain_name(), vol.path(), root=(
        "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        "<qemu:arg value='-chardev'/><qemu:arg value='file,id=x,path=/etc/shadow'/>"
        "</qemu:commandline>"))
    body = expect_error(qemu.api.put("/rest/machines/", auth=user.auth, data={
        "xmldesc": evil, "hvmuuid": qemu.hv}), 403, 1110)
    assert "<qemu:commandline>" in body["message"]
    # totaldelete of her machine leaves the admin machine's volume alone
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/", auth=user.auth)
    assert vol.name() in qemu.scratch.volume_names()


def test_a_graphics_password_reaches_no_answer_and_no_package(qemu):
    uuid, name, vol = qemu.define()
    dom = qemu.host.domain(uuid)
    xml = _xml(qemu, name, vol.path()).replace(
        "<graphics type='vnc' port='-1' autoport='yes'>",
        f"<graphics type='vnc' port='-1' autoport='yes' passwd='{SECRET}'>")
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "xmldesc", "xmldesc": xml})
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    assert SECRET in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    assert SECRET not in qemu.api.get(f"/rest/machine/{uuid}/").text
    assert SECRET not in qemu.api.get("/rest/machines/", params={"detail": "true"}).text

    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/package/", data={"name": "pw"})
    tx = wait_tx(qemu.api, body["txid"])
    assert tx["data"]["state"] == "done", tx
    pkg = tx["data"]["result"]["package"]
    data_dir = qemu.api.app.state.settings.data_dir
    _manifest, packaged = archive.read_package(data_dir / "packages" / f"{pkg}.xvm2")
    assert "<graphics" in packaged and SECRET not in packaged and "passwd" not in packaged
    r = qemu.api.get(f"/rest/vmfeed/{pkg}/download/")
    assert r.status_code == 200 and SECRET.encode() not in r.content

    # the owner's own edit (of the XML she reads) keeps the password on the domain
    shown = qemu.api.machine(uuid)["machine_obj"]["xmldesc"]
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "xmldesc", "xmldesc": shown.replace("<memory unit='KiB'>65536</memory>",
                                                      "<memory unit='KiB'>131072</memory>")})
    qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    assert SECRET in dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
