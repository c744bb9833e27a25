"""Issue 12, classes 1 and 2, from outside: what a non-administrator's domain XML (define,
xmldesc then store_xml) and any package's description.xml (provision, whoever provisions it)
may make libvirt do; volumes have owners (attach, totaldelete, package); graphics passwords
are in no answer.

The server runs on libvirt's test driver. Its storage takes no uploads, so a provision whose
package passes the policy fails later, at the upload: a package the policy refuses fails
before, with the element named."""

from collections.abc import Iterator
from dataclasses import dataclass

import libvirt
import pytest

from enomalism.store.models import Volume
from tests.api.accounts import Account, grant, new_user
from tests.conftest import Api, expect_error, libvirt_domains, pool_volumes, serve, unchanged
from tests.fakehost import write_host
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    domain_template,
    feed_item,
    have_qemu_img,
    make_qcow2,
    publish,
    wait_tx,
)

POOL = "/default-pool"
BRIDGE = "br-alice"  # the bridge of a network alice may read

# A VM as virt-manager's new-VM wizard writes it (for the test driver: no machine type, a
# watchdog model it knows).
GOOD_DEVICES = f"""
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/><readonly/></disk>
    <controller type='usb' model='qemu-xhci' ports='15'/>
    <interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='{BRIDGE}'/>
      <model type='virtio'/></interface>
    <serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target>
      </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
    <input type='tablet' bus='usb'/><input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>
    <graphics type='spice' autoport='yes'><listen type='address'/>
      <image compression='off'/></graphics>
    <sound model='ich9'/><audio id='1' type='spice'/>
    <video><model type='virtio' heads='1' primary='yes'/></video>
    <redirdev bus='usb' type='spicevmc'/>
    <watchdog model='i6300esb' action='reset'/>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
"""


def vm_xml(name: str, disk: str | None, *, devices: str = "", os: str = "", root: str = "",
           disk_xml: str | None = None) -> str:
    """A domain for the test driver with one disk on `disk` (a path), plus extras."""
    if disk_xml is None:
        disk_xml = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                    f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
                    if disk else "")
    return (f"<domain type='test'><name>{name}</name>"
            "<metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/"
            "libvirt/domain/1.0'><libosinfo:os id='http://debian.org/debian/12'/>"
            "</libosinfo:libosinfo></metadata>"
            "<memory unit='KiB'>524288</memory><currentMemory unit='KiB'>524288</currentMemory>"
            "<vcpu placement='static'>1</vcpu>"
            f"<os><type arch='x86_64'>hvm</type><boot dev='hd'/>{os}</os>"
            "<features><acpi/><apic/></features><cpu mode='host-passthrough' check='none'/>"
            "<clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>"
            "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
            "<pm><suspend-to-mem enabled='no'/></pm>"
            f"<devices>{disk_xml}{devices}</devices>{root}</domain>")


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"

