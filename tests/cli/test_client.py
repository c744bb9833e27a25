"""The Python client (`enomalism.client`) against a running server: typed results, the error
classes, bearer tokens, waiting for a transaction with progress and a time limit."""

import pytest

from enomalism.client import (
    AccessList,
    Client,
    ClientError,
    Cluster,
    ConflictError,
    DeniedError,
    Hypervisor,
    LockedError,
    Machine,
    MachineDetails,
    NotFoundError,
    Transaction,
    UnreachableError,
    User,
    WaitTimeout,
)
from tests.cli.conftest import ALICE, ALICE_PASSWORD, dead_url
from tests.conftest import ADMIN_PASSWORD

NO_SUCH = "6f1b2c3d-0000-4000-8000-000000000000"


@pytest.fixture
def admin(cloud):
    with Client(cloud.url, "admin", ADMIN_PASSWORD) as c:
        yield c


def test_typed_results(cloud, admin):
    machines = admin.machines.list(kind="vm")
    assert machines and all(isinstance(m, Machine) for m in machines)
    web = next(m for m in machines if m.name == "web")
    assert web.uuid == cloud.names["web"] and web.managed and web.created_at.year >= 2024
    d = admin.machines.get(web.uuid)
    assert isinstance(d, MachineDetails) and d.machine.uuid == web.uuid
    assert d.info.vcpus == 1 and isinstance(d.hypervisors[0], Hypervisor)
    assert d.to_dict()["machine"]["uuid"] == web.uuid  # and back, JSON-ready
    assert isinstance(d.to_dict()["machine"]["created_at"], str)
    assert "create" not in admin.machines.actions(web.uuid)
    assert {h.uuid for h in admin.hypervisors.list()} >= {cloud.h1, cloud.h2}
    assert admin.hypervisors.get(cloud.h1).virt_url == cloud.h1_uri
    assert any(h.is_local for h in admin.hosts.list())
    assert isinstance(admin.users.get(admin.users.list()[0].uuid), User)
    assert admin.health()


def test_clusters_and_permissions_round_trip(cloud, admin, own):
    c = admin.clusters.create(own("c"))
    assert isinstance(c, Cluster) and c.machines == []
    assert [x.uuid for x in admin.machines.add_to_clusters(cloud.names["web"], [c.uuid])] == [
        c.uuid]
    assert admin.clusters.get(c.uuid).machines == [cloud.names["web"]]
    acl = admin.permissions.grant(c.uuid, "read", user=ALICE)
    assert isinstance(acl, AccessList) and acl.permissions[0].principal_name == ALICE
    assert admin.permissions.revoke(c.uuid, "read", user=ALICE).permissions == []
    admin.machines.remove_from_clusters(cloud.names["web"], [c.uuid])
    assert admin.clusters.rename(c.uuid, c.name + "-x").name == c.name + "-x"
    admin.clusters.delete(c.uuid)


def test_error_classes(cloud, admin, own):
    with pytest.raises(NotFoundError) as e:
        admin.machines.get(NO_SUCH)
    assert (e.value.status, e.value.errno, e.value.exit_code) == (404, 1200, 3)
    assert e.value.message
    name = own("c")
    admin.clusters.create(name)
    with pytest.raises(ConflictError) as e:
        admin.clusters.create(name)
    assert (e.value.status, e.value.errno, e.value.exit_code) == (409, 1300, 5)
    with pytest.raises(ClientError) as e:
        admin.call("POST", f"/rest/machine/{cloud.names['web']}/", action="fly")
    assert type(e.value) is ClientError and e.value.errno == 1003 and e.value.exit_code == 1
    with Client(cloud.url, ALICE, ALICE_PASSWORD) as alice, pytest.raises(DeniedError) as e:
        alice.users.create(own("u"), "a-good-password-1")
    assert (e.value.status, e.value.errno, e.value.exit_code) == (403, 1101, 4)
    with Client(cloud.url, "admin", "wrong-password") as c, pytest.raises(DeniedError) as e:
        c.machines.ids()
    assert e.value.status == 401 and e.value.errno == 1100
    with Client(dead_url()) as c, pytest.raises(UnreachableError) as e:
        c.machines.ids()
    assert (e.value.status, e.value.errno, e.value.exit_code) == (0, 0, 6)
    with pytest.raises(ClientError):
        Client("ftp://example.org")


