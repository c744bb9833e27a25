"""One transaction queue, one lock table for several nodes: each job runs once, on one node; a
machine locked by a job of one node is locked on every node; the jobs of a node that dies are
failed, undone and released by another after the job timeout, and a retry runs there.

Retrievals fetch packages from a feed server of the test's own, which counts the GETs of each
package and can hold a download (a gate) until the test lets it go."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import NEEDS_POSTGRES
from tests.multinode.conftest import (
    TEST_URI,
    Cluster,
    Node,
    enclosure,
    gets,
    random_package,
    serve_packages,
    wait_for,
)

pytestmark = NEEDS_POSTGRES

THREADS = 2  # job threads per node


def add_feed(node: Node, url: str) -> dict[str, str]:
    """Add the feed as a repository; its packages' UUIDs by name."""
    return {p["name"]: p["uuid"]
            for p in node.ok("PUT", "/rest/vmfeed/", data={"url": url})["packages"]}


def running_by_node(nodes: Cluster) -> dict[str, int]:
    return {r.claimed_by: r.n for r in nodes.rows(
        "SELECT claimed_by, count(*) AS n FROM transactions WHERE state = 'running' "
        "GROUP BY claimed_by")}


def test_each_job_runs_once_on_one_of_the_nodes(nodes: Cluster, feed, tmp_path):
    names = [f"pkg{i}" for i in range(8)]
    pkgs = [random_package(tmp_path, n) for n in names]
    url = serve_packages(feed, pkgs)
    for p in pkgs:  # each download stops after a few KiB until the test lets it go
        feed.gates[enclosure(p.name)] = threading.Event()
    a = nodes.node("node-a", job_threads=THREADS)
    b = nodes.node("node-b", job_threads=THREADS)
    nodes.start_together(a, b)
    uuids = add_feed(a, url)

    # every package asked for through both nodes at once: each node may queue a retrieval of
    # its own (or answer with the one under way); the runners of both compete for them all
    def ask(args: tuple[Node, str]) -> str:
        node, name = args
        return node.ok("GET", f"/rest/vmfeed/repo/package/{uuids[name]}/")["tx"]
    with ThreadPoolExecutor(8) as pool:
        txids = set(pool.map(ask, [(n, name) for name in names for n in (a, b)]))
    assert len(txids) >= len(names)

    # Both nodes' threads are all busy (held at the gates), so each node claimed some: a
    # node's runner takes at most THREADS at once.
    wait_for(lambda: running_by_node(nodes), lambda r: r == {"node-a": THREADS,
                                                             "node-b": THREADS},
             "both nodes to run jobs at once")
    for gate in feed.gates.values():
        gate.set()
    for i, txid in enumerate(sorted(txids)):
        body = (a, b)[i % 2].wait_tx(txid)
        assert body["data"]["state"] == "done", body
        assert body["data"]["attempts"] == 1, body  # claimed once, never run again

    # each package downloaded exactly once, whichever node's job got it
    assert {p.name: gets(feed, enclosure(p.name)) for p in pkgs} == {n: 1 for n in names}
    assert nodes.package_files() == sorted(f"{uuids[n]}.xvm2" for n in names)
    for n in (a, b):
        cached = {p["name"] for p in n.ok("GET", "/rest/vmfeed/",
                                          params={"state": "cached"})["packages"]}
        assert cached == set(names), n.name
    # each transaction was run by one node, and both nodes ran some
    claims = {r.uuid: r.claimed_by for r in nodes.rows(
        "SELECT uuid, claimed_by FROM transactions")}
    assert set(claims) == txids
    assert set(claims.values()) == {"node-a", "node-b"}
    assert nodes.rows("SELECT * FROM named_locks") == []


def test_a_machine_locked_by_a_job_on_one_node_is_locked_on_the_other(nodes: Cluster, feed,
                                                                       tmp_path):
    pkg = random_package(tmp_path, "held", virt_class="test")
    url = serve_packages(feed, [pkg])
    gate = feed.gates[enclosure("held")] = threading.Event()
    a = nodes.node("node-a", job_threads=THREADS)
    b = nodes.node("node-b", job_threads=0)  # runs no jobs: the job is node A's
    nodes.start_together(a, b)
    uuids = add_feed(a, url)
    host = a.local_host()
    hv = a.hypervisor(TEST_URI)["uuid"]

    # a provision through A: its new machine is locked by the transaction, which stays
    # running on A while its package download is held
    body = a.ok("POST", f"/rest/machine/{host}/actions/provision/",
                data={"pkguuid": uuids["held"], "hvmuuid": hv, "name": "enomalism-test-held"})
    new, txid = body["newuuid"], body["txid"]
    a.wait_tx(txid, until=lambda t: t["data"]["state"] == "running")
    assert nodes.claimed_by(txid) == "node-a"

    # B refuses a changing action with 423 and the holder's id, and offers only unlock
    assert b.machine(new)["machine_obj"]["locked_by"] == txid
    for action in ("create", "totaldelete"):
        r = b.request("POST", f"/rest/machine/{new}/actions/{action}/")
        assert r.status_code == 423, r.text
        assert (r.json()["errno"], r.json()["txid"]) == (1400, txid), r.text
    assert b.ok("GET", f"/rest/machine/{new}/actions/")["result"] == ["unlock"]

    # unlock on B clears it for both
    b.ok("POST", f"/rest/machine/{new}/actions/unlock/")
    assert a.machine(new)["machine_obj"]["locked_by"] is None
    assert nodes.scalar("SELECT lock_txid FROM machines WHERE uuid = :u", u=new) is None

    # cancelled through B, the job on A stops and removes its machine record
    b.ok("DELETE", f"/rest/transaction/{txid}/")
    gate.set()
    done = b.wait_tx(txid)
    assert done["data"]["state"] == "cancelled", done
    assert b.request("GET", f"/rest/machine/{new}/").status_code == 404
    # the download may have finished before the cancel was seen (it waits on the network,
    # not on the cancel): then the package stays cached, whole; never a partial file
    state = b.ok("GET", f"/rest/vmfeed/{uuids['held']}/")["package"]["state"]
    assert nodes.package_files() == ([] if state == "remote" else
                                     [f"{uuids['held']}.xvm2"]), state


