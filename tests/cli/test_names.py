"""People read names: owners and targets by name in `machine show`, `permission list`,
`tx list` and `tx show`; `machine list`'s hypervisor, address and size columns; errors in the
CLI's own verbs; a server where nothing listens is unreachable (exit 6); output into a pipe
is not wrapped; and the Python client names things as the CLI does."""

import pytest

from enomalism.client import AmbiguousError, Client, NotFoundError
from tests.cli.conftest import PREFIX_A, PREFIX_B, dead_url
from tests.conftest import ADMIN_PASSWORD


def admin_uuid(cloud) -> str:  # noqa: ANN001
    return next(i for n, i in cloud.ok("GET", "/rest/users/")["users"] if n == "admin")


def fields(out: str) -> dict[str, str]:
    return {k: v.strip() for k, v in (line.split(None, 1) for line in out.splitlines()
                                      if " " in line.strip())}


def test_machine_show_names_the_owner(cloud, own):
    uuid = cloud.new_vm(own("vm"))
    r = cloud.run("machine", "show", uuid)
    assert r.code == 0, r.all
    assert fields(r.out)["owner"] == f"admin ({admin_uuid(cloud)})"


def test_machine_list_has_hypervisor_address_and_size(cloud, own):
    uuid = cloud.new_vm(own("vm"))
    net = cloud.ok("PUT", "/rest/networks/", json={
        "name": own("net"), "bridge": "br-names", "ip": "10.77.0.0", "netmask": "24"})
    net_uuid = net["network"]["uuid"]
    cloud.ok("POST", f"/rest/networks/{net_uuid}/iprange/",
             json={"start_ip": "10.77.0.10", "end_ip": "10.77.0.20"})
    cloud.ok("PUT", f"/rest/networks/{net_uuid}/leases/",
             json={"address": "10.77.0.11", "machine": uuid})
    r = cloud.run("machine", "list")
    assert r.code == 0, r.all
    [row] = [line for line in r.out.splitlines() if uuid in line]
    assert cloud.h1_uri in row and "10.77.0.11" in row and "1 vCPU, 512.0 MiB" in row
    doc = cloud.run("machine", "list", "--json").json
    assert {"vcpus": 1, "memory_kib": 524288}.items() <= \
        next(m for m in doc if m["uuid"] == uuid).items()


def test_permission_list_names_the_object_and_its_owner(cloud, own):
    name = own("c")
    cloud.run("cluster", "create", name)
    r = cloud.run("permission", "list", f"cluster:{name}")
    assert r.code == 0, r.all
    first = r.out.splitlines()[0]
    assert first.startswith(f"cluster {name} (") and f"owner admin ({admin_uuid(cloud)})" in first
    doc = cloud.run("permission", "list", f"cluster:{name}", "--json").json
    assert (doc["object_name"], doc["owner_name"]) == (name, "admin")


def test_transactions_name_their_owner_and_target(cloud, own):
    name = own("src")
    uuid = cloud.new_vm(name)
    cloud.run("machine", "package", uuid)
    r = cloud.run("tx", "list", "--target", name)
    assert r.code == 0, r.all
    header, _rule, row = r.out.splitlines()[:3]
    assert header.split()[:6] == ["UUID", "KIND", "STATE", "DONE", "TARGET", "OWNER"]
    assert name in row and "admin" in row.split()
    txid = row.split()[0]
    shown = fields(cloud.run("tx", "show", txid).out)
    assert shown["owner"] == f"admin ({admin_uuid(cloud)})"
    assert shown["target"] == f"{name} ({uuid})"
    doc = cloud.run("tx", "show", txid, "--json").json
    assert (doc["owner_name"], doc["target_name"], doc["target"]) == ("admin", name, uuid)


def test_errors_name_the_clis_verbs(cloud):
    r = cloud.run("machine", "start", "web")  # running: the API says 'cannot create'
    assert r.code == 5
    assert "cannot start a machine that is running" in r.err
    assert "possible now: suspend, stop, reboot, poweroff" in r.err
    assert "shutdown" not in r.err and "create" not in r.err
    doc = cloud.run("machine", "start", "web", "--json").json
    assert "cannot start" in doc["message"] and doc["errno"] == 1301


@pytest.mark.parametrize("args", [["machine", "list"], ["tx", "list"]])
def test_a_server_where_nothing_listens_is_unreachable(cloud, args):
    r = cloud.run(*args, server=dead_url(), user=None)  # no login, no credentials
    assert r.code == 6, r.all
    assert "cannot reach the server" in r.err and "not logged in" not in r.err


def test_output_into_a_pipe_is_not_wrapped(cloud):
    long_name = "a-name-long-enough-to-be-wrapped-at-eighty-columns-" * 2
    r = cloud.run("machine", "show", long_name, env={"COLUMNS": None})
    assert r.code == 3
    assert f"no machine named '{long_name}' or with an id starting with it" in \
        r.err.replace("\n", " ") and len(r.err.splitlines()) == 1
    r = cloud.run("machine", "list", env={"COLUMNS": None})
    row = next(line for line in r.out.splitlines() if cloud.names["web"] in line)
    assert len(row) > 80 and cloud.h1_uri in row and "running" in row


@pytest.fixture
def client(cloud):  # noqa: ANN001, ANN201
    with Client(cloud.url, "admin", ADMIN_PASSWORD) as c:
        yield c


def test_the_client_takes_names_and_prefixes(cloud, client):
    web = cloud.names["web"]
    for ref in ("web", web, web[:8]):
        assert client.machines.get(ref).machine.uuid == web
    assert client.machines.find("pa").uuid == PREFIX_A
    assert client.hypervisors.get(cloud.h2_uri).uuid == cloud.h2
    assert client.find("hypervisor:" + cloud.h1[:8])[1] == cloud.h1
    assert client.find("web") == ("vm", web, "web")
    assert client.users.find("admin").username == "admin"
    assert client.permissions.list("web").object == web
    assert [t.target for t in client.transactions.list(target="web")] == \
        [t.target for t in client.transactions.list(target=web)]


def test_the_client_refuses_unknown_and_ambiguous_names(client):
    with pytest.raises(AmbiguousError) as e:
        client.machines.get("abcd")
    assert sorted(e.value.candidates) == [PREFIX_A, PREFIX_B] and e.value.errno == 1000
    assert "'abcd' is ambiguous: it matches 2 machines" in e.value.message
    with pytest.raises(AmbiguousError):
        client.machines.start("twin")  # one on each hypervisor
    with pytest.raises(NotFoundError) as e:
        client.machines.get("no-such-machine-anywhere")
    assert (e.value.errno, e.value.exit_code) == (1200, 3)
    with pytest.raises(NotFoundError):
        client.clusters.rename("no-such-cluster", "x")


def test_audit_list_shows_refusals_by_name(cloud):
    cloud.run("machine", "start", "web")  # refused: it runs
    r = cloud.run("audit", "list", "--failed", "--actor", "admin", "--limit", "1")
    assert r.code == 0, r.all
    row = r.out.splitlines()[2]
    assert "machine.create" in row and "machine web" in row and "error 1301" in row
    doc = cloud.run("audit", "list", "--done", "--limit", "5", "--json").json
    assert doc and all(e["errno"] == 0 for e in doc)
