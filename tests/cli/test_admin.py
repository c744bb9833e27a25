"""`enomalism admin ...`: the local data directory without a server; what it makes a server
then accepts. And the completion `enomalism --show-completion` offers."""

import pytest

from enomalism.config import Settings
from tests.cli.conftest import invoke, running_server
from tests.conftest import FAST_HASHES

PASSWORD = "root-password-123"


@pytest.fixture
def cheap_hashes(monkeypatch):
    for k, v in FAST_HASHES.items():
        monkeypatch.setenv(f"ENOMALISM_{k.upper()}", str(v))


def test_create_admin_then_a_server_accepts_it(tmp_path, cheap_hashes):
    data = tmp_path / "data"
    r = invoke("admin", "create-admin", "root", "--data-dir", str(data),
               input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.code == 0, r.all
    assert r.out.startswith("administrator root created: ") and PASSWORD not in r.all
    r = invoke("admin", "create-admin", "root", "--data-dir", str(data), "--password-stdin",
               "--json", input=f"{PASSWORD}\n")
    assert r.code == 5 and r.json["errno"] == 1300
    r = invoke("admin", "reset-password", "root", "--data-dir", str(data), "--password-stdin",
               input="changed-password-9\n")
    assert r.code == 0 and r.out == "password of root changed\n"
    # a server on that data dir: no generated 'admin' (there are users), root logs in
    with running_server(Settings(data_dir=data, hypervisors=["test:///default"],
                                 database_url=None, **FAST_HASHES)) as (url, _app):
        r = invoke("user", "list", "--json", env={
            "ENOMALISM_URL": url, "ENOMALISM_USER": "root",
            "ENOMALISM_PASSWORD": "changed-password-9"})
        assert r.code == 0, r.all
        assert [u["username"] for u in r.json] == ["root"] and r.json[0]["is_admin"]
        entries = invoke("audit", "list", "--json", env={
            "ENOMALISM_URL": url, "ENOMALISM_USER": "root",
            "ENOMALISM_PASSWORD": "changed-password-9"}).json
        assert {(e["action"], e["source"]) for e in entries} >= {("user.create", "local"),
                                                                  ("user.set_password", "local")}


def test_admin_errors(tmp_path, cheap_hashes):
    data = str(tmp_path / "data")
    r = invoke("admin", "create-admin", "root", "--data-dir", data, "--password-stdin",
               input="short\n")
    assert r.code == 1 and "at least 10" in r.err
    r = invoke("admin", "create-admin", "bad name", "--data-dir", data, "--password-stdin",
               "--json", input=f"{PASSWORD}\n")
    assert r.code == 1 and r.json["errno"] == 1000
    r = invoke("admin", "reset-password", "nobody", "--data-dir", data, "--password-stdin",
               input=f"{PASSWORD}\n")
    assert r.code == 3 and "no user 'nobody'" in r.err
    r = invoke("admin", "create-admin", "root", "--data-dir", data,
               input=f"{PASSWORD}\nsomething-else-1\n")
    assert r.code == 1 and "differ" in r.err


def test_migrate(tmp_path):
    data = tmp_path / "data"
    r = invoke("admin", "migrate", "--data-dir", str(data))
    assert r.code == 0, r.all
    assert (data / "enomalism.db").exists() and "is at revision" in r.out
    doc = invoke("admin", "migrate", "--json", env={"ENOMALISM_DATA_DIR": str(data)}).json
    assert doc["database"].endswith("enomalism.db") and doc["revision"]


def test_config_never_shows_a_password(tmp_path, isolated):
    env = {"ENOMALISM_ADMIN_PASSWORD": "very-secret-admin-pw",
           "ENOMALISM_DATABASE_URL": "postgresql://enm:db-secret-pw@db.example/enm",
           "ENOMALISM_PORT": "9999"}
    r = invoke("admin", "config", env=env)
    assert r.code == 0, r.all
    assert "very-secret-admin-pw" not in r.all and "db-secret-pw" not in r.all
    assert "9999" in r.out and "db.example" in r.out and "(set)" in r.out
    doc = invoke("admin", "config", "--json", "--data-dir", str(tmp_path), env=env).json
    assert doc["server"]["port"] == 9999 and doc["server"]["data_dir"] == str(tmp_path)
    assert doc["server"]["admin_password"] == "(set)"
    assert "***" in doc["server"]["database_url"]
    assert doc["client"]["config"] == str(isolated) and doc["client"]["token"] is None


def test_config_shows_the_login_but_not_its_token(cloud, isolated):
    from tests.cli.conftest import ALICE, ALICE_PASSWORD

    invoke("login", cloud.url, input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    secret = isolated.read_text().split('token = "')[1].split('"')[0]
    r = invoke("admin", "config", "--json")
    assert secret not in r.all
    assert r.json["client"]["url"] == cloud.url and r.json["client"]["user"] == ALICE
    assert r.json["client"]["token"] == "(stored)"
    invoke("logout")


def test_shell_completion():
    from typer.testing import CliRunner

    from enomalism.cli.main import app

    r = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="enomalism")
    assert r.exit_code == 0 and "_ENOMALISM_COMPLETE=complete_bash" in r.stdout

    out = CliRunner().invoke(app, [], prog_name="enomalism", env={
        "_ENOMALISM_COMPLETE": "complete_bash", "COMP_WORDS": "enomalism mach",
        "COMP_CWORD": "1"}).stdout
    assert "machine" in out
    out = CliRunner().invoke(app, [], prog_name="enomalism", env={
        "_ENOMALISM_COMPLETE": "complete_bash", "COMP_WORDS": "enomalism machine st",
        "COMP_CWORD": "2"}).stdout
    assert {"start", "stop", "store-xml"} <= set(out.split())


def test_help_lists_every_command():
    r = invoke("--help")
    assert r.code == 0
    for command in ("login", "logout", "serve", "machine", "hypervisor", "host", "cluster",
                    "user", "group", "permission", "token", "feed", "package", "network",
                    "tx", "admin"):
        assert command in r.out
    r = invoke("machine", "--help")
    for command in ("list", "show", "start", "stop", "poweroff", "suspend", "resume", "reboot",
                    "delete", "rename", "package", "provision", "actions"):
        assert command in r.out
