"""`action=set` on the real libvirtd: a stopped machine takes a new size (QEMU starts with
it); a running one is hot-plugged a vCPU up to its maximum, has its balloon target lowered,
and is refused growth past its maximums without a change."""

import pytest
from lxml import etree

from tests.conftest import expect_error

pytestmark = pytest.mark.integration


def define(q, scratch, *, vcpus: str) -> str:  # noqa: ANN001
    vol = scratch.volume()
    name = scratch.domain_name()
    xml = scratch.domain_xml(name, vol.path()).replace("<vcpu>1</vcpu>", vcpus)
    uuid = q.api.ok("PUT", "/rest/machines/", data={"xmldesc": xml, "hvmuuid": q.hv})["machine"]
    scratch.track(uuid)
    return uuid


def test_resize_offline_then_online(qemu, scratch):
    uuid = define(qemu, scratch, vcpus="<vcpu>1</vcpu>")
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "1",
                                                         "memory": "96"})
    # a new maximum of 2 vCPUs with 1 of them online, as an administrator's XML gives
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "2"})
    dom = qemu.host.domain(uuid)
    root = etree.fromstring(dom.XMLDesc(0))
    assert root.findtext("vcpu") == "2" and root.findtext("memory") == str(96 * 1024)
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    assert dom.info()[3] == 2 and dom.maxMemory() == 96 * 1024
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set",
                                                                "memory": "64"})
    assert body["message"].endswith("(live)")
    inactive = etree.fromstring(dom.XMLDesc(2))  # VIR_DOMAIN_XML_INACTIVE
    assert inactive.findtext("currentMemory") == str(64 * 1024)
    before = dom.XMLDesc(2)
    expect_error(qemu.api.post(f"/rest/machine/{uuid}/", data={"action": "set",
                                                                  "vcpus": "3"}), 409, 1311)
    expect_error(qemu.api.post(f"/rest/machine/{uuid}/", data={"action": "set",
                                                                  "memory": "512"}), 409, 1311)
    assert dom.XMLDesc(2) == before
    qemu.action(uuid, "poweroff")


def test_a_vcpu_hot_plugged_into_a_running_machine(qemu, scratch):
    uuid = define(qemu, scratch, vcpus="<vcpu current='1'>2</vcpu>")
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "2"})
    assert body["info"]["vcpus"] == 2
    assert qemu.host.domain(uuid).info()[3] == 2
    qemu.action(uuid, "poweroff")
