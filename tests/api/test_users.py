"""Spec 3.1, 3.2, 3.4 to 3.6: users. The lists, creating, reading, every user action, deleting,
the password rules and the last-administrator rule; bad input changes nothing."""

import pytest

from tests.api.accounts import PASSWORD, db_rows, new_group, new_user, no_change, unique
from tests.conftest import ADMIN_PASSWORD, expect_error

USER_KEYS = {"uuid", "username", "email", "full_name", "is_admin", "enabled", "groups",
             "created_at", "password_changed_at"}
NOT_A_UUID = "12345678-zzzz-1234-1234-123456789abc"


def user(api, uuid: str, **kw) -> dict:  # noqa: ANN001
    return api.ok("GET", f"/rest/user/{uuid}/", **kw)["user"]


def act(api, uuid: str, action: str, auth: object = "admin", **variables: str):  # noqa: ANN001, ANN201
    return api.post(f"/rest/user/{uuid}/", data={"action": action, **variables}, auth=auth)


def logs_in(api, auth: tuple[str, str]) -> bool:  # noqa: ANN001
    r = api.get("/rest/users/", auth=auth)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def no_hash(text: str) -> None:
    assert "$argon2" not in text and "password_hash" not in text and PASSWORD not in text


def admin_uuid(api) -> str:  # noqa: ANN001
    return next(i for n, i in api.ok("GET", "/rest/users/")["users"] if n == "admin")


# -- 3.1, 3.2: the lists ------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/rest/users/", "/rest/users/list/", "/rest/users"])
def test_user_lists_are_name_id_pairs(shared_api, path, method):
    api = shared_api
    alice = new_user(api)
    body = api.ok(method, path)
    assert set(body) == {"users"}
    assert [alice.name, alice.uuid] in body["users"]
    assert ["admin", admin_uuid(api)] in body["users"]
    assert all(len(pair) == 2 for pair in body["users"])
    no_hash(api.get(path).text)


