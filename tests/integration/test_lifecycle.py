"""A VM's whole life through the API on the real libvirtd, checked through the API and through
libvirt itself after every step."""

import os
import time

import pytest

pytestmark = pytest.mark.integration


def test_define_start_suspend_resume_poweroff_start_totaldelete(qemu):
    uuid, name, vol = qemu.define()
    path, vol_name = vol.path(), vol.name()
    qemu.check(uuid, "shutoff")
    dom = qemu.host.domain(uuid)
    assert dom.name() == name and dom.isPersistent()
    assert path in dom.XMLDesc(0)

    for action, state in [("create", "running"), ("suspend", "paused"), ("resume", "running"),
                          ("poweroff", "shutoff"), ("create", "running")]:
        body = qemu.action(uuid, action)
        assert body["errno"] == 0 and body["message"], body
        qemu.check(uuid, state)
    qemu.api.settle()  # the events of all that change nothing the actions did not store
    qemu.check(uuid, "running")

    body = qemu.action(uuid, "totaldelete")
    assert "1 volume" in body["message"], body
    assert qemu.host.domain(uuid) is None
    assert vol_name not in qemu.scratch.volume_names()
    assert not os.path.exists(path)
    r = qemu.api.get(f"/rest/machine/{uuid}/")
    assert r.status_code == 404 and r.json()["errno"] == 1200, r.text
    qemu.api.settle()  # the domain's last events must not bring the machine back
    assert uuid not in qemu.api.ok("GET", "/rest/machines/")["machines"]
    assert qemu.api.get(f"/rest/machine/{uuid}/").status_code == 404


def test_wrong_state_actions_are_refused_and_change_nothing(qemu):
    uuid, _name, _vol = qemu.define()
    for action in ("suspend", "resume", "poweroff", "shutdown", "reboot"):
        r = qemu.api.post(f"/rest/machine/{uuid}/actions/{action}/")
        assert r.status_code == 409 and r.json()["errno"] == 1301, (action, r.text)
    qemu.check(uuid, "shutoff")
    qemu.action(uuid, "create")
    r = qemu.api.post(f"/rest/machine/{uuid}/actions/create/")
    assert r.status_code == 409 and r.json()["errno"] == 1301, r.text
    qemu.check(uuid, "running")


def test_guest_without_os_ignores_shutdown_and_reboot(qemu):
    """A guest with no OS has nothing listening to ACPI: the requests are accepted (they are
    only requests) and the domain honestly stays running."""
    uuid, _name, _vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.check(uuid, "running")
    for action in ("shutdown", "reboot"):
        body = qemu.action(uuid, action)
        assert body["errno"] == 0 and "requested" in body["message"], body
        qemu.api.settle()
        qemu.check(uuid, "running")
    # Give a guest that would react the time to do so, then look again: still running.
    ran = qemu.host.domain(uuid).ID()
    qemu.api.settle()
    time.sleep(3)
    qemu.api.settle()
    qemu.check(uuid, "running")
    assert qemu.host.domain(uuid).ID() == ran  # not restarted behind our back either
    qemu.action(uuid, "poweroff")
    qemu.check(uuid, "shutoff")
