"""Snapshots on the real libvirtd (virt/snapshots.py, issue 19): a stopped machine's disk
snapshot, the disk changed, reverted, and qemu-io reads the old content, on libvirt and through
the API (services/snapshots.py); a running machine's snapshot with memory reverted, and the
tiny real guest's shell finding after a revert what it held when the snapshot was taken; a
tree whose middle snapshot is deleted; what is refused; totaldelete removing them."""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from enomalism.errors import InvalidInput, InvalidState, NotFound, SnapshotExists
from enomalism.virt import snapshots
from tests.guest import Serial
from tests.integration.test_consoles import guest_xml

pytestmark = pytest.mark.integration


def qemu_io(path: str, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True,
                          text=True)


def pattern_is(path: str, byte: int) -> bool:
    """qemu-io's read -P: the first 64 KiB are all `byte`."""
    r = qemu_io(path, f"read -P {byte:#x} 0 64k")
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout + r.stderr


def defined(scratch) -> tuple[str, str]:  # noqa: ANN001
    vol = scratch.volume()
    name = scratch.domain_name()
    dom = scratch.host.conn.defineXML(scratch.domain_xml(name, vol.path()))
    return dom.UUIDString(), vol.path()


def test_revert_brings_back_the_old_disk_content(scratch):
    conn = scratch.host.conn
    uuid, disk = defined(scratch)
    assert qemu_io(disk, "write -P 0xaa 0 64k").returncode == 0
    snap = snapshots.create(conn, uuid, name="before", description="all 0xaa")
    assert (snap.name, snap.description, snap.parent, snap.state, snap.memory) == (
        "before", "all 0xaa", None, "shutoff", False)
    assert qemu_io(disk, "write -P 0xbb 0 64k").returncode == 0
    assert pattern_is(disk, 0xbb)
    snapshots.revert(conn, uuid, "before")
    assert pattern_is(disk, 0xaa)
    # a tree: after -> before; deleting before re-parents after onto nothing
    snapshots.create(conn, uuid, name="after")
    assert [(s.name, s.parent) for s in snapshots.listed(conn, uuid)] == [
        ("before", None), ("after", "before")]
    snapshots.delete(conn, uuid, "before")
    assert [(s.name, s.parent) for s in snapshots.listed(conn, uuid)] == [("after", None)]
    assert pattern_is(disk, 0xaa)
    with pytest.raises(NotFound):
        snapshots.revert(conn, uuid, "before")
    with pytest.raises(NotFound):
        snapshots.delete(conn, uuid, "no-such")
    with pytest.raises(SnapshotExists):
        snapshots.create(conn, uuid, name="after")  # taken
    with pytest.raises(InvalidState):
        snapshots.create(conn, uuid, name="mem", memory=True)  # stopped: no memory
    for bad in ("", "a/b", ".hidden", "x" * 65, "é"):
        with pytest.raises(InvalidInput):
            snapshots.create(conn, uuid, name=bad)
    snapshots.delete(conn, uuid, "after")
    assert snapshots.listed(conn, uuid) == []


def test_a_running_machine_with_memory(scratch):
    conn = scratch.host.conn
    uuid, _ = defined(scratch)
    dom = conn.lookupByUUIDString(uuid)
    dom.create()
    with pytest.raises(InvalidState):
        snapshots.create(conn, uuid, name="disk-only")  # running: memory too
    snap = snapshots.create(conn, uuid, name="live", memory=True)
    assert (snap.state, snap.memory) == ("running", True)
    dom.destroy()
    snapshots.revert(conn, uuid, "live")
    assert dom.isActive()  # the memory brought it back running
    dom.destroy()


# -- through the API ---------------------------------------------------------------------------

def wait_done(api, txid: str) -> dict:  # noqa: ANN001
    end = time.monotonic() + 120
    while time.monotonic() < end:
        data = api.ok("GET", f"/rest/transaction/{txid}/")["data"]
        if data["state"] in ("done", "failed", "cancelled"):
            assert data["state"] == "done", data
            return data
        time.sleep(0.1)
    raise AssertionError(f"transaction {txid} did not finish")