# (id, where: devices, os or root, the XML, words the message must carry)
FORBIDDEN = [
    ("hostdev", "devices", "<hostdev mode='subsystem' type='pci' managed='yes'><source>"
     "<address domain='0' bus='0' slot='1' function='0'/></source></hostdev>", "<hostdev>"),
    ("filesystem", "devices", "<filesystem type='mount'><source dir='/'/>"
     "<target dir='host'/></filesystem>", "<filesystem>"),
    ("serial-file", "devices", "<serial type='file'><source path='/etc/shadow'/></serial>",
     "<serial type='file'>"),
    ("serial-socket", "devices", "<serial type='unix'><source mode='connect' "
     "path='/run/libvirt/libvirt-sock'/></serial>", "<serial type='unix'>"),
    ("serial-tcp", "devices", "<serial type='tcp'><source mode='connect' host='127.0.0.1' "
     "service='5432'/></serial>", "<serial type='tcp'>"),
    ("console-dev", "devices", "<console type='dev'><source path='/dev/tty0'/></console>",
     "<console type='dev'>"),
    ("serial-log", "devices", "<serial type='pty'><log file='/etc/cron.d/x'/></serial>",
     "<log>"),
    ("channel-path", "devices", "<channel type='unix'><source mode='bind' path='/etc/x'/>"
     "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "attribute path"),
    ("channel-other", "devices", "<channel type='unix'><target type='virtio' name='x.y'/>"
     "</channel>", "guest agent"),
    ("channel-guestfwd", "devices", "<channel type='pty'><target type='guestfwd' "
     "address='10.0.2.1' port='4600'/></channel>", "<channel type='pty'>"),
    ("smartcard", "devices", "<smartcard mode='host'/>", "<smartcard>"),
    ("redirdev-tcp", "devices", "<redirdev bus='usb' type='tcp'><source mode='connect' "
     "host='127.0.0.1' service='4000'/></redirdev>", "<redirdev type='tcp'>"),
    ("interface-script", "devices", f"<interface type='bridge'><source bridge='{BRIDGE}'/>"
     "<script path='/tmp/evil.sh'/></interface>", "<script>"),
    ("interface-ethernet", "devices", "<interface type='ethernet'><target dev='tap9'/>"
     "</interface>", "<interface type='ethernet'>"),
    ("interface-direct", "devices", "<interface type='direct'><source dev='eth0' "
     "mode='bridge'/></interface>", "<interface type='direct'>"),
    ("interface-user", "devices", "<interface type='user'/>", "<interface type='user'>"),
    ("interface-hostdev", "devices", "<interface type='hostdev'><source><address type='pci' "
     "domain='0' bus='0' slot='2' function='0'/></source></interface>",
     "<interface type='hostdev'>"),
    ("interface-vlan", "devices", f"<interface type='bridge'><source bridge='{BRIDGE}'/>"
     "<vlan><tag id='42'/></vlan></interface>", "<vlan>"),
    ("interface-other-bridge", "devices", "<interface type='bridge'>"
     "<source bridge='br-not-yours'/></interface>", "br-not-yours"),
    ("graphics-passwd", "devices", "<graphics type='vnc' autoport='yes' passwd='pw'/>",
     "passwd"),
    ("graphics-listen", "devices", "<graphics type='vnc' autoport='yes' listen='0.0.0.0'/>",
     "listen='0.0.0.0'"),
    ("graphics-listen-element", "devices", "<graphics type='spice' autoport='yes'>"
     "<listen type='address' address='192.0.2.1'/></graphics>", "address='192.0.2.1'"),
    ("graphics-port", "devices", "<graphics type='vnc' port='5900' autoport='no'/>",
     "port='5900'"),
    ("graphics-socket", "devices", "<graphics type='vnc'><listen type='socket' "
     "socket='/etc/vnc.sock'/></graphics>", "attribute socket"),
    ("graphics-sdl", "devices", "<graphics type='sdl' display=':0'/>", "type='sdl'"),
    ("rng-file", "devices", "<rng model='virtio'><backend model='random'>/etc/shadow"
     "</backend></rng>", "/etc/shadow"),
    ("rng-egd", "devices", "<rng model='virtio'><backend model='egd' type='tcp'><source "
     "mode='connect' host='127.0.0.1' service='1'/></backend></rng>", "model='egd'"),
    ("emulator", "devices", "<emulator>/bin/sh</emulator>", "<emulator>/bin/sh"),
    ("disk-network", "devices", "<disk type='network' device='disk'><source protocol='http' "
     "name='/latest'><host name='169.254.169.254' port='80'/></source>"
     "<target dev='vdz' bus='virtio'/></disk>", "<disk type='network'>"),
    ("disk-lun", "devices", "<disk type='block' device='lun'><source dev='/dev/sda'/>"
     "<target dev='sdz' bus='scsi'/></disk>", "device='lun'"),
    ("disk-backing", "devices", "<disk type='file' device='cdrom'><backingStore type='file'>"
     "<source file='/etc/shadow'/></backingStore><target dev='hdz' bus='ide'/></disk>",
     "<backingStore>"),
    ("input-evdev", "devices", "<input type='evdev'><source dev='/dev/input/event0'/>"
     "</input>", "type='evdev'"),
    ("tpm-passthrough", "devices", "<tpm model='tpm-tis'><backend type='passthrough'>"
     "<device path='/dev/tpm0'/></backend></tpm>", "type='passthrough'"),
    ("shmem", "devices", "<shmem name='x'/>", "<shmem>"),
    ("video-rendernode", "devices", "<video><model type='virtio'><acceleration accel3d='yes' "
     "rendernode='/dev/dri/renderD128'/></model></video>", "attribute rendernode"),
    ("watchdog-dump", "devices", "<watchdog model='i6300esb' action='dump'/>",
     "action='dump'"),
    ("kernel", "os", "<kernel>/etc/shadow</kernel>", "<kernel>"),
    ("initrd", "os", "<initrd>/boot/initrd.img</initrd>", "<initrd>"),
    ("loader", "os", "<loader readonly='yes' type='rom'>/etc/shadow</loader>",
     "<loader>/etc/shadow"),
    ("nvram", "os", "<nvram>/var/lib/libvirt/qemu/nvram/other_VARS.fd</nvram>", "<nvram>"),
    ("nvram-template", "os", "<nvram template='/etc/shadow'/>", "attribute template"),
    ("acpi-table", "os", "<acpi><table type='slic'>/etc/shadow</table></acpi>", "<acpi>"),
    ("qemu-commandline", "root", f"<qemu:commandline xmlns:qemu='{QEMU_NS}'>"
     "<qemu:arg value='-chardev'/></qemu:commandline>", "<qemu:commandline>"),
    ("seclabel", "root", "<seclabel type='none'/>", "<seclabel>"),
    ("sysinfo-fwcfg", "root", "<sysinfo type='fwcfg'><entry name='opt/x' file='/etc/shadow'/>"
     "</sysinfo>", "type='fwcfg'"),
    ("cputune", "root", "<cputune><vcpupin vcpu='0' cpuset='0'/></cputune>", "<cputune>"),
    ("memory-backing", "root", "<memoryBacking><source type='file'/></memoryBacking>",
     "<memoryBacking>"),
]
IDS = [case[0] for case in FORBIDDEN]
# A package's disks are its manifest's (the archive refuses others): no extra disk cases.
IN_PACKAGES = [c for c in FORBIDDEN if not c[0].startswith("disk-")]
# What a provision's rewrite takes out of a package's XML anyway (the old host's paths, the
# old machine's secret and ports): made harmless, not refused.
REWRITTEN = {"channel-path", "graphics-passwd", "graphics-listen", "graphics-listen-element",
             "graphics-port", "graphics-socket", "emulator", "nvram", "seclabel"}


def with_case(xml: str, where: str, extra: str) -> str:
    end = {"devices": "</devices>", "os": "</os>", "root": "</domain>"}[where]
    return xml.replace(end, extra + end, 1)


@dataclass
class World:
    api: Api
    hv: str
    host: str
    alice: Account
    bob: Account
    alice_vol: str  # a volume of alice's machine alice-base
    bob_vol: str  # a volume of bob's machine bob-base
    stray_vol: str  # a volume of no machine
    packages: dict[str, str]  # forbidden case id (and "good") -> package UUID
    names: Iterator[int]

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.names)}"

    def define(self, xml: str, auth: object) -> object:
        return self.api.put("/rest/machines/", data={"xmldesc": xml, "hvmuuid": self.hv},
                            auth=auth)

    def alice_vm(self) -> str:
        """A machine of alice's (defined by her) on her volume; returns its UUID."""
        body = self.api.ok("PUT", "/rest/machines/", auth=self.alice.auth, data={
            "xmldesc": vm_xml(self.name("alice"), self.alice_vol), "hvmuuid": self.hv})
        return body["machine"]


