"""Snapshots on the real libvirtd (virt/snapshots.py, issue 19): a stopped machine's disk
snapshot, the disk changed, reverted, and qemu-io reads the old content; a running machine's
snapshot with memory reverted; a tree whose middle snapshot is deleted; what is refused."""

import subprocess

import pytest

from enomalism.errors import InvalidInput, InvalidState, NotFound
from enomalism.virt import snapshots

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
    with pytest.raises(InvalidState):
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
