"""Spec 3.3, 3.7 to 3.9: groups. The list, creating, reading, rename, add_user, remove_user,
deleting; who may do what with a group; bad input changes nothing."""

import pytest

from tests.api.accounts import PASSWORD, grant, new_group, new_user, no_change, unique
from tests.conftest import expect_error

GROUP_KEYS = {"uuid", "name", "owner", "users", "created_at"}
NOT_A_UUID = "zzzzzzzz-1234-1234-1234-123456789abc"
NO_SUCH = "12345678-1234-1234-1234-123456789abc"


def group(api, uuid: str, **kw) -> dict:  # noqa: ANN001
    return api.ok("GET", f"/rest/group/{uuid}/", **kw)["group"]


def act(api, uuid: str, action: str, auth: object = "admin", **variables: str):  # noqa: ANN001, ANN201
    return api.post(f"/rest/group/{uuid}/", data={"action": action, **variables}, auth=auth)


def members(api, uuid: str) -> set[str]:  # noqa: ANN001
    return {u["uuid"] for u in group(api, uuid)["users"]}


# -- 3.3: the list --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_group_list_is_name_id_pairs(shared_api, method):
    api = shared_api
    name = unique("staff")
    g = new_group(api, name)
    body = api.ok(method, "/rest/group/list")
    assert set(body) == {"groups"}
    assert [name, g] in body["groups"]
    assert all(len(pair) == 2 for pair in body["groups"])


def test_a_user_lists_the_groups_they_own_belong_to_or_may_read(shared_api):
    api = shared_api
    alice = new_user(api)
    member_of = new_group(api, members=(alice,))
    readable = new_group(api)
    grant(api, readable, "read", user=alice.uuid)
    new_group(api)  # neither
    owned = new_group(api, auth=alice.auth)
    listed = {i for _, i in api.ok("GET", "/rest/group/list/", auth=alice.auth)["groups"]}
    assert listed == {member_of, readable, owned}


# -- 3.7: create ----------------------------------------------------------------------------

def test_create_answers_the_group_owned_by_its_creator(shared_api):
    api = shared_api
    alice, name = new_user(api), unique("devs")
    r = api.put("/rest/group/create/", data={"group_name": name}, auth=alice.auth)
    body = r.json()
    assert r.status_code == 200 and body["errno"] == 0, body
    assert set(body) == {"group", "errno", "message"}
    assert set(body["group"]) == GROUP_KEYS
    assert (body["group"]["name"], body["group"]["owner"], body["group"]["users"]) == \
        (name, alice.uuid, [])
    assert group(api, body["group"]["uuid"], auth=alice.auth)["name"] == name


def test_create_from_a_json_body(shared_api):
    api = shared_api
    name = unique("json")
    body = api.ok("PUT", "/rest/group/create", json={"group_name": name})
    assert body["group"]["name"] == name


@pytest.mark.parametrize("variables, status, errno", [
    ({}, 400, 1001),
    ({"group_name": ""}, 400, 1001),
    ({"group_name": "_underscore-first"}, 400, 1000),
    ({"group_name": "with space"}, 400, 1000),
    ({"group_name": "g" * 65}, 400, 1000),
    ({"group_name": "existing-group"}, 409, 1300),
], ids=["missing", "empty", "leading-underscore", "space", "too-long", "duplicate"])
def test_create_refuses_bad_names(shared_api, variables, status, errno):
    api = shared_api
    if not any(n == "existing-group" for n, _ in api.ok("GET", "/rest/group/list/")["groups"]):
        new_group(api, "existing-group")
    with no_change(api):
        expect_error(api.put("/rest/group/create/", data=variables), status, errno)


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_create_takes_only_put(shared_api, method):
    api = shared_api
    with no_change(api):  # 'create' is no group id: a method 3.7 does not list
        body = expect_error(api.request(method, "/rest/group/create/",
                                        params={"group_name": unique("g")}), 405, 1005)
        assert "PUT" in body["message"]


# -- 3.9: get and act -----------------------------------------------------------------------