def _volume(api: Api, name: str) -> str:
    conn = api.registry.connection(api.hypervisors()[0]["uuid"]).virconnect
    pool = conn.storagePoolLookupByName("default-pool")
    xml = f"<volume><name>{name}</name><capacity unit='MiB'>1</capacity></volume>"
    return pool.createXML(xml, 0).path()


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """alice and bob (not administrators) may control the hypervisor and read the host; alice
    may read a network on BRIDGE. Each has a machine (defined by the admin, then granted
    `modify`) on a volume of its own. A feed serves a package per forbidden element."""
    if not have_qemu_img():
        pytest.skip("qemu-img is needed to build the packages")
    d = tmp_path_factory.mktemp("xmlpolicy")
    img = make_qcow2(d / "tiny.qcow2", 16, data=b"tiny" * 100)
    templates = {"good": domain_template(domain_type="test", interface=False)}
    for case_id, where, extra, _words in IN_PACKAGES:
        templates[case_id] = with_case(templates["good"], where, extra)
    srv = FeedServer()
    try:
        items = []
        for key, xml in templates.items():
            pkg = build_package(d / f"{key}.xvm2", img, name=f"pkg-{key}", virt_class="test",
                                domain_xml=xml)
            items.append(feed_item(srv, pkg, f"/p/{key}.xvm2"))
        url = publish(srv, items)
        with serve(d / "data", write_host(d / "host.xml", [])) as api:
            feed = api.ok("PUT", "/rest/vmfeed/", data={"url": url})
            by_name = {p["name"]: p["uuid"] for p in feed["packages"]}
            hv, host = api.hypervisors()[0]["uuid"], api.local_host()
            alice, bob = new_user(api), new_user(api)
            net = api.ok("PUT", "/rest/networks/", data={
                "name": "alices", "bridge": BRIDGE, "ip": "10.9.0.0", "netmask": "24"})
            grant(api, net["network"]["uuid"], "read", user=alice.uuid)
            vols = {}
            for who in (alice, bob):
                path = _volume(api, f"{who.name}.img")
                uuid = api.ok("PUT", "/rest/machines/", data={
                    "xmldesc": vm_xml(f"{who.name}-base", path), "hvmuuid": hv})["machine"]
                grant(api, uuid, "modify", user=who.uuid)
                grant(api, hv, "control", user=who.uuid)
                grant(api, host, "read", user=who.uuid)
                grant(api, feed["uuid"], "read", user=who.uuid)
                vols[who.name] = path
            yield World(api, hv, host, alice, bob, vols[alice.name], vols[bob.name],
                        _volume(api, "stray.img"),
                        {k: by_name[f"pkg-{k}"] for k in templates}, iter(range(1, 10**6)))
    finally:
        srv.close()


