"""The audit log records every kind of change, and its refused variant: one table over the
endpoints. Each row makes what it needs, performs the change as a second administrator seen
from another address, and finds its entry (who, from where, the action, on what, errno 0);
then the row's refused variant (a user without rights, or bad input) is recorded with the
refusal's errno and message, and no change is recorded as done."""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from enomalism.feeds import archive
from enomalism.store.models import AuditEntry, Machine
from tests.api.accounts import Account, add_hypervisor, define_vm, new_group, new_user, unique
from tests.conftest import Api
from tests.fakehost import FakeDomain, domain_xml
from tests.integration.provision_helpers import (
    Pkg,
    build_package,
    feed_item,
    feed_server,
    have_qemu_img,
    make_qcow2,
    publish,
    sha256_of,
    wait_tx,
)

SOURCE = "192.0.2.9"
_n = itertools.count(10)


class World:
    """The objects the rows work on, each made fresh by the (first) administrator."""

    def __init__(self, api: Api, tmp) -> None:  # noqa: ANN001
        self.api, self.tmp = api, tmp
        self.hv = api.hypervisors()[0]["uuid"]

    def vm(self, *actions: str) -> dict:
        uuid = define_vm(self.api, self.hv)
        for action in actions:
            self.api.ok("POST", f"/rest/machine/{uuid}/actions/{action}/")
        return {"uuid": uuid}

    def hv2(self, domains: list[FakeDomain] = ()) -> str:
        return add_hypervisor(self.api, self.api.local_host(), self.tmp / f"{unique('h')}.xml",
                              domains)

    def cluster(self) -> str:
        return self.api.ok("PUT", "/rest/cluster/",
                           data={"cluster_name": unique("c")})["cluster"]["uuid"]

    def network(self) -> dict:
        n = next(_n)
        net = self.api.ok("PUT", "/rest/networks/", data={
            "name": unique("net"), "bridge": f"br{n}", "ip": f"10.{n}.0.0",
            "netmask": "24"})["network"]["uuid"]
        return {"uuid": net, "n": str(n)}

    def range(self) -> dict:
        ids = self.network()
        body = self.api.ok("POST", f"/rest/networks/{ids['uuid']}/iprange/", data={
            "start_ip": f"10.{ids['n']}.0.10", "end_ip": f"10.{ids['n']}.0.20"})
        return {**ids, "ruuid": body["ranges"][0]["uuid"]}


@dataclass
class Change:
    action: str
    object_type: str | None
    method: str
    path: str
    prepare: Callable[[World], dict] = lambda w: {}
    data: Callable[[dict], dict] = lambda ids: {}
    obj: str = "uuid"  # the id naming the object: a key of `prepare`'s ids, or `answer.<key>`
    refuse: dict | None = None  # variables an administrator is refused for (else: nobody)
    detail: dict = field(default_factory=dict)  # expected in the entry's detail


def _stray(w: World) -> dict:
    d = FakeDomain(unique("stray"), state="shutoff")
    w.hv2([d])
    return {"uuid": d.uuid}


def _locked(w: World) -> dict:
    ids = w.vm()
    with w.api.app.state.db.session() as s:
        s.get(Machine, ids["uuid"]).lock_txid = "00000000-0000-0000-0000-00000000000a"
    return ids


def _in_cluster(w: World) -> dict:
    ids, c = w.vm(), w.cluster()
    w.api.ok("POST", f"/rest/machine/{ids['uuid']}/clusters/", data={"clusters": c})
    return {**ids, "cluster": c}


def _lease(w: World) -> dict:
    ids = w.range()
    w.api.ok("PUT", f"/rest/networks/{ids['uuid']}/leases/",
             data={"address": f"10.{ids['n']}.0.12"})
    return {**ids, "address": f"10.{ids['n']}.0.12"}


def _host(w: World) -> dict:
    return {"uuid": w.api.ok("PUT", "/rest/hosts/", data={"name": unique("node")})["machine"]}


def _user(w: World) -> dict:
    return {"uuid": new_user(w.api).uuid}


