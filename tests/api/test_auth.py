"""Authentication on every /rest/ path: missing, wrong or malformed credentials get 401 with an
errno and a WWW-Authenticate header, and nothing else; /healthz, /docs and /openapi.json are
open."""

import base64
import uuid as uuidlib

import pytest

from tests.conftest import ADMIN_PASSWORD, unchanged, vm_uuid


def basic(raw: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


BAD_CREDENTIALS = {
    "none": {},
    "wrong password": basic(b"admin:wrong-password"),
    "empty password": basic(b"admin:"),
    "unknown user": basic(b"nobody:" + ADMIN_PASSWORD.encode()),
    "user name case": basic(b"ADMIN:" + ADMIN_PASSWORD.encode()),
    "not base64": {"Authorization": "Basic !!!not-base64!!!"},
    "no colon": basic(b"admin"),
    "not utf-8": basic(b"\xff\xfe:\xff"),
    "empty basic": {"Authorization": "Basic "},
    "other scheme": {"Authorization": "Digest username=admin"},
    "no scheme": {"Authorization": base64.b64encode(b"admin:x").decode()},
    "unknown token": {"Authorization": "Bearer not-a-token"},
}
# Requests that would change something if they were let through.
REQUESTS = [
    ("GET", "/rest/machines/", {}),
    ("GET", "/rest/hosts", {}),
    ("PUT", "/rest/cluster/", {"cluster_name": "intruders"}),
    ("PUT", "/rest/hosts/", {"name": "evil", "virt_url": "test:///default"}),
    ("POST", "/rest/machine/{web}/actions/poweroff/", {}),
    ("POST", "/rest/machine/{web}/", {"action": "rename", "name": "pwned"}),
    ("DELETE", "/rest/hypervisor/{hv}/", {}),
    ("GET", "/rest/machine/{unknown}/", {}),     # 401, not 404: nothing revealed
    ("GET", "/rest/machine/not-a-uuid/", {}),    # 401, not 400
]


def expect_401(r) -> None:  # noqa: ANN001
    assert r.status_code == 401, r.text
    assert r.json() == {"errno": 1100, "message": "wrong or missing credentials"}
    assert r.headers["www-authenticate"].lower().startswith("basic")


def forgive_failed_logins(api) -> None:  # noqa: ANN001
    for user in ("admin", "ADMIN", "nobody"):
        api.app.state.throttle.succeeded(user, "testclient")


@pytest.fixture(scope="module")
def paths(shared_api):  # noqa: ANN001, ANN201
    api = shared_api
    [hv] = api.hypervisors()
    return {"web": vm_uuid(api, "web"), "hv": hv["uuid"], "unknown": str(uuidlib.uuid4())}


@pytest.mark.parametrize("method, path, variables", REQUESTS,
                         ids=[f"{m} {p}" for m, p, _ in REQUESTS])
@pytest.mark.parametrize("case", BAD_CREDENTIALS)
def test_bad_credentials_are_refused(shared_api, paths, case, method, path, variables):
    api = shared_api
    forgive_failed_logins(api)  # throttling is not what is under test here
    with unchanged(api):
        r = api.request(method, path.format(**paths), auth=None,
                        headers=BAD_CREDENTIALS[case], data=variables)
        expect_401(r)


def test_a_body_is_not_read_before_the_credentials(shared_api):
    r = shared_api.request("POST", "/rest/cluster/list/", auth=None,
                           content=b"{not json", headers={"Content-Type": "application/json"})
    expect_401(r)


def test_unknown_user_and_wrong_password_look_the_same(shared_api):
    a = shared_api.request("GET", "/rest/machines/", auth=("nobody", "x"))
    b = shared_api.request("GET", "/rest/machines/", auth=("admin", "x"))
    assert (a.status_code, a.json(), a.headers["www-authenticate"]) == \
        (b.status_code, b.json(), b.headers["www-authenticate"])


def test_a_cached_credential_does_not_admit_another_password(shared_api):
    shared_api.ok("GET", "/rest/machines/")  # the right password, now cached
    expect_401(shared_api.request("GET", "/rest/machines/", auth=("admin", ADMIN_PASSWORD + "x")))


def test_the_right_credentials_are_admitted(shared_api):
    r = shared_api.request("GET", "/rest/machines/", auth=None,
                           headers=basic(b"admin:" + ADMIN_PASSWORD.encode()))
    assert r.status_code == 200 and r.json()["machines"]


def test_healthz_needs_no_credentials(shared_api):
    r = shared_api.request("GET", "/healthz", auth=None)
    assert r.status_code == 200
    assert r.json()["errno"] == 0


def test_docs_are_reachable(shared_api):
    r = shared_api.request("GET", "/docs", auth=None)
    assert r.status_code == 200 and "swagger" in r.text.lower()


def test_openapi_describes_section_2(shared_api):
    r = shared_api.request("GET", "/openapi.json", auth=None)
    assert r.status_code == 200
    doc = r.json()
    paths = doc["paths"]
    for path, methods in {
        "/rest/machines/": {"get", "post", "put"},
        "/rest/machine/": {"get", "post"},
        "/rest/machine/{uuid}/": {"get", "post"},
        "/rest/machine/{uuid}/trigger_status_updates/": {"get", "post"},
        "/rest/hypervisor/{uuid}/": {"get", "delete"},
        "/rest/machine/{uuid}/hypervisors/": {"get", "post"},
        "/rest/machine/{uuid}/clusters/": {"get", "post", "delete"},
        "/rest/machine/{uuid}/actions/": {"get", "post"},
        **{f"/rest/machine/{{uuid}}/actions/{a}/": {"post"} for a in (
            "unlock", "suspend", "resume", "shutdown", "poweroff", "reboot", "create",
            "store_xml", "manage", "totaldelete")},
        "/rest/cluster/": {"get", "put"},
        "/rest/cluster/list/": {"get", "post"},
        "/rest/cluster/{uuid}/": {"get", "post", "delete"},
        "/rest/hosts/": {"get", "put"},
    }.items():
        assert methods <= set(paths[path]), path
    # the HTTP variables are documented: rename's name, define's xmldesc and hvmuuid
    machine_post = paths["/rest/machine/{uuid}/"]["post"]["requestBody"]["content"]
    props = machine_post["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert {"action", "name", "xmldesc", "puuid"} <= set(props)
    define = paths["/rest/machines/"]["put"]["requestBody"]["content"]["application/json"]
    assert {"xmldesc", "hvmuuid"} <= set(define["schema"]["properties"])
    assert any(s.get("scheme") == "basic"
               for s in doc["components"]["securitySchemes"].values())