def secure_xml(w: World, uuid: str) -> str:
    dom = w.api.registry.connection(w.hv).virconnect.lookupByUUIDString(uuid)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


# -- a normal VM passes; an administrator's raw XML passes ----------------------------------


def test_a_virt_manager_like_vm_is_accepted_from_a_non_admin(w):
    """Disk on her volume, empty CD-ROM, interface on her network, VNC and SPICE with
    autoport, pty serial and console, guest agent and SPICE channels, RNG, watchdog..."""
    name = w.name("good")
    r = w.define(vm_xml(name, w.alice_vol, devices=GOOD_DEVICES), w.alice.auth)
    assert r.status_code == 200, r.text
    uuid = r.json()["machine"]
    m = w.api.machine(uuid)["machine_obj"]
    assert m["owner"] == w.alice.uuid and m["name"] == name
    assert "org.qemu.guest_agent.0" in libvirt_domains(w.api, w.hv)[uuid][2]
    # and through xmldesc then store_xml, with a change
    xml = vm_xml(name, w.alice_vol, devices=GOOD_DEVICES).replace("524288", "262144")
    w.api.ok("POST", f"/rest/machine/{uuid}/", auth=w.alice.auth,
             data={"action": "xmldesc", "xmldesc": xml})
    w.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/", auth=w.alice.auth)
    assert "<memory unit='KiB'>262144</memory>" in libvirt_domains(w.api, w.hv)[uuid][2]


