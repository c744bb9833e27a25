"""Review of issue 12 on the real libvirtd: what a guest writes into its own raw disk must not
make `package` read files outside it (tests/api/test_review_findings.py has the rest)."""

import os
import subprocess
import tarfile

import pytest

from enomalism.feeds import archive
from tests.api.accounts import grant, new_user
from tests.integration.provision_helpers import have_qemu_img, wait_tx

pytestmark = pytest.mark.integration

SECRET = b"REVIEW-SECRET-" * 64  # a host file (or another user's volume) the guest names


def _disk_bytes(path) -> bytes:  # noqa: ANN001
    """Every disk image of a package, decompressed."""
    import zstandard

    out = b""
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".zst"):
                out += zstandard.ZstdDecompressor().stream_reader(
                    tar.extractfile(member)).read()
    return out


@pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed to write the header")
def test_a_qcow2_header_a_guest_wrote_into_its_raw_disk_exports_only_that_disk(qemu, tmp_path):
    """A raw disk's first bytes are the guest's. A guest that writes a qcow2 header naming a
    backing file there (here written with qemu-img, as the guest would) makes libvirt's pool
    report the volume as a qcow2 overlay; `package` then flattened the "chain" with qemu-img,
    which probed the format and read the named file into the package."""
    secret = tmp_path / "secret.img"
    secret.write_bytes(SECRET)
    pool = qemu.scratch.pool
    vol = pool.createXML("<volume><name>review-raw.img</name><capacity unit='MiB'>1"
                         "</capacity><target><format type='raw'/></target></volume>", 0)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw",
                    vol.path(), "1M"], check=True)
    pool.refresh(0)
    name = qemu.scratch.domain_name()
    xml = qemu.scratch.domain_xml(name, vol.path()).replace("type='qcow2'", "type='raw'")
    uuid = qemu.api.ok("PUT", "/rest/machines/", data={"xmldesc": xml,
                                                        "hvmuuid": qemu.hv})["machine"]
    qemu.scratch.track(uuid)
    alice = new_user(qemu.api)
    for permission in ("modify", "export"):
        grant(qemu.api, uuid, permission, user=alice.uuid)
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/package/", auth=alice.auth,
                       data={"name": "review"})
    tx = wait_tx(qemu.api, body["txid"])
    assert tx["data"]["state"] == "done", tx
    pkg = tx["data"]["result"]["package"]
    data_dir = qemu.api.app.state.settings.data_dir
    image = _disk_bytes(data_dir / "packages" / f"{pkg}.xvm2")
    assert SECRET not in image
    # the disk as the guest sees it: raw, its bytes (the header it wrote) and its size
    assert image[:4] == b"QFI\xfb" and len(image) == os.path.getsize(vol.path())
    manifest, _xml = archive.read_package(data_dir / "packages" / f"{pkg}.xvm2")
    assert [d.format for d in manifest.disks] == ["raw"]


@pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed to write the header")
def test_a_non_admin_cannot_read_her_raw_disk_as_qcow2(qemu, tmp_path):
    secret = tmp_path / "secret.img"
    secret.write_bytes(SECRET)
    pool = qemu.scratch.pool
    vol = pool.createXML("<volume><name>review-swap.img</name><capacity unit='MiB'>1"
                         "</capacity><target><format type='raw'/></target></volume>", 0)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw",
                    vol.path(), "1M"], check=True)
    pool.refresh(0)
    name = qemu.scratch.domain_name()
    xml = qemu.scratch.domain_xml(name, vol.path())
    uuid = qemu.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": xml.replace("type='qcow2'", "type='raw'"), "hvmuuid": qemu.hv})["machine"]
    qemu.scratch.track(uuid)
    alice = new_user(qemu.api)
    for permission in ("modify", "export"):
        grant(qemu.api, uuid, permission, user=alice.uuid)
    r = qemu.api.post(f"/rest/machine/{uuid}/", auth=alice.auth,
                      data={"action": "xmldesc", "xmldesc": xml})  # the same disk, as qcow2
    assert (r.status_code, r.json()["errno"]) == (403, 1111), r.text  # its machine reads raw
    if r.status_code == 200:
        qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/store_xml/", auth=alice.auth)
        body = qemu.api.ok("POST", f"/rest/machine/{uuid}/actions/package/", auth=alice.auth,
                           data={"name": "review-swap"})
        tx = wait_tx(qemu.api, body["txid"])
        if tx["data"]["state"] == "done":
            pkg = tx["data"]["result"]["package"]
            data_dir = qemu.api.app.state.settings.data_dir
            assert SECRET not in _disk_bytes(data_dir / "packages" / f"{pkg}.xvm2")
    else:
        assert r.json()["errno"] in (1110, 1111), r.text