TIMEOUT = 3  # seconds without a heartbeat after which a job is another node's to undo


def held_retrieval(nodes: Cluster, feed, tmp_path, name: str):  # noqa: ANN001, ANN201
    """Two nodes with a short job timeout, and a retrieval held at the feed server's gate
    after its first KiB. Returns (the node running it, the other, package UUID, txid, gate)."""
    pkg = random_package(tmp_path, name, kib=1024)
    url = serve_packages(feed, [pkg])
    gate = feed.gates[enclosure(name)] = threading.Event()
    a = nodes.node("node-a", job_threads=THREADS, job_timeout=TIMEOUT)
    b = nodes.node("node-b", job_threads=THREADS, job_timeout=TIMEOUT)
    nodes.start_together(a, b)
    uuid = add_feed(a, url)[name]
    txid = a.ok("GET", f"/rest/vmfeed/repo/package/{uuid}/")["tx"]
    a.wait_tx(txid, until=lambda t: t["data"]["state"] == "running")
    wait_for(nodes.package_files, lambda f: f == [f"{uuid}.xvm2.part"], "a partial download")
    assert nodes.scalar("SELECT holder FROM named_locks") == txid
    runs, other = (a, b) if nodes.claimed_by(txid) == a.node_id else (b, a)
    return runs, other, uuid, txid, gate


def test_the_jobs_of_a_node_that_dies_are_taken_over(nodes: Cluster, feed, tmp_path):
    runs, other, uuid, txid, gate = held_retrieval(nodes, feed, tmp_path, "slow")

    # Held at the gate the job makes no progress, yet its node's heartbeat thread keeps it
    # alive: the other node, looking every TIMEOUT/8, leaves it alone.
    time.sleep(2 * TIMEOUT)
    assert nodes.claimed_by(txid) == runs.node_id
    assert other.tx(txid)["data"]["state"] == "running"

    runs.kill()
    failed = other.wait_tx(txid)
    assert failed["data"]["state"] == "failed", failed
    assert "stopped answering" in failed["data"]["error"], failed
    assert nodes.claimed_by(txid) == other.node_id
    assert nodes.package_files() == []  # the .part is removed
    assert nodes.rows("SELECT * FROM named_locks") == []  # the lock let go
    assert other.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "remote"

    # retried, it runs to completion on the node left
    gate.set()
    other.ok("POST", f"/rest/transaction/{txid}/", data={"action": "retry"})
    done = other.wait_tx(txid)
    assert done["data"]["state"] == "done", done
    assert done["data"]["attempts"] == 2
    assert nodes.claimed_by(txid) == other.node_id
    assert other.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"
    assert nodes.package_files() == [f"{uuid}.xvm2"]
    assert gets(feed, enclosure("slow")) == 2  # the dead node's, cut off, and the retry's


def test_a_node_that_comes_back_leaves_alone_the_job_it_lost(nodes: Cluster, feed, tmp_path):
    """A node frozen (SIGSTOP: a VM paused, a long stall) past the job timeout has its job
    failed and undone by another, which then retries it to completion. When the frozen node
    runs again, its job finds it was taken over and must stop without touching anything: not
    the package the other node fetched since, nor its state. (It used to delete the package
    and set it back to remote.)"""
    runs, other, uuid, txid, gate = held_retrieval(nodes, feed, tmp_path, "frozen")
    os.killpg(runs.proc.pid, signal.SIGSTOP)
    try:
        failed = other.wait_tx(txid)
        assert "stopped answering" in failed["data"]["error"], failed
        gate.set()  # (the frozen node's download stays frozen with it)
        other.ok("POST", f"/rest/transaction/{txid}/", data={"action": "retry"})
        done = other.wait_tx(txid)
        assert done["data"]["state"] == "done", done
    finally:
        os.killpg(runs.proc.pid, signal.SIGCONT)
    wait_for(lambda: "was taken over by another node" in runs.tail(), bool,
             f"{runs.name}'s job to find it was taken over")

    after = other.tx(txid)["data"]
    assert (after["state"], after["attempts"], after["error"]) == ("done", 2, None), after
    assert nodes.claimed_by(txid) == other.node_id
    assert other.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"
    assert nodes.package_files() == [f"{uuid}.xvm2"]
    assert nodes.rows("SELECT * FROM named_locks") == []
