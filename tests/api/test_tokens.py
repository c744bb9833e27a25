"""API tokens (extension): created with a secret shown once, sent as a bearer token, expiring,
revoked at once, refused for disabled users; one user cannot see or revoke another's."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from enomalism.services import tokens
from enomalism.store.models import ApiToken
from tests.api.accounts import new_user, no_change, unique
from tests.conftest import expect_error

TOKEN_KEYS = {"uuid", "name", "user", "created_at", "expires_at"}


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def create(api, auth: object = "admin", method: str = "PUT", **variables: str) -> dict:  # noqa: ANN001
    variables.setdefault("name", unique("token"))
    return api.ok(method, "/rest/tokens/", data=variables, auth=auth)


def whoami(api, secret: str):  # noqa: ANN001, ANN201
    """The user names the token's user may list (an unprivileged user sees only themselves)."""
    return api.get("/rest/users/", headers=bearer(secret), auth=None)


def works(api, secret: str) -> bool:  # noqa: ANN001
    r = whoami(api, secret)
    assert r.status_code in (200, 401), r.text
    if r.status_code == 401:
        expect_error(r, 401, 1100)
    return r.status_code == 200


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_create_shows_the_secret_once(shared_api, method):
    api = shared_api
    alice = new_user(api)
    name = unique("ci")
    body = create(api, alice.auth, method, name=name)
    assert set(body) == {"token", "secret", "errno", "message"}
    assert set(body["token"]) == TOKEN_KEYS
    assert (body["token"]["name"], body["token"]["user"], body["token"]["expires_at"]) == \
        (name, alice.uuid, None)
    assert body["secret"].startswith("enm_") and len(body["secret"]) > 40
    listed = api.get("/rest/tokens/", auth=alice.auth)
    assert listed.json()["tokens"] == [body["token"]]
    assert body["secret"] not in listed.text and "secret" not in listed.text
    assert body["secret"] not in api.get("/rest/audit/").text
    with api.app.state.db.session(write=False) as s:  # stored hashed
        stored = s.get(ApiToken, body["token"]["uuid"])
        assert stored.secret_hash != body["secret"] and body["secret"] not in stored.secret_hash


def test_a_bearer_token_acts_as_its_user(shared_api):
    api = shared_api
    alice = new_user(api)
    secret = create(api, alice.auth)["secret"]
    r = whoami(api, secret)
    assert r.status_code == 200 and r.json()["users"] == [[alice.name, alice.uuid]]
    # an administrator's token can do what administrators do
    admin_secret = create(api)["secret"]
    assert api.get("/rest/audit/", headers=bearer(admin_secret), auth=None).status_code == 200
    expect_error(api.get("/rest/audit/", headers=bearer(secret), auth=None), 403, 1101)


def test_basic_auth_keeps_working_next_to_tokens(shared_api):
    api = shared_api
    alice = new_user(api)
    create(api, alice.auth)
    assert api.get("/rest/users/", auth=alice.auth).status_code == 200


@pytest.mark.parametrize("header", ["Bearer enm_not-a-real-token", "Bearer ", "Bearer",
                                    "Token abc", "enm_abc"])
def test_a_wrong_token_is_refused(shared_api, header):
    api = shared_api
    r = api.get("/rest/users/", headers={"Authorization": header}, auth=None)
    body = expect_error(r, 401, 1100)
    assert set(body) == {"errno", "message"}


