"""Spec 4.1: access lists. Reading, granting and revoking through every method; bad input; the
rules (admin implies everything, any grant implies read, group grants, owners, what the lists
show, read through a cluster, control on a hypervisor)."""

import pytest

from tests.api.accounts import (
    PASSWORD,
    add_hypervisor,
    define_vm,
    grant,
    new_group,
    new_user,
    no_change,
    unique,
)
from tests.conftest import expect_error
from tests.fakehost import FakeDomain

ANSWER_KEYS = {"object", "object_type", "object_name", "owner", "owner_name", "permissions",
               "errno", "message"}
GRANT_KEYS = {"uuid", "permission", "principal_type", "principal", "principal_name",
              "created_at"}
NO_SUCH = "12345678-1234-1234-1234-123456789abc"


def acl(api, obj: str, auth: object = "admin") -> set[tuple[str, str, str]]:  # noqa: ANN001
    """The access list as (permission, principal type, principal id)."""
    body = api.ok("GET", f"/rest/permissions/{obj}/", auth=auth)
    return {(g["permission"], g["principal_type"], g["principal"]) for g in body["permissions"]}


def hv_of(api) -> str:  # noqa: ANN001
    return api.hypervisors()[0]["uuid"]


def new_cluster(api, auth: object = "admin") -> str:  # noqa: ANN001
    return api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")},
                  auth=auth)["cluster"]["uuid"]


def machine_ids(api, auth: object) -> set[str]:  # noqa: ANN001
    return set(api.ok("GET", "/rest/machines/", auth=auth)["machines"])


# -- reading an access list -------------------------------------------------------------------