M = "/rest/machine/{uuid}"
N = "/rest/networks/{uuid}"
LIFECYCLE = [
    # the lifecycle actions, by the shortcut path (no variables) and by the generic POST
    Change("machine.create", "machine", "POST", M + "/actions/create/", lambda w: w.vm()),
    Change("machine.suspend", "machine", "POST", M + "/actions/suspend/",
           lambda w: w.vm("create")),
    Change("machine.resume", "machine", "POST", M + "/actions/resume/",
           lambda w: w.vm("create", "suspend")),
    Change("machine.reboot", "machine", "POST", M + "/actions/reboot/",
           lambda w: w.vm("create")),
    Change("machine.shutdown", "machine", "POST", M + "/", lambda w: w.vm("create"),
           lambda ids: {"action": "shutdown"}),
    Change("machine.poweroff", "machine", "POST", M + "/", lambda w: w.vm("create"),
           lambda ids: {"action": "poweroff"}),
    Change("machine.manage", "machine", "POST", M + "/actions/manage/", _stray),
    Change("machine.unlock", "machine", "POST", M + "/actions/unlock/", _locked),
    Change("machine.totaldelete", "machine", "POST", M + "/actions/totaldelete/",
           lambda w: w.vm()),
]
MACHINES = [
    Change("machine.define", "machine", "PUT", "/rest/machines/",
           lambda w: {"hv": w.hv},
           lambda ids: {"xmldesc": domain_xml(unique("def")), "hvmuuid": ids["hv"]},
           obj="answer.machine", refuse={"xmldesc": "<domain"},
           detail={"xmldesc": "<{} characters>"}),
    Change("machine.xmldesc", "machine", "POST", M + "/actions/xmldesc/", lambda w: w.vm(),
           lambda ids: {"xmldesc": domain_xml(unique("x"), uuid=ids["uuid"])},
           refuse={"xmldesc": "not xml"}, detail={"xmldesc": "<{} characters>"}),
    Change("machine.store_xml", "machine", "POST", M + "/actions/store_xml/",
           lambda w: w.vm()),
    Change("machine.rename", "machine", "POST", M + "/actions/rename/", lambda w: w.vm(),
           lambda ids: {"name": unique("renamed")}, refuse={"name": "bad/name"}),
    Change("machine.set_parent", "machine", "POST", M + "/actions/set_parent/",
           lambda w: {**w.vm(), "to": w.hv2()}, lambda ids: {"puuid": ids["to"]},
           refuse={"puuid": "6f1b2c3d-0000-4000-8000-000000000000"}),
    Change("machine.add_clusters", "machine", "POST", M + "/clusters/",
           lambda w: {**w.vm(), "c": w.cluster()}, lambda ids: {"clusters": ids["c"]}),
    Change("machine.remove_clusters", "machine", "DELETE", M + "/clusters/", _in_cluster,
           lambda ids: {"clusters": ids["cluster"]}),
    Change("machine.package", "machine", "POST", M + "/actions/package/",
           lambda w: w.vm("create"), refuse={"compression": "lzma"}),
]
HOSTS = [
    Change("host.register", "host", "PUT", "/rest/hosts/", data=lambda ids: {
        "name": unique("node")}, obj="answer.machine", refuse={"name": ""}),
    Change("host.add_hypervisor", "host", "POST", M + "/hypervisors/",
           lambda w: {"uuid": w.api.local_host()},
           lambda ids: {"virt_url": "test:///default"}, refuse={"virt_url": "file:///etc"}),
    Change("hypervisor.delete", "hypervisor", "DELETE", "/rest/hypervisor/{uuid}/",
           lambda w: {"uuid": w.hv2()}),
]
CLUSTERS = [
    Change("cluster.create", "cluster", "PUT", "/rest/cluster/",
           data=lambda ids: {"cluster_name": unique("c")}, obj="answer.cluster.uuid",
           refuse={"cluster_name": ""}),
    Change("cluster.rename", "cluster", "POST", "/rest/cluster/{uuid}/",
           lambda w: {"uuid": w.cluster()},
           lambda ids: {"action": "rename", "cluster_name": unique("c")}),
    Change("cluster.delete", "cluster", "DELETE", "/rest/cluster/{uuid}/",
           lambda w: {"uuid": w.cluster()}),
]
NETWORKS = [
    Change("network.create", "network", "PUT", "/rest/networks/",
           data=lambda ids: {"name": unique("net"), "bridge": "br-x", "ip": "10.250.0.0",
                             "netmask": "24"},
           obj="answer.network.uuid", refuse={"ip": "10.250.0.300"}),
    Change("network.update", "network", "POST", N + "/", lambda w: w.network(),
           lambda ids: {"description": "the lab"}, refuse={"cluster": "no-such-cluster"}),
    Change("network.add_range", "network", "POST", N + "/iprange/", lambda w: w.network(),
           lambda ids: {"start_ip": f"10.{ids['n']}.0.30", "end_ip": f"10.{ids['n']}.0.40"},
           refuse={"start_ip": "10.9.9.9", "end_ip": "10.9.9.1"}),
    Change("range.update", "range", "PUT", N + "/iprange/{ruuid}/", lambda w: w.range(),
           lambda ids: {"start_ip": f"10.{ids['n']}.0.5", "end_ip": f"10.{ids['n']}.0.25"},
           obj="ruuid", refuse={"start_ip": "nonsense"}),
    Change("range.delete", "range", "DELETE", N + "/iprange/{ruuid}/", lambda w: w.range(),
           obj="ruuid"),
    Change("network.set_cluster", "network", "PUT", N + "/cluster/",
           lambda w: {**w.network(), "c": w.cluster()}, lambda ids: {"cluster": ids["c"]}),
    Change("network.reserve", "network", "PUT", N + "/leases/", lambda w: w.range(),
           lambda ids: {"address": f"10.{ids['n']}.0.11", "note": "the printer"},
           refuse={"address": "192.168.99.99"}),
    Change("network.release", "network", "DELETE", N + "/leases/{address}/",
           lambda w: {**_lease(w)}, obj="uuid"),
    Change("network.delete", "network", "DELETE", N + "/", lambda w: w.network()),
]
PEOPLE = [
    Change("user.create", "user", "POST", "/rest/user/create/",
           data=lambda ids: {"username": unique("u"), "password": "a-long-password-1"},
           obj="answer.uuid", refuse={"username": "bad name!"},
           detail={"password": "***"}),
    Change("user.set_password", "user", "POST", "/rest/user/{uuid}/", _user,
           lambda ids: {"action": "set_password", "password": "another-long-one-2"},
           refuse={"action": "set_password", "password": "short"},
           detail={"password": "***"}),
    Change("group.create", "group", "PUT", "/rest/group/create/",
           data=lambda ids: {"group_name": unique("g")}, obj="answer.group.uuid",
           refuse={"group_name": "bad name!"}),
    Change("permission.grant", "cluster", "PUT", "/rest/permissions/{uuid}/",
           lambda w: {"uuid": w.cluster(), "u": new_user(w.api).uuid},
           lambda ids: {"permission": "read", "user": ids["u"]},
           refuse={"permission": "sudo", "user": "nobody-at-all"}),
    Change("token.create", "token", "PUT", "/rest/tokens/",
           data=lambda ids: {"name": unique("t")}, obj="answer.token.uuid",
           refuse={"expires_in_days": "-4"}),
]
TABLE = LIFECYCLE + MACHINES + HOSTS + CLUSTERS + NETWORKS + PEOPLE


