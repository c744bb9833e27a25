"""`enomalism login` and `logout`: the config file (mode 0600) and its token, used by later
commands and never sent to another server."""

import os
import stat
import tomllib

from tests.cli.conftest import ALICE, ALICE_PASSWORD, dead_url, invoke
from tests.conftest import ADMIN_PASSWORD


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def tokens(cloud, user=("admin", ADMIN_PASSWORD)) -> dict[str, str]:
    return {t["uuid"]: t["name"] for t in cloud.ok("GET", "/rest/tokens/", auth=user)["tokens"]}


def test_login_asks_writes_a_private_config_and_later_commands_use_the_token(cloud, isolated):
    r = invoke("login", input=f"{cloud.url}\n{ALICE}\n{ALICE_PASSWORD}\n")
    assert r.code == 0, r.all
    assert "Server URL" in r.err and "User" in r.err and "Password" in r.err
    assert ALICE_PASSWORD not in r.all
    assert r.out.startswith(f"logged in to {cloud.url} as {ALICE}; token ")
    assert mode(isolated) == 0o600 and mode(isolated.parent) == 0o700
    cfg = tomllib.loads(isolated.read_text())
    assert cfg["url"] == cloud.url and cfg["user"] == ALICE and cfg["token"].startswith("enm_")
    assert cfg["token_id"] in tokens(cloud, (ALICE, ALICE_PASSWORD))
    # no server, user or password given: the stored URL and token
    r = invoke("token", "list")
    assert r.code == 0, r.all
    mine = next(line for line in r.out.splitlines() if cfg["token_id"] in line)
    assert mine.lstrip().startswith("*")
    r = invoke("user", "list", "--json")
    assert [u["username"] for u in r.json] == [ALICE]
    r = invoke("user", "passwd", "--password-stdin", input=f"{ALICE_PASSWORD}\n")
    assert r.code != 0 and "no password on standard input" in r.all  # the current one first
    r = invoke("user", "passwd", "--password-stdin",
               input=f"{ALICE_PASSWORD}\n{ALICE_PASSWORD}\n")
    assert r.code == 0, r.all  # "yourself" is the login's user, the current password asked


def test_login_json_and_again_replaces_the_token(cloud, isolated):
    r = invoke("--json", "login", cloud.url, env={"ENOMALISM_USER": ALICE,
                                                   "ENOMALISM_PASSWORD": ALICE_PASSWORD})
    assert r.code == 0, r.all
    doc = r.json
    assert set(doc) == {"url", "user", "token", "config"} and "secret" not in r.out
    assert doc["config"] == str(isolated)
    first = doc["token"]["uuid"]
    r = invoke("login", "--json", "--token-name", "laptop", input=f"{cloud.url}\n{ALICE}\n"
               f"{ALICE_PASSWORD}\n")
    assert r.code == 0, r.all
    second = r.json["token"]["uuid"]
    assert r.json["token"]["name"] == "laptop"
    held = tokens(cloud, (ALICE, ALICE_PASSWORD))
    assert second in held and first not in held  # the old login's token is revoked
    invoke("logout")


def test_a_wrong_password_writes_nothing(cloud, isolated):
    r = invoke("login", cloud.url, input=f"{ALICE}\nnot-her-password\n")
    assert r.code == 4 and "error 1100" in r.err
    assert not isolated.exists()


def test_a_server_that_does_not_answer_at_login(cloud, isolated):
    r = invoke("login", dead_url(), "--json", input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    assert r.code == 6 and r.json["errno"] == 0
    assert not isolated.exists()


def test_the_token_is_never_sent_to_another_server(cloud, isolated):
    invoke("login", cloud.url, input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    r = invoke("--server", dead_url(), "machine", "list")
    assert r.code == 6 and "cannot reach the server" in r.err  # only /healthz was asked
    other = cloud.url.replace("127.0.0.1", "localhost")  # another server, as far as it knows
    r = invoke("--server", other, "machine", "list")
    assert r.code == 4 and "not logged in" in r.err
    r = invoke("machine", "list", "--server", cloud.url + "/")
    assert r.code == 0, r.all  # the same server, written differently
    invoke("logout")


def test_logout_revokes_the_token(cloud, isolated):
    invoke("login", cloud.url, input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    token_id = tomllib.loads(isolated.read_text())["token_id"]
    r = invoke("logout")
    assert r.code == 0 and r.out == f"logged out of {cloud.url}\n"
    assert token_id not in tokens(cloud, (ALICE, ALICE_PASSWORD))
    cfg = tomllib.loads(isolated.read_text())
    assert "token" not in cfg and cfg["url"] == cloud.url and mode(isolated) == 0o600
    r = invoke("machine", "list")
    assert r.code == 4 and "enomalism login" in r.err
    r = invoke("logout", "--json")
    assert r.code == 0 and r.json == {"url": cloud.url, "revoked": False}


def test_credentials_win_over_the_stored_token(cloud, isolated):
    invoke("login", cloud.url, input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    r = invoke("user", "list", "--json", env={"ENOMALISM_USER": "admin",
                                               "ENOMALISM_PASSWORD": ADMIN_PASSWORD})
    assert len(r.json) > 1  # the admin sees every user
    r = invoke("user", "list", "--json", "--user", ALICE)  # the login's user: no prompt
    assert [u["username"] for u in r.json] == [ALICE]
    invoke("logout")


def test_a_config_others_may_read_is_warned_about(cloud, isolated):
    invoke("login", cloud.url, input=f"{ALICE}\n{ALICE_PASSWORD}\n")
    os.chmod(isolated, 0o644)
    r = invoke("machine", "list")
    assert r.code == 0 and "chmod 600" in r.err
    invoke("logout")


def test_a_broken_config_file(cloud, isolated):
    isolated.parent.mkdir(parents=True, exist_ok=True)
    isolated.write_text("url = [unclosed\n")
    r = invoke("machine", "list", "--json")
    assert r.code == 1 and "cannot read the configuration file" in r.json["message"]
