"""Provision and package on the real libvirtd (qemu:///system), into a storage pool of the test's
own (`scratch.pool`, passed as the `pool` variable), from packages served by a real HTTP feed
server: the provisioned domain is checked through libvirt itself and started; a second provision
reuses the base volume; a running machine is packaged (paused meanwhile) and its package
provisioned again; a cancelled or failed provision leaves no domain, overlay or machine record.

Every domain gets a name from `scratch.domain_name()`, so the clean-up removes exactly what the
tests made (domains, every volume of the pool including the enomalism-base-* caches, the pool,
its directory)."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

from enomalism.feeds import archive
from enomalism.feeds.feed import parse_feed
from enomalism.services import provisioning
from tests.conftest import expect_error
from tests.integration.conftest import Host
from tests.integration.provision_helpers import (
    TEMPLATE_MAC,
    FeedServer,
    Pkg,
    build_package,
    domain_template,
    feed_item,
    log_lines,
    make_qcow2,
    make_random_raw,
    package_files,
    publish,
    qemu_img,
    running,
    wait_tx,
)
from tests.integration.test_provision_network import VNet, libvirt_network

pytestmark = pytest.mark.integration

BIG_MIB = 256


@pytest.fixture(scope="module")
def net(host: Host) -> Iterator[VNet]:
    """The packages' NICs are on a libvirt network of the tests' own (started: the machines
    start)."""
    with libvirt_network(host) as made:
        yield made


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory,
         net: VNet) -> Iterator[tuple[FeedServer, dict[str, Pkg]]]:
    """A feed server with: tiny (a qcow2 disk with a few bytes of data), big (256 MiB of random
    data, raw: takes a moment to download and upload), undefinable (QEMU has no such machine
    type, so defining the domain fails)."""
    d = tmp_path_factory.mktemp("provision-pkgs")
    tiny_img = make_qcow2(d / "tiny.qcow2", 64, data=b"provisioned by a test\n" * 500)
    pkgs = {
        "tiny": build_package(d / "tiny.xvm2", tiny_img, name="tiny", network=net.name),
        "big": build_package(d / "big.xvm2", make_random_raw(d / "big.raw", BIG_MIB),
                             name="big", fmt="raw", network=net.name),
        "undefinable": build_package(
            d / "undefinable.xvm2", tiny_img, name="undefinable",
            domain_xml=domain_template(machine="pc-no-such-machine-0.1", network=net.name)),
    }
    (d / "big.raw").unlink()
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in pkgs.items()])
        yield srv, pkgs
    finally:
        srv.close()


@pytest.fixture
def setup(qemu, feed):
    """The server's packages by name (the feed added), the pool's name, the server's data dir."""
    srv, _pkgs = feed
    srv.rate = None
    body = qemu.api.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")})
    pool = qemu.scratch.pool.name()
    return {p["name"]: p["uuid"] for p in body["packages"]}, pool, \
        Path(qemu.api.app.state.settings.data_dir)


def provision(qemu, pkg: str, pool: str, name: str | None = None,
              **extra: str) -> tuple[str, str, str]:
    """Queue a provision; returns (newuuid, txid, name). The domain is the scratch's to remove."""
    name = name or qemu.scratch.domain_name()
    body = qemu.api.ok("POST", f"/rest/machine/{qemu.api.local_host()}/actions/provision/",
                       data={"pkguuid": pkg, "hvmuuid": qemu.hv, "name": name, "pool": pool,
                             **extra})
    assert set(body) >= {"newuuid", "txid", "errno", "message"}
    qemu.scratch.track(body["newuuid"])
    return body["newuuid"], body["txid"], name


def done(qemu, txid: str) -> dict:
    body = wait_tx(qemu.api, txid)
    assert body["data"]["state"] == "done", body
    assert body["completion"] == 100
    return body


def disk_of(dom: libvirt.virDomain) -> tuple[str, str]:
    """(source file, driver type) of the domain's vda."""
    root = ElementTree.fromstring(dom.XMLDesc(0))
    disk = next(d for d in root.iter("disk") if d.find("target").get("dev") == "vda")
    return disk.find("source").get("file"), disk.find("driver").get("type")


def macs_of(dom: libvirt.virDomain) -> list[str]:
    root = ElementTree.fromstring(dom.XMLDesc(0))
    return [m.get("address") for m in root.iter("mac")]


def backing_chain(path: str) -> list[dict]:
    return json.loads(qemu_img("info", "--backing-chain", "--output=json", "-U", path))


def volumes(qemu) -> list[str]:
    return qemu.scratch.volume_names()