@pytest.fixture(scope="module")
def world(sandbox, tmp_path_factory) -> World:  # noqa: ANN001
    return World(sandbox, tmp_path_factory.mktemp("audit"))


@pytest.fixture(scope="module")
def actor(sandbox) -> tuple[Account, Api]:  # noqa: ANN001
    """A second administrator, seen from another address."""
    a = new_user(sandbox, admin="true")
    return a, Api(TestClient(sandbox.app, client=(SOURCE, 50000)))


def newest(api: Api, after: int) -> list[dict]:
    entries = api.ok("GET", "/rest/audit/", params={"limit": 1000})["entries"]
    return [e for e in entries if e["id"] > after]


def last_id(api: Api) -> int:
    with api.app.state.db.session(write=False) as s:
        return s.scalar(select(func.max(AuditEntry.id))) or 0


def send(api: Api, change: Change, ids: dict, data: dict, auth: object):  # noqa: ANN201
    path = change.path.format(**ids)
    if change.method in ("GET", "DELETE"):
        return api.request(change.method, path, params=data, auth=auth)
    return api.request(change.method, path, data=data, auth=auth)


def object_of(change: Change, ids: dict, answer: dict) -> str:
    if not change.obj.startswith("answer."):
        return ids[change.obj]
    value: object = answer
    for key in change.obj.split(".")[1:]:
        value = value[key]
    return value