def test_an_unprivileged_user_lists_only_themselves(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    assert api.ok("GET", "/rest/users/", auth=alice.auth)["users"] == [[alice.name, alice.uuid]]
    api.ok("PUT", f"/rest/permissions/{bob.uuid}/", data={"permission": "read",
                                                          "user": alice.name})
    assert sorted(api.ok("GET", "/rest/users/list/", auth=alice.auth)["users"]) == \
        sorted([[alice.name, alice.uuid], [bob.name, bob.uuid]])


# -- 3.5: create --------------------------------------------------------------------------

def test_create_answers_the_new_id_and_the_user_can_log_in(shared_api):
    api = shared_api
    name = unique("carol")
    r = api.post("/rest/user/create/", data={"username": name, "password": PASSWORD,
                                             "email": "carol@example.org"})
    body = r.json()
    assert r.status_code == 200 and body["errno"] == 0, body
    assert set(body) == {"uuid", "errno", "message"}
    got = user(api, body["uuid"])
    assert set(got) == USER_KEYS
    assert (got["username"], got["email"], got["is_admin"], got["enabled"], got["groups"]) == \
        (name, "carol@example.org", False, True, [])
    assert logs_in(api, (name, PASSWORD))
    assert not logs_in(api, (name, PASSWORD + "x"))


def test_create_with_full_name_admin_flag_and_groups_by_name_and_id(shared_api):
    api = shared_api
    g1_name = unique("ops")
    g1, g2 = new_group(api, g1_name), new_group(api)
    name = unique("dave")
    body = api.ok("POST", "/rest/user/create/", json={
        "username": name, "password": PASSWORD, "full_name": "Dave D.", "admin": True,
        "groups": [g1_name, g2]})
    got = user(api, body["uuid"])
    assert got["full_name"] == "Dave D." and got["is_admin"] is True
    assert {g["uuid"] for g in got["groups"]} == {g1, g2}
    # an administrator lists every user
    assert len(api.ok("GET", "/rest/users/", auth=(name, PASSWORD))["users"]) > 2


def test_groups_as_a_comma_separated_form_variable(shared_api):
    api = shared_api
    a, b = unique("ga"), unique("gb")
    new_group(api, a), new_group(api, b)
    alice = new_user(api, groups=f"{a},{b}")
    assert [g["name"] for g in user(api, alice.uuid)["groups"]] == sorted([a, b])


def test_the_password_hash_is_never_in_an_answer(shared_api):
    api = shared_api
    alice = new_user(api)
    g = new_group(api, members=(alice,))
    for method, path in [("GET", f"/rest/user/{alice.uuid}/"),
                         ("POST", f"/rest/user/{alice.uuid}/"), ("GET", "/rest/users/"),
                         ("GET", f"/rest/group/{g}/"), ("GET", f"/rest/permissions/{alice.uuid}/"),
                         ("GET", "/rest/audit/")]:
        r = api.request(method, path)
        assert r.status_code == 200, r.text
        no_hash(r.text)
    r = act(api, alice.uuid, "set_password", password="another-password-1")
    assert r.status_code == 200
    no_hash(r.text)
    assert "another-password-1" not in r.text
    assert "another-password-1" not in api.get("/rest/audit/").text


# -- 3.4: get and act -----------------------------------------------------------------------

def test_get_and_post_without_action_answer_the_same(shared_api):
    api = shared_api
    alice = new_user(api, email="a@example.org")
    got = api.ok("GET", f"/rest/user/{alice.uuid}")
    assert set(got) == {"user", "errno", "message"}
    assert api.ok("POST", f"/rest/user/{alice.uuid}/") == got
    assert got["user"]["uuid"] == alice.uuid


def test_upper_case_uuid_finds_the_user(shared_api):
    api = shared_api
    alice = new_user(api)
    assert user(api, alice.uuid.upper())["uuid"] == alice.uuid


def test_update_email_and_full_name(shared_api):
    api = shared_api
    alice = new_user(api)
    body = act(api, alice.uuid, "update", email="new@example.org").json()
    assert body["errno"] == 0 and body["user"]["email"] == "new@example.org"
    act(api, alice.uuid, "update", full_name="Alice A.")
    got = user(api, alice.uuid)
    assert (got["email"], got["full_name"]) == ("new@example.org", "Alice A.")
    act(api, alice.uuid, "update", email="")  # empty clears
    assert user(api, alice.uuid)["email"] is None


def test_users_update_themselves(shared_api):
    api = shared_api
    alice = new_user(api)
    r = act(api, alice.uuid, "update", auth=alice.auth, full_name="Me")
    assert r.status_code == 200, r.text
    assert user(api, alice.uuid)["full_name"] == "Me"


def test_set_password_by_the_admin(shared_api):
    api = shared_api
    alice = new_user(api)
    assert user(api, alice.uuid)["password_changed_at"] is None
    assert logs_in(api, alice.auth)
    r = act(api, alice.uuid, "set_password", password="a-new-password")
    assert r.status_code == 200 and r.json()["user"]["password_changed_at"], r.text
    assert not logs_in(api, alice.auth)
    assert logs_in(api, (alice.name, "a-new-password"))


def test_users_set_their_own_password_with_the_current_one(shared_api):
    api = shared_api
    alice = new_user(api)
    r = act(api, alice.uuid, "set_password", auth=alice.auth, password="mine-and-only-mine",
            old_password=alice.password)
    assert r.status_code == 200, r.text
    assert not logs_in(api, alice.auth)
    assert logs_in(api, (alice.name, "mine-and-only-mine"))


def test_ones_own_password_does_not_change_without_the_current_one(shared_api):
    api = shared_api
    alice = new_user(api)
    token = api.ok("PUT", "/rest/tokens/", data={"name": "left-open"}, auth=alice.auth)["secret"]
    body = expect_error(act(api, alice.uuid, "set_password", auth=alice.auth,
                            password="taken-over-now"), 400, 1001)
    assert "old_password" in body["message"]
    for who in (alice.auth, token):  # a token left open is not enough either
        auth = who if isinstance(who, tuple) else None
        headers = {} if auth else {"Authorization": f"Bearer {who}"}
        r = api.post(f"/rest/user/{alice.uuid}/", auth=auth, headers=headers,
                     data={"action": "set_password", "password": "taken-over-now",
                           "old_password": "a-wrong-guess"})
        body = expect_error(r, 403, 1101)
        assert "not your current password" in body["message"]
    assert logs_in(api, alice.auth) and not logs_in(api, (alice.name, "taken-over-now"))
    entries = api.ok("GET", "/rest/audit/", params={"object": alice.uuid})["entries"]
    assert [e["errno"] for e in entries if e["action"] == "user.set_password"] == \
        [1101, 1101, 1001]  # the refusals are recorded; no change is


def test_wrong_old_passwords_are_throttled_like_failed_logins(shared_api):
    api = shared_api
    alice = new_user(api)
    try:
        for _ in range(api.app.state.throttle.limit):
            expect_error(act(api, alice.uuid, "set_password", auth=alice.auth,
                             password="taken-over-now", old_password="a-wrong-guess"), 403, 1101)
        r = act(api, alice.uuid, "set_password", auth=alice.auth, password="taken-over-now",
                old_password=alice.password)  # even the right one, for now
        assert r.status_code == 429 and r.headers["retry-after"], r.text
    finally:
        api.app.state.throttle.succeeded(alice.name, "testclient")
    assert logs_in(api, alice.auth)


def test_an_administrator_changing_their_own_password_gives_the_current_one(shared_api):
    api = shared_api
    boss = new_user(api, admin="true")
    expect_error(act(api, boss.uuid, "set_password", auth=boss.auth,
                     password="the-boss-new-one"), 400, 1001)
    r = act(api, boss.uuid, "set_password", auth=boss.auth, password="the-boss-new-one",
            old_password=boss.password)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("by", ["uuid", "name"])
def test_add_group_and_remove_group(shared_api, by):
    api = shared_api
    alice, gname = new_user(api), unique("team")
    g = new_group(api, gname)
    ref = g if by == "uuid" else gname
    body = act(api, alice.uuid, "add_group", group=ref).json()
    assert [x["uuid"] for x in body["user"]["groups"]] == [g]
    assert alice.uuid in {u["uuid"] for u in api.ok("GET", f"/rest/group/{g}/")["group"]["users"]}
    body = act(api, alice.uuid, "remove_group", group=ref).json()
    assert body["errno"] == 0 and body["user"]["groups"] == []
    assert api.ok("GET", f"/rest/group/{g}/")["group"]["users"] == []


def test_disable_and_enable(shared_api):
    api = shared_api
    alice = new_user(api)
    assert logs_in(api, alice.auth)  # now her credential is cached
    body = act(api, alice.uuid, "disable").json()
    assert body["user"]["enabled"] is False
    r = api.get("/rest/users/", auth=alice.auth)
    expect_error(r, 401, 1100)
    body = act(api, alice.uuid, "enable").json()
    assert body["user"]["enabled"] is True
    assert logs_in(api, alice.auth)


def test_set_admin_grants_and_takes_administration(shared_api):
    api = shared_api
    alice = new_user(api)
    expect_error(api.get("/rest/audit/", auth=alice.auth), 403, 1101)
    assert act(api, alice.uuid, "set_admin", admin="true").json()["user"]["is_admin"] is True
    assert api.get("/rest/audit/", auth=alice.auth).status_code == 200
    assert act(api, alice.uuid, "set_admin", admin="false").json()["user"]["is_admin"] is False
    expect_error(api.get("/rest/audit/", auth=alice.auth), 403, 1101)


# -- 3.4, 3.6: delete ---------------------------------------------------------------------

@pytest.mark.parametrize("method, suffix", [("DELETE", ""), ("GET", "delete/"),
                                            ("POST", "delete/")])
def test_delete(shared_api, method, suffix):
    api = shared_api
    alice = new_user(api)
    g = new_group(api, members=(alice,))
    api.ok("PUT", f"/rest/permissions/{g}/", data={"permission": "modify", "user": alice.uuid})
    assert logs_in(api, alice.auth)
    body = api.ok(method, f"/rest/user/{alice.uuid}/{suffix}")
    assert set(body) == {"user", "errno", "message"} and body["user"] is None
    expect_error(api.get(f"/rest/user/{alice.uuid}/"), 404, 1200)
    assert not logs_in(api, alice.auth)
    assert alice.uuid not in {i for _, i in api.ok("GET", "/rest/users/")["users"]}
    assert api.ok("GET", f"/rest/group/{g}/")["group"]["users"] == []
    assert api.ok("GET", f"/rest/permissions/{g}/")["permissions"] == []
    rows = db_rows(api)
    assert not any(alice.uuid in row for key in ("members", "grants", "tokens")
                   for row in rows[key])


def test_what_a_deleted_user_owned_stays_without_an_owner(shared_api):
    api = shared_api
    alice = new_user(api)
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")},
               auth=alice.auth)["cluster"]["uuid"]
    g = new_group(api, auth=alice.auth)
    api.ok("DELETE", f"/rest/user/{alice.uuid}/")
    assert api.ok("GET", f"/rest/permissions/{c}/")["owner"] is None
    assert api.ok("GET", f"/rest/group/{g}/")["group"]["owner"] is None
    again = new_user(api, alice.name)  # the same name is someone else: owns nothing
    expect_error(api.get(f"/rest/cluster/{c}/", auth=again.auth), 404, 1200)


