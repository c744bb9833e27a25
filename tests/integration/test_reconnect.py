"""libvirtd stops and starts again under a running server: the hypervisor shows as
disconnected, actions answer 503, and once libvirtd is back the link reconnects by itself and
the inventory catches up with what changed meanwhile.

This stops the host's libvirtd (guests keep running) and always starts it again, whatever
happens; other libvirt clients on the host lose their connection for those seconds."""

import logging
import os
import signal
import subprocess
from pathlib import Path

import libvirt
import pytest

from enomalism.errors import HypervisorUnreachable
from enomalism.virt import driver
from tests.integration.conftest import URI, start_libvirtd, wait_for

pytestmark = pytest.mark.integration

RECONNECT_DEADLINE = 90.0  # the link's back-off grows to 30 s between attempts


def our_libvirtd() -> int | None:
    """The libvirtd of this mount namespace, by its pid file (scripts/start-libvirt.sh), if it
    lives: a second test host's daemon (tests/secondhost.py) runs in a namespace of its own."""
    try:
        pid = int(Path("/run/libvirtd.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def qemu_pid(name: str) -> int:
    """The QEMU process of one of our own domains, checked against its command line."""
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"guest={name}".encode() in b",".join(cmdline), "pid file does not match the domain"
    return pid


def test_libvirtd_restart_is_survived_and_changes_meanwhile_are_seen(qemu, caplog):
    if os.geteuid() != 0 or Path("/run/systemd/system").is_dir() or our_libvirtd() is None:
        pytest.skip("stopping and restarting libvirtd needs root and a libvirtd started by "
                    "scripts/start-libvirt.sh (not by systemd)")
    a, a_name, _ = qemu.define()
    b, b_name, _ = qemu.define()
    for uuid in (a, b):
        qemu.action(uuid, "create")
        qemu.check(uuid, "running")
    b_qemu = qemu_pid(b_name)
    caplog.set_level(logging.WARNING, logger="enomalism")
    stale = libvirt.open(URI)  # a connection that has no event loop to learn of the close

    try:
        pid = our_libvirtd()
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: alive(pid), lambda up: not up, f"libvirtd ({pid}) to exit")

        # Calls on a connection whose daemon left are "unreachable" (503), not "refused" (502):
        # the first fails writing, later ones with libvirt's "client socket is closed".
        for _ in range(2):
            with pytest.raises(HypervisorUnreachable):
                driver.snapshot(stale, a)

        hv = qemu.wait_hypervisor("disconnected")
        assert hv["last_error"], hv
        m = qemu.api.machine(a)  # reads never wait on libvirt
        assert m["info"]["hypervisor_status"] == "disconnected"
        assert m["info"]["state"] == "running"
        assert a in qemu.api.ok("GET", "/rest/machines/")["machines"]
        for action in ("poweroff", "suspend"):
            r = qemu.api.post(f"/rest/machine/{a}/actions/{action}/")
            assert r.status_code == 503 and r.json()["errno"] == 1501, r.text
            assert r.json()["message"]
        r = qemu.api.post(f"/rest/machine/{a}/", data={"action": "poweroff"})
        assert r.status_code == 503 and r.json()["errno"] == 1501, r.text
        assert qemu.api_state(a) == "running"  # a failed action changes nothing

        # While libvirtd is away, guest B's QEMU goes (it is ours: checked by its cmdline).
        os.kill(b_qemu, signal.SIGTERM)
        wait_for(lambda: alive(b_qemu), lambda up: not up, f"QEMU of {b_name} to exit")
    finally:
        start_libvirtd()
        stale.close()

    # Right after the restart, before or after the server reconnects: suspend A outside.
    subprocess.run(["virsh", "-c", URI, "suspend", a_name], check=True, capture_output=True,
                   timeout=120)
    hv = qemu.wait_hypervisor("connected", RECONNECT_DEADLINE)
    assert hv["last_error"] is None
    qemu.wait_api_state(a, "paused", RECONNECT_DEADLINE)
    qemu.wait_api_state(b, "shutoff", RECONNECT_DEADLINE)
    qemu.check(a, "paused")
    qemu.check(b, "shutoff")

    # The new connection has its events again, and actions work.
    subprocess.run(["virsh", "-c", URI, "resume", a_name], check=True, capture_output=True,
                   timeout=120)
    qemu.wait_api_state(a, "running")
    qemu.action(a, "poweroff")
    qemu.check(a, "shutoff")
    qemu.action(b, "create")
    qemu.check(b, "running")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors  # losing libvirtd is expected: warnings, not errors
