"""The server as a node: its row, heartbeat and ownership of its hypervisors, seen through
/rest/nodes/ and the hypervisor objects. Several nodes at once: tests/multinode."""

from sqlalchemy import delete, select, update

from enomalism.store.models import Hypervisor, Node, Transaction, utcnow
from tests.api.accounts import new_user
from tests.conftest import expect_error


def test_the_server_is_a_live_node_owning_its_hypervisors(api):
    body = api.ok("GET", "/rest/nodes/")
    me = body["node"]
    nodes = {n["id"]: n for n in body["nodes"]}
    assert nodes[me]["alive"] is True
    hv_uuids = [hv["uuid"] for hv in api.hypervisors()]
    assert sorted(nodes[me]["hypervisors"]) == sorted(hv_uuids)
    assert all(hv["owner_node"] == me for hv in api.hypervisors())


def test_local_uris_are_tied_to_this_machine(api):
    from enomalism.runtime.nodes import this_machine

    assert {hv["local_to"] for hv in api.hypervisors()} == {this_machine()}


def test_only_administrators_list_nodes(api):
    carol = new_user(api)
    expect_error(api.get("/rest/nodes/", auth=carol.auth), 403, 1101)


def test_a_node_silent_past_its_lease_is_not_alive_and_its_hypervisors_are_taken(api):
    db = api.app.state.db
    registry = api.registry
    hv = api.hypervisors()[0]["uuid"]
    with db.session() as s:  # a node that died holding the hypervisor a minute ago
        s.add(Node(id="dead-node", hostname="elsewhere", seen_at=utcnow().replace(year=2020)))
        s.execute(update(Hypervisor).where(Hypervisor.uuid == hv).values(
            owner_node="dead-node", owner_until=utcnow().replace(year=2020)))
    registry.ownership.owned.discard(hv)
    nodes = {n["id"]: n for n in api.ok("GET", "/rest/nodes/")["nodes"]}
    assert nodes["dead-node"]["alive"] is False
    assert nodes["dead-node"]["hypervisors"] == [hv]
    gained, _ = registry.ownership.renew([hv])
    assert gained == {hv}
    with db.session(write=False) as s:
        assert s.scalar(select(Hypervisor.owner_node).where(Hypervisor.uuid == hv)) \
            == registry.ownership.node_id


def test_a_live_claim_of_another_node_is_respected(api):
    db = api.app.state.db
    ownership = api.registry.ownership
    hv = api.hypervisors()[0]["uuid"]
    with db.session() as s:
        s.execute(update(Hypervisor).where(Hypervisor.uuid == hv).values(
            owner_node="other-node", owner_until=utcnow().replace(year=2100)))
    assert ownership.claim(hv) is False
    assert not ownership.owns(hv)
    gained, _ = ownership.renew([hv])
    assert gained == set() and not ownership.owns(hv)
    # events of a hypervisor another node owns are left to that node
    api.registry.domain_event(type("L", (), {"uuid": hv})(), "x", 0, 0)
    assert not api.registry._pending


def test_hypervisors_another_node_adds_or_removes_are_picked_up(api, make_host):
    """Another node registered a hypervisor (its row appears) and later removed it."""
    from enomalism.runtime import nodes
    from enomalism.store.models import Machine
    from tests.fakehost import FakeDomain

    uri = make_host("added-elsewhere", [FakeDomain("far", state="running")])
    db, registry = api.app.state.db, api.registry
    with db.session() as s:
        host = s.scalar(select(Machine).where(Machine.kind == "host"))
        hv = Hypervisor(machine_uuid=host.uuid, virt_class="test", virt_url=uri,
                        local_to=nodes.this_machine())
        s.add(hv)
        s.flush()
        hv_uuid = hv.uuid
    assert registry.status(hv_uuid)[0] == "disconnected"
    registry.reconcile()
    api.settle()
    assert registry.status(hv_uuid)[0] == "connected"
    objs = api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    assert [o["name"] for o in objs if o["parent"] == hv_uuid] == ["far"]

    with db.session() as s:
        s.execute(delete(Machine).where(Machine.parent_uuid == hv_uuid))
        s.execute(delete(Hypervisor).where(Hypervisor.uuid == hv_uuid))
    registry.reconcile()
    assert registry.status(hv_uuid) == ("disconnected", "not supervised")


def test_a_hypervisor_local_to_another_machine_is_not_connected(api):
    """qemu:///system registered by a node on another machine means that machine's libvirt."""
    from enomalism.store.models import Machine

    db, registry = api.app.state.db, api.registry
    with db.session() as s:
        host = s.scalar(select(Machine).where(Machine.kind == "host"))
        hv = Hypervisor(machine_uuid=host.uuid, virt_class="test",
                        virt_url="test:///default", local_to="some-other-machine")
        s.add(hv)
        s.flush()
        hv_uuid = hv.uuid
    registry.reconcile()
    status, why = registry.status(hv_uuid)
    assert status == "elsewhere" and "some-other-machine" in why
    # a job on it is left queued for a node on that machine
    with db.session() as s:
        tx = Transaction(kind="provision", params={"hypervisor": hv_uuid}, state="queued")
        s.add(tx)
        s.flush()
        txid = tx.uuid
    assert api.app.state.runner._claim() is None
    with db.session() as s:
        assert s.get(Transaction, txid).state == "queued"
        s.execute(delete(Transaction).where(Transaction.uuid == txid))
        s.execute(delete(Hypervisor).where(Hypervisor.uuid == hv_uuid))
    registry.reconcile()  # deleted: forgotten
    assert registry.status(hv_uuid) == ("disconnected", "not supervised")


def test_a_hypervisor_unreachable_from_the_start_says_so(make_api, make_host, tmp_path):
    """No node ever owned it (none could connect): its status is still written."""
    good = make_host("good", [])
    with make_api(good, f"test://{tmp_path}/no-such-host.xml") as api:
        hvs = {hv["virt_url"]: hv for hv in api.hypervisors()}
        bad = hvs[f"test://{tmp_path}/no-such-host.xml"]
        assert bad["status"] == "disconnected" and bad["last_error"]
        assert bad["owner_node"] is None
        assert hvs[good]["status"] == "connected"


def test_nodes_gone_for_a_week_are_forgotten_unless_they_own_something(api):
    db = api.app.state.db
    ownership = api.registry.ownership
    long_ago = utcnow().replace(year=2020)
    with db.session() as s:
        s.add(Node(id="old-stopped", hostname="a", seen_at=long_ago, stopped_at=long_ago))
        s.add(Node(id="old-silent", hostname="b", seen_at=long_ago))
        s.add(Node(id="old-owner", hostname="c", seen_at=long_ago))
        s.add(Node(id="recent", hostname="d", seen_at=utcnow(), stopped_at=utcnow()))
        s.execute(update(Hypervisor).where(Hypervisor.uuid == api.hypervisors()[0]["uuid"])
                  .values(owner_node="old-owner", owner_until=utcnow().replace(year=2100)))
    try:
        assert ownership.forget_old() == 2
        listed = {n["id"] for n in api.ok("GET", "/rest/nodes/")["nodes"]}
        assert {"old-owner", "recent", ownership.node_id} <= listed
        assert not {"old-stopped", "old-silent"} & listed
    finally:
        with db.session() as s:
            s.execute(update(Hypervisor).values(owner_node=ownership.node_id))
            s.execute(delete(Node).where(Node.id.in_(["old-owner", "recent"])))