def test_a_deleted_name_can_be_used_again(shared_api):
    api = shared_api
    alice = new_user(api)
    api.ok("DELETE", f"/rest/user/{alice.uuid}/")
    again = new_user(api, alice.name, password="a-different-password")
    assert again.uuid != alice.uuid
    assert not logs_in(api, alice.auth) and logs_in(api, again.auth)


# -- bad input: a clear error and nothing changed ------------------------------------------

@pytest.fixture(scope="module")
def alice(shared_api):  # noqa: ANN001, ANN201
    return new_user(shared_api, "alice-bad-input", email="alice@example.org")


@pytest.mark.parametrize("variables, status, errno", [
    ({"username": "alice-bad-input"}, 409, 1300),                      # duplicate
    ({"password": "short-pw1"}, 400, 1000),                            # 9 characters
    ({"password": "x" * 1025}, 400, 1000),
    ({"password": "eve-the-user"}, 400, 1000),                         # the user name
    ({"password": "EVE-THE-USER"}, 400, 1000),                         # the name, other case
    ({"password": "aaaaaaaaaaaaaaaa"}, 400, 1000),                     # one character repeated
    ({"password": None}, 400, 1001),
    ({"username": None}, 400, 1001),
    ({"username": "-leading-dash"}, 400, 1000),
    ({"username": "has space"}, 400, 1000),
    ({"username": "x" * 65}, 400, 1000),
    ({"username": "slash/name"}, 400, 1000),
    ({"groups": "no-such-group"}, 404, 1200),
    ({"groups": NOT_A_UUID}, 404, 1200),
    ({"admin": "maybe"}, 400, 1000),
], ids=["duplicate", "short", "long", "username", "username-case", "repeated", "no-password",
        "no-username", "leading-dash", "space", "name-too-long", "slash", "unknown-group",
        "unknown-group-id", "bad-admin-flag"])
