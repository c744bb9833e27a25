"""Crash recovery: the real server (`enomalism serve`, a process of its own on qemu:///system) is
killed with SIGKILL in the middle of a transaction and started again on the same data dir. The
transaction must then be failed with an "interrupted" reason, its locks released, and what it
had made removed: the machine record a provision created, its domain and overlay, a base volume
it was uploading, a partial package file; a machine paused for packaging runs again.

Each kill takes the server's whole process group, as a service manager stopping a crashed
service would (a qemu-img the server ran must not outlive it)."""

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import libvirt
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.integration.conftest import URI, Host, wait_for
from tests.integration.provision_helpers import (
    FeedServer,
    MiB,
    Pkg,
    Repeating,
    build_package,
    feed_item,
    free_port,
    log_lines,
    make_random_raw,
    package_files,
    publish,
    running,
    wait_tx,
)
from tests.integration.test_provision_network import VNet, libvirt_network

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENOMALISM = REPO / ".venv" / "bin" / "enomalism"
INTERRUPTED = "interrupted"


class Server:
    """`enomalism serve` as a subprocess on one data dir; started, killed, started again."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        # A password of its own: other test runs on this machine start servers too, and one
        # may hold the port we picked by the time ours binds it.
        self.password = f"{ADMIN_PASSWORD}-{secrets.token_hex(8)}"
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    def start(self) -> httpx.Client:
        port = free_port()
        env = {**os.environ, "ENOMALISM_ADMIN_PASSWORD": self.password,
               "ENOMALISM_ARGON2_TIME_COST": "1", "ENOMALISM_ARGON2_MEMORY_KIB": "1024",
               "ENOMALISM_ARGON2_PARALLELISM": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(ENOMALISM), "serve", "--port", str(port), "--data-dir", str(self.data_dir),
                 "--hypervisor", URI], env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                                   auth=("admin", self.password), timeout=60)
        bound = f"Uvicorn running on http://127.0.0.1:{port}"

        def health() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}): "
                                     f"{self.log.read_text()[-3000:]}")
            if bound not in self.log.read_text():  # ours, not whoever else is on the port
                return None
            try:
                return self.client.get("/rest/hosts/").status_code
            except httpx.TransportError:
                return None
        wait_for(health, lambda code: code == 200, "the server to answer", timeout=120)
        wait_for(self.hypervisor, lambda h: h["status"] == "connected",
                 f"{URI} to be connected", timeout=120)
        return self.client

    def hypervisor(self) -> dict:
        host = next(h["uuid"] for h in self.ok("GET", "/rest/hosts/")["hosts"] if h["is_local"])
        hvs = self.ok("GET", f"/rest/machine/{host}/hypervisors/")["hypervisors"]
        return next(h for h in hvs if h["virt_url"] == URI)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.client.request(method, path, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("errno", 0) == 0, body
        return body

    def kill(self) -> None:
        """SIGKILL to the server and everything it started."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
        if self.client is not None:
            self.client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.client is not None:
            self.client.close()


@pytest.fixture
def server(tmp_path: Path, scratch) -> Iterator[Server]:
    """Stopped before `scratch` removes the pool and domains it worked on."""
    s = Server(tmp_path / "data", tmp_path / "server.log")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def net(host: Host) -> Iterator[VNet]:
    """The packages' NICs are on a libvirt network of the tests' own (started: the machines
    start)."""
    with libvirt_network(host) as made:
        yield made


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory,
         net: VNet) -> Iterator[tuple[FeedServer, dict[str, Pkg]]]:
    """big: 256 MiB of random data (the download takes a moment when the server is slowed);
    gib: 1 GiB repeating a random MiB (a small package whose upload takes a moment)."""
    d = tmp_path_factory.mktemp("crash-pkgs")
    pkgs = {
        "big": build_package(d / "big.xvm2", make_random_raw(d / "big.raw", 256), name="big",
                             fmt="raw", network=net.name),
        "gib": build_package(d / "gib.xvm2", lambda: Repeating(1024 * MiB), name="gib",
                             fmt="raw", network=net.name),
    }
    (d / "big.raw").unlink()
    srv = FeedServer()
    try:
        publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in pkgs.items()])
        yield srv, pkgs
    finally:
        srv.close()


