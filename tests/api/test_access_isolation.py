"""Issue 12, classes 3, 5 and 6, from outside, as a non-administrator: hypervisor URIs go through
an allow-list (and libvirt's reasons, which may quote a file or tell an open port from a closed
one, are not passed on); a cluster does not share a machine its granter could not share; copying
a machine's disks out (package, download) needs `export`, not `control`."""

import time

import pytest
from sqlalchemy import select

from enomalism.store.models import Transaction
from tests.api.accounts import define_vm, grant, new_user, unique
from tests.conftest import Api, expect_error, unchanged

SECRET = "s3cr3t-line-from-a-host-file"


def hypervisors_of(api: Api, host: str) -> list[str]:
    return [h["virt_url"] for h in
            api.ok("GET", f"/rest/machine/{host}/hypervisors/")["hypervisors"]]


def add(api: Api, host: str, uri: str, auth: object):  # noqa: ANN201
    return api.post(f"/rest/machine/{host}/hypervisors/", data={"virt_url": uri}, auth=auth)


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A host file a URI might name: test:///<it> would quote it in libvirt's parse error."""
    path = tmp_path_factory.mktemp("secret") / "secret.xml"
    path.write_text(f"{SECRET}\n")
    return str(path)


# -- class 3: hypervisor URIs ---------------------------------------------------------------

REFUSED = [
    # test: reads any file, and its parse error quotes it
    ("test:///{secret}", "test:"), ("test:///default", "test:"),
    # transports and parameters that run programs or name files and sockets on the server
    ("qemu+ext:///system?command=/bin/sh", "'ext' transport"),
    ("qemu+unix:///system?socket=/run/other.sock", "'socket'"),
    ("qemu+ssh://{address}/system?netcat=/bin/sh", "'netcat'"),
    ("qemu+ssh://{address}/system?proxy=netcat", "'proxy'"),
    ("qemu+ssh://{address}/system?command=/bin/sh", "'command'"),
    ("qemu+ssh://{address}/system?keyfile=/root/.ssh/id_rsa", "'keyfile'"),
    ("qemu+libssh2://{address}/system?known_hosts=/tmp/kh", "'known_hosts'"),
    ("qemu+libssh://{address}/system?known_hosts_verify=auto", "'known_hosts_verify'"),
    ("qemu+tls://{address}/system?pkipath=/tmp/pki", "'pkipath'"),
    ("qemu+tls://{address}/system?no_verify=1", "'no_verify'"),
    # name= makes the far side open another URI (on a loopback host: this server's libvirtd)
    ("qemu+tcp://{address}/system?name=test:///{secret}", "'name'"),
    # what libvirt's parser would read differently from a naive check
    ("qemu+unix:///system?SOCKET=/run/other.sock", "'socket'"),
    ("qemu+unix:///system?%73ocket=/run/other.sock", "without escapes"),
    ("qemu+unix:///system?mode=direct;socket=/run/other.sock", "without escapes"),
    # daemons started, or state written under a path, on the server
    ("qemu:///session", "'/session'"), ("qemu:///embed?root=/tmp/x", "'/embed'"),
    # drivers outside the allow-list
    ("vbox:///session", "driver 'vbox'"),
    # somewhere else than the host the hypervisor is added to
    ("qemu+ssh://elsewhere.invalid/system", "elsewhere.invalid"),
    ("qemu:///system", "this server's own libvirt"),
    ("qemu+tcp://127.0.0.1/system", "this server's own libvirt"),
    ("qemu://{address}/system", "no remote transport"),
]


@pytest.fixture(scope="module")
def node(shared_api: Api) -> dict:
    """A host other than the server's own, with an address; alice holds `admin` on it and on
    the server's own host; mallory holds `modify` on both (no longer enough)."""
    api = shared_api
    address = f"{unique('node')}.invalid"
    host = api.ok("PUT", "/rest/hosts/", data={"name": unique("node"), "address": address})
    alice, mallory = new_user(api), new_user(api)
    for h in (host["machine"], api.local_host()):
        grant(api, h, "admin", user=alice.uuid)
        grant(api, h, "modify", user=mallory.uuid)
    return {"host": host["machine"], "address": address, "alice": alice, "mallory": mallory}