def test_an_administrator_may_define_raw_xml(w):
    """As Proxmox keeps `args` to root: elements refused to others are the admin's to use."""
    xml = with_case(vm_xml(w.name("raw"), None), "devices",
                    "<serial type='file'><source path='/tmp/enomalism-raw.log'/></serial>")
    xml = with_case(xml, "root", f"<qemu:commandline xmlns:qemu='{QEMU_NS}'>"
                                 "<qemu:arg value='-no-user-config'/></qemu:commandline>")
    r = w.define(xml, "admin")
    assert r.status_code == 200, r.text
    assert "/tmp/enomalism-raw.log" in libvirt_domains(w.api, w.hv)[r.json()["machine"]][2]


# -- each forbidden element, on each path ------------------------------------------------------


@pytest.mark.parametrize("case_id, where, extra, words", FORBIDDEN, ids=IDS)
def test_define_refuses(w, case_id, where, extra, words):
    xml = with_case(vm_xml(w.name("bad"), w.alice_vol), where, extra)
    with unchanged(w.api):
        body = expect_error(w.define(xml, w.alice.auth), 403, 1110)
    assert words in body["message"], body
    assert "not allowed for non-administrators" in body["message"] or "you may use" in \
        body["message"], body


@pytest.mark.parametrize("case_id, where, extra, words", FORBIDDEN, ids=IDS)
def test_xmldesc_refuses(w, case_id, where, extra, words):
    uuid = w.alice_vm()
    name = w.api.machine(uuid)["machine_obj"]["name"]
    xml = with_case(vm_xml(name, w.alice_vol), where, extra)
    with unchanged(w.api):
        body = expect_error(w.api.post(f"/rest/machine/{uuid}/", auth=w.alice.auth, data={
            "action": "xmldesc", "xmldesc": xml}), 403, 1110)
    assert words in body["message"], body
    assert w.api.machine(uuid)["machine_obj"]["xml_pending"] is False


@pytest.mark.parametrize("case_id, where, extra, words",
                         [c for c in FORBIDDEN if c[0] in ("hostdev", "qemu-commandline",
                                                           "serial-file", "graphics-passwd")],
                         ids=["hostdev", "qemu-commandline", "serial-file", "graphics-passwd"])
def test_store_xml_refuses_what_an_administrator_left_pending(w, case_id, where, extra, words):
    """XML an administrator set with xmldesc is stored by an administrator: the machine's
    owner storing it passes the policy again, and the domain stays as it was."""
    uuid = w.alice_vm()
    name = w.api.machine(uuid)["machine_obj"]["name"]
    xml = with_case(vm_xml(name, w.alice_vol), where, extra)
    if case_id == "hostdev":  # the test driver cannot define it; the refusal comes first
        xml = xml.replace("slot='1'", "slot='3'")
    w.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "xmldesc", "xmldesc": xml})
    before = libvirt_domains(w.api, w.hv)[uuid]
    body = expect_error(w.api.post(f"/rest/machine/{uuid}/actions/store_xml/",
                                   auth=w.alice.auth), 403, 1110)
    assert words in body["message"], body
    assert libvirt_domains(w.api, w.hv)[uuid] == before


def _provision(w: World, key: str, auth: object) -> dict:
    body = w.api.ok("POST", f"/rest/machine/{w.host}/actions/provision/", auth=auth, data={
        "pkguuid": w.packages[key], "hvmuuid": w.hv, "name": w.name(f"prov-{key}")})
    tx = wait_tx(w.api, body["txid"])
    assert tx["data"]["state"] == "failed", tx
    expect_error(w.api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)
    return tx["data"]


@pytest.mark.parametrize("case_id, where, extra, words", IN_PACKAGES,
                         ids=[c[0] for c in IN_PACKAGES])
def test_provision_refuses_a_package_carrying(w, case_id, where, extra, words):
    """Refused before any volume is made, whoever provisions it (here: a non-admin); what
    the rewrite takes out gets past the policy, to the test driver's upload."""
    volumes = pool_volumes(w.api, w.hv)
    tx = _provision(w, case_id, w.alice.auth)
    if case_id in REWRITTEN:
        assert "not allowed" not in tx["error"] and "upload" in tx["error"], tx
        return
    assert words in tx["error"] and ("in a package's description.xml" in tx["error"]
                                     or "you may use" in tx["error"]), tx
    assert pool_volumes(w.api, w.hv) == volumes