def no_trace(qemu, newuuid: str, name: str, data_dir: Path) -> None:
    """Nothing of a provision that did not finish: no domain (by UUID or name), no overlay
    volume, no machine record, no partial file, no transaction running."""
    assert qemu.host.domain(newuuid) is None
    with pytest.raises(libvirt.libvirtError):
        qemu.host.conn.lookupByName(name)
    assert not [v for v in volumes(qemu) if v.startswith(name)]
    expect_error(qemu.api.get(f"/rest/machine/{newuuid}/"), 404, 1200)
    assert newuuid not in qemu.api.ok("GET", "/rest/machines/")["machines"]
    assert not [f for f in package_files(data_dir) if f.endswith(".part") or "/" in f]
    assert running(qemu.api) == []


# -- provision, start, reuse, package, provision the package ------------------------------------


def test_provision_start_reuse_the_base_package_and_provision_again(qemu, setup, feed, net):
    pkgs, pool, data_dir = setup
    _srv, built = feed

    new1, tx1, name1 = provision(qemu, pkgs["tiny"], pool)
    body = done(qemu, tx1)
    assert body["data"]["result"]["machine"] == new1
    lines = log_lines(body)
    assert any(line.startswith("uploading disk vda") for line in lines), lines

    dom = qemu.host.domain(new1)
    assert dom is not None and dom.name() == name1 and dom.UUIDString() == new1
    assert dom.isPersistent()
    macs = macs_of(dom)
    assert len(macs) == 1 and macs[0] != TEMPLATE_MAC and macs[0].startswith("52:54:00:")
    source, driver = disk_of(dom)
    assert driver == "qcow2"
    assert Path(source).parent == Path(qemu.scratch.dir)
    base_name = f"enomalism-base-{pkgs['tiny']}-vda.qcow2"
    assert sorted(volumes(qemu)) == sorted([base_name, Path(source).name])
    chain = backing_chain(source)
    assert [c["format"] for c in chain] == ["qcow2", "qcow2"]
    assert chain[0]["backing-filename"] == str(Path(qemu.scratch.dir) / base_name)
    assert chain[0]["virtual-size"] == 64 << 20
    vol_xml = ElementTree.fromstring(qemu.host.conn.storageVolLookupByPath(source).XMLDesc(0))
    assert vol_xml.findtext("backingStore/path") == str(Path(qemu.scratch.dir) / base_name)

    m = qemu.api.machine(new1)["machine_obj"]
    assert (m["name"], m["managed"], m["locked_by"], m["state"]) == (name1, True, None, "shutoff")
    qemu.action(new1, "create")
    qemu.check(new1, "running")

    # a second machine from the same package: the base volume is reused, nothing uploaded
    new2, tx2, name2 = provision(qemu, pkgs["tiny"], pool)
    lines = log_lines(done(qemu, tx2))
    assert not any(line.startswith(("uploading", "downloading")) for line in lines), lines
    dom2 = qemu.host.domain(new2)
    source2, _ = disk_of(dom2)
    assert backing_chain(source2)[0]["backing-filename"] == str(Path(qemu.scratch.dir) /
                                                                base_name)
    assert [v for v in volumes(qemu) if v.startswith("enomalism-base-")] == [base_name]
    assert len(volumes(qemu)) == 3
    assert macs_of(dom2)[0] not in (TEMPLATE_MAC, macs[0])
    qemu.action(new2, "create")
    qemu.check(new2, "running")

    # package the running machine: paused while its disk is read, running again after
    assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED]
    body = qemu.api.ok("POST", f"/rest/machine/{new1}/actions/package/",
                       data={"name": "from-a-running-vm", "version": "7"})
    pkg_tx = done(qemu, body["txid"])
    assert any("pausing" in line for line in log_lines(pkg_tx)), log_lines(pkg_tx)
    # resumed by us: libvirt says it runs because it was unpaused
    assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_UNPAUSED]
    qemu.check(new1, "running")
    assert qemu.api.machine(new1)["machine_obj"]["locked_by"] is None
    new_pkg = pkg_tx["data"]["result"]["package"]
    p = qemu.api.ok("GET", f"/rest/vmfeed/{new_pkg}/")["package"]
    assert (p["name"], p["version"], p["state"], p["repository"]) == \
        ("from-a-running-vm", "7", "cached", None)
    assert (p["virt_class"], p["arch"]) == ("kvm", "x86_64")
    assert [(d["target"], d["format"]) for d in p["disks"]] == [("vda", "qcow2")]
    feed_xml = parse_feed(qemu.api.get("/rest/vmfeed/feed.xml").content, "http://testserver/")
    item = next(i for i in feed_xml.items if i.guid == new_pkg)
    assert item.url == f"http://testserver/rest/vmfeed/{new_pkg}/download/"
    assert item.length == p["size"] and item.sha256 == p["sha256"]
    # the package holds the machine's disk, flattened (no backing file), and its XML
    manifest, xml_text = archive.read_package(data_dir / "packages" / f"{new_pkg}.xvm2")
    assert name1 in xml_text and new1 in xml_text
    with archive.open_disk(data_dir / "packages" / f"{new_pkg}.xvm2", "vda") as disk:
        head = disk.read(1 << 20)
    assert head[:4] == b"QFI\xfb" and head[8:16] == bytes(8)  # qcow2, no backing file offset
    assert manifest.disks[0].virtual_size == 64 << 20

    # and that package provisions and starts too; its interface names no network (export
    # leaves it to the target): on this host, the tests' network
    assert net.name not in xml_text
    new3, tx3, _name3 = provision(qemu, new_pkg, pool, libvirt_network=net.name)
    done(qemu, tx3)
    source3, _ = disk_of(qemu.host.domain(new3))
    assert backing_chain(source3)[0]["backing-filename"].endswith(
        f"enomalism-base-{new_pkg}-vda.qcow2")
    qemu.action(new3, "create")
    qemu.check(new3, "running")
    # the data the first package carried reached the third machine's disk
    raw = qemu.scratch.dir + "/check.raw"
    qemu_img("convert", "-U", "-O", "raw", source3, raw)
    with open(raw, "rb") as f:
        assert f.read(22) == b"provisioned by a test\n"
    Path(raw).unlink()


