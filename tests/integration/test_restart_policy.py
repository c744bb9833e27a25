"""Restart on failure on the real libvirtd (issue 19): a guest (no OS: cheap) whose QEMU is
killed with SIGKILL from outside is started again under `restart_policy=on-failure`, each
restart in the audit log; a poweroff through the API does not bring it back; after the limit
it stays stopped. The back-off is shortened for the test (runtime/restarts.py)."""

import os
import signal
import time
from pathlib import Path

import pytest

from tests.api.accounts import audit
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def qemu_pid(name: str) -> int:
    """The domain's QEMU process, as libvirt wrote it down."""
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


def kill(qemu, uuid: str, name: str) -> None:  # noqa: ANN001
    pid = qemu_pid(name)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: qemu.host.state(uuid), lambda s: s != "running",
             f"{name} to stop after kill -9", 30)


def restarts(qemu, uuid: str) -> list[dict]:  # noqa: ANN001
    return [e for e in audit(qemu.api, uuid) if e["action"] == "machine.restart"]


def test_a_killed_guest_comes_back_until_the_limit_and_a_poweroff_stays(qemu):
    api = qemu.api
    restarter = api.registry.restarts
    restarter.backoff, restarter.limit = (0.2, 0.5, 1.0), 2
    uuid, name, _ = qemu.define()
    api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set",
                                                    "restart_policy": "on-failure"})
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")

    # killed from outside: started again, and said so
    first = qemu_pid(name)
    kill(qemu, uuid, name)
    wait_for(lambda: qemu.host.state(uuid), lambda s: s == "running", f"{name} back", 60)
    assert qemu_pid(name) != first
    entries = wait_for(lambda: restarts(qemu, uuid), lambda e: len(e) == 1,
                       "the restart's audit entry", 30)
    assert (entries[0]["errno"], entries[0]["actor"], entries[0]["actor_name"]) == (
        0, None, "enomalism"), entries[0]
    assert entries[0]["detail"] == {"reason": "failed", "restarts": 1}

    # a poweroff through the API is no failure
    qemu.action(uuid, "poweroff")
    qemu.wait_api_state(uuid, "shutoff")
    time.sleep(2)  # longer than the back-off: it would have been started by now
    assert qemu.host.state(uuid) == "shutoff"
    assert len(restarts(qemu, uuid)) == 1

    # the second kill is restarted too (the limit is 2), the third is not
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    kill(qemu, uuid, name)
    wait_for(lambda: qemu.host.state(uuid), lambda s: s == "running", f"{name} back", 60)
    kill(qemu, uuid, name)
    entries = wait_for(lambda: restarts(qemu, uuid), lambda e: len(e) == 3,
                       "the refusal's audit entry", 30)
    assert entries[0]["errno"] != 0 and "limit" in entries[0]["message"], entries[0]
    time.sleep(2)
    assert qemu.host.state(uuid) == "shutoff"
    m = api.machine(uuid)["machine_obj"]
    assert m["restart_policy"] == "on-failure"
