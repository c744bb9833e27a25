"""A retrieved package is recorded before its file is on the disk (runtime/package_sync.py):
the sync that follows, and what a restart does with a package whose sync may not have happened
(after a crash of the process: sync it; after a crash of the machine, or of another node: take
it back to a partial download, which the next retrieval checks and completes). Real feed
servers, real files; the crashes are the rows and files a crash leaves, then a real restart."""

import errno
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from enomalism.runtime import package_sync
from enomalism.store.models import Node, Package, utcnow
from tests.conftest import Api
from tests.integration.provision_helpers import (
    build_package,
    feed_item,
    feed_server,
    have_qemu_img,
    make_qcow2,
    package_files,
    publish,
    sha256_of,
    wait_tx,
)

pytestmark = pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed for images")


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("pkg")
    image = make_qcow2(d / "disk.qcow2", 16, data=bytes(range(256)) * 8192)  # 2 MiB
    return build_package(d / "p.xvm2", image, name="synced")


@pytest.fixture
def srv():
    with feed_server() as s:
        yield s


@pytest.fixture
def host(make_host) -> str:
    return make_host("host1")


def row(api: Api, uuid: str) -> Package:
    with api.app.state.db.session(write=False) as s:
        p = s.get(Package, uuid)
        s.expunge(p)
        return p


def set_mark(api: Api, uuid: str, mark: str | None) -> None:
    with api.app.state.db.session() as s:
        s.execute(update(Package).where(Package.uuid == uuid).values(unsynced=mark))


def wait_synced(api: Api, uuid: str, deadline: float = 30.0) -> Package:
    end = time.monotonic() + deadline
    while (p := row(api, uuid)).unsynced is not None:
        assert time.monotonic() < end, f"package {uuid} still unsynced: {p.unsynced}"
        time.sleep(0.02)
    return p


def retrieved(api: Api, srv, pkg) -> tuple[str, str]:
    """Add a feed with the package and retrieve it: (package uuid, txid)."""
    url = publish(srv, [feed_item(srv, pkg, "/p/p.xvm2")])
    uuid = api.ok("PUT", "/rest/vmfeed/", data={"url": url})["packages"][0]["uuid"]
    tx = api.ok("POST", f"/rest/vmfeed/repo/package/{uuid}/")["tx"]
    assert wait_tx(api, tx)["data"]["state"] == "done"
    return uuid, tx


def cache_file(api: Api, uuid: str) -> Path:
    return Path(api.app.state.settings.packages_path) / f"{uuid}.xvm2"


def test_a_retrieved_package_is_synced_and_its_mark_cleared(make_api, host, srv, pkg):
    with make_api(host) as api:
        uuid, _tx = retrieved(api, srv, pkg)
        p = wait_synced(api, uuid)
        assert (p.state, p.path) == ("cached", str(cache_file(api, uuid)))
        assert sha256_of(cache_file(api, uuid)) == pkg.sha256


def test_a_clean_stop_leaves_no_package_unsynced(make_api, host, srv, pkg):
    with make_api(host) as api:
        uuid, _tx = retrieved(api, srv, pkg)
        wait_synced(api, uuid)
        sync, db = api.app.state.runner.package_sync, api.app.state.db
        mark = sync.mark("a-later-retrieval")
        set_mark(api, uuid, mark)  # as if just retrieved again, its sync still waiting
        sync.later(uuid, cache_file(api, uuid), mark)
    with db.session(write=False) as s:  # the server has stopped
        assert (s.get(Package, uuid).unsynced, s.get(Package, uuid).state) == (None, "cached")


def test_after_the_process_crashed_the_same_boot_syncs_and_keeps_the_package(
        make_api, host, srv, pkg, tmp_path):
    with make_api(host, data_dir=tmp_path / "d") as api:
        uuid, tx = retrieved(api, srv, pkg)
        wait_synced(api, uuid)
        mark = api.app.state.runner.package_sync.mark(tx)
    node, boot, txid = mark.split(" ")
    assert (boot, txid) == (package_sync.boot_id(), tx)
    with make_api(host, data_dir=tmp_path / "d") as api:
        set_mark(api, uuid, mark)  # what a kill -9 before the sync leaves
        api.app.state.runner.package_sync.recover()  # what the start does
        p = wait_synced(api, uuid)
        assert (p.state, p.path) == ("cached", str(cache_file(api, uuid)))
        assert package_files(tmp_path / "d") == [f"{uuid}.xvm2"]
        assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"


