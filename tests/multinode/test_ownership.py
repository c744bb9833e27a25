"""One view of machine state: two nodes on the real libvirtd (qemu:///system, the same domains
for both, as nodes on one machine), of which exactly one owns the hypervisor's event
subscription and writes what libvirt says. When the owner dies, the other takes over after the
lease; when it stops gracefully, at once."""

import signal

import pytest

from tests.conftest import NEEDS_POSTGRES
from tests.multinode.conftest import QEMU_URI, Cluster, Node, wait_for

pytestmark = [NEEDS_POSTGRES, pytest.mark.integration]


def state(node: Node, uuid: str) -> str:
    return node.machine(uuid)["machine_obj"]["state"]


def wait_state(nodes: list[Node], uuid: str, want: str) -> None:
    for n in nodes:
        wait_for(lambda n=n: state(n, uuid), lambda s: s == want,
                 f"machine {uuid} to be {want} through {n.name}")


def start_pair(nodes: Cluster, **env: object) -> tuple[Node, Node, str]:
    """Two nodes on qemu:///system started together; the hypervisor connected and owned by
    one of them. Returns (owner, other, hypervisor UUID)."""
    a = nodes.node("node-a", hypervisors=(QEMU_URI,), **env)
    b = nodes.node("node-b", hypervisors=(QEMU_URI,), **env)
    nodes.start_together(a, b)
    hv = wait_for(lambda: a.hypervisor(QEMU_URI), lambda h: h["status"] == "connected",
                  "qemu:///system to be connected")["uuid"]
    owner = nodes.wait_owner(QEMU_URI, lambda o: o is not None, "an owner of qemu:///system")
    assert owner in ("node-a", "node-b")
    return (a, b, hv) if owner == "node-a" else (b, a, hv)


def test_both_nodes_see_one_state_and_the_survivor_takes_over_after_the_lease(
        qemu_nodes: Cluster, scratch):
    nodes = qemu_nodes
    owner, other, hv = start_pair(nodes, owner_lease=3, owner_renew=0.5)

    # defined through one node, started through the other
    vol = scratch.volume()
    name = scratch.domain_name()
    body = owner.ok("PUT", "/rest/machines/", data={
        "xmldesc": scratch.domain_xml(name, vol.path()), "hvmuuid": hv})
    uuid = body["machine"]
    scratch.track(uuid)
    other.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    wait_state([owner, other], uuid, "running")
    assert scratch.host.state(uuid) == "running"

    # destroyed out of band: the owner's event subscription writes it, both nodes answer it
    scratch.host.domain(uuid).destroy()
    wait_state([owner, other], uuid, "shutoff")
    assert nodes.owner(QEMU_URI) == owner.node_id  # still one owner, the same

    # the owner dies; a change made after its death shows through the survivor once it
    # has taken the hypervisor over (after the lease)
    owner.kill()
    scratch.host.domain(uuid).create()
    nodes.wait_owner(QEMU_URI, lambda o: o == other.node_id,
                     f"{other.name} to take over qemu:///system")
    wait_state([other], uuid, "running")
    # and the survivor keeps it: a later change shows too
    scratch.host.domain(uuid).destroy()
    wait_state([other], uuid, "shutoff")
    assert nodes.owner(QEMU_URI) == other.node_id


def test_a_graceful_stop_hands_the_hypervisor_over_without_waiting_for_the_lease(
        qemu_nodes: Cluster, scratch):
    nodes = qemu_nodes
    # A lease far longer than any deadline here: a take-over that waited for it would time out
    # (the test's deadlines are 60 s), so the hand-over can only come from the stop itself.
    owner, other, _hv = start_pair(nodes, owner_lease=600, owner_renew=0.5)
    # uvicorn shuts the app down, then exits by the signal it caught (-15), or with 0
    assert owner.terminate() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in owner.tail()
    assert nodes.scalar("SELECT stopped_at FROM nodes WHERE id = :i", i=owner.node_id)
    nodes.wait_owner(QEMU_URI, lambda o: o == other.node_id,
                     f"{other.name} to take over qemu:///system")

    # the survivor writes what libvirt says now: a domain defined out of band appears
    vol = scratch.volume()
    name = scratch.domain_name()
    dom = scratch.host.conn.defineXML(scratch.domain_xml(name, vol.path()))
    uuid = dom.UUIDString()
    scratch.track(uuid)
    wait_for(lambda: other.request("GET", f"/rest/machine/{uuid}/").status_code,
             lambda code: code == 200, f"{name} to appear through {other.name}")
    assert state(other, uuid) == "shutoff"