@pytest.mark.parametrize("case_id", ["hostdev", "qemu-commandline", "interface-user",
                                     "filesystem", "kernel"])
def test_provision_by_an_administrator_refuses_it_too(w, case_id):
    """A package is data from the internet: an administrator's provision passes the same
    allow-list (its networks are any the administrator names)."""
    words = next(c[3] for c in FORBIDDEN if c[0] == case_id)
    tx = _provision(w, case_id, "admin")
    assert words in tx["error"] and "in a package's description.xml" in tx["error"], tx


def test_a_good_package_passes_the_policy(w):
    """The package without forbidden elements gets past the policy: it fails only where the
    test driver stops every provision, at the upload."""
    tx = _provision(w, "good", w.alice.auth)
    assert "not allowed" not in tx["error"], tx
    assert "upload" in tx["error"] or "not supported" in tx["error"], tx


# -- volumes have owners ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["bob", "stray", "host-file", "by-pool"])
def test_a_volume_the_caller_may_not_use_is_refused_as_a_disk(w, which):
    name = w.name("steal")
    if which == "by-pool":
        disk = ("<disk type='volume' device='disk'><source pool='default-pool' "
                f"volume='{w.bob.name}.img'/><target dev='vda' bus='virtio'/></disk>")
        xml = vm_xml(name, None, disk_xml=disk)
    else:
        path = {"bob": w.bob_vol, "stray": w.stray_vol, "host-file": "/etc/shadow"}[which]
        xml = vm_xml(name, path)
    with unchanged(w.api):
        body = expect_error(w.define(xml, w.alice.auth), 403, 1111)
        assert "not a volume you may attach" in body["message"]
    uuid = w.alice_vm()
    own = w.api.machine(uuid)["machine_obj"]["name"]
    with unchanged(w.api):
        expect_error(w.api.post(f"/rest/machine/{uuid}/", auth=w.alice.auth, data={
            "action": "xmldesc", "xmldesc": xml.replace(f">{name}<", f">{own}<")}), 403, 1111)
    # a CD-ROM is a disk too
    cdrom = (f"<disk type='file' device='cdrom'><source file='{w.bob_vol}'/>"
             "<target dev='sdb' bus='sata'/><readonly/></disk>")
    expect_error(w.define(vm_xml(w.name("cd"), None, disk_xml=cdrom), w.alice.auth), 403, 1111)


def test_totaldelete_leaves_the_volumes_a_machine_does_not_own(w):
    """alice's new machine names her volume of alice-base: deleting it deletes no volume.
    An administrator's machine on bob's volume does not take it either."""
    uuid = w.alice_vm()
    body = w.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/", auth=w.alice.auth)
    assert "volume" not in body["message"]
    assert f"{w.alice.name}.img" in pool_volumes(w.api, w.hv)
    other = w.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": vm_xml(w.name("admins"), w.bob_vol), "hvmuuid": w.hv})["machine"]
    w.api.ok("POST", f"/rest/machine/{other}/actions/totaldelete/")
    assert f"{w.bob.name}.img" in pool_volumes(w.api, w.hv)
    with w.api.app.state.db.session(write=False) as s:
        assert s.get(Volume, (w.hv, w.bob_vol)).machine_uuid != other


def test_an_administrator_machine_adopts_and_deletes_its_own_volume(w):
    path = _volume(w.api, f"{w.name('own')}.img")
    uuid = w.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": vm_xml(w.name("adopter"), path), "hvmuuid": w.hv})["machine"]
    body = w.api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    assert "1 volume" in body["message"]
    assert path.rsplit("/", 1)[1] not in pool_volumes(w.api, w.hv)


def test_package_refuses_a_disk_the_machine_does_not_own(w):
    uuid = w.alice_vm()
    with unchanged(w.api):
        body = expect_error(w.api.post(f"/rest/machine/{uuid}/actions/package/",
                                       auth=w.alice.auth), 409, 1310)
    assert w.alice_vol in body["message"] and "own" in body["message"]
    assert w.api.ok("GET", "/rest/transactions/", params={"state": "queued"})[
        "transactions"] == []