def provision(s: Server, scratch, pkg: str) -> tuple[str, str, str]:
    name = scratch.domain_name()
    host = next(h["uuid"] for h in s.ok("GET", "/rest/hosts/")["hosts"] if h["is_local"])
    body = s.ok("POST", f"/rest/machine/{host}/actions/provision/",
                data={"pkguuid": pkg, "hvmuuid": s.hypervisor()["uuid"], "name": name,
                      "pool": scratch.pool.name()})
    scratch.track(body["newuuid"])
    return body["newuuid"], body["txid"], name


def interrupted(s: Server, txid: str) -> dict:
    body = s.ok("GET", f"/rest/transaction/{txid}/")
    assert body["data"]["state"] == "failed", body
    assert body["data"]["error"].startswith(INTERRUPTED), body
    assert body["message"].startswith("failed: interrupted"), body
    return body


def no_machine(s: Server, scratch, uuid: str, name: str) -> None:
    r = s.client.get(f"/rest/machine/{uuid}/")
    assert r.status_code == 404 and r.json()["errno"] == 1200, r.text
    assert uuid not in s.ok("GET", "/rest/machines/")["machines"]
    assert scratch.host.domain(uuid) is None
    with pytest.raises(libvirt.libvirtError):
        scratch.host.conn.lookupByName(name)
    assert not [v for v in scratch.volume_names() if v.startswith(name)]


def partial_files(data_dir: Path) -> list[str]:
    """Anything under packages/ that is not a whole package: .part files, export directories."""
    return [f for f in package_files(data_dir) if not f.endswith(".xvm2") or "/" in f]


