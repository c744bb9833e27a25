"""Create from parameters on the real libvirtd (qemu:///system), in the test's own pool:

- a blank disk, domain type qemu (TCG): the domain starts and runs; totaldelete removes it
  and its disk.
- provision with cloud-init input: the seed is a CD-ROM of the machine's own.
- from an image (a small qcow2 made with qemu-img, registered as an Image row): the disk is a
  qcow2 overlay whose backing file is the image; the NoCloud seed ISO, read back with pycdlib,
  carries the user data, the SSH key, the host name and the address leased from the static
  network with its prefix and gateway; the domain starts with it; totaldelete removes the
  overlay and the seed and leaves the image.

Only the pool, domains and networks these tests name are touched (conftest's `scratch`)."""

import io
import json
import subprocess
import time
from pathlib import Path

import pycdlib
import pytest
from lxml import etree

from enomalism.store.models import Image
from tests.conftest import expect_error
from tests.integration.conftest import Qemu, Scratch, unique
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    domain_template,
    feed_item,
    make_qcow2,
    publish,
)
from tests.integration.test_provision_network import linux_bridge  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmqk0F1mM5NUKv8X4wt2lkVnvNUCGTKCk2hKUeNWlqM "
       "alice@laptop")
USER_DATA = "#cloud-config\nruncmd:\n  - echo hello from enomalism > /dev/ttyS0\n"


def wait_done(q: Qemu, txid: str) -> dict:
    end = time.monotonic() + 120
    while time.monotonic() < end:
        data = q.api.ok("GET", f"/rest/transaction/{txid}/")["data"]
        if data["state"] in ("done", "failed", "cancelled"):
            assert data["state"] == "done", data["error"]
            return data
        time.sleep(0.1)
    raise AssertionError(f"transaction {txid} did not finish")


def create(q: Qemu, scratch: Scratch, **data: object) -> str:
    body = q.api.ok("PUT", "/rest/machines/", data={
        "hvmuuid": q.hv, "pool": scratch.pool.name(), "virt_type": "qemu", "memory": 64,
        **data})
    scratch.track(body["machine"])
    wait_done(q, body["txid"])
    return body["machine"]


def start_and_check(q: Qemu, uuid: str) -> None:
    q.action(uuid, "create")
    q.wait_api_state(uuid, "running")
    assert q.host.state(uuid) == "running"
    q.action(uuid, "poweroff")
    q.wait_api_state(uuid, "shutoff")


def test_create_with_a_blank_disk_and_start(qemu, scratch):
    name = scratch.domain_name()
    uuid = create(qemu, scratch, name=name, disk=1, vcpus=1)
    root = etree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
    assert root.get("type") == "qemu"
    disk = root.find("devices/disk/source").get("file")
    assert Path(disk).parent == Path(scratch.dir)
    start_and_check(qemu, uuid)
    qemu.action(uuid, "totaldelete")
    assert f"{name}-vda.qcow2" not in scratch.volume_names()


def register_image(q: Qemu, scratch: Scratch, name: str, path: Path, fmt: str) -> str:
    scratch.pool.refresh(0)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                                     check=True, capture_output=True, text=True).stdout)
    with q.api.app.state.db.session() as s:
        img = Image(name=name, format=fmt, size=path.stat().st_size,
                    virtual_size=info["virtual-size"], hypervisor_uuid=q.hv,
                    pool=scratch.pool.name(), path=str(path), state="ready")
        s.add(img)
        s.flush()
        return img.uuid


def static_network(q: Qemu, bridge: str) -> dict:
    host = next(o["uuid"] for o in q.api.ok("GET", "/rest/machines/", params={
        "detail": "true", "kind": "host"})["machine_objs"])
    c = q.api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")})["cluster"]["uuid"]
    q.api.ok("POST", f"/rest/machine/{host}/clusters/", data={"clusters": c})
    net = q.api.ok("PUT", "/rest/networks/", data={
        "name": unique("n"), "bridge": bridge, "ip": "10.77.3.0", "netmask": "24",
        "gateway": "10.77.3.1", "cluster": c})["network"]
    q.api.ok("POST", f"/rest/networks/{net['uuid']}/iprange/",
             data={"start_ip": "10.77.3.50", "end_ip": "10.77.3.60"})
    return net


def iso_files(path: str) -> tuple[str, dict[str, str]]:
    iso = pycdlib.PyCdlib()
    iso.open(path)
    files = {}
    for name in ("meta-data", "user-data", "network-config"):
        out = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        except pycdlib.pycdlibexception.PyCdlibInvalidInput:  # not there
            continue
        files[name] = out.getvalue().decode()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return label, files


