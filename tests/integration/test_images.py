"""Issue 16, images, on the real libvirtd: qcow2, raw and ISO files the tests make themselves
(`qemu-img`, pycdlib) uploaded into a scratch pool, as the body and as a multipart part;
every lie and unsafe image refused with nothing left behind; another user sees nothing."""

import hashlib
import io
import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pycdlib
import pytest

from enomalism.services import images as image_service
from enomalism.virt import storage
from tests.api.accounts import grant, new_user
from tests.conftest import expect_error
from tests.integration.conftest import unique
from tests.integration.provision_helpers import FeedServer, wait_tx

pytestmark = pytest.mark.integration


def qcow2(tmp_path: Path, name: str = "disk.qcow2", *, backing: Path | None = None) -> Path:
    path = tmp_path / name
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        cmd += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*cmd, str(path), "16M"], check=True)
    return path


def raw(tmp_path: Path, mib: int = 2) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\x01" * 4096 + bytes(mib * 1048576 - 4096))
    return path


def iso(tmp_path: Path) -> Path:
    image = pycdlib.PyCdlib()
    image.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    data = b"#cloud-config\n"
    image.add_fp(io.BytesIO(data), len(data), "/USERDATA.;1", rr_name="user-data",
                 joliet_path="/user-data")
    path = tmp_path / "seed.iso"
    image.write(str(path))
    image.close()
    return path


def upload(qemu, path: Path, fmt: str, *, name: str | None = None, auth: object = "admin",
           **params: str):
    """PUT the file as the request body (streamed by the server)."""
    with path.open("rb") as f:
        return qemu.api.put("/rest/images/", auth=auth, content=f.read(), params={
            "name": name or unique("img"), "format": fmt, "hvmuuid": qemu.hv,
            "pool": qemu.scratch.pool.name(), **params},
            headers={"Content-Type": "application/octet-stream"})


