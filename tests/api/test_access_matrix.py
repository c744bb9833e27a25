"""The permission matrix: for every endpoint of sections 2, 3 and 4 (each row of the per-endpoint
table in docs/access.md, and the users, groups and permissions endpoints), who is refused and who
is allowed.

Each row names an endpoint, the HTTP variables it is called with, and what it needs: a list of
(permission, object) or ADMIN (administrators only). Each row is run in five cases, each with a
fresh caller (a user in a group of their own) and fresh objects made by the administrator:

- refused: with no grant the caller gets 404 (they cannot even read the object); with everything
  but one of the needs, and `read` on every object involved, 403 (or 404 when the missing need
  is `read`); administrator-only rows answer 403 even with `admin` on the object;
- user: exactly the needs granted to the caller (PUT /rest/permissions/<uuid>/ user=...) works;
- group: the same granted to the caller's group works;
- owner: the caller owning each object involved works (for a user object: being that user);
- admin: the administrator works.

A refused request changes nothing (the database is compared before and after); an allowed one
has its effect where the row says what that is.
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from enomalism.store.models import (
    ApiToken,
    AuditEntry,
    Cluster,
    ClusterMember,
    Grant,
    Group,
    GroupMember,
    Hypervisor,
    Machine,
    Transaction,
    User,
)
from tests.api.accounts import (
    PASSWORD,
    Account,
    add_hypervisor,
    define_vm,
    grant,
    new_group,
    new_user,
    set_owner,
    unique,
)
from tests.conftest import Api, expect_error
from tests.fakehost import FakeDomain, domain_xml, write_host

ADMIN = "ADMIN"
MODELS = {"vm": Machine, "stray": Machine, "host": Machine, "hv": Hypervisor,
          "target": Hypervisor, "cluster": Cluster, "group": Group, "user": User}


# -- fresh objects, made by the administrator ------------------------------------------------

class Env:
    """Makes the objects a row works on, each one new."""

    def __init__(self, api: Api, tmp: Path) -> None:
        self.api, self.tmp = api, tmp
        self.accounts: dict[str, Account] = {}
        self.hv_a = api.hypervisors()[0]["uuid"]

    def vm(self, state: str = "shutoff") -> str:
        uuid = define_vm(self.api, self.hv_a)
        steps = {"shutoff": [], "running": ["create"], "paused": ["create", "suspend"]}
        for action in steps[state]:
            self.api.ok("POST", f"/rest/machine/{uuid}/actions/{action}/")
        return uuid

    def hv(self, domains: list[FakeDomain] = ()) -> str:
        return add_hypervisor(self.api, self.api.local_host(), self.tmp / f"{unique('h')}.xml",
                              domains)

    def stray(self) -> tuple[str, str]:
        """A fresh hypervisor with one discovered, unmanaged domain: (hypervisor, machine)."""
        d = FakeDomain(unique("stray"), state="shutoff")
        return self.hv([d]), d.uuid

    def host(self) -> str:
        return self.api.ok("PUT", "/rest/hosts/", data={"name": unique("node")})["machine"]

    def cluster(self, *machines: str) -> str:
        c = self.api.ok("PUT", "/rest/cluster/",
                        data={"cluster_name": unique("c")})["cluster"]["uuid"]
        for m in machines:
            self.api.ok("POST", f"/rest/machine/{m}/clusters/", data={"clusters": c})
        return c

    def user(self) -> str:
        a = new_user(self.api)
        self.accounts[a.uuid] = a
        return a.uuid

    def group(self, *members: str) -> str:
        return new_group(self.api, members=tuple(self.accounts[m] for m in members))

    def uri(self) -> str:
        return write_host(self.tmp / f"{unique('new')}.xml", [])

    def lock(self, vm: str) -> str:
        with self.api.app.state.db.session() as s:
            s.get(Machine, vm).lock_txid = "00000000-0000-0000-0000-00000000000a"
        return vm


def machine(api: Api, uuid: str) -> dict:
    return api.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]


def gone(path: str) -> Callable[[Api, dict], None]:
    def check(api: Api, v: dict) -> None:
        expect_error(api.get(path.format(**v)), 404, 1200)
    return check


def packaging(api: Api, v: dict) -> None:
    """A package transaction was queued for the machine."""
    with api.app.state.db.session(write=False) as s:
        assert s.scalar(select(Transaction.kind).where(Transaction.target_uuid == v["vm"])) \
            == "package"


def state(expected: str) -> Callable[[Api, dict], None]:
    def check(api: Api, v: dict) -> None:
        api.settle()
        assert machine(api, v["vm"])["state"] == expected
    return check


# -- the rows -------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    method: str
    path: str
    needs: str  # "control vm, modify cluster", or ADMIN
    setup: Callable[[Env], dict]
    data: Callable[[dict], dict] = lambda v: {}  # noqa: E731
    effect: Callable[[Api, dict], None] | None = None
    # what the owner case answers: 200, or (status, errno) when owning is not enough
    owner: int | tuple[int, int] = 200
    prepare: Callable[[Api, dict, Account], None] | None = None  # after grants, per case
    refusal: tuple[int, int] = (403, 1101)  # administrator-only rows, for everyone else

    @property
    def admin_only(self) -> bool:
        return self.needs == ADMIN

    @property
    def requirements(self) -> list[tuple[str, str]]:
        if self.admin_only:
            return []
        return [tuple(n.split()) for n in self.needs.split(",")]

    @property
    def target(self) -> str | None:
        """The object named in the path, if any."""
        return next((k for k in MODELS if "{" + k + "}" in self.path), None)


def vm_rows() -> list[Row]:
    rows = [
        Row("get-vm", "GET", "/rest/machine/{vm}/", "read vm", lambda e: {"vm": e.vm()}),
        Row("post-vm-without-action", "POST", "/rest/machine/{vm}/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-hypervisors", "GET", "/rest/machine/{vm}/hypervisors/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-clusters", "GET", "/rest/machine/{vm}/clusters/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-actions-get", "GET", "/rest/machine/{vm}/actions/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-actions-post", "POST", "/rest/machine/{vm}/actions/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-trigger-get", "GET", "/rest/machine/{vm}/trigger_status_updates/", "read vm",
            lambda e: {"vm": e.vm()}),
        Row("vm-trigger-post", "POST", "/rest/machine/{vm}/trigger_status_updates/", "read vm",
            lambda e: {"vm": e.vm()}),
    ]
    lifecycle = [("create", "shutoff", "running"), ("suspend", "running", "paused"),
                 ("resume", "paused", "running"), ("shutdown", "running", "shutoff"),
                 ("reboot", "running", "running"), ("poweroff", "running", "shutoff")]
    for action, before, after in lifecycle:
        rows.append(Row(f"{action}-path", "POST", f"/rest/machine/{{vm}}/actions/{action}/",
                        "control vm", lambda e, s=before: {"vm": e.vm(s)}, effect=state(after)))
        rows.append(Row(f"{action}-action", "POST", "/rest/machine/{vm}/", "control vm",
                        lambda e, s=before: {"vm": e.vm(s)},
                        data=lambda v, a=action: {"action": a}, effect=state(after)))
    rows += [
        Row("rename", "POST", "/rest/machine/{vm}/actions/rename/", "modify vm",
            lambda e: {"vm": e.vm(), "name": unique("renamed")},
            data=lambda v: {"name": v["name"]},
            effect=lambda api, v: _eq(machine(api, v["vm"])["name"], v["name"])),
        Row("xmldesc", "POST", "/rest/machine/{vm}/", "modify vm",
            lambda e: {"vm": e.vm()},
            data=lambda v: {"action": "xmldesc",
                            "xmldesc": domain_xml(unique("x"), v["vm"], memory_kib=262144)},
            effect=lambda api, v: _eq(machine(api, v["vm"])["xml_pending"], True)),
        Row("store_xml", "POST", "/rest/machine/{vm}/actions/store_xml/", "modify vm",
            lambda e: {"vm": e.vm()}),
        Row("set_parent", "POST", "/rest/machine/{vm}/", "modify vm, control target",
            lambda e: {"vm": e.vm(), "target": e.hv()},
            data=lambda v: {"action": "set_parent", "puuid": v["target"]},
            effect=lambda api, v: _eq(machine(api, v["vm"])["parent"], v["target"])),
        Row("totaldelete", "POST", "/rest/machine/{vm}/actions/totaldelete/", "delete vm",
            lambda e: {"vm": e.vm()}, effect=gone("/rest/machine/{vm}/")),
        Row("manage", "POST", "/rest/machine/{stray}/actions/manage/", "control hv",
            lambda e: dict(zip(("hv", "stray"), e.stray(), strict=True)),
            effect=lambda api, v: _eq(machine(api, v["stray"])["managed"], True)),
        Row("unlock", "POST", "/rest/machine/{vm}/actions/unlock/", ADMIN,
            lambda e: {"vm": e.lock(e.vm())},
            effect=lambda api, v: _eq(machine(api, v["vm"])["locked_by"], None)),
        Row("define", "PUT", "/rest/machines/", "control hv", lambda e: {"hv": e.hv()},
            data=lambda v: {"hvmuuid": v["hv"], "xmldesc": domain_xml(unique("new"))}),
        # putting a machine in a cluster shares it with the cluster's grantees: `admin` on it
        Row("add-to-cluster", "POST", "/rest/machine/{vm}/clusters/",
            "admin vm, modify cluster", lambda e: {"vm": e.vm(), "cluster": e.cluster()},
            data=lambda v: {"clusters": v["cluster"]},
            effect=lambda api, v: _eq(machine(api, v["vm"])["clusters"], [v["cluster"]])),
        # the machine is in the cluster, so a grant on the cluster (made by the administrator,
        # who may share the machine) lets it be read; owning the cluster does not
        Row("remove-from-cluster", "DELETE", "/rest/machine/{vm}/clusters/", "modify cluster",
            lambda e: {"vm": (vm := e.vm()), "cluster": e.cluster(vm)},
            data=lambda v: {"clusters": v["cluster"]},
            effect=lambda api, v: _eq(machine(api, v["vm"])["clusters"], []),
            owner=(404, 1200)),
        # a package is a copy of the machine's disks: `export`, `control` is not enough
        Row("package-path", "POST", "/rest/machine/{vm}/actions/package/", "export vm",
            lambda e: {"vm": e.vm()}, effect=packaging),
        Row("package-action", "POST", "/rest/machine/{vm}/", "export vm",
            lambda e: {"vm": e.vm()}, data=lambda v: {"action": "package"}, effect=packaging),
    ]
    return rows


def host_rows() -> list[Row]:
    return [
        Row("get-host", "GET", "/rest/machine/{host}/", "read host",
            lambda e: {"host": e.host()}),
        Row("host-hypervisors", "GET", "/rest/machine/{host}/hypervisors/", "read host",
            lambda e: {"host": e.host()}),
        Row("host-hypervisors-post-without-url", "POST", "/rest/machine/{host}/hypervisors/",
            "read host", lambda e: {"host": e.host()}),
        Row("host-trigger", "POST", "/rest/machine/{host}/trigger_status_updates/", "read host",
            lambda e: {"host": e.host()}),
        Row("host-rename", "POST", "/rest/machine/{host}/", "modify host",
            lambda e: {"host": e.host(), "name": unique("renamed")},
            data=lambda v: {"action": "rename", "name": v["name"]},
            effect=lambda api, v: _eq(machine(api, v["host"])["name"], v["name"])),
        Row("host-totaldelete", "POST", "/rest/machine/{host}/actions/totaldelete/",
            "delete host", lambda e: {"host": e.host()}, effect=gone("/rest/machine/{host}/")),
        # test: URIs read host files: administrators only, even with `admin` on the host (a
        # non-administrator holding it adds URIs from an allow-list: test_access_isolation.py)
        Row("add-hypervisor", "POST", "/rest/machine/{host}/hypervisors/", ADMIN,
            lambda e: {"host": e.host(), "uri": e.uri()},
            data=lambda v: {"virt_url": v["uri"]}, refusal=(403, 1120)),
        Row("get-hypervisor", "GET", "/rest/hypervisor/{hv}/", "read hv",
            lambda e: {"hv": e.hv()}),
        Row("delete-hypervisor", "DELETE", "/rest/hypervisor/{hv}/", "delete hv",
            lambda e: {"hv": e.hv()}, effect=gone("/rest/hypervisor/{hv}/")),
        Row("register-host-put", "PUT", "/rest/hosts/", ADMIN, lambda e: {},
            data=lambda v: {"name": unique("node")}),
        Row("register-host-post", "POST", "/rest/hosts/", ADMIN, lambda e: {},
            data=lambda v: {"name": unique("node")}),
        Row("list-nodes", "GET", "/rest/nodes/", ADMIN, lambda e: {}),
    ]


def cluster_rows() -> list[Row]:
    return [
        Row("get-cluster", "GET", "/rest/cluster/{cluster}/", "read cluster",
            lambda e: {"cluster": e.cluster()}),
        Row("post-cluster-without-action", "POST", "/rest/cluster/{cluster}/", "read cluster",
            lambda e: {"cluster": e.cluster()}),
        Row("rename-cluster", "POST", "/rest/cluster/{cluster}/", "modify cluster",
            lambda e: {"cluster": e.cluster()},
            data=lambda v: {"action": "rename", "cluster_name": unique("renamed")}),
        Row("delete-cluster", "DELETE", "/rest/cluster/{cluster}/", "delete cluster",
            lambda e: {"cluster": e.cluster()}, effect=gone("/rest/cluster/{cluster}/")),
    ]


def user_rows() -> list[Row]:
    def user_is(key: str, value: object) -> Callable[[Api, dict], None]:
        return lambda api, v: _eq(api.ok("GET", f"/rest/user/{v['user']}/")["user"][key], value)

    def with_group(e: Env, member: bool) -> dict:
        u = e.user()
        return {"user": u, "group": e.group(u) if member else e.group()}

    admin_only = [("enable", {}), ("disable", {}), ("set_admin", {"admin": "true"})]
    rows = [
        Row("get-user", "GET", "/rest/user/{user}/", "read user", lambda e: {"user": e.user()}),
        Row("post-user-without-action", "POST", "/rest/user/{user}/", "read user",
            lambda e: {"user": e.user()}),
        Row("user-update", "POST", "/rest/user/{user}/", "modify user",
            lambda e: {"user": e.user()},
            data=lambda v: {"action": "update", "email": "changed@example.org"},
            effect=user_is("email", "changed@example.org")),
        Row("user-set_password", "POST", "/rest/user/{user}/", "modify user",
            lambda e: {"user": e.user()},
            # the owner case is the user themself, who gives the current password too
            data=lambda v: {"action": "set_password", "password": "a-brand-new-one",
                            "old_password": PASSWORD}),
        Row("user-add_group", "POST", "/rest/user/{user}/", "read user, modify group",
            lambda e: with_group(e, False), data=lambda v: {"action": "add_group",
                                                            "group": v["group"]}),
        Row("user-remove_group", "POST", "/rest/user/{user}/", "read user, modify group",
            lambda e: with_group(e, True), data=lambda v: {"action": "remove_group",
                                                           "group": v["group"]},
            effect=user_is("groups", [])),
        *[Row(f"user-{a}", "POST", "/rest/user/{user}/", ADMIN, lambda e: {"user": e.user()},
              data=lambda v, a=a, x=x: {"action": a, **x}) for a, x in admin_only],
        Row("user-delete", "DELETE", "/rest/user/{user}/", ADMIN, lambda e: {"user": e.user()},
            effect=gone("/rest/user/{user}/")),
        Row("user-delete-get", "GET", "/rest/user/{user}/delete/", ADMIN,
            lambda e: {"user": e.user()}, effect=gone("/rest/user/{user}/")),
        Row("user-delete-post", "POST", "/rest/user/{user}/delete/", ADMIN,
            lambda e: {"user": e.user()}, effect=gone("/rest/user/{user}/")),
        Row("user-create", "POST", "/rest/user/create/", ADMIN, lambda e: {},
            data=lambda v: {"username": unique("made"), "password": "long-enough-pw"}),
        Row("audit", "GET", "/rest/audit/", ADMIN, lambda e: {}),
    ]
    return rows


def group_rows() -> list[Row]:
    def members(api: Api, v: dict) -> set[str]:
        return {u["uuid"] for u in api.ok("GET", f"/rest/group/{v['group']}/")["group"]["users"]}

    def membership(member: bool) -> Callable[[Env], dict]:
        def setup(e: Env) -> dict:
            u = e.user()
            return {"user": u, "group": e.group(u) if member else e.group()}
        return setup

    return [
        Row("get-group", "GET", "/rest/group/{group}/", "read group",
            lambda e: {"group": e.group()}),
        Row("post-group-without-action", "POST", "/rest/group/{group}/", "read group",
            lambda e: {"group": e.group()}),
        Row("group-rename", "POST", "/rest/group/{group}/", "modify group",
            lambda e: {"group": e.group()},
            data=lambda v: {"action": "rename", "group_name": unique("renamed")}),
        Row("group-add_user", "POST", "/rest/group/{group}/", "modify group, read user",
            membership(False), data=lambda v: {"action": "add_user", "user": v["user"]},
            effect=lambda api, v: _eq(members(api, v), {v["user"]})),
        Row("group-remove_user", "POST", "/rest/group/{group}/", "modify group, read user",
            membership(True), data=lambda v: {"action": "remove_user", "user": v["user"]},
            effect=lambda api, v: _eq(members(api, v), set())),
        Row("group-delete", "DELETE", "/rest/group/{group}/", "delete group",
            lambda e: {"group": e.group()}, effect=gone("/rest/group/{group}/")),
        Row("group-delete-get", "GET", "/rest/group/{group}/delete/", "delete group",
            lambda e: {"group": e.group()}, effect=gone("/rest/group/{group}/")),
        Row("group-delete-post", "POST", "/rest/group/{group}/delete/", "delete group",
            lambda e: {"group": e.group()}, effect=gone("/rest/group/{group}/")),
    ]


def permission_rows() -> list[Row]:
    """The access list of each kind of object. Grants and revokes name a bystander user the
    caller is allowed to read (one may only name principals one can read)."""
    made = {"vm": lambda e: e.vm(), "host": lambda e: e.host(), "hv": lambda e: e.hv(),
            "cluster": lambda e: e.cluster(), "user": lambda e: e.user(),
            "group": lambda e: e.group()}

    def setup(kind: str, held: bool) -> Callable[[Env], dict]:
        def make(e: Env) -> dict:
            v = {kind: made[kind](e), "bystander": e.user()}
            if held:
                grant(e.api, v[kind], "read", user=v["bystander"])
            return v
        return make

    def sees_bystander(api: Api, v: dict, actor: Account) -> None:
        grant(api, v["bystander"], "read", user=actor.uuid)

    def acl_has(held: bool) -> Callable[[Api, dict], None]:
        def check(api: Api, v: dict) -> None:
            kind = next(k for k in v if k != "bystander")
            grants = api.ok("GET", f"/rest/permissions/{v[kind]}/")["permissions"]
            assert (("read", v["bystander"]) in
                    {(g["permission"], g["principal"]) for g in grants}) is held
        return check

    rows = []
    for kind in made:
        # a user may read and modify themselves only
        owner = (403, 1101) if kind == "user" else 200
        needs = f"admin {kind}"
        path = f"/rest/permissions/{{{kind}}}/"
        rows.append(Row(f"permissions-get-{kind}", "GET", path, needs, setup(kind, False),
                        owner=owner))
        rows.append(Row(f"permissions-put-{kind}", "PUT", path, needs, setup(kind, False),
                        data=lambda v: {"permission": "read", "user": v["bystander"]},
                        effect=acl_has(True), owner=owner, prepare=sees_bystander))
        if kind in ("vm", "cluster"):
            for method, action, held in [("DELETE", None, True), ("POST", "grant", False),
                                         ("POST", "revoke", True)]:
                rows.append(Row(
                    f"permissions-{action or method.lower()}-{kind}", method, path, needs,
                    setup(kind, held), owner=owner, prepare=sees_bystander,
                    data=lambda v, a=action: {"permission": "read", "user": v["bystander"],
                                              **({"action": a} if a else {})},
                    effect=acl_has(not held)))
    return rows


def _eq(got: object, expected: object) -> None:
    assert got == expected


ROWS = vm_rows() + host_rows() + cluster_rows() + user_rows() + group_rows() + permission_rows()
CASES = ["refused", "user", "group", "owner", "admin"]


# -- running a row ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(shared_api, tmp_path_factory) -> Env:  # noqa: ANN001
    return Env(shared_api, tmp_path_factory.mktemp("matrix"))


def call(api: Api, row: Row, v: dict, auth: object):  # noqa: ANN201
    variables = row.data(v)
    path = row.path.format(**v)
    if row.method in ("GET", "DELETE"):
        return api.request(row.method, path, params=variables, auth=auth)
    return api.request(row.method, path, data=variables, auth=auth)


def snapshot(api: Api, v: dict) -> dict:
    """What a refused request must leave as it was, straight from the database: how many rows
    each table has, the last audit entry, and everything about the objects the row involves."""
    api.settle()
    ids = [x for x in v.values() if isinstance(x, str)]
    tables = (Machine, Hypervisor, Cluster, ClusterMember, User, Group, GroupMember, Grant,
              ApiToken)
    with api.app.state.db.session(write=False) as s:
        def rows(model: type, *where: object, cols: tuple[str, ...]) -> list[tuple]:
            return sorted(tuple(getattr(r, c) for c in cols)
                          for r in s.scalars(select(model).where(*where)))
        return {
            "counts": [s.scalar(select(func.count()).select_from(t)) for t in tables],
            # the changes recorded (not a job's end, which an earlier row's job may write now)
            "audit": s.scalar(select(func.max(AuditEntry.id)).where(
                AuditEntry.errno == 0, AuditEntry.action.not_like("transaction.%"))),
            "machines": rows(Machine, Machine.uuid.in_(ids), cols=(
                "uuid", "name", "state", "managed", "parent_uuid", "owner_uuid", "lock_txid",
                "xmldesc", "xml_pending")),
            "hypervisors": rows(Hypervisor, Hypervisor.uuid.in_(ids),
                                cols=("uuid", "machine_uuid", "virt_url", "owner_uuid")),
            "clusters": rows(Cluster, Cluster.uuid.in_(ids), cols=("uuid", "name", "owner_uuid")),
            "cluster_members": rows(ClusterMember, ClusterMember.cluster_uuid.in_(ids),
                                    cols=("cluster_uuid", "machine_uuid")),
            "users": rows(User, User.uuid.in_(ids), cols=(
                "uuid", "username", "password_hash", "email", "is_admin", "enabled")),
            "groups": rows(Group, Group.uuid.in_(ids), cols=("uuid", "name", "owner_uuid")),
            "members": rows(GroupMember, GroupMember.group_uuid.in_(ids),
                            cols=("group_uuid", "user_uuid")),
            "grants": rows(Grant, Grant.object_uuid.in_(ids),
                           cols=("object_uuid", "principal_uuid", "permission")),
        }


def caller(env: Env, team: bool = False) -> tuple[Account, str | None]:
    """A fresh unprivileged user, with a fresh group holding only them if asked."""
    group = new_group(env.api) if team else None
    actor = new_user(env.api, **({"groups": group} if group else {}))
    env.accounts[actor.uuid] = actor
    return actor, group


def give(api: Api, v: dict, needs: list[tuple[str, str]], **principal: str) -> None:
    for permission, var in needs:
        grant(api, v[var], permission, **principal)


def refused(api: Api, row: Row, v: dict, actor: Account, expected: tuple[int, int]) -> None:
    before = snapshot(api, v)
    expect_error(call(api, row, v, actor.auth), *expected)
    assert snapshot(api, v) == before


def allowed(api: Api, row: Row, v: dict, auth: object) -> None:
    r = call(api, row, v, auth)
    assert r.status_code == 200, r.text
    assert r.json().get("errno", 0) == 0, r.text
    if row.effect:
        row.effect(api, v)


def cases(row: Row) -> list[str]:
    """Administrator-only rows: granting (even `admin` on the object) and owning are refused,
    which the refused and owner cases show; with nothing to own, there is no owner case."""
    if row.admin_only:
        return ["refused", "owner", "admin"] if row.target else ["refused", "admin"]
    return CASES


def ready(api: Api, row: Row, v: dict, who: Account) -> None:
    if row.prepare:
        row.prepare(api, v, who)


def refused_case(env: Env, row: Row, v: dict, actor: Account) -> None:
    """Nothing granted: the objects are not there for them (no object: not allowed); then,
    for each need, a caller holding every other need and read on everything involved."""
    api, needs = env.api, row.requirements
    target = v.get(row.target) if row.target else None
    ready(api, row, v, actor)
    refused(api, row, v, actor, (404, 1200) if target or needs else (403, 1101))
    if row.admin_only:
        if target:
            grant(api, target, "admin", user=actor.uuid)
            refused(api, row, v, actor, row.refusal)
        return
    for i, (permission, var) in enumerate(needs):
        other, _ = caller(env)
        ready(api, row, v, other)
        rest = needs[:i] + needs[i + 1:]
        give(api, v, rest, user=other.uuid)
        for obj in {var, row.target} - {None}:
            if (obj, permission) != (var, "read") and not any(n[1] == obj for n in rest):
                grant(api, v[obj], "read", user=other.uuid)
        refused(api, row, v, other, (404, 1200) if permission == "read" else (403, 1101))


def owner_case(env: Env, row: Row, v: dict, actor: Account) -> None:
    """The caller owns every object the row needs (a user "owns" themselves)."""
    api = env.api
    objs = [var for _, var in row.requirements] or [row.target]
    for var in objs:
        if MODELS[var] is User:
            actor = env.accounts[v[var]]
    for var in objs:
        if MODELS[var] is not User:
            set_owner(api, MODELS[var], v[var], actor.uuid)
    ready(api, row, v, actor)
    if row.admin_only:
        refused(api, row, v, actor, row.refusal)
    elif row.owner != 200:
        refused(api, row, v, actor, row.owner)
    else:
        allowed(api, row, v, actor.auth)


@pytest.mark.parametrize("row, case", [pytest.param(r, c, id=f"{r.id}-{c}")
                                       for r in ROWS for c in cases(r)])
def test_matrix(env, row, case):
    api = env.api
    actor, team = caller(env, team=case == "group") if case != "admin" else (None, None)
    v = row.setup(env)
    if case == "refused":
        refused_case(env, row, v, actor)
    elif case in ("user", "group"):
        give(api, v, row.requirements,
             **({"user": actor.uuid} if case == "user" else {"group": team}))
        ready(api, row, v, actor)
        allowed(api, row, v, actor.auth)
    elif case == "owner":
        owner_case(env, row, v, actor)
    else:
        allowed(api, row, v, "admin")


def test_every_row_has_a_distinct_id():
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids))


# -- what anyone may do ------------------------------------------------------------------------

ANYONE = [
    ("PUT", "/rest/cluster/", {"cluster_name": "x"}),
    ("PUT", "/rest/group/create/", {"group_name": "x"}),
    ("GET", "/rest/tokens/", {}),
    ("PUT", "/rest/tokens/", {"name": "x"}),
    ("POST", "/rest/tokens/", {"name": "x"}),
    ("GET", "/rest/machines/", {}),
    ("POST", "/rest/machines/", {}),
    ("GET", "/rest/machine/", {}),
    ("GET", "/rest/hosts/", {}),
    ("GET", "/rest/cluster/", {}),
    ("GET", "/rest/cluster/list/", {}),
    ("GET", "/rest/users/", {}),
    ("POST", "/rest/users/list/", {}),
    ("GET", "/rest/group/list/", {}),
]


@pytest.mark.parametrize("method, path, variables", ANYONE,
                         ids=[f"{m}-{p}" for m, p, _ in ANYONE])
def test_anyone_may(env, method, path, variables):
    api = env.api
    actor, _ = caller(env)
    variables = {k: unique(v) for k, v in variables.items()}
    kw = {"params": variables} if method == "GET" else {"data": variables}
    r = api.request(method, path, auth=actor.auth, **kw)
    assert r.status_code == 200 and r.json().get("errno", 0) == 0, r.text


def test_nobody_may_without_credentials(env):
    api = env.api
    paths = {r.path.format(**{k: "12345678-1234-1234-1234-123456789abc" for k in MODELS})
             for r in ROWS} | {p for _, p, _ in ANYONE}
    for path, method in itertools.product(sorted(paths), ["GET", "POST"]):
        r = api.request(method, path, auth=None)
        if r.status_code == 405:
            continue
        expect_error(r, 401, 1100)