def test_create_refuses_bad_input(shared_api, alice, variables, status, errno):
    api = shared_api
    data = {"username": "eve-the-user", "password": PASSWORD, **variables}
    data = {k: v for k, v in data.items() if v is not None}
    with no_change(api):
        expect_error(api.post("/rest/user/create/", data=data), status, errno)


@pytest.mark.parametrize("password, errno", [
    ("short-pw1", 1000), ("alice-bad-input", 1000), ("ALICE-bad-input", 1000),
    ("zzzzzzzzzzzz", 1000), ("y" * 1025, 1000), ("", 1001)])
def test_set_password_refuses_weak_passwords(shared_api, alice, password, errno):
    api = shared_api
    with no_change(api):
        expect_error(act(api, alice.uuid, "set_password", password=password), 400, errno)
    assert logs_in(api, alice.auth)


@pytest.mark.parametrize("variables, status, errno", [
    ({"action": "fly"}, 400, 1003),
    ({"action": "update"}, 400, 1000),                                 # neither email nor name
    ({"action": "add_group"}, 400, 1001),
    ({"action": "add_group", "group": "no-such-group"}, 404, 1200),
    ({"action": "add_group", "group": NOT_A_UUID}, 404, 1200),
    ({"action": "remove_group", "group": "no-such-group"}, 404, 1200),
    ({"action": "set_admin"}, 400, 1000),
    ({"action": "set_admin", "admin": "perhaps"}, 400, 1000),
], ids=["unknown-action", "update-nothing", "add-no-group", "add-unknown-group",
        "add-unknown-group-id", "remove-unknown-group", "set-admin-no-flag", "set-admin-bad"])