def test_qcow2_raw_and_iso_uploaded_listed_shown_deleted(qemu, tmp_path):
    for path, fmt in ((qcow2(tmp_path), "qcow2"), (raw(tmp_path), "raw"), (iso(tmp_path), "iso")):
        r = upload(qemu, path, fmt, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        assert r.status_code == 200, r.text
        img = r.json()["image"]
        assert img["state"] == "ready" and img["format"] == fmt
        assert img["size"] == path.stat().st_size
        assert img["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert img["virtual_size"] == (16 << 20 if fmt == "qcow2" else path.stat().st_size)
        vol = qemu.host.conn.storageVolLookupByPath(img["path"])
        assert vol.info()[1] == (16 << 20 if fmt == "qcow2" else path.stat().st_size)
        assert img["path"].startswith(qemu.scratch.dir)
        assert Path(img["path"]).read_bytes() == path.read_bytes()
        listed = qemu.api.ok("GET", "/rest/images/")["images"]
        assert img["uuid"] in [i["uuid"] for i in listed]
        for ref in (img["name"], img["uuid"][:8]):  # by name, by a unique UUID prefix
            assert qemu.api.ok("GET", f"/rest/images/{ref}/")["image"]["uuid"] == img["uuid"]
        qemu.api.ok("DELETE", f"/rest/images/{img['uuid']}/")
        assert not Path(img["path"]).exists()
        expect_error(qemu.api.get(f"/rest/images/{img['uuid']}/"), 404, 1200)


def test_multipart_upload(qemu, tmp_path):
    path = qcow2(tmp_path)
    with path.open("rb") as f:
        r = qemu.api.put("/rest/images/", files={"file": ("disk.qcow2", f)}, data={
            "name": "multi", "format": "qcow2", "hvmuuid": qemu.hv,
            "pool": qemu.scratch.pool.name()})
    assert r.status_code == 200, r.text
    assert r.json()["image"]["size"] == path.stat().st_size
    assert qemu.scratch.volume_names() == [f"image-{r.json()['image']['uuid']}.qcow2"]


@pytest.mark.parametrize("case", ["raw_as_qcow2", "qcow2_as_raw", "backing", "not_iso",
                                  "sha256"])
def test_bad_images_are_refused_and_leave_nothing(qemu, tmp_path, case):
    params = {}
    if case == "raw_as_qcow2":
        path, fmt, said = raw(tmp_path), "qcow2", "not qcow2"
    elif case == "qcow2_as_raw":
        path, fmt, said = qcow2(tmp_path), "raw", "qcow2 image, not raw"
    elif case == "backing":
        base = qcow2(tmp_path, "base.qcow2")
        path, fmt, said = qcow2(tmp_path, "top.qcow2", backing=base), "qcow2", "backing file"
    elif case == "not_iso":
        path, fmt, said = raw(tmp_path), "iso", "CD001"
    else:
        path, fmt, said = raw(tmp_path), "raw", "sha256"
        params["sha256"] = "0" * 64
    body = expect_error(upload(qemu, path, fmt, **params), 400, 1016)
    assert said in body["message"]
    assert qemu.scratch.volume_names() == []
    assert qemu.api.ok("GET", "/rest/images/")["images"] == []


def test_name_taken_size_over_pool_no_length_and_missing(qemu, tmp_path):
    path = qcow2(tmp_path)
    assert upload(qemu, path, "qcow2", name="taken").status_code == 200
    expect_error(upload(qemu, path, "qcow2", name="taken"), 409, 1300)
    expect_error(upload(qemu, path, "vmdk"), 400, 1000)
    expect_error(upload(qemu, path, "qcow2", name="../x"), 400, 1000)
    available = qemu.scratch.pool.info()[3]
    r = qemu.api.put("/rest/images/", params={"name": "huge", "format": "raw",
                                              "hvmuuid": qemu.hv,
                                              "pool": qemu.scratch.pool.name()},
                     headers={"Content-Length": str(available + 1),
                              "Content-Type": "application/octet-stream"},
                     content=b"")
    # (the client sends no body: the server refuses on the announced length, before reading)
    body = expect_error(r, 413, 1316)
    assert qemu.scratch.pool.name() in body["message"]

    def chunks():
        yield path.read_bytes()
    r = qemu.api.put("/rest/images/", params={"name": "chunked", "format": "qcow2",
                                              "hvmuuid": qemu.hv}, content=chunks(),
                     headers={"Content-Type": "application/octet-stream"})
    expect_error(r, 411, 1017)
    expect_error(qemu.api.get("/rest/images/no-such-image/"), 404, 1200)
    expect_error(qemu.api.delete("/rest/images/no-such-image/"), 404, 1200)
    assert [i["name"] for i in qemu.api.ok("GET", "/rest/images/")["images"]] == ["taken"]
    assert len(qemu.scratch.volume_names()) == 1


def test_another_user_neither_sees_nor_deletes_and_needs_control(qemu, tmp_path):
    path = qcow2(tmp_path)
    mine = upload(qemu, path, "qcow2").json()["image"]
    other = new_user(qemu.api)
    assert qemu.api.ok("GET", "/rest/images/", auth=other.auth)["images"] == []
    expect_error(qemu.api.get(f"/rest/images/{mine['uuid']}/", auth=other.auth), 404, 1200)
    expect_error(qemu.api.delete(f"/rest/images/{mine['uuid']}/", auth=other.auth), 404, 1200)
    # a hypervisor they may not read (404), then read but not control (403): refused
    # before anything is written
    expect_error(upload(qemu, path, "qcow2", auth=other.auth), 404, 1200)
    grant(qemu.api, qemu.hv, "read", user=other.uuid)
    expect_error(upload(qemu, path, "qcow2", auth=other.auth), 403, 1101)
    assert len(qemu.scratch.volume_names()) == 1
    grant(qemu.api, mine["uuid"], "read", user=other.uuid)
    assert qemu.api.ok("GET", f"/rest/images/{mine['uuid']}/", auth=other.auth)
    expect_error(qemu.api.delete(f"/rest/images/{mine['uuid']}/", auth=other.auth), 403, 1101)
    grant(qemu.api, qemu.hv, "control", user=other.uuid)
    theirs = upload(qemu, path, "qcow2", auth=other.auth, name=mine["name"])
    assert theirs.status_code == 200, theirs.text  # names are unique per owner
    assert Path(mine["path"]).exists()
    assert len(qemu.scratch.volume_names()) == 2


def test_inspect_refuses_an_external_data_file(tmp_path):
    path = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    f"data_file={tmp_path / 'data.raw'}", str(path), "16M"], check=True)
    with pytest.raises(Exception, match="external file"):
        image_service.inspect(path.read_bytes(), fmt="qcow2", size=path.stat().st_size)


