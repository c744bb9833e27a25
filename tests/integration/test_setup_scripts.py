"""The set-up scripts on a machine where libvirt is already in use: run twice in a row, with the
`default` storage pool running, they succeed and change nothing the second time; /dev/kvm left
root-only (no udev) is made root:kvm 0660 and the change is said; a NAT network starts (its
dnsmasq is installed by set-up).

Whatever the host had before (the `default` pool and its state, /dev/kvm's owner and mode) is
put back afterwards."""

import grp
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import REPO, Host, unique

pytestmark = pytest.mark.integration

SCRIPTS = REPO / "scripts"


def run(script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("the set-up scripts change the host only as root")


@pytest.fixture
def default_pool(host: Host) -> Iterator[libvirt.virStoragePool]:
    """The host's `default` pool, running (made by default-pool.sh if there was none); the
    host's own pool is put back as it was (stopped if it was), one this test made is removed."""
    root_only()
    conn = host.conn
    try:
        found = conn.storagePoolLookupByName("default")
        was_active = bool(found.isActive())
    except libvirt.libvirtError:
        found, was_active = None, False
    try:
        first = run("default-pool.sh")
        assert first.returncode == 0, first.stderr
        pool = host.conn.storagePoolLookupByName("default")
        assert pool.isActive()
        yield pool
    finally:
        pool = host.conn.storagePoolLookupByName("default")
        if found is None:
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        elif not was_active and pool.isActive():
            pool.destroy()


def test_default_pool_script_twice_with_the_pool_running(host: Host,
                                                         default_pool: libvirt.virStoragePool):
    """The second run of `make run`'s pool step (the pool already runs) is a quiet success,
    and the pool is the same one, still running."""
    uuid = default_pool.UUIDString()
    for _ in range(2):
        again = run("default-pool.sh")
        assert again.returncode == 0, again.stderr
        assert again.stdout == "" and again.stderr == ""
        pool = host.conn.storagePoolLookupByName("default")
        assert pool.isActive() and pool.UUIDString() == uuid


def test_default_pool_script_starts_a_stopped_pool(host: Host,
                                                   default_pool: libvirt.virStoragePool):
    default_pool.destroy()
    started = run("default-pool.sh")
    assert started.returncode == 0, started.stderr
    assert "started storage pool 'default'" in started.stdout
    assert host.conn.storagePoolLookupByName("default").isActive()


def test_start_libvirt_twice_with_libvirtd_running(host: Host):
    """libvirtd already runs (as on any machine where libvirt is in use): nothing is started
    again, both runs succeed, and the daemon answering is the same one."""
    root_only()
    def daemon() -> str:  # this machine's libvirtd (a test host's runs in a namespace of its own)
        return Path("/run/libvirtd.pid").read_text().strip()
    before = daemon()
    for _ in range(2):
        r = run("start-libvirt.sh")
        assert r.returncode == 0, r.stderr
    assert daemon() == before and Path(f"/proc/{before}").exists()
    assert host.conn.getLibVersion() > 0


@pytest.fixture
def kvm_device() -> Iterator[os.stat_result]:
    """/dev/kvm, put back to the owner, group and mode it had whatever the test did."""
    root_only()
    if not os.path.exists("/dev/kvm"):
        pytest.skip("this machine has no /dev/kvm")
    try:
        grp.getgrnam("kvm")
    except KeyError:
        pytest.skip("this machine has no group kvm (libvirt-daemon-system makes it)")
    before = os.stat("/dev/kvm")
    try:
        yield before
    finally:
        os.chown("/dev/kvm", before.st_uid, before.st_gid)
        os.chmod("/dev/kvm", stat.S_IMODE(before.st_mode))


def test_kvm_device_made_usable_by_the_kvm_group(kvm_device: os.stat_result):
    """As on a machine where no udev rule ran: root:root 0600 becomes root:kvm 0660, once, and
    set-up says so; the second run changes nothing and says nothing."""
    os.chown("/dev/kvm", 0, 0)
    os.chmod("/dev/kvm", 0o600)
    first = run("kvm-device.sh")
    assert first.returncode == 0, first.stderr
    assert "was root:root 0600" in first.stdout and "root:kvm 0660" in first.stdout
    now = os.stat("/dev/kvm")
    assert now.st_gid == grp.getgrnam("kvm").gr_gid and stat.S_IMODE(now.st_mode) == 0o660
    second = run("kvm-device.sh")
    assert second.returncode == 0 and second.stdout == "" and second.stderr == ""


def test_kvm_device_usable_by_everyone_is_left_alone(kvm_device: os.stat_result):
    os.chown("/dev/kvm", 0, 0)
    os.chmod("/dev/kvm", 0o666)
    r = run("kvm-device.sh")
    assert r.returncode == 0 and r.stdout == ""
    now = os.stat("/dev/kvm")
    assert now.st_gid == 0 and stat.S_IMODE(now.st_mode) == 0o666


def test_setup_twice_in_a_row(host: Host, default_pool: libvirt.virStoragePool):
    """The whole of `make run`'s set-up, twice, on a machine where libvirt is in use (libvirtd
    running, the `default` pool running): both succeed and the second installs nothing."""
    if not (REPO / ".venv" / ".installed").exists():
        pytest.skip("no .venv made by scripts/setup.sh in this checkout (make setup makes it; "
                    "the test does not install the project's Python packages)")
    for _ in range(2):
        for script in ("setup.sh", "default-pool.sh"):
            r = run(script)
            assert r.returncode == 0, f"{script}: {r.stderr}"
    assert "installing" not in r.stdout
    assert host.conn.storagePoolLookupByName("default").isActive()


def test_a_nat_network_starts(host: Host):
    """libvirt's NAT networks need dnsmasq, which set-up installs (libvirt comes without its
    recommends)."""
    name = unique("net")
    bridge = "enot" + name[-8:]  # a bridge name is at most 15 characters
    octet = int(name[-2:], 16)
    net = host.conn.networkDefineXML(
        f"<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}'/>"
        f"<ip address='10.252.{octet}.1' netmask='255.255.255.0'><dhcp>"
        f"<range start='10.252.{octet}.10' end='10.252.{octet}.20'/></dhcp></ip></network>")
    try:
        net.create()
        assert net.isActive()
        dnsmasq = subprocess.run(["pgrep", "-f", f"dnsmasq --conf-file=.*/{name}.conf"],
                                 capture_output=True, text=True)
        assert dnsmasq.returncode == 0, f"no dnsmasq serves {name}"
    finally:
        if net.isActive():
            net.destroy()
        net.undefine()