def test_actions_refuse_bad_input(shared_api, alice, variables, status, errno):
    api = shared_api
    with no_change(api):
        expect_error(api.post(f"/rest/user/{alice.uuid}/", data=variables), status, errno)


def test_adding_to_a_group_twice_or_removing_from_one_not_joined(shared_api, alice):
    api = shared_api
    joined, other = unique("joined"), unique("other")
    new_group(api, joined, members=(alice,)), new_group(api, other)
    with no_change(api):
        expect_error(act(api, alice.uuid, "add_group", group=joined), 409, 1300)
        expect_error(act(api, alice.uuid, "remove_group", group=other), 400, 1000)


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("POST", ""), ("DELETE", ""),
                                            ("GET", "delete/")])
def test_malformed_and_unknown_user_ids(shared_api, method, suffix):
    api = shared_api
    with no_change(api):
        expect_error(api.request(method, f"/rest/user/not-a-uuid/{suffix}"), 400, 1002)
        expect_error(api.request(method, f"/rest/user/{NOT_A_UUID}/{suffix}"), 400, 1002)
        expect_error(api.request(method, "/rest/user/12345678-1234-1234-1234-123456789abc/"
                                 + suffix), 404, 1200)


def test_a_user_name_in_the_path_is_not_an_id(shared_api, alice):
    api = shared_api
    expect_error(api.get(f"/rest/user/{alice.name}/"), 400, 1002)


# -- the last administrator, and yourself ---------------------------------------------------

@pytest.fixture
def lone_admin(shared_api):  # noqa: ANN001, ANN201
    """The shared server with `admin` as its only enabled administrator: the others that tests
    of this module made are demoted first. Yields admin's id."""
    api = shared_api
    admin = admin_uuid(api)
    for _, uuid in api.ok("GET", "/rest/users/")["users"]:
        if uuid != admin and user(api, uuid)["is_admin"]:
            api.ok("POST", f"/rest/user/{uuid}/", data={"action": "set_admin", "admin": "false"})
    return admin


def test_the_last_administrator_cannot_be_deleted_disabled_or_demoted(shared_api, lone_admin):
    api, admin = shared_api, lone_admin
    with no_change(api):
        expect_error(api.delete(f"/rest/user/{admin}/"), 409, 1300)
        expect_error(api.get(f"/rest/user/{admin}/delete/"), 409, 1300)
        expect_error(act(api, admin, "disable"), 409, 1300)
        expect_error(act(api, admin, "set_admin", admin="false"), 409, 1300)
    assert user(api, admin)["is_admin"] and user(api, admin)["enabled"]


