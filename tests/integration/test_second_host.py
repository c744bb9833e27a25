"""A second real libvirt host (scripts/test-host.sh, tests/secondhost.py): it is a host of its
own, the server registers it over qemu+tcp and runs machines there, and `set_parent` moves a
stopped machine's definition from the main host to it (a disk the second host does not see
is copied: tests/integration/test_migration.py). Then the script itself: idempotent,
refusing bad names and clashing subnets, cleaning up after a crash.

One second host serves the whole session (the `second_host` fixture); each test removes what it
made there (`second_scratch`)."""

import contextlib
import hashlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import Qemu, Scratch, wait_for
from tests.secondhost import CLASH, ROOT, USAGE, SecondHost, host_uuid, run, start

pytestmark = [pytest.mark.integration, pytest.mark.multihost]


def diskless_xml(name: str, domain_type: str) -> str:
    """A tiny guest with no disk and no OS: QEMU starts and idles."""
    return (f"<domain type='{domain_type}'><name>{name}</name>"
            "<memory unit='MiB'>32</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os></domain>")


def register(q: Qemu, second: SecondHost, name: str) -> tuple[str, str]:
    """Register the second host and its hypervisor as an admin does (docs/hosts.md, in two
    calls); returns (host UUID, hypervisor UUID) once the hypervisor is connected."""
    node = q.api.ok("PUT", "/rest/hosts/", data={"name": name, "address": second.address})
    node_uuid = node["machine"]
    body = q.api.ok("POST", f"/rest/machine/{node_uuid}/hypervisors/",
                    data={"virt_url": second.uri, "virt_class": "qemu"})
    [hv] = [h for h in body["hypervisors"] if h["virt_url"] == second.uri]
    assert hv["machine"] == node_uuid
    wait_for(lambda: q.api.ok("GET", f"/rest/hypervisor/{hv['uuid']}/")["hypervisor"],
             lambda h: h["status"] == "connected", f"hypervisor {second.uri} to connect")
    return node_uuid, hv["uuid"]


@contextmanager
def shared_pool(conn: libvirt.virConnect, name: str, path: str) -> Iterator[None]:
    """A dir pool on `conn` over a directory another host has too (as NFS would share it);
    undefined afterwards, its volumes left to their owner."""
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0)
    try:
        pool.create(0)
        yield
    finally:
        if pool.isActive():
            pool.destroy()
        pool.undefine()


def test_the_second_host_is_a_libvirt_host_of_its_own(host, second_host, second_scratch):
    second = second_scratch.host.conn
    assert second_host.uri == f"qemu+tcp://{second_host.address}/system"
    assert second.getURI() == second_host.uri
    assert host_uuid(second) != host_uuid(host.conn)
    assert second.getHostname() != host.conn.getHostname()
    # Its own /etc/libvirt and /run/libvirt: none of the main host's domains, pools or networks.
    assert not {d.UUIDString() for d in second.listAllDomains(0)} \
        & {d.UUIDString() for d in host.conn.listAllDomains(0)}
    assert not {p.UUIDString() for p in second.listAllStoragePools(0)} \
        & {p.UUIDString() for p in host.conn.listAllStoragePools(0)}
    assert not {n.UUIDString() for n in second.listAllNetworks(0)} \
        & {n.UUIDString() for n in host.conn.listAllNetworks(0)}
    # A domain defined there is not on the main host.
    name = second_scratch.domain_name()
    dom = second.defineXML(diskless_xml(name, second_scratch.host.domain_type()))
    assert host.domain(dom.UUIDString()) is None
    assert second_scratch.host.state(dom.UUIDString()) == "shutoff"


def test_the_server_registers_the_second_host_and_runs_a_machine_there(
        qemu, second_host, second_scratch, own):
    node, hv = register(qemu, second_host, own)
    hosts = {h["uuid"]: h for h in qemu.api.ok("GET", "/rest/hosts/")["hosts"]}
    assert hosts[node]["name"] == own and hosts[node]["is_local"] is False
    on_node = qemu.api.ok("GET", f"/rest/machine/{node}/hypervisors/")["hypervisors"]
    assert [(h["uuid"], h["virt_url"]) for h in on_node] == [(hv, second_host.uri)]

    name = second_scratch.domain_name()
    body = qemu.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": diskless_xml(name, second_scratch.host.domain_type()), "hvmuuid": hv})
    uuid = body["machine"]
    second_scratch.track(uuid)
    assert (body["machine_obj"]["parent"], body["machine_obj"]["host"]) == (hv, node)
    assert second_scratch.host.state(uuid) == "shutoff"
    assert qemu.host.domain(uuid) is None  # not on the main host

    qemu.action(uuid, "create")
    assert second_scratch.host.state(uuid) == "running"
    qemu.wait_api_state(uuid, "running")
    qemu.action(uuid, "poweroff")
    assert second_scratch.host.state(uuid) == "shutoff"
    qemu.wait_api_state(uuid, "shutoff")


