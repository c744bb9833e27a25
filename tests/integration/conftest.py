"""Fixtures for the integration tests against the real libvirtd (`qemu:///system`).

Every object a test makes here has a name of its own, `enomalism-test-<random>`: a storage pool
of type dir in a fresh temporary directory, qcow2 volumes in it, and domains with no OS. The
`scratch` fixture removes exactly those afterwards, whatever happened (destroy and undefine the
domains, delete the volumes, destroy and undefine the pool, remove the directory), and never
looks at anything else on the host: other people's domains (a benchmark's `enomalism-bench-*`,
say) are left alone.

Deadlines are generous (libvirt events and a hard poweroff take a second or two here, the
reconnect back-off up to 30 s) and only bound a wait; no test asserts how long anything took.
"""

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import libvirt
import pytest

from tests import guest
from tests.secondhost import SecondHost, second_host  # noqa: F401  (a fixture)

URI = "qemu:///system"
PREFIX = "enomalism-test-"
REPO = Path(__file__).resolve().parents[2]
START_LIBVIRT = REPO / "scripts" / "start-libvirt.sh"
DEADLINE = 60.0
STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown", libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def unique(kind: str = "") -> str:
    return f"{PREFIX}{kind}{'-' if kind else ''}{secrets.token_hex(4)}"


