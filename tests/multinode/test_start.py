"""Two nodes started at the same moment on an empty PostgreSQL database: the migrations run once
(under an advisory lock), and the first-start set-up (the admin user, the local host and its
hypervisor) is made once, shared by both. (Before the set-up was done under an advisory lock,
the second node often failed to start: both saw no user and both inserted `admin`.)"""

import signal
import uuid

import sqlalchemy as sa

from tests.conftest import NEEDS_POSTGRES
from tests.multinode.conftest import TEST_URI, Cluster, wait_for

pytestmark = NEEDS_POSTGRES


def test_nodes_starting_together_share_one_schema_admin_and_host(nodes: Cluster):
    started = [nodes.node("node-a"), nodes.node("node-b")]
    nodes.start_together(*started)

    # one schema: Alembic's version table holds one row, at head, written once
    assert nodes.scalar("SELECT count(*) FROM alembic_version") == 1
    # one admin, and the password every node was given works on each
    users = nodes.rows("SELECT username, is_admin FROM users")
    assert users == [("admin", True)]
    # one local host, one hypervisor row for test:///default, tied to this machine
    hosts = nodes.rows("SELECT uuid, local_to FROM machines WHERE kind = 'host'")
    assert len(hosts) == 1, hosts
    hvs = nodes.rows("SELECT uuid, machine_uuid, local_to FROM hypervisors")
    assert len(hvs) == 1, hvs
    assert hvs[0].machine_uuid == hosts[0].uuid and hvs[0].local_to == hosts[0].local_to

    # every node answers the same: the one host, local, with its one hypervisor
    for n in started:
        listed = n.ok("GET", "/rest/hosts/")["hosts"]
        assert [(h["uuid"], h["is_local"]) for h in listed] == [(hosts[0].uuid, True)], n.name
        hv = n.hypervisor(TEST_URI)
        assert hv["uuid"] == hvs[0].uuid
        assert [u[0] for u in n.ok("GET", "/rest/users/")["users"]] == ["admin"]

    # each node beats in the nodes table; the hypervisor is owned by exactly one of them
    ids = {n.node_id for n in started}
    wait_for(lambda: {r.id for r in nodes.rows("SELECT id FROM nodes WHERE stopped_at IS NULL")},
             lambda seen: seen == ids, "every node to be in the nodes table")
    owner = nodes.wait_owner(TEST_URI, lambda o: o is not None, "an owner of test:///default")
    assert owner in ids
    wait_for(lambda: started[0].hypervisor(TEST_URI)["status"], lambda s: s == "connected",
             "the hypervisor to be connected")


def test_nodes_restarting_together_undo_each_stale_job_once(nodes: Cluster):
    """Every node stopped (a power cut) with jobs left `running` under a node that is gone:
    nodes starting together both see them as stale at start. Each is undone and failed once,
    by one node, and both nodes come up. (The second used to fail to start: 'a failed
    transaction cannot become failed'.)"""
    first = nodes.node("node-0").start()  # the schema
    assert first.terminate() in (0, -signal.SIGTERM)
    stale = [str(uuid.uuid4()) for _ in range(20)]
    with nodes.engine.begin() as c:
        for txid in stale:
            c.execute(sa.text(
                "INSERT INTO transactions (uuid, kind, state, completion, params, result, log, "
                "undo, locks, cancel_requested, attempts, claimed_by, heartbeat_at, created_at, "
                "updated_at) VALUES (:u, 'retrieve', 'running', 0, '{}', '{}', '[]', '[]', "
                "'[]', false, 1, 'gone', now() - interval '1 hour', now(), now())"), {"u": txid})
    a, b = nodes.node("node-a"), nodes.node("node-b")
    nodes.start_together(a, b)  # both come up

    rows = nodes.rows("SELECT uuid, state, claimed_by, error, log FROM transactions")
    assert {r.uuid for r in rows} == set(stale)
    for r in rows:
        assert (r.state, r.error) == ("failed", "interrupted: the server stopped while it ran")
        assert r.claimed_by in ("node-a", "node-b"), r
        assert [e[2] for e in r.log] == [r.error], r  # recorded once
