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


def test_disk_given_as_pool_volume_is_checked_and_deleted_with_the_machine(qemu):
    """`<disk type='volume'>` names its volume by pool and name rather than by path."""
    vol = qemu.scratch.volume()
    pool = qemu.scratch.pool.name()
    name = qemu.scratch.domain_name()

    def xml(volume: str) -> str:
        return qemu.scratch.domain_xml(name, vol.path()).replace(
            f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{vol.path()}'/>",
            f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source pool='{pool}' volume='{volume}'/>")

    r = qemu.api.put("/rest/machines/", data={"xmldesc": xml("no-such-volume.qcow2"),
                                              "hvmuuid": qemu.hv})
    assert r.status_code == 400 and r.json()["errno"] == 1000, r.text
    assert "no-such-volume.qcow2" in r.json()["message"]
    assert qemu.scratch.lookup_name(name) is None

    body = qemu.api.ok("PUT", "/rest/machines/", data={"xmldesc": xml(vol.name()),
                                                       "hvmuuid": qemu.hv})
    uuid = body["machine"]
    qemu.scratch.track(uuid)
    qemu.action(uuid, "create")
    qemu.check(uuid, "running")
    body = qemu.action(uuid, "totaldelete")
    assert qemu.host.domain(uuid) is None
    assert vol.name() not in qemu.scratch.volume_names(), body


def test_bad_definitions_are_refused_and_leave_nothing(qemu):
    """libvirt's own validation on QEMU, and the checks before it: each answer says what is
    wrong, and nothing is defined, nothing stored."""
    vol = qemu.scratch.volume()
    taken_uuid, taken_name, _ = qemu.define()
    name = qemu.scratch.domain_name()
    good = qemu.scratch.domain_xml(name, vol.path())
    before = set(qemu.api.ok("GET", "/rest/machines/")["machines"])
    cases = [
        ("no such disk file", good.replace(vol.path(), vol.path() + ".missing"), 400, 1000),
        ("unknown element", good.replace("</devices>", "<bogus/></devices>"), 400, 1004),
        ("virt type QEMU does not run", good.replace("type='kvm'", "type='xen'", 1)
         .replace("type='qemu'>", "type='xen'>", 1), 400, 1004),
        ("memory is not a number", good.replace(">64</memory>", ">lots</memory>"), 400, 1004),
        ("name of another domain", good.replace(name, taken_name), 409, 1300),
        ("UUID of another domain", good.replace("</name>", f"</name><uuid>{taken_uuid}</uuid>"),
         409, 1300),
    ]
    for what, xml, status, errno in cases:
        assert xml != good, what
        r = qemu.api.put("/rest/machines/", data={"xmldesc": xml, "hvmuuid": qemu.hv})
        assert (r.status_code, r.json()["errno"]) == (status, errno), (what, r.text)
        assert r.json()["message"], what
        assert qemu.scratch.lookup_name(name) is None, what
    assert set(qemu.api.ok("GET", "/rest/machines/")["machines"]) == before
    qemu.check(taken_uuid, "shutoff")  # the domain whose name and UUID were tried is intact
    assert qemu.host.domain(taken_uuid).name() == taken_name


def test_rename_and_a_new_description_reach_libvirt(qemu):
    uuid, _name, _vol = qemu.define()
    new_name = qemu.scratch.domain_name()
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "rename",
                                                                "name": new_name})
    assert body["machine_obj"]["name"] == new_name
    assert qemu.host.domain(uuid).name() == new_name

    m = qemu.api.machine(uuid)["machine_obj"]
    xml = m["xmldesc"].replace("<memory unit='KiB'>65536</memory>",
                               "<memory unit='KiB'>98304</memory>")
    xml = xml.replace("<currentMemory unit='KiB'>65536</currentMemory>",
                      "<currentMemory unit='KiB'>98304</currentMemory>")
    assert xml.count("98304") == 2, m["xmldesc"]
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "xmldesc",
                                                                "xmldesc": xml})
    assert body["machine_obj"]["xml_pending"] is True
    assert qemu.host.domain(uuid).maxMemory() == 65536  # not on the hypervisor yet
    qemu.action(uuid, "store_xml")
    assert qemu.host.domain(uuid).maxMemory() == 98304
    qemu.action(uuid, "create")
    m = qemu.check(uuid, "running")
    assert m["machine_obj"]["xml_pending"] is False and m["info"]["max_memory_kib"] == 98304

    r = qemu.api.post(f"/rest/machine/{uuid}/", data={"action": "rename",
                                                       "name": qemu.scratch.domain_name()})
    assert r.status_code == 409 and r.json()["errno"] == 1301, r.text
    assert qemu.host.domain(uuid).name() == new_name