@pytest.mark.parametrize("change", TABLE, ids=[c.action for c in TABLE])
def test_a_change_and_its_refusal_are_recorded(world, actor, change):
    api = world.api
    admin, remote = actor
    ids = change.prepare(world)
    data = change.data(ids)
    after, before = last_id(api), datetime.now(UTC)
    r = send(remote, change, ids, data, admin.auth)
    assert r.status_code == 200 and r.json().get("errno", 0) == 0, r.text
    obj = object_of(change, ids, r.json())
    [e] = [e for e in newest(api, after) if e["action"] == change.action]
    assert (e["actor"], e["actor_name"], e["source"], e["object"], e["object_type"],
            e["errno"]) == (admin.uuid, admin.name, SOURCE, obj, change.object_type, 0)
    assert e["message"] == r.json().get("message")
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(e["at"]) \
        <= datetime.now(UTC) + timedelta(seconds=1)
    for key, expected in change.detail.items():
        got = e["detail"][key]
        assert got == (expected.format(len(data[key])) if "{}" in expected else expected)
    for key, value in data.items():  # the variables are named, secrets and long text kept out
        assert key in e["detail"] or key == "action"
        if key == "password" or len(str(value)) > 80:
            assert str(value) not in str(e["detail"])

    # The refused variant: recorded with the refusal's errno, no change recorded as done.
    ids = change.prepare(world)
    if change.refuse is None:
        nobody = new_user(api)
        refused_data, auth, who = change.data(ids), nobody.auth, nobody
    else:
        refused_data, auth, who = change.refuse, admin.auth, admin
    after = last_id(api)
    r = send(remote, change, ids, refused_data, auth)
    assert r.status_code >= 400, r.text
    entries = [x for x in newest(api, after) if x["source"] == SOURCE]  # not a job's end
    assert all(x["errno"] != 0 for x in entries), entries
    [e] = [x for x in entries if x["action"] == change.action]
    assert (e["actor"], e["source"], e["errno"], e["message"]) == \
        (who.uuid, SOURCE, r.json()["errno"], r.json()["message"])
    if not change.obj.startswith("answer."):
        assert e["object"] == ids[change.obj]


def test_the_object_is_named(world, actor):
    api = world.api
    admin, remote = actor
    name = unique("named")
    uuid = define_vm(api, world.hv, name)
    after = last_id(api)
    remote.ok("POST", f"/rest/machine/{uuid}/actions/create/", auth=admin.auth)
    [e] = newest(api, after)
    assert (e["object"], e["object_name"], e["object_type"]) == (uuid, name, "machine")


def test_reads_are_not_recorded(world, actor):
    api = world.api
    uuid = world.vm()["uuid"]
    after = last_id(api)
    for method, path, data in (
            ("POST", "/rest/machines/", {}), ("POST", f"/rest/machine/{uuid}/", {}),
            ("POST", f"/rest/machine/{uuid}/actions/", {}), ("GET", f"/rest/machine/{uuid}/", {}),
            ("POST", "/rest/users/", {}), ("POST", "/rest/cluster/list/", {})):
        api.ok(method, path, data=data) if method == "POST" else api.ok(method, path)
    assert newest(api, after) == []


