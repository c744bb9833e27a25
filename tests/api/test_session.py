"""`/rest/session/`: the dashboard's login cookie, its CSRF token, logout (docs/dashboard.md)."""

import re
from urllib.parse import parse_qs, urlsplit

from enomalism.api import ui
from enomalism.services import sessions
from tests.conftest import ADMIN_PASSWORD, expect_error, manage

COOKIE = "enomalism_session"
APP_JS = (ui.UI / "static" / "app" / "app.js").read_text()


def _login(api, password=ADMIN_PASSWORD):  # noqa: ANN001, ANN202
    return api.client.post("/rest/session/", data={"username": "admin", "password": password})


def test_login_sets_a_strict_httponly_cookie_and_answers_the_csrf_token(api) -> None:
    r = _login(api)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == "admin" and body["is_admin"] and body["csrf_token"]
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie  # plain HTTP here
    who = api.client.get("/rest/session/")
    assert who.status_code == 200 and who.json()["csrf_token"] == body["csrf_token"]
    # the cookie is enough for any read of the API
    assert api.client.get("/rest/machines/").status_code == 200


def test_wrong_password_sets_no_cookie(api) -> None:
    r = _login(api, "wrong")
    expect_error(r, 401, 1100)
    assert "set-cookie" not in r.headers
    expect_error(api.client.get("/rest/session/"), 401, 1100)


