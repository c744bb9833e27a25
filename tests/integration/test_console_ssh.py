"""The graphical console of a machine on a hypervisor reached over SSH (docs/consoles.md, "How
it is carried"): an sshd of the test's own on 127.0.0.1 (a throwaway host key, an authorized
key the test made), libvirt's own SSH transport through it to this machine's libvirtd, and
the VNC WebSocket answering `RFB 003.008` through `ssh HOST nc -U <socket>`, as for any
remote host. Registered by an administrator: `keyfile=`, `no_verify=` and `known_hosts=` name
files on the server or weaken a check, which only administrators may do (virt/uri.py).

OpenSSH keeps host keys in the user's home from the password database (it ignores $HOME):
with `qemu+ssh://...&no_verify=1` it records the test sshd's key there, so that file is put
back as it was afterwards; with `qemu+libssh://...&known_hosts=<file>` the host key goes to the
test's own file."""

import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from enomalism.client import Client
from enomalism.config import Settings
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.integration.conftest import Scratch, unique, wait_for
from tests.integration.provision_helpers import free_port

pytestmark = [pytest.mark.integration]
ADMIN = ("admin", ADMIN_PASSWORD)
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    key: Path  # the client's private key, authorized for root
    dir: Path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not os.path.exists(SSHD) or not shutil.which("nc") or not shutil.which("ssh"):
        pytest.skip("needs openssh-server, openssh-client and netcat-openbsd "
                    "(scripts/setup.sh installs them)")
    if os.geteuid() != 0:
        pytest.skip("the test's sshd logs root in to reach libvirtd's socket: run as root")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)],
                       check=True)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nPidFile {d / 'sshd.pid'}\n")
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation directory
    with open(d / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _listens(port, proc), bool, f"sshd on 127.0.0.1:{port}", 30)
        yield Sshd(port, d / "client", d)
    finally:
        proc.terminate()
        proc.wait(30)


def _listens(port: int, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"sshd exited with {proc.returncode}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def home_known_hosts() -> Iterator[None]:
    """The user's ~/.ssh/known_hosts (from the password database) put back as it was."""
    ssh_dir = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"
    known = ssh_dir / "known_hosts"
    had_dir = ssh_dir.exists()
    before = known.read_bytes() if known.exists() else None
    try:
        yield
    finally:
        if before is not None:
            known.write_bytes(before)
        else:
            known.unlink(missing_ok=True)
            if not had_dir and ssh_dir.exists() and not any(ssh_dir.iterdir()):
                ssh_dir.rmdir()


def uri_for(transport: str, sshd: Sshd) -> str:
    base = f"qemu+{transport}://root@127.0.0.1:{sshd.port}/system?keyfile={sshd.key}"
    if transport == "ssh":
        return f"{base}&no_verify=1"
    return f"{base}&known_hosts={sshd.dir / 'known_hosts'}&known_hosts_verify=auto" \
           "&sshauth=privkey"


def vnc_guest(name: str, domain_type: str) -> str:
    """A guest with no OS and no disk: its firmware's screen on a VNC unix socket."""
    return (f"<domain type='{domain_type}'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
            "<graphics type='vnc'><listen type='socket'/></graphics>"
            "<video><model type='vga'/></video><memballoon model='none'/></devices></domain>")


@pytest.mark.parametrize("transport", ["ssh", "libssh"])
def test_the_vnc_console_of_a_machine_on_an_ssh_host_answers_rfb(
        transport: str, sshd: Sshd, scratch: Scratch, home_known_hosts: None,
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, hypervisors=[], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data), **FAST_HASHES)
    with running_server(settings) as (url, _app), \
            httpx.Client(base_url=url, auth=ADMIN, timeout=120) as http:
        uri = uri_for(transport, sshd)
        r = http.put("/rest/hosts/", data={"name": unique("ssh-host"), "virt_url": uri})
        assert r.status_code == 200, r.text
        (hv,) = r.json()["hypervisors"]
        assert hv["status"] == "connected", hv
        name = scratch.domain_name()
        r = http.put("/rest/machines/", data={
            "xmldesc": vnc_guest(name, scratch.host.domain_type()), "hvmuuid": hv["uuid"]})
        assert r.status_code == 200, r.text
        uuid = r.json()["machine"]
        scratch.track(uuid)
        r = http.post(f"/rest/machine/{uuid}/actions/create/")
        assert r.status_code == 200, r.text
        with Client(url, *ADMIN) as c, c.machines.console(uuid, "vnc") as con:
            got = b""
            while len(got) < 12:
                got += con.recv(timeout=60)
            assert got[:12] == b"RFB 003.008\n"
        http.post(f"/rest/machine/{uuid}/actions/poweroff/")
