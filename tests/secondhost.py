"""A second, real libvirt host on this machine for multi-host tests (docs/testing.md).

`second_host` (session scope) starts one with scripts/test-host.sh, a libvirtd with its own
virtlogd, network and mount namespace, host UUID and hostname, reached over qemu+tcp on a veth
pair, and removes it when the session ends. It is named after the pytest process
(`pytest-<pid>`), so parallel sessions get hosts of their own; hosts left by sessions that were
killed are removed at the next start. Without root, `unshare`, `ip` or libvirtd the tests that
use it are skipped, saying which.
"""

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "test-host.sh"
ROOT = Path(os.environ.get("ENOMALISM_TEST_HOSTS_DIR", "/var/tmp/enomalism-test-hosts"))
TOOLS = ("unshare", "ip", "libvirtd", "virtlogd", "virsh")
SESSION_NAME = re.compile(r"pytest-(\d+)(?:-[a-z0-9-]+)?")  # pytest-<pid>[-what]
USAGE, CLASH = 2, 3  # test-host.sh's exit statuses: missing tool or not root; subnet taken


@dataclass(frozen=True)
class SecondHost:
    """The second host: its name (for test-host.sh) and libvirt URI."""

    name: str
    uri: str

    @property
    def address(self) -> str:
        """The host's own address (its end of the veth pair)."""
        return self.uri.split("//")[1].split("/")[0]

    @property
    def peer_address(self) -> str:
        """This machine's end of the veth pair: where the second host reaches the first
        (a migration back needs it as its migration URI, `tcp://<peer_address>`)."""
        return self.address.rsplit(".", 1)[0] + ".1"

    def connect(self) -> libvirt.virConnect:
        """A new connection of the test's own; the caller closes it."""
        return libvirt.open(self.uri)


def host_uuid(conn: libvirt.virConnect) -> str:
    """The host UUID libvirt reports in its capabilities (host_uuid in libvirtd.conf)."""
    return ElementTree.fromstring(conn.getCapabilities()).findtext("./host/uuid")


def missing() -> str | None:
    """What this machine lacks to run a second host, or None."""
    if os.geteuid() != 0:
        return "not root (a second host needs network and mount namespaces)"
    absent = [t for t in TOOLS if shutil.which(t) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def run(command: str, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), command, name], capture_output=True, text=True,
                          timeout=420)


def sweep() -> None:
    """Remove the hosts of pytest sessions that died before they could stop theirs."""
    if not ROOT.is_dir():
        return
    for d in ROOT.iterdir():
        m = SESSION_NAME.fullmatch(d.name)
        if m is None or Path(f"/proc/{m[1]}").exists():
            continue
        run("stop", d.name)


def start(base: str) -> SecondHost:
    """Start a host named `base` (or `base-N` when its subnet is taken on this machine)."""
    tried = []
    for n in range(5):
        name = base if n == 0 else f"{base}-{n}"
        r = run("start", name)
        if r.returncode == 0:
            return SecondHost(name, r.stdout.strip())
        if r.returncode == USAGE:
            pytest.skip(f"no second libvirt host: {r.stderr.strip()}")
        if r.returncode != CLASH:
            pytest.fail(f"scripts/test-host.sh start {name} failed:\n{r.stderr}")
        tried.append(r.stderr.strip())
    pytest.fail("no free subnet for a second host: " + "; ".join(tried))


@pytest.fixture(scope="session")
def second_host() -> Iterator[SecondHost]:
    """A second libvirt host, shared by the session; removed at its end."""
    reason = missing()
    if reason:
        pytest.skip(f"no second libvirt host: {reason}")
    sweep()
    second = start(f"pytest-{os.getpid()}")
    yield second
    r = run("stop", second.name)
    assert r.returncode == 0, f"scripts/test-host.sh stop {second.name} failed:\n{r.stderr}"
