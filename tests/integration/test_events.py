"""Changes made outside the API (virsh) reach the inventory through libvirt's events alone:
these tests only ever poll GET /rest/machine/<uuid>/, never trigger_status_updates."""

import subprocess

import pytest

from tests.integration.conftest import URI, wait_for

pytestmark = pytest.mark.integration


def virsh(*args: str, check: bool = True) -> None:
    subprocess.run(["virsh", "-c", URI, *args], check=check, capture_output=True, timeout=120)


def test_virsh_destroy_start_and_undefine_are_seen_through_events(qemu):
    uuid, name, vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.check(uuid, "running")

    virsh("destroy", name)
    qemu.wait_api_state(uuid, "shutoff")
    qemu.check(uuid, "shutoff")

    virsh("start", name)
    qemu.wait_api_state(uuid, "running")
    qemu.check(uuid, "running")
    virsh("destroy", name)
    qemu.wait_api_state(uuid, "shutoff")

    # Undefined behind our back: marked missing, never silently forgotten.
    virsh("undefine", name)
    m = qemu.wait_api_state(uuid, "missing")
    assert qemu.host.domain(uuid) is None
    assert m["machine_obj"]["managed"] is True and m["machine_obj"]["xmldesc"]
    actions = qemu.api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"]
    assert "store_xml" in actions and "create" not in actions
    assert uuid in qemu.api.ok("GET", "/rest/machines/")["machines"]
    r = qemu.api.post(f"/rest/machine/{uuid}/actions/create/")
    assert r.status_code == 409 and r.json()["errno"] == 1301, r.text

    # store_xml defines it again from the stored description, same UUID and disk.
    body = qemu.action(uuid, "store_xml")
    assert body["errno"] == 0, body
    qemu.check(uuid, "shutoff")
    dom = qemu.host.domain(uuid)
    assert dom.name() == name and vol.path() in dom.XMLDesc(0)
    qemu.action(uuid, "create")
    qemu.check(uuid, "running")
    qemu.api.settle()
    qemu.check(uuid, "running")


def test_events_for_a_paused_domain_resumed_outside(qemu):
    uuid, name, _vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.action(uuid, "suspend")
    qemu.check(uuid, "paused")
    virsh("resume", name)
    qemu.wait_api_state(uuid, "running")
    qemu.check(uuid, "running")
    virsh("suspend", name)
    qemu.wait_api_state(uuid, "paused")
    qemu.check(uuid, "paused")


def machine_objs(qemu) -> dict[str, dict]:  # noqa: ANN001
    objs = qemu.api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    return {o["uuid"]: o for o in objs}


def test_domain_defined_outside_is_unmanaged_until_managed(qemu, tmp_path):
    vol = qemu.scratch.volume()
    name = qemu.scratch.domain_name()
    xml_file = tmp_path / "domain.xml"
    xml_file.write_text(qemu.scratch.domain_xml(name, vol.path()))
    virsh("define", str(xml_file))
    uuid = qemu.scratch.lookup_name(name).UUIDString()
    qemu.scratch.track(uuid)

    obj = wait_for(lambda: machine_objs(qemu).get(uuid), lambda o: o is not None,
                   f"{name} to appear in the inventory")
    assert obj["managed"] is False and obj["state"] == "shutoff" and obj["persistent"] is True
    assert obj["actions"] == ["manage"]
    r = qemu.api.post(f"/rest/machine/{uuid}/actions/create/")
    assert r.status_code == 409 and r.json()["errno"] == 1301, r.text
    assert qemu.host.state(uuid) == "shutoff"

    qemu.action(uuid, "manage")
    qemu.check(uuid, "shutoff")
    qemu.action(uuid, "create")
    qemu.check(uuid, "running")

    # The guest's emulator stops by itself (as when a guest powers off): seen through events.
    # (virsh reports an error: the monitor closes before it answers.)
    virsh("qemu-monitor-command", "--hmp", name, "quit", check=False)
    qemu.wait_api_state(uuid, "shutoff")
    qemu.check(uuid, "shutoff")


def test_transient_domain_is_unmanaged_and_missing_once_it_stops(qemu, tmp_path):
    vol = qemu.scratch.volume()
    name = qemu.scratch.domain_name()
    xml_file = tmp_path / "domain.xml"
    xml_file.write_text(qemu.scratch.domain_xml(name, vol.path()))
    virsh("create", str(xml_file))
    uuid = qemu.scratch.lookup_name(name).UUIDString()
    qemu.scratch.track(uuid)

    obj = wait_for(lambda: machine_objs(qemu).get(uuid), lambda o: o is not None,
                   f"{name} to appear in the inventory")
    assert obj["managed"] is False and obj["persistent"] is False
    assert obj["state"] == "running"

    virsh("destroy", name)  # a transient domain that stops is gone from libvirt
    qemu.wait_api_state(uuid, "missing")
    assert qemu.host.domain(uuid) is None
    assert machine_objs(qemu)[uuid]["managed"] is False  # kept, marked, not forgotten
