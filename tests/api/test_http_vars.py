"""HTTP variables arrive as a query string, an urlencoded form, a multipart form or a JSON object
body, and every endpoint reads them the same way; paths answer with and without the trailing
slash, without a redirect that would lose a POST body."""

import pytest

from tests.conftest import expect_error, new_vm, unchanged, vm_uuid
from tests.fakehost import domain_xml

ENCODINGS = ["query", "urlencoded", "multipart", "json"]


def send(api, method: str, path: str, variables: dict, how: str):  # noqa: ANN001, ANN201
    """One request with `variables` encoded `how`."""
    if how == "query":
        return api.request(method, path, params=variables)
    if how == "urlencoded":
        return api.request(method, path, data=variables)
    if how == "multipart":  # a file part forces multipart; files are not variables
        return api.request(method, path, data=variables, files={"attachment": ("a.txt", b"x")})
    return api.request(method, path, json=variables)


def ok(r) -> dict:  # noqa: ANN001
    assert r.status_code == 200, r.text
    assert r.json().get("errno", 0) == 0, r.text
    assert not r.history  # answered directly, no redirect
    return r.json()


def hv(api) -> str:  # noqa: ANN001
    return api.hypervisors()[0]["uuid"]


def cluster(api, name: str) -> str:  # noqa: ANN001
    return api.ok("PUT", "/rest/cluster/", data={"cluster_name": name})["cluster"]["uuid"]


@pytest.fixture(scope="module")
def vars_api(shared_api):  # noqa: ANN001, ANN201
    """The shared server; every test below creates objects of its own, named after it."""
    return shared_api


@pytest.mark.parametrize("slash", ["/", ""])
@pytest.mark.parametrize("how", ENCODINGS)
def test_create_cluster(vars_api, how, slash):
    name = f"c-{how}{slash and '-slash'}"
    body = ok(send(vars_api, "PUT", f"/rest/cluster{slash}", {"cluster_name": name}, how))
    assert body["cluster"]["name"] == name


@pytest.mark.parametrize("how", ENCODINGS)
def test_rename_cluster(vars_api, how):
    uuid = cluster(vars_api, f"before-{how}")
    body = ok(send(vars_api, "POST", f"/rest/cluster/{uuid}",
                   {"action": "rename", "cluster_name": f"after-{how} ü"}, how))
    assert body["cluster"]["name"] == f"after-{how} ü"


@pytest.mark.parametrize("how", ENCODINGS)
def test_define_and_rename_a_machine(vars_api, how):
    api = vars_api
    xml = domain_xml(f"vm-{how}").replace("<devices>", "<description>a &amp; b</description>"
                                          "<devices>")
    body = ok(send(api, "PUT", "/rest/machines", {"xmldesc": xml, "hvmuuid": hv(api)}, how))
    uuid = body["machine"]
    body = ok(send(api, "POST", f"/rest/machine/{uuid}",
                   {"action": "rename", "name": f"renamed-{how}"}, how))
    assert body["machine_obj"]["name"] == f"renamed-{how}"
    dom = api.registry.connection(hv(api)).virconnect.lookupByUUIDString(uuid)
    assert dom.name() == f"renamed-{how}"


@pytest.mark.parametrize("how", ENCODINGS)
def test_machine_clusters_as_a_list(vars_api, how):
    api = vars_api
    a, b = cluster(api, f"list-a-{how}"), cluster(api, f"list-b-{how}")
    web = vm_uuid(api, "web")
    value = [a, b] if how == "json" else f"{a},{b}"
    body = ok(send(api, "POST", f"/rest/machine/{web}/clusters", {"clusters": value}, how))
    assert {a, b} <= {c["uuid"] for c in body["clusters"]}
    body = ok(send(api, "DELETE", f"/rest/machine/{web}/clusters", {"clusters": value}, how))
    assert not {a, b} & {c["uuid"] for c in body["clusters"]}


@pytest.mark.parametrize("how", ENCODINGS)
def test_register_host(vars_api, how):
    body = ok(send(vars_api, "PUT", "/rest/hosts", {"name": f"node-{how}"}, how))
    assert body["machine_obj"]["name"] == f"node-{how}"


@pytest.mark.parametrize("how", ENCODINGS)
def test_list_filters_on_post(vars_api, how):
    body = ok(send(vars_api, "POST", "/rest/machines",
                   {"state": "paused", "detail": "true"}, how))
    assert [o["name"] for o in body["machine_objs"]] == ["db"]


def test_json_values_that_are_not_text(vars_api):
    body = ok(vars_api.request("PUT", "/rest/cluster/", json={"cluster_name": 4711}))
    assert body["cluster"]["name"] == "4711"
    body = ok(vars_api.request("POST", "/rest/machines/",
                               json={"detail": True, "kind": "vm", "state": "paused"}))
    assert [o["name"] for o in body["machine_objs"]] == ["db"]


def test_the_body_wins_over_the_query(vars_api):
    body = ok(vars_api.request("PUT", "/rest/cluster/", params={"cluster_name": "from-query"},
                               json={"cluster_name": "from-body"}))
    assert body["cluster"]["name"] == "from-body"


def test_json_with_a_charset(vars_api):
    r = vars_api.request("PUT", "/rest/cluster/", content=b'{"cluster_name": "charset"}',
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok(r)["cluster"]["name"] == "charset"


def test_unknown_variables_are_ignored(vars_api):
    body = ok(vars_api.request("PUT", "/rest/cluster/",
                               data={"cluster_name": "extra", "colour": "blue"}))
    assert body["cluster"]["name"] == "extra"


@pytest.mark.parametrize("content, errno", [
    (b"{not json", 1000),
    (b'["cluster_name", "x"]', 1000),
    (b'"x"', 1000),
    (b"", 1001),      # an empty body: no variables, so cluster_name is missing
    (b"{}", 1001),
])
def test_bad_json_bodies(vars_api, content, errno):
    with unchanged(vars_api):
        r = vars_api.request("PUT", "/rest/cluster/", content=content,
                             headers={"Content-Type": "application/json"})
        expect_error(r, 400, errno)


@pytest.mark.parametrize("how", ENCODINGS)
def test_a_missing_variable_in_every_encoding(vars_api, how):
    api = vars_api
    with unchanged(api):
        expect_error(send(api, "PUT", "/rest/machines/", {"hvmuuid": hv(api)}, how), 400, 1001)


def test_action_variables_on_action_paths(sandbox, own):
    """The machine/<UUID> action variables arrive the same way in every encoding."""
    api = sandbox
    uuid = new_vm(api, own)
    for i, how in enumerate(ENCODINGS):
        xml = domain_xml(own, uuid=uuid, memory_kib=131072 + i * 1024)
        r = send(api, "POST", f"/rest/machine/{uuid}/", {"action": "xmldesc", "xmldesc": xml},
                 how)
        assert f"{131072 + i * 1024}<" in ok(r)["machine_obj"]["xmldesc"], how
    ok(api.post(f"/rest/machine/{uuid}/actions/store_xml"))
    dom = api.registry.connection(hv(api)).virconnect.lookupByUUIDString(uuid)
    assert dom.maxMemory() == 134144