def test_each_user_lists_only_their_own_tokens(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    a = create(api, alice.auth)["token"]
    b = create(api, bob.auth)["token"]
    assert api.ok("GET", "/rest/tokens/", auth=alice.auth)["tokens"] == [a]
    assert api.ok("GET", "/rest/tokens/", auth=bob.auth)["tokens"] == [b]
    assert api.ok("GET", "/rest/tokens/", params={"user": alice.uuid},
                  auth=alice.auth)["tokens"] == [a]
    expect_error(api.get("/rest/tokens/", params={"user": alice.uuid}, auth=bob.auth), 404, 1200)


@pytest.mark.parametrize("by", ["uuid", "name"])
def test_an_administrator_lists_another_users_tokens(shared_api, by):
    api = shared_api
    alice = new_user(api)
    a = create(api, alice.auth)["token"]
    ref = alice.uuid if by == "uuid" else alice.name
    assert api.ok("GET", "/rest/tokens/", params={"user": ref})["tokens"] == [a]


@pytest.mark.parametrize("ref", ["12345678-1234-1234-1234-123456789abc", "nobody-at-all"])
def test_listing_an_unknown_users_tokens(shared_api, ref):
    api = shared_api
    expect_error(api.get("/rest/tokens/", params={"user": ref}), 404, 1200)


# -- expiry ---------------------------------------------------------------------------------

def test_expires_in_days_sets_the_expiry(shared_api):
    api = shared_api
    alice = new_user(api)
    token = create(api, alice.auth, expires_in_days="2")["token"]
    expires = datetime.fromisoformat(token["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=1)
    tiny = create(api, alice.auth, expires_in_days="0.0001")  # under ten seconds
    assert datetime.fromisoformat(tiny["token"]["expires_at"]) < \
        datetime.now(UTC) + timedelta(seconds=10)


def test_an_expired_token_is_refused(shared_api):
    api = shared_api
    alice = new_user(api)
    body = create(api, alice.auth, expires_in_days="1")
    assert works(api, body["secret"])
    with api.app.state.db.session() as s:
        s.get(ApiToken, body["token"]["uuid"]).expires_at = \
            datetime.now(UTC) - timedelta(seconds=1)
    # A verified token is cached until its expiry at the latest, and an expiry never moves
    # through the API; moving it by hand, the cache's entry is what a day's wait would end.
    api.app.state.credentials.forget(alice.uuid)
    expect_error(whoami(api, body["secret"]), 401, 1100)


def test_a_token_is_cached_no_longer_than_its_expiry(shared_api):
    api = shared_api
    alice = new_user(api)
    body = create(api, alice.auth, expires_in_days="1")
    assert works(api, body["secret"])  # verified once: cached
    cache = api.app.state.credentials
    assert tokens.cached(cache, body["secret"]) is not None
    with api.app.state.db.session(write=False) as s:
        tokens.authenticate(s, body["secret"], cache)
    entry = cache._entries[cache._digest(tokens.CACHE_NAME, body["secret"])]
    assert entry[1] - time.monotonic() <= cache.ttl
    short = create(api, alice.auth, name="short", expires_in_days="0.00003")  # 2.6 seconds
    assert works(api, short["secret"])  # cached now, for at most what is left of it
    time.sleep(3)
    expect_error(whoami(api, short["secret"]), 401, 1100)  # well within the cache's ttl


@pytest.mark.parametrize("variables, errno", [
    ({"expires_in_days": "0"}, 1000),
    ({"expires_in_days": "-1"}, 1000),
    ({"expires_in_days": "3651"}, 1000),
    ({"expires_in_days": "soon"}, 1000),
    ({"expires_in_days": "nan"}, 1000),
    ({"expires_in_days": "inf"}, 1000),
    ({"name": ""}, 1001),
    ({"name": "n" * 65}, 1000),
])
def test_create_refuses_bad_input(shared_api, variables, errno):
    api = shared_api
    data = {"name": unique("bad"), **variables}
    with no_change(api):
        expect_error(api.put("/rest/tokens/", data=data), 400, errno)


def test_names_are_unique_per_user(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    create(api, alice.auth, name="laptop")
    with no_change(api):
        expect_error(api.put("/rest/tokens/", data={"name": "laptop"}, auth=alice.auth),
                     409, 1300)
    create(api, bob.auth, name="laptop")


# -- revoking -------------------------------------------------------------------------------

def test_revoke_takes_effect_at_once(shared_api):
    api = shared_api
    alice = new_user(api)
    body = create(api, alice.auth)
    keep = create(api, alice.auth)
    assert works(api, body["secret"])
    r = api.delete(f"/rest/tokens/{body['token']['uuid']}/", headers=bearer(body["secret"]),
                   auth=None)  # a token may revoke itself
    assert r.status_code == 200 and set(r.json()) == {"errno", "message"}, r.text
    assert not works(api, body["secret"])
    assert works(api, keep["secret"])
    assert api.ok("GET", "/rest/tokens/", auth=alice.auth)["tokens"] == [keep["token"]]


def test_one_user_cannot_revoke_anothers_token_but_an_administrator_can(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    body = create(api, alice.auth)
    path = f"/rest/tokens/{body['token']['uuid']}/"
    with no_change(api):
        expect_error(api.delete(path, auth=bob.auth), 404, 1200)
    assert works(api, body["secret"])
    api.ok("DELETE", path)
    assert not works(api, body["secret"])
    with no_change(api):
        expect_error(api.delete(path), 404, 1200)


@pytest.mark.parametrize("ref, status, errno", [
    ("not-a-uuid", 400, 1002), ("12345678-1234-1234-1234-123456789abc", 404, 1200)])
def test_revoke_unknown_or_malformed(shared_api, ref, status, errno):
    api = shared_api
    with no_change(api):
        expect_error(api.delete(f"/rest/tokens/{ref}/"), status, errno)


# -- the token's user ---------------------------------------------------------------------

def test_a_disabled_users_token_is_refused(shared_api):
    api = shared_api
    alice = new_user(api)
    secret = create(api, alice.auth)["secret"]
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "disable"})
    assert not works(api, secret)
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "enable"})
    assert works(api, secret)


def test_a_deleted_users_tokens_go_with_them(shared_api):
    api = shared_api
    alice = new_user(api)
    secret = create(api, alice.auth)["secret"]
    api.ok("DELETE", f"/rest/user/{alice.uuid}/")
    assert not works(api, secret)
    with api.app.state.db.session(write=False) as s:
        assert s.query(ApiToken).filter_by(user_uuid=alice.uuid).count() == 0


def test_a_demoted_administrators_token_loses_administration_at_once(shared_api):
    api = shared_api
    alice = new_user(api, admin="true")
    secret = create(api, alice.auth)["secret"]
    assert api.get("/rest/audit/", headers=bearer(secret), auth=None).status_code == 200
    api.ok("POST", f"/rest/user/{alice.uuid}/", data={"action": "set_admin", "admin": "false"})
    expect_error(api.get("/rest/audit/", headers=bearer(secret), auth=None), 403, 1101)
