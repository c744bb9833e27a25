"""The audit log (extension): every change of users, groups, tokens and permissions is written
with who made it, what, when and from where; only administrators read it."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api.accounts import (
    PASSWORD,
    Account,
    audit,
    grant,
    new_group,
    new_user,
    no_change,
    unique,
)
from tests.conftest import Api, expect_error

ENTRY_KEYS = {"id", "at", "actor", "actor_name", "source", "action", "object", "object_type",
              "object_name", "errno", "message", "detail"}


def _user_action(action: str, **variables: str) -> Callable:
    def do(api: Api, actor: Account) -> str:
        alice = new_user(api)
        if action == "remove_group":
            variables["group"] = new_group(api, members=(alice,))
        elif action == "add_group":
            variables["group"] = new_group(api)
        api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": action, **variables},
               auth=actor.auth)
        return alice.uuid
    return do


def _group_action(action: str) -> Callable:
    def do(api: Api, actor: Account) -> str:
        alice = new_user(api)
        g = new_group(api, members=(alice,) if action == "remove_user" else ())
        variables = {"group_name": unique("g")} if action == "rename" else {"user": alice.uuid}
        api.ok("POST", f"/rest/group/{g}/", data={"action": action, **variables},
               auth=actor.auth)
        return g
    return do


def _create_user(api: Api, actor: Account) -> str:
    return api.ok("POST", "/rest/user/create/", auth=actor.auth,
                  data={"username": unique("u"), "password": PASSWORD})["uuid"]


def _delete_user(api: Api, actor: Account) -> str:
    alice = new_user(api)
    api.ok("DELETE", f"/rest/user/{alice.uuid}/", auth=actor.auth)
    return alice.uuid


def _create_group(api: Api, actor: Account) -> str:
    return new_group(api, auth=actor.auth)


def _delete_group(api: Api, actor: Account) -> str:
    g = new_group(api)
    api.ok("POST", f"/rest/group/{g}/delete/", auth=actor.auth)
    return g


def _create_token(api: Api, actor: Account) -> str:
    return api.ok("PUT", "/rest/tokens/", data={"name": unique("t")},
                  auth=actor.auth)["token"]["uuid"]


def _revoke_token(api: Api, actor: Account) -> str:
    uuid = _create_token(api, actor)
    api.ok("DELETE", f"/rest/tokens/{uuid}/", auth=actor.auth)
    return uuid


def _grant(api: Api, actor: Account) -> str:
    g = new_group(api)
    grant(api, g, "read", user=new_user(api).uuid, auth=actor.auth)
    return g


def _revoke(api: Api, actor: Account) -> str:
    g, alice = new_group(api), new_user(api)
    grant(api, g, "read", user=alice.uuid)
    api.ok("POST", f"/rest/permissions/{g}/", auth=actor.auth,
           data={"action": "revoke", "permission": "read", "user": alice.name})
    return g


CHANGES = {
    "user.create": _create_user,
    "user.update": _user_action("update", email="x@example.org"),
    "user.set_password": _user_action("set_password", password="a-changed-password"),
    "user.add_group": _user_action("add_group"),
    "user.remove_group": _user_action("remove_group"),
    "user.enable": _user_action("enable"),
    "user.disable": _user_action("disable"),
    "user.set_admin": _user_action("set_admin", admin="true"),
    "user.delete": _delete_user,
    "group.create": _create_group,
    "group.rename": _group_action("rename"),
    "group.add_user": _group_action("add_user"),
    "group.remove_user": _group_action("remove_user"),
    "group.delete": _delete_group,
    "token.create": _create_token,
    "token.revoke": _revoke_token,
    "permission.grant": _grant,
    "permission.revoke": _revoke,
}


@pytest.fixture(scope="module")
def auditor(shared_api):  # noqa: ANN001, ANN201
    """A second administrator making the changes, seen from another address."""
    api = shared_api
    a = new_user(api, admin="true")
    other = Api(TestClient(api.app, client=("192.0.2.7", 50000)))
    return a, other


@pytest.mark.parametrize("action", CHANGES)
def test_every_change_is_written(shared_api, auditor, action):
    api = shared_api
    actor, remote = auditor
    before = datetime.now(UTC)
    obj = CHANGES[action](remote, actor)
    entries = [e for e in audit(api, obj) if e["action"] == action]
    assert len(entries) == 1, audit(api, obj)
    [e] = entries
    assert set(e) == ENTRY_KEYS
    assert (e["actor"], e["actor_name"], e["source"], e["object"]) == \
        (actor.uuid, actor.name, "192.0.2.7", obj)
    at = datetime.fromisoformat(e["at"])
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(seconds=1)
    assert isinstance(e["detail"], dict)


def test_details_say_what_changed_and_never_hold_a_password(shared_api):
    api = shared_api
    alice, gname = new_user(api), unique("detail")
    g = new_group(api, gname)
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "add_group", "group": g})
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "set_password",
                                                       "password": "secret-of-alice"})
    grant(api, g, "modify", user=alice.name)
    text = api.get("/rest/audit/", params={"limit": 1000}).text
    assert "secret-of-alice" not in text and PASSWORD not in text and "$argon2" not in text
    [added] = [e for e in audit(api, alice.uuid) if e["action"] == "user.add_group"]
    assert added["detail"]["group"] == gname
    [granted] = [e for e in audit(api, g) if e["action"] == "permission.grant"]
    assert granted["detail"]["permission"] == "modify"
    assert alice.name in granted["detail"]["principal"]


def test_newest_first_limit_and_object_filter(shared_api):
    api = shared_api
    a, b = new_user(api), new_user(api)
    api.ok("POST", f"/rest/user/{a.uuid}/", data={"action": "update", "email": "a@x.org"})
    entries = api.ok("GET", "/rest/audit/", params={"limit": 3})["entries"]
    assert len(entries) == 3
    assert [(e["action"], e["object"]) for e in entries] == \
        [("user.update", a.uuid), ("user.create", b.uuid), ("user.create", a.uuid)]
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert {e["object"] for e in audit(api, a.uuid)} == {a.uuid}
    assert [e["action"] for e in audit(api, a.uuid)] == ["user.update", "user.create"]


def test_refused_changes_are_written_with_their_errno(shared_api):
    api = shared_api
    alice = new_user(api)
    with no_change(api):  # no change is recorded as done
        for send, action, obj in (
                (lambda: api.post("/rest/user/create/", data={"username": alice.name,
                                                              "password": PASSWORD}),
                 "user.create", None),
                (lambda: api.post(f"/rest/user/{alice.uuid}/", data={
                    "action": "set_password", "password": "short"}),
                 "user.set_password", alice.uuid),
                (lambda: api.put("/rest/group/create/", data={"group_name": "bad name"}),
                 "group.create", None),
                (lambda: api.put(f"/rest/permissions/{alice.uuid}/", data={
                    "permission": "sudo", "user": alice.uuid}),
                 "permission.grant", alice.uuid)):
            r = send()
            assert r.status_code >= 400
            e = audit(api)[0]
            assert (e["action"], e["object"], e["errno"], e["message"]) == \
                (action, obj, r.json()["errno"], r.json()["message"])
            assert e["errno"] != 0
    assert "short" not in str(audit(api, alice.uuid))


@pytest.mark.parametrize("params, errno", [
    ({"limit": 0}, 1000), ({"limit": 1001}, 1000), ({"limit": "ten"}, 1000),
    ({"object": "not-a-uuid"}, 1002)])
def test_bad_variables(shared_api, params, errno):
    api = shared_api
    expect_error(api.get("/rest/audit/", params=params), 400, errno)


def test_only_administrators_read_it(shared_api):
    api = shared_api
    alice = new_user(api)
    grant(api, alice.uuid, "admin", user=alice.uuid)  # admin on herself is not administration
    body = expect_error(api.get("/rest/audit/", auth=alice.auth), 403, 1101)
    assert "entries" not in body
    secret = api.ok("PUT", "/rest/tokens/", data={"name": "t"}, auth=alice.auth)["secret"]
    expect_error(api.get("/rest/audit/", headers={"Authorization": f"Bearer {secret}"},
                         auth=None), 403, 1101)
    expect_error(api.get("/rest/audit/", auth=None), 401, 1100)