def test_a_disabled_administrator_does_not_count(shared_api, lone_admin):
    api, admin = shared_api, lone_admin
    other = new_user(api, admin="true")
    act(api, other.uuid, "disable")
    with no_change(api):
        expect_error(act(api, admin, "set_admin", admin="false"), 409, 1300)
        expect_error(act(api, admin, "disable"), 409, 1300)


def test_with_a_second_administrator_one_may_be_demoted_then_the_other_is_last(shared_api,
                                                                              lone_admin):
    api, admin = shared_api, lone_admin
    other = new_user(api, admin="true")
    assert act(api, other.uuid, "set_admin", admin="false").status_code == 200
    with no_change(api):
        expect_error(act(api, admin, "set_admin", admin="false"), 409, 1300)
    assert act(api, other.uuid, "set_admin", admin="true").status_code == 200
    # now the first admin may step down, and the second is the last one
    assert act(api, admin, "set_admin", admin="false").status_code == 200
    try:
        with no_change(api):
            expect_error(act(api, other.uuid, "disable", auth=other.auth), 409, 1300)
            expect_error(api.delete(f"/rest/user/{other.uuid}/", auth=other.auth), 409, 1300)
    finally:  # admin back in office for the tests after this one
        act(api, admin, "set_admin", auth=other.auth, admin="true")
    assert user(api, admin)["is_admin"]


def test_nobody_deletes_themselves(shared_api, lone_admin):
    api, admin = shared_api, lone_admin
    new_user(api, admin="true")
    with no_change(api):
        body = expect_error(api.delete(f"/rest/user/{admin}/"), 409, 1300)
    assert "yourself" in body["message"]
    assert logs_in(api, ("admin", ADMIN_PASSWORD))


def test_an_administrator_deletes_another_administrator(shared_api):
    api = shared_api
    other = new_user(api, admin="true")
    api.ok("DELETE", f"/rest/user/{other.uuid}/")
    assert not logs_in(api, other.auth)


# -- who may act on users ------------------------------------------------------------------

ADMIN_ONLY = [("enable", {}), ("disable", {}), ("set_admin", {"admin": "true"})]


@pytest.mark.parametrize("action, variables", ADMIN_ONLY, ids=[a for a, _ in ADMIN_ONLY])
def test_users_cannot_change_their_own_standing(shared_api, action, variables):
    api = shared_api
    alice = new_user(api)
    with no_change(api):
        expect_error(act(api, alice.uuid, action, auth=alice.auth, **variables), 403, 1101)
        expect_error(api.delete(f"/rest/user/{alice.uuid}/", auth=alice.auth), 403, 1101)


def test_users_cannot_create_users(shared_api):
    api = shared_api
    alice = new_user(api)
    with no_change(api):
        expect_error(api.post("/rest/user/create/", data={"username": unique("x"),
                                                           "password": PASSWORD},
                              auth=alice.auth), 403, 1101)