def test_the_api_reverts_a_disk_and_totaldelete_removes_the_snapshots(qemu):
    api = qemu.api
    uuid, _, vol = qemu.define()
    disk = vol.path()
    base = f"/rest/machine/{uuid}/snapshots/"
    assert qemu_io(disk, "write -P 0xaa 0 64k").returncode == 0
    wait_done(api, api.ok("PUT", base, data={"name": "before"})["txid"])
    assert qemu_io(disk, "write -P 0xbb 0 64k").returncode == 0
    wait_done(api, api.ok("POST", f"{base}before/", data={"action": "revert"})["txid"])
    assert pattern_is(disk, 0xaa)
    # refused on the real libvirtd as on the test driver
    r = api.post(f"{base}gone/", data={"action": "revert"})
    assert (r.status_code, r.json()["errno"]) == (404, 1210)
    r = api.put(base, data={"name": "before"})
    assert (r.status_code, r.json()["errno"]) == (409, 1390)
    r = api.put(base, data={"name": "mem", "memory": "true"})
    assert (r.status_code, r.json()["errno"]) == (409, 1301)
    # the machine goes with its snapshots; nothing is left in its volume either
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    assert qemu.host.domain(uuid) is None
    assert not Path(disk).exists()


class _Console:
    """The guest's serial console held open (libvirt's console stream), read in a thread."""

    def __init__(self, qemu, uuid: str) -> None:  # noqa: ANN001
        self.stream = qemu.api.registry.connection(qemu.hv).open_serial(uuid, force=True)
        self.seen = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while data := self.stream.read():
            self.seen += data

    def ask(self, line: str, answer: str) -> None:
        """Type `line` until `answer` comes back (the shell may not read yet, or take the
        first keys as its terminal's answer)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            self.stream.write(line.encode() + b"\r")
            end = time.monotonic() + 5
            while time.monotonic() < end:
                if answer.encode() in self.seen:
                    return
                time.sleep(0.2)
        raise AssertionError(f"the guest never answered {line!r}: {self.seen[-1000:]!r}")

    def close(self) -> None:
        self.stream.close()


@pytest.mark.guest
def test_a_memory_snapshot_of_the_tiny_guest_brings_back_its_shell_s_state(qemu, tiny_guest):
    api = qemu.api
    pool = qemu.scratch.pool
    disk = Path(qemu.scratch.dir) / "tiny-snap.qcow2"
    shutil.copyfile(tiny_guest, disk)
    os.chmod(disk, 0o644)
    pool.refresh(0)
    log = Path(qemu.scratch.dir) / "serial.log"
    uuid = api.ok("PUT", "/rest/machines/", data={
        "xmldesc": guest_xml(qemu.scratch.domain_name(), disk, log), "hvmuuid": qemu.hv})[
        "machine"]
    qemu.scratch.track(uuid)
    qemu.action(uuid, "create")
    serial = Serial(log)
    serial.wait("GUEST-READY", timeout=180)
    console = _Console(qemu, uuid)
    console.ask("V=one; echo SET-$((0+1))-$V", "SET-1-one")
    base = f"/rest/machine/{uuid}/snapshots/"
    wait_done(api, api.ok("PUT", base, data={"name": "warm", "memory": "true",
                                             "description": "V is one"})["txid"])
    snap = api.ok("GET", f"{base}warm/")["snapshot"]
    assert (snap["memory"], snap["state"]) == (True, "running")
    console.ask("V=two; echo SET-$((0+2))-$V", "SET-2-two")
    console.close()
    qemu.action(uuid, "poweroff")
    qemu.wait_api_state(uuid, "shutoff")
    wait_done(api, api.ok("POST", f"{base}warm/", data={"action": "revert"})["txid"])
    qemu.wait_api_state(uuid, "running")
    console = _Console(qemu, uuid)
    console.ask("echo GOT-$((0+3))-$V", "GOT-3-")
    console.close()
    got = [x for x in serial.lines() if x.startswith("GOT-3-")]
    assert set(got) == {"GOT-3-one"}, got  # the shell as it was: no boot in between
    assert sum(line.startswith("GUEST-BOOTED") for line in serial.lines()) == 1
    qemu.action(uuid, "poweroff")