def test_two_provisions_of_one_package_at_once(qemu, setup):
    """Both runner threads take one: the package is fetched and uploaded once, both finish."""
    pkgs, pool, data_dir = setup
    first = provision(qemu, pkgs["tiny"], pool)
    second = provision(qemu, pkgs["tiny"], pool)
    for new, tx, _name in (first, second):
        body = wait_tx(qemu.api, tx)
        assert body["data"]["state"] == "done", body
        assert qemu.host.domain(new) is not None
    assert [v for v in volumes(qemu) if v.startswith("enomalism-base-")] == \
        [f"enomalism-base-{pkgs['tiny']}-vda.qcow2"]
    assert package_files(data_dir) == [f"{pkgs['tiny']}.xvm2"]


# -- cancel and failure --------------------------------------------------------------------------


def test_cancel_a_provision_while_it_downloads_then_retry(qemu, setup, feed):
    pkgs, pool, data_dir = setup
    srv, _built = feed
    srv.rate = 64 << 20  # 4 s for the whole package: plenty of time to cancel
    new, tx, name = provision(qemu, pkgs["big"], pool)
    wait_tx(qemu.api, tx, until=lambda b: b["data"]["state"] == "running"
            and b["completion"] > 0)
    assert qemu.api.machine(new)["machine_obj"]["locked_by"] == tx
    body = qemu.api.ok("DELETE", f"/rest/transaction/{tx}/")
    assert body["data"]["cancel_requested"] is True
    body = wait_tx(qemu.api, tx)
    assert body["data"]["state"] == "cancelled", body
    no_trace(qemu, new, name, data_dir)
    assert volumes(qemu) == []
    assert package_files(data_dir) == []
    assert qemu.api.ok("GET", f"/rest/vmfeed/{pkgs['big']}/")["package"]["state"] == "remote"

    # retried, the same provision runs to the end: the same machine, managed as before
    srv.rate = None
    qemu.api.ok("POST", f"/rest/transaction/{tx}/", data={"action": "retry"})
    done(qemu, tx)
    dom = qemu.host.domain(new)
    assert dom is not None and dom.name() == name
    m = qemu.api.machine(new)["machine_obj"]
    assert (m["name"], m["managed"], m["locked_by"]) == (name, True, None)