@pytest.mark.parametrize("template, named", REFUSED, ids=[t for t, _ in REFUSED])
def test_a_non_admin_may_not_add_a_uri_outside_the_allow_list(shared_api, node, secret_file,
                                                               template, named):
    api = shared_api
    uri = template.format(secret=secret_file.lstrip("/"), address=node["address"])
    host = api.local_host() if "{address}" not in template and "elsewhere" not in template \
        and "127.0.0.1" not in template and template != "qemu:///system" else node["host"]
    with unchanged(api):
        body = expect_error(add(api, host, uri, node["alice"].auth), 403, 1120)
    assert named in body["message"]
    assert SECRET not in body["message"]


def test_test_uris_are_refused_on_the_servers_own_host_too(shared_api, node, secret_file):
    """The file-reading test: driver, on the host where local URIs are otherwise allowed; the
    administrator may (and is told libvirt's reason, which here quotes the file)."""
    api = shared_api
    uri = f"test://{secret_file}"
    with unchanged(api):
        body = expect_error(add(api, api.local_host(), uri, node["alice"].auth), 403, 1120)
    assert SECRET not in body["message"] and "administrator" in body["message"]
    admin = expect_error(add(api, api.local_host(), uri, "admin"), 503, 1501)
    assert SECRET in admin["message"]  # what a non-administrator must never be shown


def test_adding_a_hypervisor_needs_admin_on_the_host(shared_api, node):
    api = shared_api
    uri = f"qemu+ssh://{node['address']}/system"
    with unchanged(api):
        body = expect_error(add(api, node["host"], uri, node["mallory"].auth), 403, 1101)
    assert "'admin'" in body["message"]


@pytest.mark.parametrize("uri", [
    "qemu+ssh://{address}/system", "qemu+libssh2://root@{address}:2222/system?sshauth=privkey",
    "qemu+tls://{address}/system?no_tty=1&mode=direct", "xen+ssh://{address}/",
    "lxc+ssh://{address}/system"])
def test_an_allowed_uri_to_the_host_itself_is_tried_without_libvirts_reason(shared_api, node,
                                                                          uri):
    """The URI passes the policy and is connected to (the .invalid host cannot answer): the
    answer does not say why, which could tell an open port from a closed one."""
    api = shared_api
    uri = uri.format(address=node["address"])
    with unchanged(api):
        body = expect_error(add(api, node["host"], uri, node["alice"].auth), 503, 1501)
    assert body["message"] == (f"cannot connect to {uri}; an administrator can find why in "
                               "the server log")


def test_a_local_uri_on_the_servers_own_host_is_allowed(shared_api, node):
    """Port 1 on loopback: nothing listens there; the policy lets it through (this is the
    server's own host), and the refusal says nothing about the port."""
    api = shared_api
    uri = "qemu+tcp://127.0.0.1:1/system"
    with unchanged(api):
        body = expect_error(add(api, api.local_host(), uri, node["alice"].auth), 503, 1501)
    assert "refused" not in body["message"].lower()
    admin = expect_error(add(api, api.local_host(), uri, "admin"), 503, 1501)
    assert admin["message"] != body["message"]  # the administrator is told libvirt's reason


# -- class 5: sharing by the back door --------------------------------------------------------

def machine_ids(api: Api, auth: object) -> set[str]:
    return set(api.ok("GET", "/rest/machines/", auth=auth)["machines"])


def test_a_reader_cannot_share_a_machine_through_her_own_cluster(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    grant(api, bob.uuid, "read", user=alice.uuid)  # so that she may name him in a grant
    vm = define_vm(api, api.hypervisors()[0]["uuid"])
    grant(api, vm, "read", user=alice.uuid)
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")},
               auth=alice.auth)["cluster"]["uuid"]
    r = api.post(f"/rest/machine/{vm}/clusters/", data={"clusters": c}, auth=alice.auth)
    assert "'admin'" in expect_error(r, 403, 1101)["message"]
    assert api.machine(vm)["machine_obj"]["clusters"] == []
    grant(api, c, "read", user=bob.uuid, auth=alice.auth)
    expect_error(api.get(f"/rest/machine/{vm}/", auth=bob.auth), 404, 1200)
    assert vm not in machine_ids(api, bob.auth)