def test_another_user_is_not_found_without_read(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    with no_change(api):
        for r in (api.get(f"/rest/user/{bob.uuid}/", auth=alice.auth),
                  act(api, bob.uuid, "update", auth=alice.auth, email="x@example.org"),
                  act(api, bob.uuid, "set_password", auth=alice.auth, password="hijacked-pw!"),
                  api.delete(f"/rest/user/{bob.uuid}/", auth=alice.auth)):
            body = expect_error(r, 404, 1200)
            assert bob.name not in body["message"]
    # the same answer as for a user that does not exist at all
    gone = expect_error(api.get("/rest/user/12345678-1234-1234-1234-123456789abc/",
                                auth=alice.auth), 404, 1200)
    assert set(gone) == {"errno", "message"}


def test_with_read_another_user_is_visible_but_not_changeable(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    api.ok("PUT", f"/rest/permissions/{bob.uuid}/", data={"permission": "read",
                                                          "user": alice.uuid})
    assert user(api, bob.uuid, auth=alice.auth)["username"] == bob.name
    with no_change(api):
        expect_error(act(api, bob.uuid, "update", auth=alice.auth, email="x@example.org"),
                     403, 1101)
        expect_error(act(api, bob.uuid, "set_password", auth=alice.auth,
                         password="hijacked-pw!"), 403, 1101)


# -- logging in: the credential cache and the login throttle ----------------------------------

def test_a_changed_password_is_refused_at_once_though_cached(shared_api):
    api = shared_api
    alice = new_user(api)
    assert logs_in(api, alice.auth) and logs_in(api, alice.auth)  # verified, then cached
    act(api, alice.uuid, "set_password", password="the-next-password")
    assert not logs_in(api, alice.auth)
    assert logs_in(api, (alice.name, "the-next-password"))
    # changed by herself, with her cached credential
    act(api, alice.uuid, "set_password", auth=(alice.name, "the-next-password"),
        password="a-third-password", old_password="the-next-password")
    assert not logs_in(api, (alice.name, "the-next-password"))
    assert logs_in(api, (alice.name, "a-third-password"))


def test_a_disabled_user_is_refused_at_once_though_cached(shared_api):
    api = shared_api
    alice = new_user(api)
    assert logs_in(api, alice.auth) and logs_in(api, alice.auth)
    act(api, alice.uuid, "disable")
    expect_error(api.get("/rest/users/", auth=alice.auth), 401, 1100)
    expect_error(api.get(f"/rest/user/{alice.uuid}/", auth=alice.auth), 401, 1100)


def test_a_verified_password_is_not_hashed_again(shared_api, monkeypatch):
    from enomalism.services import auth

    api = shared_api
    alice = new_user(api)
    assert logs_in(api, alice.auth)
    calls = []
    real = auth._hasher

    class Counting:
        def verify(self, *a: object) -> bool:
            calls.append(1)
            return real.verify(*a)

    monkeypatch.setattr(auth, "_hasher", Counting())
    for _ in range(3):
        assert logs_in(api, alice.auth)
    assert calls == []
    assert not logs_in(api, (alice.name, "not-her-password"))
    assert calls == [1]


def wrong(api, name: str, client=None):  # noqa: ANN001, ANN201
    return (client or api).get("/rest/users/", auth=(name, "not-the-password"))


def test_five_failures_then_429_with_retry_after(shared_api):
    api = shared_api
    alice = new_user(api)
    for _ in range(5):
        expect_error(wrong(api, alice.name), 401, 1100)
    for auth in [(alice.name, "not-the-password"), alice.auth]:  # even the right password
        r = api.get("/rest/users/", auth=auth)
        body = expect_error(r, 429, 1102)
        assert 0 < int(r.headers["Retry-After"]) <= 60
        assert alice.name in body["message"]


def test_the_throttle_is_per_user_name_and_source_address(shared_api):
    from fastapi.testclient import TestClient

    api = shared_api
    alice, bob = new_user(api), new_user(api)
    for _ in range(5):
        wrong(api, alice.name)
    expect_error(api.get("/rest/users/", auth=alice.auth), 429, 1102)
    assert logs_in(api, bob.auth)  # another user from the same address
    elsewhere = TestClient(api.app, client=("198.51.100.4", 40000))
    assert elsewhere.get("/rest/users/", auth=alice.auth).status_code == 200
    # unknown user names are throttled the same way, revealing nothing
    for _ in range(5):
        expect_error(wrong(api, "nobody-here"), 401, 1100)
    expect_error(wrong(api, "nobody-here"), 429, 1102)


def test_a_success_clears_the_count(shared_api):
    api = shared_api
    alice = new_user(api)
    for _ in range(4):
        wrong(api, alice.name)
    assert logs_in(api, alice.auth)
    for _ in range(4):
        expect_error(wrong(api, alice.name), 401, 1100)
    expect_error(wrong(api, alice.name), 401, 1100)  # the fifth since the success
    expect_error(wrong(api, alice.name), 429, 1102)