def test_get_and_post_without_action_answer_the_same(shared_api):
    api = shared_api
    alice = new_user(api)
    g = new_group(api, members=(alice,))
    got = api.ok("GET", f"/rest/group/{g}")
    assert set(got) == {"group", "errno", "message"} and set(got["group"]) == GROUP_KEYS
    assert got["group"]["users"] == [{"uuid": alice.uuid, "username": alice.name}]
    assert api.ok("POST", f"/rest/group/{g}/") == got


def test_rename(shared_api):
    api = shared_api
    g, new = new_group(api), unique("renamed")
    body = act(api, g, "rename", group_name=new).json()
    assert body["errno"] == 0 and body["group"]["name"] == new
    assert [new, g] in api.ok("GET", "/rest/group/list/")["groups"]
    assert act(api, g, "rename", group_name=new).status_code == 200  # its own name: fine


@pytest.mark.parametrize("by", ["uuid", "name"])
def test_add_user_and_remove_user(shared_api, by):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    g = new_group(api)
    for u in (alice, bob):
        body = act(api, g, "add_user", user=u.uuid if by == "uuid" else u.name).json()
        assert body["errno"] == 0, body
    assert members(api, g) == {alice.uuid, bob.uuid}
    assert [x["uuid"] for x in api.ok("GET", f"/rest/user/{alice.uuid}/")["user"]["groups"]] \
        == [g]
    body = act(api, g, "remove_user", user=alice.uuid if by == "uuid" else alice.name).json()
    assert [u["uuid"] for u in body["group"]["users"]] == [bob.uuid]
    assert api.ok("GET", f"/rest/user/{alice.uuid}/")["user"]["groups"] == []


@pytest.mark.parametrize("method, suffix", [("DELETE", ""), ("GET", "delete/"),
                                            ("POST", "delete/")])
def test_delete_keeps_the_members_and_drops_the_group_grants(shared_api, method, suffix):
    api = shared_api
    alice = new_user(api)
    g = new_group(api, members=(alice,))
    other = new_group(api)
    grant(api, other, "read", group=g)
    assert other in {i for _, i in api.ok("GET", "/rest/group/list/", auth=alice.auth)["groups"]}
    body = api.ok(method, f"/rest/group/{g}/{suffix}")
    assert set(body) == {"group", "errno", "message"} and body["group"] is None
    expect_error(api.get(f"/rest/group/{g}/"), 404, 1200)
    assert api.ok("GET", f"/rest/user/{alice.uuid}/")["user"]["groups"] == []
    assert api.ok("GET", f"/rest/permissions/{other}/")["permissions"] == []
    expect_error(api.get(f"/rest/group/{other}/", auth=alice.auth), 404, 1200)
    # and the name is free again
    name = unique("again")
    api.ok("POST", f"/rest/group/{other}/", data={"action": "rename", "group_name": name})


# -- bad input ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def team(shared_api):  # noqa: ANN001, ANN201
    """A group `team-bad-input` holding alice; bob is in no group."""
    api = shared_api
    alice, bob = new_user(api, "alice-g"), new_user(api, "bob-g")
    new_group(api, "taken-name")
    return new_group(api, "team-bad-input", members=(alice,)), alice, bob


@pytest.mark.parametrize("variables, status, errno", [
    ({"action": "explode"}, 400, 1003),
    ({"action": "rename"}, 400, 1001),
    ({"action": "rename", "group_name": "taken-name"}, 409, 1300),
    ({"action": "rename", "group_name": "bad name"}, 400, 1000),
    ({"action": "add_user"}, 400, 1001),
    ({"action": "add_user", "user": "alice-g"}, 409, 1300),            # already in
    ({"action": "add_user", "user": "nobody-at-all"}, 404, 1200),
    ({"action": "add_user", "user": NO_SUCH}, 404, 1200),
    ({"action": "remove_user", "user": "bob-g"}, 400, 1000),           # not in the group
    ({"action": "remove_user", "user": "nobody-at-all"}, 404, 1200),
    ({"action": "remove_user"}, 400, 1001),
], ids=["unknown-action", "rename-no-name", "rename-taken", "rename-bad", "add-no-user",
        "add-twice", "add-unknown", "add-unknown-id", "remove-not-member", "remove-unknown",
        "remove-no-user"])
