"""One name rule per kind of name (services/names.py), the same at every request that takes
one: a bad name is refused with 400 (errno 1000; none at all: 1001) and changes nothing."""

from collections.abc import Iterator

import pytest

from enomalism.services import names
from tests.conftest import Api, expect_error, new_vm, serve
from tests.fakehost import domain_xml, write_host

NO_SUCH = "8d7c7b9e-2b4c-4a8e-9a51-0d0f1e2a3b4c"
BAD_MACHINE = ["a/b", ".hidden", "x" * 256, "tab\there", "new\nline"]
BAD_NETWORK = ["x" * 256, "new\nline"]  # networks and clusters
BAD_ACCOUNT = ["bad name", "-x", "x" * 65, "a/b", "é"]  # users, groups, images


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict]]:
    d = tmp_path_factory.mktemp("names")
    with serve(d / "data", write_host(d / "host.xml", [])) as api:
        vm = new_vm(api, "names-vm")
        host = api.ok("GET", "/rest/machines/", params={"kind": "host"})["machines"][0]
        yield api, {"vm": vm, "host": host}


def refused(api: Api, method: str, path: str, errno: int = 1000, **kw: object) -> None:
    before = api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    before_nets = api.ok("GET", "/rest/networks/")
    before_clusters = api.ok("GET", "/rest/cluster/list/")
    before_users = api.ok("GET", "/rest/users/")
    body = expect_error(api.request(method, path, **kw), 400, errno)
    if errno == 1000:
        assert "is not a usable name" in body["message"], body
    assert api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"] == before
    assert api.ok("GET", "/rest/networks/") == before_nets
    assert api.ok("GET", "/rest/cluster/list/") == before_clusters
    assert api.ok("GET", "/rest/users/") == before_users


@pytest.mark.parametrize("name", BAD_MACHINE)
def test_create(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/machines/", data={"name": name, "disk": 1})


@pytest.mark.parametrize("name", BAD_MACHINE)
def test_provision(env, name):
    api, ids = env
    refused(api, "POST", f"/rest/machine/{ids['host']}/actions/provision/",
            data={"name": name, "pkguuid": NO_SUCH})


@pytest.mark.parametrize("name", BAD_MACHINE)
@pytest.mark.parametrize("which", ["vm", "host"])
def test_rename(env, name, which):
    api, ids = env
    refused(api, "POST", f"/rest/machine/{ids[which]}/actions/rename/", data={"name": name})


@pytest.mark.parametrize("name", BAD_MACHINE)
def test_xmldesc(env, name):
    api, ids = env
    xml = domain_xml("NAME", ids["vm"]).replace("NAME", name.replace("<", "&lt;"))
    refused(api, "POST", f"/rest/machine/{ids['vm']}/actions/xmldesc/", data={"xmldesc": xml})


@pytest.mark.parametrize("name", BAD_MACHINE)
def test_register_host(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/hosts/", data={"name": name})


@pytest.mark.parametrize("name", BAD_NETWORK)
def test_network(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/networks/", data={"name": name, "bridge": "brnames",
                                                 "ip": "10.77.0.0", "netmask": "24"})


@pytest.mark.parametrize("name", BAD_NETWORK)
def test_cluster(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/cluster/", data={"cluster_name": name})


@pytest.mark.parametrize("name", BAD_ACCOUNT)
def test_user(env, name):
    api, _ = env
    refused(api, "POST", "/rest/user/create/",
            data={"username": name, "password": "a long enough password 1"})


@pytest.mark.parametrize("name", BAD_ACCOUNT)
def test_group(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/group/create/", data={"group_name": name})


@pytest.mark.parametrize("name", BAD_ACCOUNT)
def test_image_upload(env, name):
    api, _ = env
    refused(api, "PUT", "/rest/images/", params={"name": name, "format": "raw"},
            content=b"\0" * 512, headers={"Content-Type": "application/octet-stream"})


@pytest.mark.parametrize("path, data", [
    ("/rest/machines/", {"disk": 1}),
    ("/rest/hosts/", {}),
    ("/rest/cluster/", {}),
    ("/rest/group/create/", {}),
])
def test_no_name_at_all(env, path, data):
    api, _ = env
    refused(api, "PUT", path, errno=1001, data={**data, "name": "  "}
            if path in ("/rest/machines/", "/rest/hosts/") else data)


def test_good_names_pass_every_rule():
    assert names.check(names.MACHINE, " web-01.example ") == "web-01.example"
    assert names.check(names.MACHINE, "x" * 255) == "x" * 255
    assert names.check(names.NETWORK, "a/b .c") == "a/b .c"  # no volumes named after it
    assert names.check(names.USER, "alice@example.org") == "alice@example.org"
    with pytest.raises(Exception, match="a machine name has at most 255 characters, no "
                                        "control characters, no '/' and no leading '.'"):
        names.check(names.MACHINE, ".x")
    with pytest.raises(Exception, match="an image name has 1 to 64"):
        names.check(names.IMAGE, "x y")