# -- console passwords -------------------------------------------------------------------------


def test_no_graphics_password_in_any_answer(w):
    """An administrator sets a VNC password: no reader sees it (machine, list, pending XML);
    the owner's edit and store_xml keep it on the domain."""
    secret = "s3cret-pw"
    name = w.name("pw")
    graphics = f"<graphics type='vnc' autoport='yes' passwd='{secret}'/>"
    uuid = w.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": vm_xml(name, None, devices=graphics), "hvmuuid": w.hv})["machine"]
    grant(w.api, uuid, "modify", user=w.alice.uuid)
    assert secret in secure_xml(w, uuid)

    def no_secret() -> None:
        for auth in ("admin", w.alice.auth):
            for path in (f"/rest/machine/{uuid}/", "/rest/machines/?detail=true"):
                r = w.api.get(path, auth=auth)
                assert r.status_code == 200 and secret not in r.text, (path, auth)

    no_secret()
    # pending XML an administrator gave, password and all, is not shown either
    xml = vm_xml(name, None, devices=graphics.replace(secret, "an0ther-pw"))
    w.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "xmldesc", "xmldesc": xml})
    assert "an0ther-pw" not in w.api.get(f"/rest/machine/{uuid}/", auth=w.alice.auth).text
    w.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/")
    assert "an0ther-pw" in secure_xml(w, uuid)
    # the owner edits what she reads (no password in it) and stores it: the password stays
    shown = w.api.machine(uuid)["machine_obj"]["xmldesc"]
    assert "passwd" not in shown
    w.api.ok("POST", f"/rest/machine/{uuid}/", auth=w.alice.auth, data={
        "action": "xmldesc", "xmldesc": shown.replace("524288", "262144")})
    w.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/", auth=w.alice.auth)
    assert "an0ther-pw" in secure_xml(w, uuid) and "262144" in secure_xml(w, uuid)
    no_secret()


def test_set_parent_does_not_move_a_machine_onto_someone_elses_volume(w, tmp_path):
    """On another hypervisor the same path is another volume, of no machine of alice's: her
    machine's definition is not moved onto it."""
    uri = write_host(tmp_path / "other.xml", [], [f"{w.alice.name}.img"])
    node = w.api.ok("PUT", "/rest/hosts/", data={"name": w.name("other"), "virt_url": uri})
    hv2 = w.api.ok("GET", f"/rest/machine/{node['machine']}/hypervisors/")["hypervisors"][0][
        "uuid"]
    grant(w.api, hv2, "control", user=w.alice.uuid)
    uuid = w.alice_vm()
    with unchanged(w.api):
        body = expect_error(w.api.post(f"/rest/machine/{uuid}/", auth=w.alice.auth, data={
            "action": "set_parent", "puuid": hv2}), 403, 1111)
    assert w.alice_vol in body["message"]


def test_a_non_admin_manage_adopts_the_domain_not_its_volumes(w):
    """bob (control on the hypervisor) adopts a discovered domain: its volume stays no
    machine's, so his totaldelete leaves it; an administrator's manage adopts it."""
    path = _volume(w.api, f"{w.name('found')}.img")
    conn = w.api.registry.connection(w.hv).virconnect
    mine = conn.defineXML(vm_xml(w.name("found"), path)).UUIDString()
    w.api.settle()
    w.api.ok("POST", f"/rest/machine/{mine}/actions/manage/", auth=w.bob.auth)
    with w.api.app.state.db.session(write=False) as s:
        assert s.get(Volume, (w.hv, path)) is None
    body = w.api.ok("POST", f"/rest/machine/{mine}/actions/totaldelete/", auth=w.bob.auth)
    assert "volume" not in body["message"]
    assert path.rsplit("/", 1)[1] in pool_volumes(w.api, w.hv)

    theirs = conn.defineXML(vm_xml(w.name("found"), path)).UUIDString()
    w.api.settle()
    w.api.ok("POST", f"/rest/machine/{theirs}/actions/manage/")
    with w.api.app.state.db.session(write=False) as s:
        assert s.get(Volume, (w.hv, path)).machine_uuid == theirs