def test_bearer_tokens(cloud, admin, own):
    new = admin.tokens.create(own("t"), expires_in_days=1)
    assert new.secret.startswith("enm_") and new.token.expires_at is not None
    with Client(cloud.url, token=new.secret) as c:
        assert {t.uuid for t in c.tokens.list()} >= {new.token.uuid}
        c.tokens.revoke(new.token.uuid)
        with pytest.raises(DeniedError):
            c.machines.ids()


def test_wait_with_progress_and_the_locked_error(cloud, feed, admin, own):
    srv = feed["srv"]
    srv.rate = 1 << 20
    try:
        q = admin.machines.provision(cloud.host, package=feed["ids"]["slow"],
                                     hypervisor=cloud.h1, name=own("held"))
        with pytest.raises(LockedError) as e:
            admin.machines.start(q.machine)
        assert e.value.status == 423 and e.value.txid == q.txid and e.value.exit_code == 5
        seen: list[Transaction] = []
        with pytest.raises(WaitTimeout) as t:
            admin.wait(q.txid, progress=seen.append, timeout=0.5)
        assert seen and t.value.transaction.state in ("queued", "running")
        tx, message = admin.transactions.cancel(q.txid)
        assert message and tx.uuid == q.txid
        final = admin.wait(q.txid, progress=seen.append, timeout=60)
        assert final.state == "cancelled" and final.finished and seen[-1] is final
        with pytest.raises(NotFoundError):
            admin.machines.get(q.machine)
    finally:
        srv.rate = None


def test_provision_placed_by_the_server(cloud, feed, admin, own):
    q = admin.machines.provision(package=feed["ids"]["tiny"], name=own("placed"))
    assert q.hypervisor in (cloud.h1, cloud.h2)
    assert admin.wait(q.txid, timeout=60).state == "done"
    assert admin.machines.get(q.machine).machine.parent == q.hypervisor
    q = admin.machines.provision(package=feed["ids"]["tiny"], name=own("there"),
                                 hypervisor=cloud.h2)  # the host is the hypervisor's
    assert q.hypervisor == cloud.h2 and admin.wait(q.txid, timeout=60).state == "done"
    with pytest.raises(ValueError):
        admin.machines.provision(package=feed["ids"]["tiny"], name=own("x"),
                                 hypervisor=cloud.h1, cluster=cloud.h2)
    empty = admin.clusters.create(own("empty"))
    try:
        with pytest.raises(ConflictError) as e:
            admin.machines.provision(package=feed["ids"]["tiny"], name=own("x"),
                                     cluster=empty.uuid)
        assert e.value.errno == 1302 and e.value.status == 409
    finally:
        admin.clusters.delete(empty.uuid)


def test_wait_until_done(cloud, feed, admin, own):
    q = admin.machines.provision(cloud.host, package=feed["ids"]["tiny"], hypervisor=cloud.h2,
                                 name=own("new"))
    completions = []
    tx = admin.wait(q.txid, progress=lambda t: completions.append(t.completion), timeout=60)
    assert tx.state == "done" and completions[-1] == 100
    assert completions == sorted(completions)
    assert admin.machines.get(q.machine).machine.parent == cloud.h2


def test_a_console_read_times_out_while_only_pings_arrive() -> None:
    """The server pings an idle console every few seconds; a read with a timeout still ends
    when no byte came in that time (it once restarted its timer at every ping and waited
    forever on a console that stopped answering). A real WebSocket server, pinging only."""
    import threading

    from websockets.sync.client import connect
    from websockets.sync.server import serve

    from enomalism.client.console import Console

    def pings_only(ws) -> None:  # noqa: ANN001
        try:
            while True:
                ws.send('{"type":"ping"}')
                threading.Event().wait(0.05)
        except Exception:  # the client went away
            return

    with serve(pings_only, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        con = Console(connect(f"ws://127.0.0.1:{port}"))
        outcome: list[str] = []

        def read() -> None:
            try:
                con.recv(timeout=0.5)
                outcome.append("bytes")
            except TimeoutError:
                outcome.append("timed out")
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(30)
        con.close()
        server.shutdown()
    assert outcome == ["timed out"]
