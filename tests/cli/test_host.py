"""`enomalism host add` and `enomalism host list` against a real server: uvicorn on a free
loopback port, in a thread of the test process."""

from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from enomalism.cli.main import app
from enomalism.config import Settings
from tests.cli.conftest import free_port, running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES
from tests.fakehost import FakeDomain, write_host

UNREACHABLE = "qemu+tcp://127.0.0.1:1/system"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A server with one fake host; yields its URL and a directory for more fake hosts."""
    d = tmp_path_factory.mktemp("cli")
    local = write_host(d / "local.xml", [FakeDomain("vm1")])
    settings = Settings(data_dir=d / "data", hypervisors=[local], admin_password=ADMIN_PASSWORD,
                        database_url=None, **FAST_HASHES)
    with running_server(settings) as (url, _app):
        yield {"url": url, "dir": d}


def cli(server: dict, *args: str, password: str = ADMIN_PASSWORD, url: str | None = None):  # noqa: ANN201
    """Run `enomalism host ...` with the server's URL and credentials in the environment."""
    env = {"ENOMALISM_URL": url or server["url"], "ENOMALISM_USER": "admin",
           "ENOMALISM_PASSWORD": password, "COLUMNS": "200"}
    return CliRunner().invoke(app, ["host", *args], env=env)


def hosts(server: dict) -> dict[str, dict]:
    r = httpx.get(f"{server['url']}/rest/hosts/", auth=("admin", ADMIN_PASSWORD))
    return {h["name"]: h for h in r.json()["hosts"]}


def hypervisor_urls(server: dict, host_uuid: str) -> list[str]:
    r = httpx.get(f"{server['url']}/rest/machine/{host_uuid}/hypervisors/",
                  auth=("admin", ADMIN_PASSWORD))
    return [h["virt_url"] for h in r.json()["hypervisors"]]


def test_add_a_host_with_its_hypervisor(server):
    uri = write_host(server["dir"] / "node2.xml", [FakeDomain("far")])
    result = cli(server, "add", "node2", uri, "--address", "10.0.0.2")
    assert result.exit_code == 0, result.output
    node = hosts(server)["node2"]
    assert f"host node2 registered as {node['uuid']}" in result.output
    assert uri in result.output and "connected" in result.output
    assert node["address"] == "10.0.0.2"
    assert hypervisor_urls(server, node["uuid"]) == [uri]


def test_add_a_host_without_a_hypervisor(server):
    result = cli(server, "add", "bare-node")
    assert result.exit_code == 0, result.output
    assert hypervisor_urls(server, hosts(server)["bare-node"]["uuid"]) == []


def test_options_on_the_command_line(server):
    result = CliRunner().invoke(app, ["host", "list", "--server", server["url"], "--user",
                                      "admin", "--password", ADMIN_PASSWORD],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


def test_list_hosts(server):
    cli(server, "add", "listed-node")
    result = cli(server, "list")
    assert result.exit_code == 0, result.output
    for name, h in hosts(server).items():
        assert name in result.output and h["uuid"] in result.output
    assert "yes" in result.output  # the local host is marked


@pytest.mark.parametrize("args, code, words", [
    (["add", "n-unreachable", UNREACHABLE], 1, ["1501", "127.0.0.1:1"]),
    (["add", "n-class", "test:///default", "--virt-class", "kvm"], 1, ["1000", "does not match"]),
    (["add", "n-bad-uri", "not-a-uri"], 1, ["1000", "not a libvirt URI"]),
])
def test_add_refused_leaves_no_host(server, args, code, words):
    result = cli(server, *args)
    assert result.exit_code == code, result.output
    for w in words:
        assert w in result.output
    assert args[1] not in hosts(server)


def test_a_taken_name_is_a_conflict(server):
    cli(server, "add", "twice")
    result = cli(server, "add", "twice")
    assert result.exit_code == 5, result.output
    assert "already exists" in result.output


@pytest.mark.parametrize("command", [["list"], ["add", "n-denied"]])
def test_wrong_password(server, command):
    result = cli(server, *command, password="wrong")
    assert result.exit_code == 4, result.output
    assert "1100" in result.output
    assert "n-denied" not in hosts(server)


@pytest.mark.parametrize("command", [["list"], ["add", "n-nobody"]])
def test_server_not_answering(server, command):
    result = cli(server, *command, url=f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 6, result.output
    assert "cannot reach the server" in result.output


def test_evacuate_moves_every_managed_machine_off_a_host(server):
    """Two stopped, diskless machines of a second host move to the local one (libvirt's test
    driver defines and undefines them: no disk to copy); an unmanaged one stays."""
    uri = write_host(server["dir"] / "leaving.xml", [
        FakeDomain("ev-a", state="shutoff"), FakeDomain("ev-b", state="shutoff"),
        FakeDomain("ev-stray", state="shutoff")])
    assert cli(server, "add", "leaving", uri).exit_code == 0
    node = hosts(server)["leaving"]["uuid"]
    auth = ("admin", ADMIN_PASSWORD)
    vms = httpx.get(f"{server['url']}/rest/machines/", auth=auth, params={
        "detail": "1", "host": node}).json()["machine_objs"]
    by_name = {v["name"]: v["uuid"] for v in vms}
    for name in ("ev-a", "ev-b"):
        httpx.post(f"{server['url']}/rest/machine/{by_name[name]}/actions/manage/", auth=auth)
    result = cli(server, "evacuate", "leaving")
    assert result.exit_code == 0, result.output
    assert "host leaving evacuated: 2 machine(s) moved" in result.output
    parents = {v["name"]: v["parent"] for v in httpx.get(
        f"{server['url']}/rest/machines/", auth=auth,
        params={"detail": "1", "kind": "vm"}).json()["machine_objs"]}
    # wherever the placer put them (earlier tests of the module add hosts): not on `leaving`
    leaving = {h["uuid"] for h in httpx.get(f"{server['url']}/rest/machine/{node}/hypervisors/",
                                           auth=auth).json()["hypervisors"]}
    others = {h["uuid"] for name, host in hosts(server).items() if name != "leaving"
              for h in httpx.get(f"{server['url']}/rest/machine/{host['uuid']}/hypervisors/",
                                 auth=auth).json()["hypervisors"]}
    assert parents["ev-a"] in others and parents["ev-b"] in others
    assert parents["ev-stray"] in leaving  # unmanaged: not ours to move