def test_registered_from_a_url_in_a_transaction(qemu, tmp_path):
    path = qcow2(tmp_path)
    srv = FeedServer()
    try:
        srv.files["/disk.qcow2"] = path
        srv.files["/liar.qcow2"] = raw(tmp_path)
        body = qemu.api.ok("PUT", "/rest/images/", data={
            "url": srv.url("/disk.qcow2"), "name": "fetched", "format": "qcow2",
            "hvmuuid": qemu.hv, "pool": qemu.scratch.pool.name()})
        assert body["image"]["state"] == "uploading" and body["txid"]
        tx = wait_tx(qemu.api, body["txid"])
        assert tx["data"]["state"] == "done", tx
        img = qemu.api.ok("GET", "/rest/images/fetched/")["image"]
        assert img["state"] == "ready" and img["url"] == srv.url("/disk.qcow2")
        assert img["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert Path(img["path"]).read_bytes() == path.read_bytes()
        # a file that lies fails the transaction and leaves neither image nor volume
        body = qemu.api.ok("PUT", "/rest/images/", data={
            "url": srv.url("/liar.qcow2"), "name": "liar", "format": "qcow2",
            "hvmuuid": qemu.hv, "pool": qemu.scratch.pool.name()})
        tx = wait_tx(qemu.api, body["txid"])
        assert tx["data"]["state"] == "failed" and "not qcow2" in str(tx), tx
        assert [i["name"] for i in qemu.api.ok("GET", "/rest/images/")["images"]] == ["fetched"]
        assert qemu.scratch.volume_names() == [Path(img["path"]).name]
        expect_error(qemu.api.put("/rest/images/", data={
            "url": "file:///etc/passwd", "name": "local", "format": "raw"}), 400, 1000)
    finally:
        srv.close()


def test_an_image_with_disks_made_from_it_is_not_deleted(qemu, tmp_path):
    img = upload(qemu, qcow2(tmp_path), "qcow2").json()["image"]
    pool = qemu.scratch.pool
    overlay = storage.overlay(pool, unique("disk") + ".qcow2", img["path"], "qcow2")
    body = expect_error(qemu.api.delete(f"/rest/images/{img['uuid']}/"), 409, 1300)
    assert Path(overlay).name in body["message"]
    assert Path(img["path"]).exists()
    storage.delete(qemu.host.conn, overlay)
    qemu.api.ok("DELETE", f"/rest/images/{img['uuid']}/")
    assert qemu.scratch.volume_names() == []


def test_package_import_turns_an_image_into_a_package(qemu, tmp_path):
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 1M", str(path)],
                   check=True, capture_output=True)
    img = upload(qemu, path, "qcow2", name="to-package").json()["image"]
    body = qemu.api.ok("POST", f"/rest/images/{img['uuid']}/",
                       data={"action": "package", "description": "from an image"})
    tx = wait_tx(qemu.api, body["txid"])
    assert tx["data"]["state"] == "done", tx
    pkg = qemu.api.ok("GET", f"/rest/vmfeed/{tx['data']['result']['package']}/")["package"]
    assert (pkg["name"], pkg["state"], pkg["description"]) == \
        ("to-package", "cached", "from an image")
    [disk] = pkg["disks"]
    assert (disk["target"], disk["format"], disk["virtual_size"]) == ("vda", "qcow2", 16 << 20)
    assert disk["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # an ISO is no disk; another user may not export what they cannot read
    iso_img = upload(qemu, iso(tmp_path), "iso").json()["image"]
    expect_error(qemu.api.post(f"/rest/images/{iso_img['uuid']}/", data={"action": "package"}),
                 400, 1000)
    expect_error(qemu.api.post(f"/rest/images/{img['uuid']}/", data={"action": "grow"}),
                 400, 1003)
    other = new_user(qemu.api)
    expect_error(qemu.api.post(f"/rest/images/{img['uuid']}/", data={"action": "package"},
                               auth=other.auth), 404, 1200)


def test_a_machine_created_from_an_uploaded_qcow2_and_iso_starts(qemu, tmp_path):
    """Issue 16's Tests: a qcow2 image and an ISO, uploaded through the API, make a machine
    (its disk a copy-on-write overlay on the image's volume, the ISO its CD-ROM) that starts;
    deleting the machine leaves the images."""
    from tests.integration.test_create import create, start_and_check

    disk = upload(qemu, qcow2(tmp_path), "qcow2").json()["image"]
    cd = upload(qemu, iso(tmp_path), "iso").json()["image"]
    name = qemu.scratch.domain_name()
    uuid = create(qemu, qemu.scratch, name=name, image=disk["uuid"], cdrom=cd["uuid"])
    root = ElementTree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
    sources = {d.find("target").get("dev"): (d.get("device"), d.find("source").get("file"))
               for d in root.iterfind("devices/disk")}
    assert sources["sda"] == ("cdrom", cd["path"])
    device, overlay = sources["vda"]
    info = storage_info(overlay)
    assert (device, info["format"], info["backing-filename"]) == ("disk", "qcow2", disk["path"])
    start_and_check(qemu, uuid)
    qemu.action(uuid, "totaldelete")
    left = qemu.scratch.volume_names()
    assert Path(overlay).name not in left
    assert {Path(disk["path"]).name, Path(cd["path"]).name} <= set(left)


def storage_info(path: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     check=True, capture_output=True, text=True).stdout)