def test_a_change_with_the_cookie_needs_the_csrf_token(api) -> None:
    uuid = manage(api, "web")
    csrf = _login(api).json()["csrf_token"]
    path = f"/rest/machine/{uuid}/actions/suspend/"
    expect_error(api.client.post(path), 403, 1143)
    expect_error(api.client.post(path, headers={"X-CSRF-Token": "0" * 64}), 403, 1143)
    assert api.client.get(f"/rest/machine/{uuid}/").json()["machine_obj"]["state"] == "running"
    r = api.client.post(path, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert api.client.get(f"/rest/machine/{uuid}/").json()["machine_obj"]["state"] == "paused"


def test_logout_revokes_the_session(api) -> None:
    csrf = _login(api).json()["csrf_token"]
    stolen = api.client.cookies.get(COOKIE)
    expect_error(api.client.delete("/rest/session/"), 403, 1143)
    r = api.client.delete("/rest/session/", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert f'{COOKIE}=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    expect_error(api.client.get("/rest/session/"), 401, 1100)
    # the old cookie, replayed, is dead on the server too
    expect_error(api.client.get("/rest/machines/", cookies={COOKIE: stolen}), 401, 1100)


def test_login_from_another_sites_page_is_refused(api) -> None:
    r = api.client.post("/rest/session/", data={"username": "admin", "password": ADMIN_PASSWORD},
                        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"})
    expect_error(r, 403, 1140)
    assert "set-cookie" not in r.headers


def test_the_dashboard_is_at_the_root_and_shadows_no_api_path(api) -> None:
    r = api.client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert api.client.get("/ui/static/vendor/VERSIONS").status_code == 200
    assert api.client.get("/healthz").json()["errno"] == 0
    assert api.client.get("/openapi.json").status_code == 200
    expect_error(api.client.get("/rest/no-such-thing/"), 404, 1200)  # the API's, not a page
    expect_error(api.client.get("/rest/machines/"), 401, 1100)


def test_a_logged_in_visit_names_its_first_requests_for_the_browser_to_ask_early(api) -> None:
    """The page of a visit with a session cookie names the session and the list's first rows
    as preloads (a browser asks for them while it loads the files); a visit without one is
    the login form and names none. A preload sends no header of its own: its 401 still comes
    without a Basic prompt, as a browser's fetch says by its `Sec-Fetch-Dest`."""
    anonymous = api.client.get("/").text
    assert 'rel="preload"' not in anonymous
    api.client.cookies.set(sessions.COOKIE, "no-such-session")
    try:
        page = api.client.get("/").text
    finally:
        api.client.cookies.clear()
    links = re.findall(r'<link rel="preload" as="fetch" crossorigin href="([^"]+)">', page)
    assert links == ["/rest/session/", ui.FIRST_ROWS]
    assert page.index(links[-1]) < page.index("app.js")  # before the files, in the head
    r = api.client.get(ui.FIRST_ROWS, headers={"Sec-Fetch-Dest": "empty",
                                                "Sec-Fetch-Mode": "cors"})
    assert r.status_code == 401 and "www-authenticate" not in r.headers
    assert "www-authenticate" in api.client.get(ui.FIRST_ROWS).headers  # a client's: asked
    # the rows it names are those the list asks for first (app.js: machinesQuery, PAGE)
    fields = re.search(r'const ROW_FIELDS = "([^"]+)"', APP_JS)[1]
    page_rows = re.search(r"const PAGE = (\d+);", APP_JS)[1]
    assert parse_qs(urlsplit(ui.FIRST_ROWS).query) == {
        "detail": ["1"], "fields": [fields], "kind": ["vm"], "limit": [page_rows],
        "offset": ["0"]}


def test_machines_filter_by_name_and_host_and_come_in_pages(api) -> None:
    """The dashboard's list asks the server for one page of what matches (extensions)."""
    host = api.local_host()
    page = api.ok("GET", "/rest/machines/", params={"kind": "vm", "limit": 2, "detail": 1})
    assert page["total"] == 3 and [o["name"] for o in page["machine_objs"]] == ["db", "idle"]
    rest = api.ok("GET", "/rest/machines/", params={"kind": "vm", "limit": 2, "offset": 2})
    assert rest["total"] == 3 and len(rest["machines"]) == 1
    found = api.ok("GET", "/rest/machines/", params={"search": "EB", "detail": 1})
    assert [o["name"] for o in found["machine_objs"]] == ["web"]
    assert api.ok("GET", "/rest/machines/", params={"search": "%"})["machines"] == []
    on_host = api.ok("GET", "/rest/machines/", params={"host": host, "limit": 10})
    assert on_host["total"] == 3
    expect_error(api.get("/rest/machines/", params={"limit": 0}), 400, 1000)


def test_a_list_answers_only_the_fields_asked_for(api) -> None:
    """`fields` narrows each machine object to the keys a list shows (the dashboard's rows
    leave out the XML and the leases); the values are those of the whole object."""
    whole = api.ok("GET", "/rest/machines/", params={"kind": "vm", "detail": 1})["machine_objs"]
    keys = ["name", "state", "host", "owner", "vcpus", "memory_kib", "clusters"]
    narrow = api.ok("GET", "/rest/machines/", params=[("kind", "vm"), ("detail", 1),
                                                      ("fields", ",".join(keys[:4])),
                                                      ("fields", ",".join(keys[4:]))])
    assert narrow["machines"] == [o["uuid"] for o in whole]
    assert [set(o) for o in narrow["machine_objs"]] == [{"uuid", *keys}] * len(whole)
    assert narrow["machine_objs"] == [{k: o[k] for k in ("uuid", *keys)} for o in whole]
    xml = api.ok("GET", "/rest/machines/", params={"kind": "vm", "detail": 1,
                                                  "fields": "xmldesc,addresses"})
    assert xml["machine_objs"] == [{k: o[k] for k in ("uuid", "xmldesc", "addresses")}
                                   for o in whole]
    assert all("<domain" in o["xmldesc"] for o in xml["machine_objs"])
    e = expect_error(api.get("/rest/machines/", params={"detail": 1, "fields": "name,pasword"}),
                     400, 1000)
    assert "pasword" in e["message"] and "memory_kib" in e["message"]


def test_a_session_is_not_in_the_users_token_list_nor_revoked_as_a_token(api) -> None:
    csrf = _login(api).json()["csrf_token"]
    api.ok("PUT", "/rest/tokens/", data={"name": "script"})
    listed = api.client.get("/rest/tokens/").json()["tokens"]  # with the cookie
    assert [t["name"] for t in listed] == ["script"]
    assert [t["name"] for t in api.ok("GET", "/rest/tokens/", params={"user": "admin"})
            ["tokens"]] == ["script"]
    from enomalism.store.models import ApiToken

    with api.app.state.db.session() as s:
        session = s.query(ApiToken).filter_by(is_session=True).one()
        sid = session.uuid
    expect_error(api.client.delete(f"/rest/tokens/{sid}/", headers={"X-CSRF-Token": csrf}),
                 404, 1200)
    assert api.client.get("/rest/session/").status_code == 200  # still logged in


def test_machines_filter_by_cluster_and_owner(api) -> None:
    """Cluster and owner filters (id or name) narrow only what the caller may read."""
    web, db = manage(api, "web"), manage(api, "db")
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": "front"})["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{web}/clusters/", data={"clusters": c})
    for cluster in (c, "front"):
        body = api.ok("GET", "/rest/machines/", params={"cluster": cluster, "limit": 10})
        assert (body["machines"], body["total"]) == ([web], 1)
    assert api.ok("GET", "/rest/machines/", params={"cluster": "nope"})["machines"] == []
    owner = api.ok("GET", f"/rest/machine/{db}/")["machine_obj"]["owner"]
    for who in (owner, "admin"):
        mine = api.ok("GET", "/rest/machines/", params={"owner": who, "kind": "vm"})["machines"]
        assert set(mine) == {web, db}  # the unmanaged 'idle' has no owner
    api.ok("POST", "/rest/user/create/", data={"username": "erin", "password": "erin-pass-12"})
    assert api.ok("GET", "/rest/machines/", params={"owner": "erin"})["machines"] == []
    # erin reads none of them: the filters show her nothing of the admin's
    erin = ("erin", "erin-pass-12")
    assert api.ok("GET", "/rest/machines/", params={"owner": "admin"}, auth=erin)["machines"] == []
    assert api.ok("GET", "/rest/machines/", params={"cluster": c}, auth=erin)["machines"] == []
