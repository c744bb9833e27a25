"""A package that travels (issue 16, item 7), end to end on the real libvirtd: a machine
defined from hand-written XML, as people write it (a serial console logging to a file of this
host, an interface on a libvirt network of this host), running, is exported to a package and
the package is provisioned twice on the same host onto another network. Both new machines
start, while the original still runs and holds its log file: the package carried neither the
log file (the second machine failed with "Cannot open log file ... busy") nor the source's
network name (its interfaces are on the network provisioning chose, the target's)."""

import os
from collections.abc import Iterator
from xml.etree import ElementTree

import pytest

from enomalism.feeds import archive
from tests.integration.provision_helpers import wait_tx
from tests.integration.test_provision_network import VNet, libvirt_network

pytestmark = pytest.mark.integration


@pytest.fixture
def nets(host) -> Iterator[tuple[VNet, VNet]]:
    """The source machine's network, and the one its copies are provisioned onto."""
    with libvirt_network(host) as source, libvirt_network(host) as target:
        yield source, target


def done(qemu, txid: str) -> dict:
    body = wait_tx(qemu.api, txid, deadline=300)
    assert body["data"]["state"] == "done", body
    return body["data"]["result"]


def handwritten(qemu, name: str, disk: str, net: str, log: str) -> str:
    """An OS-less guest's XML as an administrator writes it: a serial console on a pty that
    logs to a file, a console on it, an interface on a libvirt network."""
    return (f"<domain type='{qemu.host.domain_type()}'><name>{name}</name>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><features><acpi/></features><devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            f"<interface type='network'><source network='{net}'/><model type='virtio'/>"
            "</interface>"
            f"<serial type='pty'><log file='{log}' append='on'/><target port='0'/></serial>"
            "<console type='pty'><target type='serial' port='0'/></console>"
            "</devices></domain>")


def test_an_exported_package_provisions_twice_on_the_targets_network(qemu, nets, tmp_path):
    source_net, target_net = nets
    pool = qemu.scratch.pool.name()
    name = qemu.scratch.domain_name()
    log = f"/var/log/libvirt/qemu/{name}-serial0.log"
    try:
        original = qemu.api.ok("PUT", "/rest/machines/", data={
            "xmldesc": handwritten(qemu, name, qemu.scratch.volume().path(), source_net.name,
                                   log),
            "hvmuuid": qemu.hv})["machine"]
        qemu.scratch.track(original)
        qemu.action(original, "create")
        qemu.wait_api_state(original, "running")
        assert os.path.exists(log)  # virtlogd holds it while the original runs

        body = qemu.api.ok("POST", f"/rest/machine/{original}/actions/package/",
                           data={"name": f"{name}-pkg"})
        pkg = done(qemu, body["txid"])["package"]
        data_dir = qemu.api.app.state.settings.data_dir
        _manifest, xml = archive.read_package(data_dir / "packages" / f"{pkg}.xvm2")
        assert log not in xml and source_net.name not in xml, xml

        copies = []
        for _ in range(2):
            new_name = qemu.scratch.domain_name()
            body = qemu.api.ok(
                "POST", f"/rest/machine/{qemu.api.local_host()}/actions/provision/",
                data={"pkguuid": pkg, "hvmuuid": qemu.hv, "name": new_name, "pool": pool,
                      "libvirt_network": target_net.name})
            qemu.scratch.track(body["newuuid"])
            done(qemu, body["txid"])
            copies.append(body["newuuid"])
        for uuid in copies:
            qemu.action(uuid, "create")  # the second failed here: the log file was busy
            qemu.wait_api_state(uuid, "running")
            root = ElementTree.fromstring(qemu.host.domain(uuid).XMLDesc(0))
            ifaces = root.findall("devices/interface")
            assert [(i.get("type"), i.find("source").get("network")) for i in ifaces] == \
                [("network", target_net.name)]
            assert root.find("devices/serial").get("type") == "pty"
            assert root.find("devices/serial/log") is None
        assert qemu.host.state(original) == "running"  # resumed after the export
    finally:
        if os.path.exists(log):
            os.unlink(log)