def test_actions_refuse_bad_input(shared_api, team, variables, status, errno):
    api = shared_api
    g, _alice, _bob = team
    with no_change(api):
        expect_error(api.post(f"/rest/group/{g}/", data=variables), status, errno)


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("POST", ""), ("DELETE", ""),
                                            ("POST", "delete/")])
def test_malformed_and_unknown_group_ids(shared_api, method, suffix):
    api = shared_api
    with no_change(api):
        expect_error(api.request(method, f"/rest/group/{NOT_A_UUID}/{suffix}"), 400, 1002)
        expect_error(api.request(method, f"/rest/group/team/{suffix}"), 400, 1002)
        expect_error(api.request(method, f"/rest/group/{NO_SUCH}/{suffix}"), 404, 1200)


def test_a_user_id_is_not_a_group(shared_api, team):
    api = shared_api
    _g, alice, _bob = team
    expect_error(api.get(f"/rest/group/{alice.uuid}/"), 404, 1200)


# -- who may do what with a group -------------------------------------------------------------

def test_anyone_creates_a_group_and_its_owner_manages_it(shared_api):
    api = shared_api
    alice = new_user(api)
    g = new_group(api, auth=alice.auth)
    assert act(api, g, "add_user", auth=alice.auth, user=alice.name).status_code == 200
    assert act(api, g, "rename", auth=alice.auth, group_name=unique("mine")).status_code == 200
    assert act(api, g, "remove_user", auth=alice.auth, user=alice.uuid).status_code == 200
    assert api.delete(f"/rest/group/{g}/", auth=alice.auth).status_code == 200


def test_members_read_their_group_but_do_not_change_it(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    g = new_group(api, members=(alice, bob))
    assert {u["uuid"] for u in group(api, g, auth=alice.auth)["users"]} == {alice.uuid, bob.uuid}
    with no_change(api):
        expect_error(act(api, g, "rename", auth=alice.auth, group_name=unique("x")), 403, 1101)
        expect_error(act(api, g, "remove_user", auth=alice.auth, user=bob.uuid), 403, 1101)
        expect_error(api.delete(f"/rest/group/{g}/", auth=alice.auth), 403, 1101)


def test_outsiders_do_not_see_a_group(shared_api):
    api = shared_api
    alice = new_user(api)
    g = new_group(api)
    with no_change(api):
        for r in (api.get(f"/rest/group/{g}/", auth=alice.auth),
                  act(api, g, "add_user", auth=alice.auth, user=alice.uuid),
                  api.delete(f"/rest/group/{g}/", auth=alice.auth),
                  api.post(f"/rest/user/{alice.uuid}/", auth=alice.auth,
                           data={"action": "add_group", "group": g})):
            expect_error(r, 404, 1200)


def test_users_cannot_join_a_group_they_may_only_read(shared_api):
    api = shared_api
    alice = new_user(api)
    g = new_group(api)
    grant(api, g, "read", user=alice.uuid)
    with no_change(api):
        expect_error(api.post(f"/rest/user/{alice.uuid}/", auth=alice.auth,
                              data={"action": "add_group", "group": g}), 403, 1101)
    grant(api, g, "modify", user=alice.uuid)
    api.ok("POST", f"/rest/user/{alice.uuid}/", auth=alice.auth,
           data={"action": "add_group", "group": g})
    assert members(api, g) == {alice.uuid}


def test_modify_on_a_group_still_needs_read_on_the_user_added(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    g = new_group(api, auth=alice.auth)
    with no_change(api):
        expect_error(act(api, g, "add_user", auth=alice.auth, user=bob.name), 404, 1200)
    grant(api, bob.uuid, "read", user=alice.uuid)
    assert act(api, g, "add_user", auth=alice.auth, user=bob.name).status_code == 200
    assert members(api, g) == {bob.uuid}
    assert PASSWORD not in api.get(f"/rest/group/{g}/", auth=alice.auth).text