def test_a_cluster_grant_shares_only_what_its_granter_may_share(shared_api):
    """The machine is in alice's cluster (put there by the administrator, as a membership made
    before the rule would be): her grant of the cluster gives bob nothing of it until she may
    share the machine herself, and nothing again once she may not."""
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    grant(api, bob.uuid, "read", user=alice.uuid)  # so that she may name him in a grant
    vm = define_vm(api, api.hypervisors()[0]["uuid"])
    grant(api, vm, "read", user=alice.uuid)
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")},
               auth=alice.auth)["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{vm}/clusters/", data={"clusters": c})
    grant(api, c, "read", user=bob.uuid, auth=alice.auth)
    assert api.ok("GET", f"/rest/cluster/{c}/", auth=bob.auth)["cluster"]["machines"] == []
    expect_error(api.get(f"/rest/machine/{vm}/", auth=bob.auth), 404, 1200)
    assert vm not in machine_ids(api, bob.auth)
    grant(api, vm, "admin", user=alice.uuid)
    assert api.ok("GET", f"/rest/cluster/{c}/", auth=bob.auth)["cluster"]["machines"] == [vm]
    assert api.ok("GET", f"/rest/machine/{vm}/", auth=bob.auth)["machine"] == vm
    assert vm in machine_ids(api, bob.auth)
    expect_error(api.post(f"/rest/machine/{vm}/actions/create/", auth=bob.auth), 403, 1101)
    api.ok("DELETE", f"/rest/permissions/{vm}/", params={"permission": "admin",
                                                         "user": alice.uuid})
    expect_error(api.get(f"/rest/machine/{vm}/", auth=bob.auth), 404, 1200)
    assert vm not in machine_ids(api, bob.auth)


def test_who_may_share_a_machine_may_put_it_in_a_cluster(shared_api):
    api = shared_api
    alice, bob = new_user(api), new_user(api)
    grant(api, bob.uuid, "read", user=alice.uuid)  # so that she may name him in a grant
    vm = define_vm(api, api.hypervisors()[0]["uuid"])
    grant(api, vm, "admin", user=alice.uuid)
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": unique("c")},
               auth=alice.auth)["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{vm}/clusters/", data={"clusters": c}, auth=alice.auth)
    grant(api, c, "read", user=bob.uuid, auth=alice.auth)
    assert vm in machine_ids(api, bob.auth)


# -- class 6: exporting -------------------------------------------------------------------------

def wait_done(api: Api, txid: str, deadline: float = 60.0) -> dict:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        body = api.ok("GET", f"/rest/transaction/{txid}/")
        if body["data"]["state"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"transaction {txid} did not finish: {body}")


def test_package_and_its_download_need_export(api):
    api_ = api  # (the fixture's name, kept apart from the module's helpers)
    bob, carol = new_user(api_), new_user(api_)
    vm = define_vm(api_, api_.hypervisors()[0]["uuid"])
    grant(api_, vm, "control", user=bob.uuid)
    with unchanged(api_):
        for path, data in [(f"/rest/machine/{vm}/actions/package/", {}),
                           (f"/rest/machine/{vm}/", {"action": "package"})]:
            body = expect_error(api_.post(path, data=data, auth=bob.auth), 403, 1101)
            assert "'export'" in body["message"]
    with api_.app.state.db.session(write=False) as s:
        assert s.scalar(select(Transaction.uuid).where(Transaction.target_uuid == vm)) is None
    grant(api_, vm, "export", user=bob.uuid)
    txid = api_.ok("POST", f"/rest/machine/{vm}/actions/package/", auth=bob.auth,
                   data={"name": unique("copy")})["txid"]
    done = wait_done(api_, txid)
    assert done["data"]["state"] == "done", done
    pkg = done["data"]["result"]["package"]
    download = f"/rest/vmfeed/{pkg}/download/"
    assert api_.request("GET", download, auth=bob.auth).status_code == 200  # bob owns it
    # carol reads the copy: she sees it, but may not take it away
    grant(api_, pkg, "read", user=carol.uuid)
    assert api_.ok("GET", f"/rest/vmfeed/{pkg}/", auth=carol.auth)["package"]["uuid"] == pkg
    assert "'export'" in expect_error(api_.get(download, auth=carol.auth), 403, 1101)["message"]
    assert f"/rest/vmfeed/{pkg}/download/" not in api_.get("/rest/vmfeed/feed.xml",
                                                          auth=carol.auth).text
    grant(api_, pkg, "export", user=carol.uuid)
    r = api_.request("GET", download, auth=carol.auth)
    assert r.status_code == 200 and len(r.content) > 0
    assert f"/rest/vmfeed/{pkg}/download/" in api_.get("/rest/vmfeed/feed.xml",
                                                       auth=carol.auth).text
