"""A page on another site cannot make a logged-in browser change anything (issue 12, class 8):
every state-changing request, and the spec's GETs that delete, is refused with 403 errno 1140
when its `Origin` or `Sec-Fetch-Site` says another site; the server's own pages, typed URLs and
clients that are not browsers are let through (docs/access.md, "Browsers")."""

import uuid as uuidlib

import pytest

from tests.api.accounts import PASSWORD
from tests.conftest import expect_error, unchanged, vm_uuid

OWN = "http://testserver"  # the TestClient's Host
EVIL = "https://evil.example"
CROSS_SITE = {
    "origin and fetch metadata": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"},
    "origin only (an older browser)": {"Origin": EVIL},
    "fetch metadata only": {"Sec-Fetch-Site": "cross-site"},
    "a sibling subdomain": {"Origin": "https://blog.testserver", "Sec-Fetch-Site": "same-site"},
    "a sandboxed page": {"Origin": "null"},
    "the same host on another port": {"Origin": "http://testserver:8081"},
}
ALLOWED = {
    "not a browser": {},
    "the server's own page": {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
    "own origin, older browser": {"Origin": OWN},
    "a typed URL or bookmark": {"Sec-Fetch-Site": "none"},
}


def usernames(api) -> set[str]:  # noqa: ANN001
    return {name for name, _ in api.ok("GET", "/rest/users/list/")["users"]}


def create_user(api, name: str, headers: dict):  # noqa: ANN001, ANN201
    return api.post("/rest/user/create/", headers=headers,
                    data={"username": name, "password": PASSWORD, "admin": "true"})


@pytest.mark.parametrize("case", CROSS_SITE)
def test_a_cross_site_form_post_is_refused(shared_api, case):
    api = shared_api
    name = f"mallory-{uuidlib.uuid4().hex[:8]}"
    with unchanged(api):
        body = expect_error(create_user(api, name, CROSS_SITE[case]), 403, 1140)
    assert "another site" in body["message"] and "ENOMALISM_TRUSTED_ORIGINS" in body["message"]
    assert name not in usernames(api)


@pytest.mark.parametrize("case", ALLOWED)
def test_same_origin_and_non_browser_requests_are_let_through(shared_api, case):
    name = f"olivia-{uuidlib.uuid4().hex[:8]}"
    r = create_user(shared_api, name, ALLOWED[case])
    assert r.status_code == 200 and r.json()["errno"] == 0, r.text
    assert name in usernames(shared_api)


@pytest.mark.parametrize("method, path, variables", [
    ("PUT", "/rest/cluster/", {"cluster_name": "from-evil"}),
    ("POST", "/rest/machine/{web}/", {"action": "rename", "name": "pwned"}),
    ("POST", "/rest/machine/{web}/actions/poweroff/", {}),  # the action shortcut's path
    ("DELETE", "/rest/user/{admin}/", {}),
])
def test_every_state_changing_method_is_refused_cross_site(shared_api, method, path, variables):
    api = shared_api
    api.ok("GET", "/rest/machines/")  # the admin's credentials are in the cache
    admin = next(u for n, u in api.ok("GET", "/rest/users/list/")["users"] if n == "admin")
    path = path.format(web=vm_uuid(api, "web"), admin=admin)
    with unchanged(api):
        expect_error(api.request(method, path, data=variables or None,
                                 headers=CROSS_SITE["origin and fetch metadata"]), 403, 1140)


def test_a_cross_site_get_that_deletes_is_refused(shared_api):
    api = shared_api
    name = f"victim-{uuidlib.uuid4().hex[:8]}"
    uuid = api.ok("POST", "/rest/user/create/", data={"username": name,
                                                        "password": PASSWORD})["uuid"]
    for headers in (CROSS_SITE["origin and fetch metadata"], {"Sec-Fetch-Site": "cross-site"}):
        expect_error(api.get(f"/rest/user/{uuid}/delete/", headers=headers), 403, 1140)
        assert name in usernames(api)
    api.ok("GET", f"/rest/user/{uuid}/delete/", headers=ALLOWED["the server's own page"])
    assert name not in usernames(api)


def test_a_cross_site_get_that_resyncs_is_refused(shared_api):
    api = shared_api
    path = f"/rest/machine/{vm_uuid(api, 'web')}/trigger_status_updates/"
    expect_error(api.get(path, headers=CROSS_SITE["origin and fetch metadata"]), 403, 1140)
    api.ok("GET", path, headers=ALLOWED["the server's own page"])


def test_a_cross_site_read_is_answered(shared_api):
    """A read changes nothing, and the browser does not show another site's page its answer
    (same-origin policy; the server sends no CORS headers)."""
    r = shared_api.get("/rest/users/list/", headers=CROSS_SITE["origin and fetch metadata"])
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_a_trusted_origin_may_send_changes(make_api, make_host, monkeypatch):
    monkeypatch.setenv("ENOMALISM_TRUSTED_ORIGINS", '["https://ui.example.org/"]')
    with make_api(make_host("h")) as api:
        r = create_user(api, "from-ui", {"Origin": "https://UI.example.org",
                                         "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 200, r.text
        expect_error(create_user(api, "from-evil", CROSS_SITE["origin and fetch metadata"]),
                     403, 1140)
        assert "from-ui" in usernames(api) and "from-evil" not in usernames(api)