class _HeldReader:
    """A disk reader that stops after `after` bytes until `gate` opens (so an upload is
    reliably in progress when the test cancels it)."""

    def __init__(self, inner, gate: threading.Event, after: int) -> None:
        self.inner, self.gate, self.after, self.done = inner, gate, after, 0

    def read(self, n: int = -1) -> bytes:
        if self.done >= self.after:
            self.gate.wait(120)
        data = self.inner.read(n)
        self.done += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_cancel_a_provision_while_it_uploads(qemu, setup, monkeypatch):
    pkgs, pool, data_dir = setup
    retrieved = qemu.api.ok("GET", f"/rest/vmfeed/repo/package/{pkgs['big']}/")
    done(qemu, retrieved["tx"])
    gate = threading.Event()
    real_open = provisioning.archive.open_disk
    monkeypatch.setattr(provisioning.archive, "open_disk",
                        lambda path, member: _HeldReader(real_open(path, member), gate, 64 << 20))
    try:
        new, tx, name = provision(qemu, pkgs["big"], pool)
        wait_tx(qemu.api, tx, until=lambda b: b["data"]["state"] == "running"
                and any(line.startswith("uploading disk") for line in log_lines(b))
                and b["completion"] > 40)
        base = f"enomalism-base-{pkgs['big']}-vda.raw"
        assert volumes(qemu) == [base]  # being written
        qemu.api.ok("DELETE", f"/rest/transaction/{tx}/")
        # A job reads its cancel flag at most every 0.25 s; the rest of the upload then takes
        # less than that here, so the gate stays shut until the next read is due.
        time.sleep(0.3)
    finally:
        gate.set()
    body = wait_tx(qemu.api, tx)
    assert body["data"]["state"] == "cancelled", body
    no_trace(qemu, new, name, data_dir)
    assert volumes(qemu) == []  # the half-uploaded base is no cache: it is gone too
    # the retrieval before was a transaction of its own: the package stays cached
    assert qemu.api.ok("GET", f"/rest/vmfeed/{pkgs['big']}/")["package"]["state"] == "cached"


def test_a_provision_whose_define_fails_leaves_nothing(qemu, setup):
    pkgs, pool, data_dir = setup
    new, tx, name = provision(qemu, pkgs["undefinable"], pool)
    body = wait_tx(qemu.api, tx)
    assert body["data"]["state"] == "failed", body
    assert "libvirt rejected the domain XML" in body["data"]["error"], body
    no_trace(qemu, new, name, data_dir)
    # the base volume is a cache shared by every provision of the package: it may stay, whole
    assert volumes(qemu) in ([], [f"enomalism-base-{pkgs['undefinable']}-vda.qcow2"])
    # and the name is free again
    r = qemu.api.post(f"/rest/machine/{qemu.api.local_host()}/actions/provision/",
                      data={"pkguuid": pkgs["tiny"], "hvmuuid": qemu.hv, "name": name,
                            "pool": pool})
    assert r.status_code == 200, r.text
    done(qemu, r.json()["txid"])
    assert qemu.host.domain(r.json()["newuuid"]).name() == name


def machine_with_a_volume_disk(qemu, pool: str) -> tuple[str, libvirt.virStorageVol]:
    """A machine whose vda is a file disk and vdb a pool's volume (`<disk type='volume'>`):
    its UUID and vdb's volume."""
    first, second = qemu.scratch.volume(), qemu.scratch.volume(32)
    xml = qemu.scratch.domain_xml(qemu.scratch.domain_name(), first.path()).replace(
        "</disk></devices>",
        "</disk><disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source pool='{pool}' volume='{second.name()}'/>"
        "<target dev='vdb' bus='virtio'/></disk></devices>")
    uuid = qemu.api.ok("PUT", "/rest/machines/", data={"xmldesc": xml, "hvmuuid": qemu.hv})[
        "machine"]
    qemu.scratch.track(uuid)
    return uuid, second


def test_a_machine_with_a_pool_volume_disk_is_packaged_whole_and_provisions(qemu, setup):
    """A disk given as a pool's volume goes into the package like a file disk; the
    provisioned machine has it as a disk of its own."""
    _pkgs, pool, data_dir = setup
    uuid, _vdb = machine_with_a_volume_disk(qemu, pool)
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/package/",
                       data={"name": "two-disks"})
    pkg = done(qemu, body["txid"])["data"]["result"]["package"]
    manifest, _xml = archive.read_package(data_dir / "packages" / f"{pkg}.xvm2")
    assert [(d.target, d.virtual_size) for d in manifest.disks] == \
        [("vda", 64 << 20), ("vdb", 32 << 20)]

    new, tx, _name = provision(qemu, pkg, pool)
    done(qemu, tx)
    disks = ElementTree.fromstring(qemu.host.domain(new).XMLDesc(0)).findall("devices/disk")
    assert [(d.get("type"), d.find("target").get("dev")) for d in disks] == \
        [("file", "vda"), ("file", "vdb")]
    assert all(d.find("source").get("file").startswith(qemu.scratch.dir) for d in disks)


def test_packaging_a_machine_whose_volume_disk_is_gone_is_refused(qemu, setup):
    _pkgs, pool, data_dir = setup
    uuid, vdb = machine_with_a_volume_disk(qemu, pool)
    gone = vdb.name()
    vdb.delete(0)
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/package/",
                       data={"name": "missing-disk"})
    end = wait_tx(qemu.api, body["txid"])
    assert end["data"]["state"] == "failed"
    assert f"volume '{gone}'" in end["data"]["error"]
    assert not list((data_dir / "packages").glob("*"))