def test_the_answer_names_the_object_its_owner_and_each_grant(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    c = new_cluster(api, auth=alice.auth)
    g = new_group(api)
    grant(api, c, "read", user=bob.uuid)
    body = grant(api, c, "control", group=g)
    assert set(body) == ANSWER_KEYS
    assert (body["object"], body["object_type"], body["owner"]) == (c, "cluster", alice.uuid)
    assert (body["object_name"], body["owner_name"]) == \
        (api.ok("GET", f"/rest/cluster/{c}/")["cluster"]["name"], alice.name)
    assert body["errno"] == 0 and "control" in body["message"]
    assert all(set(e) == GRANT_KEYS for e in body["permissions"])
    assert sorted((e["permission"], e["principal_type"], e["principal"], e["principal_name"])
                  for e in body["permissions"]) == \
        sorted([("read", "user", bob.uuid, bob.name),
                ("control", "group", g, api.ok("GET", f"/rest/group/{g}/")["group"]["name"])])
    assert api.ok("GET", f"/rest/permissions/{c}")["permissions"] == body["permissions"]


def test_every_kind_of_object_has_an_access_list(shared_api, tmp_path):
    api = shared_api
    host = api.local_host()
    hv = hv_of(api)
    objects = {"machine": [define_vm(api, hv), host], "hypervisor": [hv],
               "cluster": [new_cluster(api)], "user": [new_user(api).uuid],
               "group": [new_group(api)]}
    alice = new_user(api)
    for kind, uuids in objects.items():
        for uuid in uuids:
            body = grant(api, uuid, "read", user=alice.uuid)
            assert (body["object"], body["object_type"]) == (uuid, kind)
            assert acl(api, uuid) >= {("read", "user", alice.uuid)}


# -- granting and revoking ----------------------------------------------------------------------

@pytest.mark.parametrize("kind, by", [("user", "uuid"), ("user", "name"), ("group", "uuid"),
                                      ("group", "name")])
def test_put_grants_and_delete_revokes(shared_api, kind, by):
    api = shared_api
    c = new_cluster(api)
    gname = unique("readers")
    who = new_user(api) if kind == "user" else None
    uuid = who.uuid if who else new_group(api, gname)
    ref = uuid if by == "uuid" else (who.name if who else gname)
    r = api.put(f"/rest/permissions/{c}/", data={"permission": "modify", kind: ref})
    assert r.status_code == 200 and r.json()["errno"] == 0, r.text
    assert acl(api, c) == {("modify", kind, uuid)}
    r = api.delete(f"/rest/permissions/{c}/", params={"permission": "modify", kind: ref})
    assert r.status_code == 200 and r.json()["permissions"] == [], r.text
    assert acl(api, c) == set()


def test_post_with_action_grants_and_revokes(shared_api):
    api = shared_api
    c, alice = new_cluster(api), new_user(api)
    api.ok("POST", f"/rest/permissions/{c}/", data={"action": "grant", "permission": "delete",
                                                    "user": alice.name})
    assert acl(api, c) == {("delete", "user", alice.uuid)}
    api.ok("POST", f"/rest/permissions/{c}/", json={"action": "revoke", "permission": "delete",
                                                    "user": alice.uuid})
    assert acl(api, c) == set()


def test_several_permissions_for_one_principal_are_separate_grants(shared_api):
    api = shared_api
    c, alice = new_cluster(api), new_user(api)
    for p in ("read", "modify", "delete"):
        grant(api, c, p, user=alice.uuid)
    api.ok("DELETE", f"/rest/permissions/{c}/", params={"permission": "modify",
                                                        "user": alice.uuid})
    assert acl(api, c) == {("read", "user", alice.uuid), ("delete", "user", alice.uuid)}


@pytest.fixture(scope="module")
def target(shared_api):  # noqa: ANN001, ANN201
    """A cluster on which alice-p holds read; bob-p holds nothing; group team-p exists."""
    api = shared_api
    c = new_cluster(api)
    alice, _bob = new_user(api, "alice-p"), new_user(api, "bob-p")
    new_group(api, "team-p")
    grant(api, c, "read", user=alice.uuid)
    return c


@pytest.mark.parametrize("method, variables, status, errno", [
    ("PUT", {"permission": "read", "user": "alice-p"}, 409, 1300),       # held already
    ("DELETE", {"permission": "modify", "user": "alice-p"}, 404, 1200),  # not held
    ("DELETE", {"permission": "read", "user": "bob-p"}, 404, 1200),
    ("PUT", {"permission": "sudo", "user": "bob-p"}, 400, 1000),
    ("PUT", {"permission": "READ", "user": "bob-p"}, 400, 1000),
    ("DELETE", {"permission": "owner", "user": "alice-p"}, 400, 1000),
    ("PUT", {"user": "bob-p"}, 400, 1001),
    ("PUT", {"permission": "read", "user": "bob-p", "group": "team-p"}, 400, 1000),
    ("PUT", {"permission": "read"}, 400, 1001),
    ("DELETE", {"permission": "read"}, 400, 1001),
    ("PUT", {"permission": "read", "user": "nobody-at-all"}, 404, 1200),
    ("PUT", {"permission": "read", "user": NO_SUCH}, 404, 1200),
    ("PUT", {"permission": "read", "group": "no-such-team"}, 404, 1200),
    ("PUT", {"permission": "read", "group": NO_SUCH}, 404, 1200),
    ("POST", {"permission": "read", "user": "bob-p"}, 400, 1001),          # no action
    ("POST", {"action": "give", "permission": "read", "user": "bob-p"}, 400, 1003),
], ids=["grant-twice", "revoke-not-held", "revoke-from-nobody", "unknown-permission",
        "upper-case", "revoke-unknown", "no-permission", "both-principals", "no-principal",
        "revoke-no-principal", "unknown-user", "unknown-user-id", "unknown-group",
        "unknown-group-id", "post-no-action", "post-unknown-action"])
def test_bad_input_changes_nothing(shared_api, target, method, variables, status, errno):
    api = shared_api
    kw = {"data": variables} if method in ("PUT", "POST") else {"params": variables}
    with no_change(api):
        expect_error(api.request(method, f"/rest/permissions/{target}/", **kw), status, errno)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST"])
def test_malformed_and_unknown_objects(shared_api, method):
    api = shared_api
    data = {"action": "grant", "permission": "read", "user": "admin"}
    kw = {"data": data} if method in ("PUT", "POST") else {"params": data}
    if method == "GET":
        kw = {}  # a GET with the variables of a change is refused before anything (1080)
    with no_change(api):
        expect_error(api.request(method, "/rest/permissions/not-a-uuid/", **kw), 400, 1002)
        expect_error(api.request(method, f"/rest/permissions/{NO_SUCH}/", **kw), 404, 1200)


def test_the_admin_user_has_no_owner_and_may_still_be_shared(shared_api):
    api = shared_api
    alice = new_user(api)
    admin = next(i for n, i in api.ok("GET", "/rest/users/")["users"] if n == "admin")
    body = grant(api, admin, "read", user=alice.uuid)
    assert body["owner"] is None and body["object_type"] == "user"
    assert api.ok("GET", f"/rest/user/{admin}/", auth=alice.auth)["user"]["username"] == "admin"


# -- the rules ------------------------------------------------------------------------------------

def test_admin_on_an_object_implies_every_permission_on_it(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    c = new_cluster(api)
    grant(api, c, "admin", user=alice.uuid)
    grant(api, bob.uuid, "read", user=alice.uuid)  # so that alice may name bob
    api.ok("GET", f"/rest/cluster/{c}/", auth=alice.auth)
    api.ok("POST", f"/rest/cluster/{c}/", data={"action": "rename", "cluster_name": unique("n")},
           auth=alice.auth)
    grant(api, c, "read", user=bob.name, auth=alice.auth)
    assert ("read", "user", bob.uuid) in acl(api, c, auth=alice.auth)
    api.ok("DELETE", f"/rest/cluster/{c}/", auth=alice.auth)


@pytest.mark.parametrize("permission", ["control", "modify", "delete"])
def test_any_grant_implies_read_and_nothing_else(shared_api, permission):
    api = shared_api
    alice = new_user(api)
    c = new_cluster(api)
    grant(api, c, permission, user=alice.uuid)
    assert api.ok("GET", f"/rest/cluster/{c}/", auth=alice.auth)["cluster"]["uuid"] == c
    assert c in {x["uuid"] for x in api.ok("GET", "/rest/cluster/list/",
                                             auth=alice.auth)["clusters"]}
    with no_change(api):
        expect_error(api.get(f"/rest/permissions/{c}/", auth=alice.auth), 403, 1101)
    rename = api.post(f"/rest/cluster/{c}/", auth=alice.auth,
                      data={"action": "rename", "cluster_name": unique("r")})
    assert rename.status_code == (200 if permission == "modify" else 403), rename.text


def test_a_group_grant_applies_to_its_members_while_they_are_members(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    g = new_group(api, members=(alice,))
    c = new_cluster(api)
    grant(api, c, "read", group=g)
    assert api.get(f"/rest/cluster/{c}/", auth=alice.auth).status_code == 200
    expect_error(api.get(f"/rest/cluster/{c}/", auth=bob.auth), 404, 1200)
    api.ok("POST", f"/rest/group/{g}/", data={"action": "add_user", "user": bob.uuid})
    assert api.get(f"/rest/cluster/{c}/", auth=bob.auth).status_code == 200
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "remove_group", "group": g})
    expect_error(api.get(f"/rest/cluster/{c}/", auth=alice.auth), 404, 1200)
    api.ok("DELETE", f"/rest/group/{g}/")
    expect_error(api.get(f"/rest/cluster/{c}/", auth=bob.auth), 404, 1200)


def test_revoking_takes_effect_at_once(shared_api):
    api = shared_api
    alice = new_user(api)
    c = new_cluster(api)
    grant(api, c, "read", user=alice.uuid)
    assert api.get(f"/rest/cluster/{c}/", auth=alice.auth).status_code == 200  # cached login
    api.ok("DELETE", f"/rest/permissions/{c}/", params={"permission": "read",
                                                        "user": alice.uuid})
    expect_error(api.get(f"/rest/cluster/{c}/", auth=alice.auth), 404, 1200)


def test_without_admin_on_it_an_access_list_is_404_or_403(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    c = new_cluster(api)
    with no_change(api):
        for method in ("GET", "PUT", "DELETE", "POST"):
            data = {"action": "grant", "permission": "admin", "user": alice.uuid}
            kw = {"data": data} if method in ("PUT", "POST") else {"params": data}
            kw = {} if method == "GET" else kw  # GET with variables: 1080 (its own test)
            expect_error(api.request(method, f"/rest/permissions/{c}/", auth=alice.auth, **kw),
                         404, 1200)
    grant(api, c, "modify", user=alice.uuid)
    with no_change(api):
        expect_error(api.put(f"/rest/permissions/{c}/", auth=alice.auth,
                             data={"permission": "admin", "user": alice.uuid}), 403, 1101)
        expect_error(api.put(f"/rest/permissions/{c}/", auth=alice.auth,
                             data={"permission": "read", "user": bob.uuid}), 403, 1101)


def test_a_principal_must_be_one_the_granter_may_read(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    c = new_cluster(api, auth=alice.auth)
    hidden = new_group(api)
    with no_change(api):
        expect_error(api.put(f"/rest/permissions/{c}/", auth=alice.auth,
                             data={"permission": "read", "user": bob.name}), 404, 1200)
        expect_error(api.put(f"/rest/permissions/{c}/", auth=alice.auth,
                             data={"permission": "read", "group": hidden}), 404, 1200)
    mine = new_group(api, auth=alice.auth)
    grant(api, c, "read", group=mine, auth=alice.auth)
    grant(api, bob.uuid, "read", user=alice.uuid)
    grant(api, c, "read", user=bob.name, auth=alice.auth)
    assert acl(api, c) == {("read", "group", mine), ("read", "user", bob.uuid)}


def test_a_user_may_read_and_modify_themselves_only(shared_api):
    api = shared_api
    alice = new_user(api)
    api.ok("GET", f"/rest/user/{alice.uuid}/", auth=alice.auth)
    with no_change(api):
        expect_error(api.get(f"/rest/permissions/{alice.uuid}/", auth=alice.auth), 403, 1101)
        expect_error(api.put(f"/rest/permissions/{alice.uuid}/", auth=alice.auth,
                             data={"permission": "admin", "user": alice.uuid}), 403, 1101)


# -- owners: whoever creates an object owns it ------------------------------------------------

def test_creators_own_clusters_and_groups(shared_api):
    api = shared_api
    alice = new_user(api)
    c = new_cluster(api, auth=alice.auth)
    g = new_group(api, auth=alice.auth)
    for obj in (c, g):
        body = api.ok("GET", f"/rest/permissions/{obj}/", auth=alice.auth)
        assert body["owner"] == alice.uuid and body["permissions"] == []
    assert api.ok("GET", f"/rest/permissions/{c}/")["owner"] == alice.uuid


def test_creators_own_the_vms_they_define_and_the_hypervisors_they_add(shared_api, tmp_path):
    """(A non-administrator adds only hypervisors on real hosts, test_hypervisor_uris.py; here
    the administrator adds one and owns it, alice defines a VM on it and owns that.)"""
    api = shared_api
    alice = new_user(api)
    hv = add_hypervisor(api, api.local_host(), tmp_path / "alice.xml")
    admin = api.ok("GET", "/rest/users/")["users"]
    assert api.ok("GET", f"/rest/permissions/{hv}/")["owner"] == dict(admin)["admin"]
    grant(api, hv, "control", user=alice.uuid)
    vm = define_vm(api, hv, auth=alice.auth)
    assert api.machine(vm)["machine_obj"]["owner"] == alice.uuid
    api.ok("POST", f"/rest/machine/{vm}/actions/create/", auth=alice.auth)
    # on the shared hypervisor, with control granted and then taken away, she still owns it
    shared = hv_of(api)
    grant(api, shared, "control", user=alice.uuid)
    vm2 = define_vm(api, shared, auth=alice.auth)
    api.ok("DELETE", f"/rest/permissions/{shared}/", params={"permission": "control",
                                                             "user": alice.uuid})
    api.ok("POST", f"/rest/machine/{vm2}/actions/create/", auth=alice.auth)
    assert machine_ids(api, alice.auth) >= {vm, vm2}


def test_who_manages_a_discovered_machine_owns_it(shared_api, tmp_path):
    api = shared_api
    alice = new_user(api)
    hv = add_hypervisor(api, api.local_host(), tmp_path / "found.xml",
                        [FakeDomain("stray", state="shutoff")])
    [stray] = [m for m in api.ok("GET", "/rest/machines/", params={"hypervisor": hv})["machines"]]
    assert api.machine(stray)["machine_obj"]["owner"] is None
    grant(api, hv, "control", user=alice.uuid)
    api.ok("POST", f"/rest/machine/{stray}/actions/manage/", auth=alice.auth)
    assert api.machine(stray)["machine_obj"]["owner"] == alice.uuid
    api.ok("DELETE", f"/rest/permissions/{hv}/", params={"permission": "control",
                                                         "user": alice.uuid})
    api.ok("POST", f"/rest/machine/{stray}/actions/create/", auth=alice.auth)


# -- what lists show ---------------------------------------------------------------------------

def test_an_unprivileged_user_sees_empty_lists(shared_api):
    api = shared_api
    alice = new_user(api)
    define_vm(api, hv_of(api)), new_cluster(api), new_group(api)
    assert api.ok("GET", "/rest/machines/", auth=alice.auth)["machines"] == []
    assert api.ok("GET", "/rest/machine/", params={"detail": "1"},
                  auth=alice.auth)["machine_objs"] == []
    assert api.ok("GET", "/rest/hosts/", auth=alice.auth)["hosts"] == []
    assert api.ok("GET", "/rest/cluster/list/", auth=alice.auth)["clusters"] == []
    assert api.ok("GET", "/rest/cluster/", auth=alice.auth)["cluster"] == []
    assert api.ok("GET", "/rest/group/list/", auth=alice.auth)["groups"] == []
    assert api.ok("GET", "/rest/users/", auth=alice.auth)["users"] == [[alice.name, alice.uuid]]


def test_lists_hold_exactly_what_the_user_may_read(shared_api):
    api = shared_api
    alice = new_user(api)
    team = new_group(api, members=(alice,))
    hv = hv_of(api)
    mine, shared, hidden = define_vm(api, hv), define_vm(api, hv), define_vm(api, hv)
    grant(api, mine, "control", user=alice.uuid)
    grant(api, shared, "read", group=team)
    c_read, c_hidden = new_cluster(api), new_cluster(api)
    grant(api, c_read, "modify", group=team)
    host = api.local_host()
    grant(api, host, "read", user=alice.uuid)
    assert machine_ids(api, alice.auth) == {mine, shared, host}
    assert set(api.ok("GET", "/rest/machines/", params={"kind": "vm"},
                      auth=alice.auth)["machines"]) == {mine, shared}
    assert [h["uuid"] for h in api.ok("GET", "/rest/hosts/", auth=alice.auth)["hosts"]] == [host]
    assert {c["uuid"] for c in api.ok("GET", "/rest/cluster/list/",
                                      auth=alice.auth)["clusters"]} == {c_read}
    assert {c["uuid"] for c in api.ok("GET", "/rest/cluster/", auth=alice.auth)["cluster"]} \
        == {c_read}
    assert {mine, shared, hidden, host} <= machine_ids(api, "admin")
    assert c_hidden in {c["uuid"] for c in api.ok("GET", "/rest/cluster/list/")["clusters"]}


def test_read_on_a_cluster_lets_its_machines_be_read(shared_api):
    api = shared_api
    alice = new_user(api)
    hv = hv_of(api)
    inside, outside = define_vm(api, hv), define_vm(api, hv)
    c = new_cluster(api)
    api.ok("POST", f"/rest/machine/{inside}/clusters/", data={"clusters": c})
    grant(api, c, "read", user=alice.uuid)
    assert machine_ids(api, alice.auth) == {inside}
    assert api.ok("GET", f"/rest/machine/{inside}/", auth=alice.auth)["machine"] == inside
    expect_error(api.get(f"/rest/machine/{outside}/", auth=alice.auth), 404, 1200)
    # reading is all it gives
    with no_change(api):
        expect_error(api.post(f"/rest/machine/{inside}/actions/create/", auth=alice.auth),
                     403, 1101)
    # and it ends when the machine leaves the cluster
    api.ok("DELETE", f"/rest/machine/{inside}/clusters/", params={"clusters": c})
    expect_error(api.get(f"/rest/machine/{inside}/", auth=alice.auth), 404, 1200)


def test_control_on_a_hypervisor_lets_its_machines_be_read(shared_api, tmp_path):
    api = shared_api
    alice = new_user(api)
    hv = add_hypervisor(api, api.local_host(), tmp_path / "ctl.xml",
                        [FakeDomain("found", state="running")])
    vm = define_vm(api, hv)
    on_other = define_vm(api, hv_of(api))
    found = next(m for m in api.ok("GET", "/rest/machines/", params={"hypervisor": hv})["machines"]
                 if m != vm)
    grant(api, hv, "read", user=alice.uuid)
    assert machine_ids(api, alice.auth) == set()  # read on the hypervisor is not enough
    grant(api, hv, "control", user=alice.uuid)
    assert machine_ids(api, alice.auth) == {vm, found}
    assert on_other not in machine_ids(api, alice.auth)
    api.ok("GET", f"/rest/machine/{found}/", auth=alice.auth)
    # seeing a machine is not controlling it
    with no_change(api):
        expect_error(api.post(f"/rest/machine/{vm}/actions/create/", auth=alice.auth),
                     403, 1101)


def test_a_machines_cluster_list_shows_only_readable_clusters(shared_api):
    api = shared_api
    alice = new_user(api)
    vm = define_vm(api, hv_of(api))
    seen, unseen = new_cluster(api), new_cluster(api)
    api.ok("POST", f"/rest/machine/{vm}/clusters/", data={"clusters": f"{seen},{unseen}"})
    grant(api, vm, "read", user=alice.uuid)
    grant(api, seen, "read", user=alice.uuid)
    got = api.ok("GET", f"/rest/machine/{vm}/clusters/", auth=alice.auth)["clusters"]
    assert [c["uuid"] for c in got] == [seen]


def test_an_administrator_sees_everything_without_grants(shared_api):
    api = shared_api
    boss = new_user(api, admin="true")
    alice = new_user(api)
    c = new_cluster(api, auth=alice.auth)
    g = new_group(api, auth=alice.auth)
    assert c in {x["uuid"] for x in api.ok("GET", "/rest/cluster/list/",
                                             auth=boss.auth)["clusters"]}
    assert g in {i for _, i in api.ok("GET", "/rest/group/list/", auth=boss.auth)["groups"]}
    assert [alice.name, alice.uuid] in api.ok("GET", "/rest/users/", auth=boss.auth)["users"]
    api.ok("DELETE", f"/rest/cluster/{c}/", auth=boss.auth)
    assert PASSWORD not in api.get("/rest/users/", auth=boss.auth).text


# -- grants go with their object -------------------------------------------------------------------

def test_a_new_machine_with_a_deleted_ones_uuid_inherits_no_grants(shared_api):
    """libvirt UUIDs come back (a domain defined again from saved XML): whoever was granted the
    old machine must get nothing on the new one."""
    from tests.fakehost import domain_xml

    api = shared_api
    alice = new_user(api)
    hv = hv_of(api)
    xml = domain_xml(unique("again"), "0f0f0f0f-1234-4321-8765-0123456789ab")
    vm = api.ok("PUT", "/rest/machines/", data={"xmldesc": xml, "hvmuuid": hv})["machine"]
    grant(api, vm, "control", user=alice.uuid)
    api.ok("POST", f"/rest/machine/{vm}/actions/totaldelete/")
    again = api.ok("PUT", "/rest/machines/", data={"xmldesc": xml, "hvmuuid": hv})["machine"]
    assert again == vm
    assert api.ok("GET", f"/rest/permissions/{vm}/")["permissions"] == []
    expect_error(api.get(f"/rest/machine/{vm}/", auth=alice.auth), 404, 1200)


def test_deleting_an_object_deletes_its_grants(shared_api, tmp_path):
    from sqlalchemy import func, select

    from enomalism.store.models import Grant

    api = shared_api
    alice = new_user(api)
    c, vm = new_cluster(api), define_vm(api, hv_of(api))
    hv = add_hypervisor(api, api.local_host(), tmp_path / "gone.xml")
    host = api.ok("PUT", "/rest/hosts/", data={"name": unique("gone")})["machine"]
    for obj in (c, vm, hv, host):
        grant(api, obj, "read", user=alice.uuid)
    api.ok("DELETE", f"/rest/cluster/{c}/")
    api.ok("POST", f"/rest/machine/{vm}/actions/totaldelete/")
    api.ok("DELETE", f"/rest/hypervisor/{hv}/")
    api.ok("POST", f"/rest/machine/{host}/actions/totaldelete/")
    with api.app.state.db.session(write=False) as s:
        left = s.scalar(select(func.count()).select_from(Grant).where(
            Grant.object_uuid.in_([c, vm, hv, host])))
    assert left == 0


# -- what may I do: GET /rest/permissions/<UUID>/mine/ ---------------------------------------

def test_mine_answers_the_callers_permissions_and_the_permitted_actions_now(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    vm = define_vm(api, hv_of(api))  # stopped, managed, owned by the admin
    grant(api, vm, "read", user=alice.uuid)
    grant(api, vm, "control", user=alice.uuid)
    before = acl(api, vm)
    body = api.ok("GET", f"/rest/permissions/{vm}/mine/", auth=alice.auth)
    assert (body["object"], body["object_type"]) == (vm, "machine")
    assert body["permissions"] == ["read", "control"]
    assert body["actions"] == ["create"]  # start; not rename, set, delete: those need more
    admin = api.ok("GET", f"/rest/permissions/{vm}/mine/")
    assert admin["permissions"] == ["read", "control", "modify", "export", "delete", "admin"]
    assert admin["actions"] == api.ok("GET", f"/rest/machine/{vm}/")["machine_obj"]["actions"]
    # a user who may not read it learns nothing; another object has no actions
    expect_error(api.get(f"/rest/permissions/{vm}/mine/", auth=bob.auth), 404, 1200)
    expect_error(api.get(f"/rest/permissions/{NO_SUCH}/mine/", auth=bob.auth), 404, 1200)
    expect_error(api.get("/rest/permissions/not-a-uuid/mine/", auth=bob.auth), 400, 1002)
    me = api.ok("GET", f"/rest/permissions/{bob.uuid}/mine/", auth=bob.auth)
    assert (me["object_type"], me["permissions"], me["actions"]) == \
        ("user", ["read", "modify"], None)
    assert acl(api, vm) == before  # asking changes nothing