def test_kill_during_the_download_of_a_provision(server, feed, scratch):
    srv, _pkgs = feed
    s = server
    s.start()
    pkgs = {p["name"]: p["uuid"] for p in
            s.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")})["packages"]}
    srv.rate = 16 * MiB  # some 16 s for the whole package: it is killed long before
    try:
        new, tx, name = provision(s, scratch, pkgs["big"])
        wait_tx(s.client, tx, until=lambda b: b["data"]["state"] == "running"
                and b["completion"] > 0)
        assert s.ok("GET", f"/rest/machine/{new}/")["machine_obj"]["locked_by"] == tx
        assert [f for f in package_files(s.data_dir) if f.endswith(".part")]  # mid-download
        s.kill()
    finally:
        srv.rate = None

    s.start()
    body = interrupted(s, tx)
    assert body["data"]["cancel_requested"] is False
    no_machine(s, scratch, new, name)  # the machine record (and with it its lock) is gone
    assert scratch.volume_names() == []
    assert package_files(s.data_dir) == []  # no .part left to pass for a package
    assert s.ok("GET", f"/rest/vmfeed/{pkgs['big']}/")["package"]["state"] == "remote"
    assert running(s.client) == []

    # retried after the restart, the same provision completes: a managed machine
    s.ok("POST", f"/rest/transaction/{tx}/", data={"action": "retry"})
    done = wait_tx(s.client, tx)
    assert done["data"]["state"] == "done", done
    m = s.ok("GET", f"/rest/machine/{new}/")["machine_obj"]
    assert (m["name"], m["managed"], m["locked_by"]) == (name, True, None)
    assert scratch.host.domain(new).name() == name


def test_kill_during_a_base_upload_and_during_a_package_export(server, feed, scratch):
    srv, _pkgs = feed
    s = server
    s.start()
    pkgs = {p["name"]: p["uuid"] for p in
            s.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")})["packages"]}
    gib = pkgs["gib"]
    retrieval = s.ok("GET", f"/rest/vmfeed/repo/package/{gib}/")["tx"]
    assert wait_tx(s.client, retrieval)["data"]["state"] == "done"
    base = f"enomalism-base-{gib}-vda.raw"

    # 1. killed while the package's disk is uploaded into the pool as the base volume
    new, tx, name = provision(s, scratch, gib)
    wait_tx(s.client, tx, until=lambda b: b["data"]["state"] == "running"
            and any(line.startswith("uploading disk") for line in log_lines(b))
            and b["completion"] > 41, deadline=120)
    s.kill()
    assert base in scratch.volume_names()  # half written
    s.start()
    interrupted(s, tx)
    no_machine(s, scratch, new, name)
    # the partial base is gone: a later provision must not take it for the whole image
    assert scratch.volume_names() == []
    assert s.ok("GET", f"/rest/vmfeed/{gib}/")["package"]["state"] == "cached"
    assert package_files(s.data_dir) == [f"{gib}.xvm2"]

    new, tx, name = provision(s, scratch, gib)
    done = wait_tx(s.client, tx)
    assert done["data"]["state"] == "done", done
    assert any(line.startswith("uploading disk") for line in log_lines(done))
    vol = scratch.host.conn.storagePoolLookupByName(scratch.pool_name).storageVolLookupByName(
        base)
    assert vol.info()[1] == 1024 * MiB  # capacity: the whole image

    # 2. killed while the running machine is exported into a package (paused meanwhile)
    s.ok("POST", f"/rest/machine/{new}/actions/create/")
    wait_for(lambda: scratch.host.state(new), lambda st: st == "running", "the VM to run")
    cached_before = s.ok("GET", "/rest/vmfeed/", params={"state": "cached"})["packages"]
    ptx = s.ok("POST", f"/rest/machine/{new}/actions/package/", data={"name": "crashed"})["txid"]
    wait_tx(s.client, ptx, until=lambda b: b["data"]["state"] == "running"
            and any(line.startswith("writing package") for line in log_lines(b)),
            deadline=120)
    s.kill()
    assert scratch.host.state(new) == "paused"  # as the export left it
    assert partial_files(s.data_dir)  # the export's files, half made
    s.start()
    interrupted(s, ptx)
    m = s.ok("GET", f"/rest/machine/{new}/")["machine_obj"]
    assert m["locked_by"] is None
    # not left paused for ever by a job that no longer exists
    wait_for(lambda: scratch.host.state(new), lambda st: st == "running",
             "the VM to run again after the interrupted export")
    assert partial_files(s.data_dir) == []
    assert s.ok("GET", "/rest/vmfeed/", params={"state": "cached"})["packages"] == cached_before
    assert running(s.client) == []
    # the machine can be packaged now
    ptx = s.ok("POST", f"/rest/machine/{new}/actions/package/", data={"name": "whole"})["txid"]
    done = wait_tx(s.client, ptx, deadline=180)
    assert done["data"]["state"] == "done", done
    assert scratch.host.state(new) == "running"
    assert partial_files(s.data_dir) == []



def test_kill_during_an_image_upload(server, scratch):
    """An upload is one request: killed with its server, its image is failed by the server
    that comes back (it finds its node restarted since the upload began) and its partial
    volume removed. DELETE then takes the image."""
    import threading
    import time

    s = server
    s.start()
    total, sent = 64 * MiB, threading.Event()

    def trickle() -> Iterator[bytes]:
        yield b"\0" * MiB
        sent.set()
        for _ in range(total // MiB - 1):
            time.sleep(1)
            yield b"\0" * MiB

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            s.client.put("/rest/images/", content=trickle(), headers={
                "content-length": str(total)}, params={
                "name": "cut-short", "format": "raw", "hvmuuid": s.hypervisor()["uuid"],
                "pool": scratch.pool.name()})

    threading.Thread(target=upload, daemon=True).start()
    sent.wait(60)
    img = wait_for(lambda: s.ok("GET", "/rest/images/")["images"], lambda i: len(i) == 1,
                   "the upload to be recorded")[0]
    assert img["state"] == "uploading"
    wait_for(scratch.volume_names, lambda v: len(v) == 1, "the partial volume")
    s.kill()

    s.start()
    failed = wait_for(lambda: s.ok("GET", f"/rest/images/{img['uuid']}/")["image"],
                      lambda i: i["state"] == "failed", "the lost upload to be failed")
    assert failed["uuid"] == img["uuid"]
    entries = s.ok("GET", "/rest/audit/", params={"object": img["uuid"]})["entries"]
    assert "image.upload_lost" in {e["action"] for e in entries}, entries
    wait_for(scratch.volume_names, lambda v: v == [], "the partial volume to be removed")
    s.ok("DELETE", f"/rest/images/{img['uuid']}/")
    assert s.ok("GET", "/rest/images/")["images"] == []