@pytest.mark.parametrize("lost", ["the end", "nothing", "a block in the middle"])
def test_after_the_machine_restarted_the_package_is_checked_and_completed(
        make_api, host, srv, pkg, tmp_path, lost):
    d = tmp_path / "d"
    with make_api(host, data_dir=d) as api:
        uuid, tx = retrieved(api, srv, pkg)
        wait_synced(api, uuid)
        node = api.app.state.runner.package_sync.node_id
        path = cache_file(api, uuid)
        set_mark(api, uuid, f"{node} an-earlier-boot {tx}")
    # What a power cut can leave of a file whose sync never came.
    data = path.read_bytes()
    if lost == "the end":
        path.write_bytes(data[: len(data) // 3])
    elif lost == "a block in the middle":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 512])
                         + data[mid + 512:])
    with make_api(host, data_dir=d) as api:  # the start takes it back
        p = api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]
        assert (p["state"], p["size"]) == ("remote", None)
        assert package_files(d) == [f"{uuid}.xvm2.part"]
        assert row(api, uuid).unsynced is None
        srv.requests.clear()
        tx = api.ok("POST", f"/rest/vmfeed/repo/package/{uuid}/")["tx"]
        assert wait_tx(api, tx)["data"]["state"] == "done"
        wait_synced(api, uuid)
        assert sha256_of(path) == pkg.sha256
        assert package_files(d) == [f"{uuid}.xvm2"]
        ranges = [r.get("range") for r in srv.requests if r["path"] == "/p/p.xvm2"]
        have = len(data) // 3 if lost == "the end" else len(data)
        assert ranges[0] == f"bytes={have}-"  # what was there is used
        if lost == "a block in the middle":
            assert ranges[1:] == [None]  # it did not match: fetched again from the start
        else:
            assert ranges[1:] == []


def test_the_marks_of_a_node_gone_silent_are_taken_back_and_a_live_ones_kept(
        make_api, host, srv, pkg):
    with make_api(host) as api:
        uuid, tx = retrieved(api, srv, pkg)
        wait_synced(api, uuid)
        sync = api.app.state.runner.package_sync
        with api.app.state.db.session() as s:
            s.add(Node(id="node-alive", hostname="b", seen_at=utcnow()))
            s.add(Node(id="node-gone", hostname="c",
                       seen_at=utcnow() - timedelta(seconds=sync.lease + 5)))
        for node in ("node-alive", "node-not-recorded", "node-gone"):
            set_mark(api, uuid, f"{node} {sync.boot} {tx}")
            sync.take_over()
            p = row(api, uuid)
            if node == "node-alive":
                assert (p.state, p.unsynced) == ("cached", f"{node} {sync.boot} {tx}")
                assert package_files(Path(api.app.state.settings.data_dir)) == [
                    f"{uuid}.xvm2"]
                continue
            assert (p.state, p.path, p.unsynced) == ("remote", None, None)
            assert package_files(Path(api.app.state.settings.data_dir)) == [
                f"{uuid}.xvm2.part"]
            tx = api.ok("POST", f"/rest/vmfeed/repo/package/{uuid}/")["tx"]
            assert wait_tx(api, tx)["data"]["state"] == "done"
            wait_synced(api, uuid)


def test_a_package_that_cannot_be_written_to_the_disk_is_taken_back(
        make_api, host, srv, pkg, monkeypatch):
    def failing(path):  # an I/O error, as a failing disk reports it
        raise OSError(errno.EIO, "Input/output error", str(path))

    with make_api(host) as api:
        monkeypatch.setattr(package_sync, "fdatasync", failing)
        uuid, _tx = retrieved(api, srv, pkg)
        end = time.monotonic() + 30
        while row(api, uuid).state != "remote":
            assert time.monotonic() < end
            time.sleep(0.02)
        assert package_files(Path(api.app.state.settings.data_dir)) == [f"{uuid}.xvm2.part"]


def test_uncaching_clears_the_mark(make_api, host, srv, pkg):
    with make_api(host) as api:
        uuid, tx = retrieved(api, srv, pkg)
        wait_synced(api, uuid)
        set_mark(api, uuid, api.app.state.runner.package_sync.mark(tx))
        api.ok("DELETE", f"/rest/vmfeed/repo/package/{uuid}/")
        assert row(api, uuid).unsynced is None


def test_boot_id_is_the_kernels_or_one_of_this_process(monkeypatch, tmp_path):
    assert package_sync.boot_id() == package_sync.BOOT_ID.read_text().strip()
    monkeypatch.setattr(package_sync, "BOOT_ID", tmp_path / "none")
    a, b = package_sync.boot_id(), package_sync.boot_id()
    assert a.startswith("process-") and a != b
