"""Disks on the real libvirtd: a new blank disk attached to a running machine (hot-plugged)
and detached again, the machine's disk grown while stopped (the volume) and while running
(QEMU's block resize), and a size over the pool refused with nothing changed."""

import pytest
from lxml import etree

from tests.conftest import expect_error

pytestmark = pytest.mark.integration
GIB = 1 << 30


def targets(q, uuid: str, flags: int = 0) -> set[str]:  # noqa: ANN001
    root = etree.fromstring(q.host.domain(uuid).XMLDesc(flags))
    return {t.get("dev") for t in root.iterfind("devices/disk/target")}


def test_attach_detach_and_grow(qemu, scratch):
    uuid, _name, vol = qemu.define()
    post = lambda **d: qemu.api.post(f"/rest/machine/{uuid}/", data=d)  # noqa: E731
    # grown while stopped: the volume itself
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "grow_disk", "target": "vda",
                                                         "size": 2})
    vol = scratch.pool.storageVolLookupByName(vol.name())
    assert vol.info()[1] == 2 * GIB
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    # grown while running: block resize
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "grow_disk", "target": "vda", "size": 3})
    assert body["message"].endswith("(live)")
    assert qemu.host.domain(uuid).blockInfo("vda")[0] == 3 * GIB
    expect_error(post(action="grow_disk", target="vda", size=2), 400, 1000)  # only grows
    # a disk in the scratch pool: name it as the default pool is not the test's own
    pool_uuid = scratch.pool.UUIDString()
    qemu.api.ok("PUT", f"/rest/pools/{pool_uuid}/volumes/", data={"name": f"{_name}-data",
                                                                  "size": 1})
    body = qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "attach_disk", "volume": f"{_name}-data"})
    assert "vdb" in body["message"]
    assert "vdb" in targets(qemu, uuid) and "vdb" in targets(qemu, uuid, 2)  # live and config
    expect_error(post(action="detach_disk", target="vdz"), 404, 1200)
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "detach_disk",
                                                         "target": "vdb"})
    assert "vdb" not in targets(qemu, uuid, 2)
    qemu.api.ok("DELETE", f"/rest/pools/{pool_uuid}/volumes/{_name}-data/")
    qemu.action(uuid, "poweroff")