def test_set_parent_moves_a_stopped_machine_to_the_second_host(
        qemu, second_host, second_scratch, own):
    node, hv = register(qemu, second_host, own)
    uuid, name, vol = qemu.define()
    second_scratch.track(uuid)  # where it ends up
    assert qemu.host.state(uuid) == "shutoff"
    before = qemu.api.machine(uuid)["machine_obj"]
    assert before["parent"] == qemu.hv

    second = second_scratch.host.conn
    with shared_pool(second, f"{name}-shared", qemu.scratch.dir):
        body = qemu.api.ok("POST", f"/rest/machine/{uuid}/",
                           data={"action": "set_parent", "puuid": hv})
        assert second_host.uri in body["message"]
        assert qemu.host.domain(uuid) is None  # gone from the main host
        dom = second.lookupByUUIDString(uuid)
        assert (dom.name(), dom.isActive(), dom.isPersistent()) == (name, 0, 1)
        assert vol.path() in dom.XMLDesc(0)  # the same disk, seen by both hosts
        after = qemu.api.machine(uuid)["machine_obj"]
        assert (after["parent"], after["host"], after["state"]) == (hv, node, "shutoff")
        listed = qemu.api.ok("GET", "/rest/machines/", params={"hypervisor": hv})["machines"]
        assert uuid in listed


def test_scratch_on_the_second_host_is_not_shared_with_the_main_host(second_scratch: Scratch,
                                                                      host):
    """The second host's storage API is its own: a pool made there is not on the main host."""
    vol = second_scratch.volume()
    assert vol.name() in second_scratch.volume_names()
    with pytest.raises(libvirt.libvirtError):
        host.conn.storagePoolLookupByName(second_scratch.pool_name)


# -- scripts/test-host.sh itself --------------------------------------------------------------

def octet(name: str) -> int:
    """The X of 10.254.X.0/24 that test-host.sh derives from NAME (docs/testing.md)."""
    digest = hashlib.sha256(f"enomalism-test-host:{name}".encode()).hexdigest()
    return int(digest[:4], 16) % 254 + 1


def netns(name: str) -> Path:
    return Path("/run/netns") / f"enomalism-test-host-{name}"


def netns_pids(name: str) -> list[str]:
    return subprocess.run(["ip", "netns", "pids", netns(name).name], check=True,
                          capture_output=True, text=True).stdout.split()


def test_start_is_idempotent_and_prints_only_the_uri(second_host):
    r = run("start", second_host.name)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{second_host.uri}\n"


@pytest.mark.parametrize("name", ["", "Upper", "a/b", "x" * 33, "-lead", "a b"])
def test_a_bad_name_is_refused(name):
    r = run("start", name)
    assert (r.returncode, r.stdout) == (USAGE, "")
    assert "NAME must be" in r.stderr


def test_a_subnet_clash_is_refused_and_changes_nothing(second_host):
    """A NAME whose subnet is the running host's: the route to it clashes."""
    taken = int(second_host.address.split(".")[2])
    name = next(n for n in (f"clash-{i}" for i in range(100_000)) if octet(n) == taken)
    r = run("start", name)
    assert (r.returncode, r.stdout) == (CLASH, "")
    assert f"10.254.{taken}.0/24" in r.stderr and "choose another NAME" in r.stderr
    assert not netns(name).exists()
    assert not (ROOT / name).exists()
    with contextlib.closing(second_host.connect()) as conn:  # the running host is untouched
        assert conn.getURI() == second_host.uri


def test_stop_after_a_crash_removes_everything(second_host):
    """libvirtd killed with its guests' virtlogd left behind: the next start brings the host
    back, and stop leaves no namespace, veth, mount or directory."""
    host = start(f"{second_host.name}-crash")
    try:
        daemon = next(p for p in netns_pids(host.name)
                      if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"libvirtd"))
        os.kill(int(daemon), signal.SIGKILL)
        wait_for(lambda: netns_pids(host.name), lambda pids: daemon not in pids,
                 "libvirtd to die")
        assert netns(host.name).exists()  # a stale namespace, virtlogd still in it
        assert start(host.name) == host  # cleaned and started again
        with contextlib.closing(host.connect()) as conn:
            assert conn.getHostname() == f"th-{host.name}"
        assert str(ROOT) not in Path("/proc/self/mountinfo").read_text()  # private mounts
    finally:
        r = run("stop", host.name)
    assert r.returncode == 0, r.stderr
    assert not netns(host.name).exists()
    assert host.peer_address not in subprocess.run(["ip", "-4", "addr"], check=True,
                                                   capture_output=True, text=True).stdout
    assert not (ROOT / host.name).exists()
    assert run("stop", host.name).returncode == 0  # and again: nothing to do