def wait_for(probe: Callable[[], Any], done: Callable[[Any], bool], what: str,
             timeout: float = DEADLINE, interval: float = 0.2) -> Any:
    """Call `probe` until `done(value)` holds; returns that value. On time-out the assertion
    names what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}; "
                                 f"last seen: {value!r}")
        time.sleep(interval)


def start_libvirtd() -> None:
    """Start virtlogd and libvirtd when they are not running (the project's own script)."""
    subprocess.run([str(START_LIBVIRT)], check=True, timeout=120)


class Host:
    """The test's own connection to libvirtd (qemu:///system, or `uri`), separate from the
    server's, reopened when libvirtd restarted under it."""

    def __init__(self, conn: libvirt.virConnect, uri: str = URI) -> None:
        self._conn = conn
        self.uri = uri

    @property
    def conn(self) -> libvirt.virConnect:
        try:
            self._conn.getLibVersion()  # a round trip: isAlive() misses a daemon that left
            return self._conn
        except libvirt.libvirtError:
            pass
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
        self._conn = libvirt.open(self.uri)
        return self._conn

    def close(self) -> None:
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass

    def domain(self, uuid: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def state(self, uuid: str) -> str | None:
        """libvirt's own word on the domain's state; None when it is not defined."""
        dom = self.domain(uuid)
        return None if dom is None else STATES[dom.state()[0]]

    def domain_type(self) -> str:
        """kvm when /dev/kvm is usable and libvirt offers KVM guests, else qemu (TCG)."""
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "qemu"
        caps = ElementTree.fromstring(self.conn.getCapabilities())
        kvm = caps.findall("./guest/arch[@name='x86_64']/domain[@type='kvm']")
        return "kvm" if kvm else "qemu"


@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    """A connection to qemu:///system, or a skip saying what is missing."""
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        installed = shutil.which("libvirtd") or shutil.which("virtqemud")
        missing = ("libvirtd is not running or has no QEMU driver" if installed
                   else "libvirtd is not installed")
        pytest.skip(f"{URI} cannot be opened: {missing} "
                    f"({e.get_error_message()}); `make test` installs and starts it")
    h = Host(conn)
    yield h
    h.close()


class Scratch:
    """What one test creates on the host, and its removal."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.names: list[str] = []  # domains we named; only those are ever destroyed
        self.uuids: list[str] = []
        self.dir: str | None = None
        self.pool_name: str | None = None

    def domain_name(self) -> str:
        name = unique()
        self.names.append(name)
        return name

    def track(self, uuid: str) -> None:
        self.uuids.append(uuid)

    @property
    def pool(self) -> libvirt.virStoragePool:
        """A dir pool in a temporary directory of its own, made on first use."""
        if self.pool_name is None:
            self.dir = tempfile.mkdtemp(prefix=PREFIX)
            os.chmod(self.dir, 0o755)  # QEMU runs as another user and must reach the disks
            name = unique("pool")
            self.pool_name = name
            pool = self.host.conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{name}</name>"
                f"<target><path>{self.dir}</path></target></pool>", 0)
            pool.create(0)
        return self.host.conn.storagePoolLookupByName(self.pool_name)

    def volume(self, mib: int = 64) -> libvirt.virStorageVol:
        """A new, empty qcow2 volume made through libvirt's storage API."""
        name = unique("disk") + ".qcow2"
        return self.pool.createXML(
            f"<volume><name>{name}</name><capacity unit='MiB'>{mib}</capacity>"
            "<target><format type='qcow2'/></target></volume>", 0)

    def volume_names(self) -> list[str]:
        pool = self.pool
        pool.refresh(0)
        return sorted(v.name() for v in pool.listAllVolumes(0))

    def domain_xml(self, name: str, disk: str, memory_mib: int = 64) -> str:
        """A guest with no OS, its one disk a virtio disk on the volume at `disk`."""
        return (f"<domain type='{self.host.domain_type()}'><name>{name}</name>"
                f"<memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>"
                "<os><type arch='x86_64'>hvm</type></os><features><acpi/></features>"
                "<devices><disk type='file' device='disk'>"
                f"<driver name='qemu' type='qcow2'/><source file='{disk}'/>"
                "<target dev='vda' bus='virtio'/></disk></devices></domain>")

    # -- removal ---------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove everything this test made; returns what could not be removed."""
        problems: list[str] = []

        def attempt(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as e:  # keep going: every object gets its chance
                problems.append(f"{what}: {e}")

        if self.names or self.pool_name:
            try:
                self.host.conn  # noqa: B018 (libvirtd may have been stopped by the test)
            except libvirt.libvirtError:
                attempt("starting libvirtd again", start_libvirtd)
        for uuid in self.uuids:
            attempt(f"domain {uuid}", lambda u=uuid: self._remove_domain(self.host.domain(u)))
        for name in self.names:
            attempt(f"domain {name}", lambda n=name: self._remove_domain(self.lookup_name(n)))
        if self.pool_name is not None:
            attempt(f"pool {self.pool_name}", self._remove_pool)
        if self.dir is not None:
            attempt(f"directory {self.dir}",
                    lambda: shutil.rmtree(self.dir) if os.path.exists(self.dir) else None)
        return problems

    def lookup_name(self, name: str) -> libvirt.virDomain | None:
        try:
            return self.host.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    def _remove_domain(self, dom: libvirt.virDomain | None) -> None:
        if dom is None:
            return
        name = dom.name()
        if not name.startswith(PREFIX) or (name not in self.names
                                           and dom.UUIDString() not in self.uuids):
            return  # not ours (renamed by someone else?): never touch it
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

    def _remove_pool(self) -> None:
        try:
            pool = self.host.conn.storagePoolLookupByName(self.pool_name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return
            raise
        if pool.isActive():
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
        if pool.isPersistent():
            pool.undefine()


@pytest.fixture
def scratch(host: Host) -> Iterator[Scratch]:
    s = Scratch(host)
    yield s
    problems = s.cleanup()
    assert not problems, f"integration test clean-up left things behind: {problems}"


@pytest.fixture
def second_scratch(second_host: SecondHost) -> Iterator[Scratch]:  # noqa: F811
    """Like `scratch`, on the second host (tests/secondhost.py): what the test makes there
    is removed after it."""
    h = Host(second_host.connect(), second_host.uri)
    s = Scratch(h)
    yield s
    problems = s.cleanup()
    h.close()
    assert not problems, f"clean-up on the second host left things behind: {problems}"


class Qemu:
    """A server on qemu:///system (tests/conftest.py's Api), the hypervisor's UUID, the test's
    own libvirt connection and its scratch objects, with helpers the tests share."""

    def __init__(self, api: Any, hv: str, host: Host, scratch: Scratch) -> None:
        self.api, self.hv, self.host, self.scratch = api, hv, host, scratch

    def define(self) -> tuple[str, str, libvirt.virStorageVol]:
        """PUT a new VM on a new volume; returns (uuid, name, volume)."""
        vol = self.scratch.volume()
        name = self.scratch.domain_name()
        body = self.api.ok("PUT", "/rest/machines/",
                           data={"xmldesc": self.scratch.domain_xml(name, vol.path()),
                                 "hvmuuid": self.hv})
        uuid = body["machine"]
        self.scratch.track(uuid)
        assert body["machine_obj"]["name"] == name
        assert body["machine_obj"]["managed"] is True
        return uuid, name, vol

    def action(self, uuid: str, action: str) -> dict:
        return self.api.ok("POST", f"/rest/machine/{uuid}/actions/{action}/")

    def api_state(self, uuid: str) -> str:
        return self.api.machine(uuid)["info"]["state"]

    def wait_api_state(self, uuid: str, state: str, timeout: float = DEADLINE) -> dict:
        """Poll GET /rest/machine/<uuid>/ (never trigger_status_updates) until the state."""
        return wait_for(lambda: self.api.machine(uuid), lambda m: m["info"]["state"] == state,
                        f"machine {uuid} to be {state} in the API", timeout)

    def hypervisor(self) -> dict:
        return self.api.ok("GET", f"/rest/hypervisor/{self.hv}/")["hypervisor"]

    def wait_hypervisor(self, status: str, timeout: float = DEADLINE) -> dict:
        return wait_for(self.hypervisor, lambda h: h["status"] == status,
                        f"hypervisor {URI} to be {status}", timeout)

    def check(self, uuid: str, state: str) -> dict:
        """The state as the API and as libvirt itself see it, and the actions offered."""
        assert self.host.state(uuid) == state, "libvirt disagrees"
        m = self.api.machine(uuid)
        assert m["info"]["state"] == state
        assert m["machine_obj"]["state"] == state
        actions = m["machine_obj"]["actions"]
        assert self.api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"] == actions
        expected = {
            "running": ({"suspend", "shutdown", "reboot", "poweroff"}, {"create", "resume"}),
            "paused": ({"resume", "poweroff"}, {"create", "suspend"}),
            "shutoff": ({"create"}, {"suspend", "resume", "shutdown", "reboot", "poweroff"}),
        }[state]
        assert expected[0] <= set(actions), actions
        assert not expected[1] & set(actions), actions
        assert {"totaldelete", "store_xml"} <= set(actions), actions
        return m


@pytest.fixture
def qemu(scratch: Scratch, host: Host, make_api: Callable) -> Iterator[Qemu]:
    """A server on qemu:///system, connected. It stops before `scratch` cleans up."""
    with make_api(URI) as api:
        hv = next(h["uuid"] for h in api.hypervisors() if h["virt_url"] == URI)
        q = Qemu(api, hv, host, scratch)
        q.wait_hypervisor("connected")
        yield q


@pytest.fixture(scope="session")
def tiny_guest() -> Path:
    """The tiny real guest's disk (tests/guest), built once and cached; a skip naming what is
    missing when it cannot be built."""
    try:
        return guest.image()
    except guest.Unavailable as e:
        pytest.skip(str(e))