def test_variables_refused_before_the_endpoint_are_recorded(world, actor):
    api = world.api
    admin, remote = actor
    uuid = world.vm()["uuid"]
    after = last_id(api)
    r = remote.post(f"/rest/machine/{uuid}/actions/rename/", auth=admin.auth,
                    json={"name": "a\x00b"})
    assert r.status_code == 400
    [e] = newest(api, after)
    assert (e["action"], e["object"], e["errno"], e["source"]) == \
        ("machine.rename", uuid, r.json()["errno"], SOURCE)


def test_filters(world, actor):
    api = world.api
    admin, remote = actor
    nobody = new_user(api)
    uuid = world.vm()["uuid"]
    remote.post(f"/rest/machine/{uuid}/actions/create/", auth=nobody.auth)
    mine = api.ok("GET", "/rest/audit/", params={"actor": nobody.name})["entries"]
    assert [(e["actor"], e["errno"] != 0) for e in mine] == [(nobody.uuid, True)]
    failed = api.ok("GET", "/rest/audit/", params={"failed": "true"})["entries"]
    assert failed and all(e["errno"] != 0 for e in failed)
    done = api.ok("GET", "/rest/audit/", params={"failed": "false"})["entries"]
    assert done and all(e["errno"] == 0 for e in done)


def test_every_changing_route_has_a_rule(world):
    """A route taking POST, PUT or DELETE that the audit table does not name is recorded under
    its endpoint's name; this names such routes so the table keeps up."""
    from enomalism.api import audit

    unnamed = [(m, r.path) for r in world.api.app.routes for m in getattr(r, "methods", ())
               if m in audit.WRITES and (m, r.path) not in audit.RULES
               and (m, r.path) not in audit.READS
               and not audit._MACHINE_ACTION.fullmatch(r.path)]
    assert unnamed == []


def test_groups_and_members(world, actor):
    api = world.api
    admin, remote = actor
    alice = new_user(api)
    g = new_group(api)
    after = last_id(api)
    remote.ok("POST", f"/rest/group/{g}/", auth=admin.auth,
              data={"action": "add_user", "user": alice.uuid})
    [e] = newest(api, after)
    assert (e["action"], e["object"], e["object_type"], e["detail"]["user"]) == \
        ("group.add_user", g, "group", alice.name)


def test_asynchronous_work_records_its_start_and_its_end(world, actor):
    api = world.api
    admin, remote = actor
    uuid = world.vm("create")["uuid"]
    after = last_id(api)
    txid = remote.ok("POST", f"/rest/machine/{uuid}/actions/package/", auth=admin.auth)["txid"]
    end = wait_tx(api, txid)["data"]["state"]
    entries = newest(api, after)
    [start] = [e for e in entries if e["action"] == "machine.package"]
    assert (start["object"], start["detail"]["txid"], start["errno"]) == (uuid, txid, 0)
    [done] = [e for e in entries if e["action"].startswith("transaction.")]
    assert (done["action"], done["object"], done["object_type"], done["actor"]) == \
        (f"transaction.{end}", txid, "transaction", admin.uuid)
    assert done["source"].startswith("job on ")
    assert (done["errno"] == 0) == (end == "done")


@pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed to build a package")
def test_feed_and_package_changes(world, actor, tmp_path):
    api = world.api
    admin, remote = actor
    pkg = build_package(tmp_path / "audited.xvm2", make_qcow2(tmp_path / "a.qcow2", 16),
                        name="audited")
    with feed_server() as srv:
        srv.auth = ("feeder", "feed-Pa55word-never-logged")
        url = publish(srv, [feed_item(srv, pkg, "/audited.xvm2")])
        with_credentials = url.replace("://", "://feeder:feed-Pa55word-never-logged@")
        after = last_id(api)
        r = remote.put("/rest/vmfeed/", data={"url": "ftp://example.org/feed"},
                       auth=admin.auth)
        assert r.status_code == 400
        repo = remote.ok("PUT", "/rest/vmfeed/", data={"url": with_credentials},
                         auth=admin.auth)["uuid"]
        [package] = [p["uuid"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]
                     if p["repository"] == repo]
        remote.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"},
                  auth=admin.auth)
        remote.ok("POST", f"/rest/vmfeed/{package}/", data={"description": "audited"},
                  auth=admin.auth)
        queued = remote.ok("POST", f"/rest/vmfeed/repo/package/{package}/", auth=admin.auth)
        txid = queued["tx"]  # the spec's key (6.4), and the one every other answer uses
        assert queued["txid"] == txid
        assert wait_tx(api, txid)["data"]["state"] == "done"
        remote.ok("DELETE", f"/rest/vmfeed/repo/package/{package}/", auth=admin.auth)
        remote.ok("DELETE", f"/rest/vmfeed/{package}/", auth=admin.auth)
        remote.ok("DELETE", f"/rest/vmfeed/repo/{repo}/", auth=admin.auth)
    entries = newest(api, after)
    got = [(e["action"], e["object"], e["errno"] == 0) for e in reversed(entries)]
    assert got == [
        ("repository.add", None, False), ("repository.add", repo, True),
        ("repository.refresh", repo, True), ("package.update", package, True),
        ("package.retrieve", package, True), ("transaction.done", txid, True),
        ("package.uncache", package, True), ("package.delete", package, True),
        ("repository.delete", repo, True)]
    assert "feed-Pa55word-never-logged" not in str(entries)
    [added] = [e for e in entries if e["action"] == "repository.add" and e["errno"] == 0]
    assert added["detail"]["url"].startswith("http://***@")


def test_provision_and_its_refusal(world, actor, tmp_path):
    """A provision is recorded on the new machine with its transaction; its end under the
    user who asked; a provision of a package that does not exist, with the refusal."""
    api = world.api
    admin, remote = actor
    m = archive.Manifest(name="audited-provision", description="for the audit", version="1",
                         virt_class="test", arch="x86_64", disks=[])
    archive.write_package(tmp_path / "p.xvm2", domain_xml=domain_xml("template"), manifest=m,
                          disk_sources={}, fsync=False)
    pkg = Pkg(tmp_path / "p.xvm2", m.name, m, sha256_of(tmp_path / "p.xvm2"),
              (tmp_path / "p.xvm2").stat().st_size, "test", "x86_64")
    with feed_server() as srv:
        repo = api.ok("PUT", "/rest/vmfeed/", data={
            "url": publish(srv, [feed_item(srv, pkg, "/p.xvm2")])})["uuid"]
        [package] = [p["uuid"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]
                     if p["repository"] == repo]
        assert wait_tx(api, api.ok("POST", f"/rest/vmfeed/repo/package/{package}/")["txid"]
                       )["data"]["state"] == "done"
    host, name = api.local_host(), unique("provisioned")
    after = last_id(api)
    q = remote.ok("POST", f"/rest/machine/{host}/actions/provision/", auth=admin.auth,
                  data={"pkguuid": package, "hvmuuid": world.hv, "name": name})
    assert wait_tx(api, q["txid"])["data"]["state"] == "done"
    r = remote.post(f"/rest/machine/{host}/actions/provision/", auth=admin.auth,
                    data={"pkguuid": "6f1b2c3d-0000-4000-8000-000000000000", "name": name})
    assert r.status_code == 404
    entries = list(reversed(newest(api, after)))
    got = [(e["action"], e["object"], e["errno"]) for e in entries]
    assert got == [("machine.provision", q["newuuid"], 0), ("transaction.done", q["txid"], 0),
                   ("machine.provision", host, r.json()["errno"])]
    assert entries[0]["object_name"] == name and entries[0]["detail"]["txid"] == q["txid"]
    assert entries[0]["detail"]["pkguuid"] == package
    assert (entries[1]["actor"], entries[2]["actor"]) == (admin.uuid, admin.uuid)