def test_create_from_an_image_with_a_seed(qemu, scratch, linux_bridge):  # noqa: F811
    pool_dir = etree.fromstring(scratch.pool.XMLDesc(0)).findtext("target/path")
    image = Path(pool_dir) / f"{unique('img')}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    img = register_image(qemu, scratch, unique("image"), image, "qcow2")
    bridge = linux_bridge  # a host bridge (a static network's bridge must exist)
    net = static_network(qemu, bridge)
    name = scratch.domain_name()
    uuid = create(qemu, scratch, name=name, image=img, ssh_key=KEY, user_data=USER_DATA,
                  hostname="guest-one", network=net["uuid"])
    root = etree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
    disks = {d.find("target").get("dev"): d.find("source").get("file")
             for d in root.iterfind("devices/disk")}
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disks["vda"]],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(image)
    assert info["virtual-size"] == 64 << 20
    label, files = iso_files(disks["sdb"])
    assert label == "cidata"
    meta = json.loads(files["meta-data"])
    assert meta == {"instance-id": uuid, "local-hostname": "guest-one", "public-keys": [KEY]}
    assert files["user-data"] == USER_DATA
    lease = next(le for le in qemu.api.ok("GET", f"/rest/networks/{net['uuid']}/leases/")
                 ["leases"] if le["machine"] == uuid)
    eth = json.loads(files["network-config"])["ethernets"]["eth0"]
    assert eth["match"]["macaddress"] == lease["mac"]
    assert eth["addresses"] == [f"{lease['address']}/24"]
    assert eth["routes"] == [{"to": "0.0.0.0/0", "via": "10.77.3.1"}]
    assert eth["nameservers"] == {"addresses": ["10.77.3.1"]}
    iface = root.find("devices/interface")
    assert (iface.get("type"), iface.find("source").get("bridge")) == ("bridge", bridge)
    start_and_check(qemu, uuid)
    qemu.action(uuid, "totaldelete")
    left = scratch.volume_names()
    assert f"{name}-vda.qcow2" not in left and f"{name}-cidata.iso" not in left
    assert image.name in left
    assert not [le for le in qemu.api.ok("GET", f"/rest/networks/{net['uuid']}/leases/")
                ["leases"] if le["machine"] == uuid]


def test_provision_attaches_a_seed_too(qemu, scratch, tmp_path):
    """Provision (spec 2.19) with cloud-init input: the package's machine gets the seed as a
    CD-ROM of its own, deleted with it."""
    image = make_qcow2(tmp_path / "tiny.qcow2", 64)
    pkg = build_package(tmp_path / "tiny.xvm2", image, name=unique("pkg"),
                        domain_xml=domain_template(interface=False))
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, pkg, "/p/tiny.xvm2")])
        body = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")})
        pkg_uuid = next(p["uuid"] for p in body["packages"] if p["name"] == pkg.name)
        name = scratch.domain_name()
        body = qemu.api.ok("POST", f"/rest/machine/{qemu.api.local_host()}/actions/provision/",
                           data={"pkguuid": pkg_uuid, "hvmuuid": qemu.hv, "name": name,
                                 "pool": scratch.pool.name(), "ssh_key": KEY,
                                 "user_data": USER_DATA})
        uuid = body["newuuid"]
        scratch.track(uuid)
        wait_done(qemu, body["txid"])
    finally:
        srv.close()
    root = etree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
    cdrom = next(d for d in root.iterfind("devices/disk") if d.get("device") == "cdrom")
    assert cdrom.find("target").get("dev") == "sda"
    label, files = iso_files(cdrom.find("source").get("file"))
    assert label == "cidata"
    assert json.loads(files["meta-data"]) == {"instance-id": uuid, "local-hostname": name,
                                              "public-keys": [KEY]}
    assert files["user-data"] == USER_DATA
    assert "network-config" not in files  # no static network: the guest's own DHCP
    qemu.action(uuid, "totaldelete")
    assert f"{name}-cidata.iso" not in scratch.volume_names()


def test_uefi_where_the_host_has_the_firmware_else_a_clear_refusal(qemu, scratch):
    """Whether OVMF is installed is the host's business: either way the answer is right."""
    name = scratch.domain_name()
    data = {"name": name, "disk": 1, "firmware": "uefi", "hvmuuid": qemu.hv,
            "pool": scratch.pool.name(), "virt_type": "qemu", "memory": 64}
    caps = qemu.host.conn.getDomainCapabilities(None, None, None, "qemu")
    if "<value>efi</value>" in caps:
        uuid = create(qemu, scratch, **{k: v for k, v in data.items() if k != "hvmuuid"})
        root = etree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
        assert root.find("os").get("firmware") == "efi"
        qemu.action(uuid, "totaldelete")
    else:
        body = expect_error(qemu.api.put("/rest/machines/", data=data), 400, 1000)
        assert "OVMF" in body["message"]
        assert name not in [o["name"] for o in qemu.api.ok(
            "GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]]
