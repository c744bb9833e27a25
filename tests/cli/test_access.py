"""`enomalism user|group|permission|token|audit ...` against a running server."""

import pytest

from tests.cli.conftest import ALICE, ALICE_PASSWORD

USER_KEYS = {"uuid", "username", "email", "full_name", "is_admin", "enabled", "groups",
             "created_at", "password_changed_at"}
PASSWORD = "a-good-password-1"


def make_user(cloud, name: str, password: str = PASSWORD) -> str:
    return cloud.ok("POST", "/rest/user/create/", json={"username": name,
                                                        "password": password})["uuid"]


# -- users ---------------------------------------------------------------------------------

def test_user_create_asks_for_the_password_twice(cloud, own):
    name = own("u")
    r = cloud.run("user", "create", name, "--email", "u@example.org", "--full-name", "U Ser",
                  input=f"{PASSWORD}\n{PASSWORD}\n")
    assert r.code == 0, r.all
    assert r.out.startswith(f"user {name} created: ")
    assert "Password for" in r.err and PASSWORD not in r.all
    r = cloud.run("user", "show", name)
    assert r.code == 0 and "u@example.org" in r.out and "U Ser" in r.out
    cloud.run("user", "list", "--json")
    r = cloud.run("machine", "list", user=name, password=PASSWORD)
    assert r.code == 0  # the password works


def test_user_create_json_from_stdin(cloud, own):
    name, group = own("u"), own("g")
    cloud.run("group", "create", group)
    r = cloud.run("user", "create", name, "--admin", "--group", group, "--password-stdin",
                  "--json", input=f"{PASSWORD}\n")
    assert r.code == 0, r.all
    doc = r.json
    assert set(doc) == USER_KEYS and doc["is_admin"] is True
    assert [g["name"] for g in doc["groups"]] == [group]


def test_user_create_refused(cloud, own):
    r = cloud.run("user", "create", own("u"), input=f"{PASSWORD}\nsomething-else-1\n")
    assert r.code == 1 and "differ" in r.err
    r = cloud.run("user", "create", own("u"), "--password-stdin", input="short\n", )
    assert r.code == 1 and "at least 10" in r.err
    r = cloud.run("user", "create", "admin", "--password-stdin", input=f"{PASSWORD}\n")
    assert r.code == 5
    r = cloud.as_alice("user", "create", own("u"), "--password-stdin", "--json",
                       input=f"{PASSWORD}\n")
    assert r.code == 4 and r.json["errno"] == 1101


def test_user_list(cloud):
    r = cloud.run("user", "list")
    assert r.code == 0
    assert r.out.splitlines()[0].split() == ["USERNAME", "UUID", "ADMIN", "ENABLED", "EMAIL",
                                             "GROUPS"]
    assert any(line.split()[:1] == ["alice"] for line in r.out.splitlines())
    doc = cloud.run("user", "list", "--json").json
    assert all(set(u) == USER_KEYS for u in doc)
    # alice sees only herself
    assert [u["username"] for u in cloud.as_alice("user", "list", "--json").json] == [ALICE]


def test_user_update_enable_disable_set_admin(cloud, own):
    name = own("u")
    uuid = make_user(cloud, name)
    doc = cloud.run("user", "update", name, "--email", "new@example.org", "--json").json
    assert doc["email"] == "new@example.org"
    r = cloud.run("user", "disable", uuid[:12])
    assert r.code == 0 and r.out == f"user {name} disabled\n"
    assert cloud.run("machine", "list", user=name, password=PASSWORD).code == 4
    assert cloud.run("user", "enable", name, "--json").json["enabled"] is True
    r = cloud.run("user", "set-admin", name)
    assert r.code == 0 and "is an administrator" in r.out
    assert cloud.run("user", "set-admin", name, "--off", "--json").json["is_admin"] is False
    assert cloud.run("user", "update", name).code == 1
    assert cloud.as_alice("user", "disable", name).code in (3, 4)


def test_user_passwd(cloud, own):
    name = own("u")
    make_user(cloud, name)
    new = "another-password-2"
    r = cloud.run("user", "passwd", name, input=f"{new}\n{new}\n")
    assert r.code == 0 and r.out == f"password of {name} changed\n"
    assert cloud.run("machine", "list", user=name, password=new).code == 0
    # one's own password, with one's own credentials
    r = cloud.run("user", "passwd", "--password-stdin", "--json", user=name, password=new,
                  input=f"{PASSWORD}\n")
    assert r.code == 0, r.all
    assert r.json["username"] == name


def test_user_delete(cloud, own):
    a, b = own("a"), own("b")
    ua, ub = make_user(cloud, a), make_user(cloud, b)
    r = cloud.run("user", "delete", a, input="n\n")
    assert r.code == 1
    r = cloud.run("user", "delete", a, b, "--yes", "--json")
    assert r.code == 0, r.all
    assert [x["user"] for x in r.json] == [ua, ub]
    assert cloud.run("user", "show", a).code == 3
    r = cloud.run("user", "delete", "admin", "--yes")
    assert r.code == 5  # the last administrator, and oneself


# -- groups --------------------------------------------------------------------------------

def test_group_commands(cloud, own):
    g, new, u = own("g"), own("renamed"), own("u")
    make_user(cloud, u)
    r = cloud.run("group", "create", g)
    assert r.code == 0 and r.out.startswith(f"group {g} created: ")
    r = cloud.run("group", "add-user", g, u, ALICE)
    assert r.code == 0 and f"{u} added to group {g}" in r.out
    r = cloud.run("group", "list")
    assert r.code == 0 and g in r.out
    line = next(x for x in r.out.splitlines() if x.split()[:1] == [g])
    assert u in line and ALICE in line
    r = cloud.run("group", "show", g)
    assert r.code == 0 and u in r.out
    doc = cloud.run("group", "remove-user", g, u, "--json").json
    assert [x["username"] for x in doc["users"]] == [ALICE]
    doc = cloud.run("group", "rename", g, new, "--json").json
    assert doc["name"] == new
    assert new in {x["name"] for x in cloud.run("group", "list", "--json").json}
    assert cloud.run("group", "show", new, "--json").json["uuid"] == doc["uuid"]
    r = cloud.run("group", "delete", new, "--yes", "--json")
    assert r.code == 0 and r.json["group"] == doc["uuid"]
    assert cloud.run("group", "show", new).code == 3


def test_group_errors(cloud, own):
    g = own("g")
    cloud.run("group", "create", g)
    assert cloud.run("group", "create", g).code == 5
    assert cloud.run("group", "add-user", g, "no-such-user").code == 3
    assert cloud.run("group", "remove-user", g, ALICE).code == 1
    assert cloud.as_alice("group", "rename", g, own("x")).code == 3


# -- permissions ---------------------------------------------------------------------------

def test_permission_grant_list_revoke(cloud, own):
    name, group = own("vm"), own("g")
    uuid = cloud.new_vm(name, "running")
    cloud.run("group", "create", group)
    assert cloud.as_alice("machine", "poweroff", name).code == 3
    r = cloud.run("permission", "grant", f"machine:{name}", "control", f"user:{ALICE}")
    assert r.code == 0, r.all
    assert r.out == f"granted control on machine {name} to user {ALICE}\n"
    r = cloud.run("permission", "grant", name, "read", f"group:{group}", "--json")
    assert r.code == 0 and r.json["object"] == uuid
    r = cloud.run("permission", "list", uuid)
    assert r.code == 0
    assert "control" in r.out and ALICE in r.out and group in r.out and "owner" in r.out
    doc = cloud.run("permission", "list", f"machine:{uuid[:10]}", "--json").json
    assert set(doc) == {"object", "object_type", "object_name", "owner", "owner_name",
                        "permissions"}
    assert {(g["permission"], g["principal_name"]) for g in doc["permissions"]} == {
        ("control", ALICE), ("read", group)}
    assert cloud.as_alice("machine", "poweroff", name).code == 0
    r = cloud.run("permission", "revoke", name, "control", ALICE)  # a bare name is a user
    assert r.code == 0 and r.out.startswith("revoked control")
    r = cloud.run("permission", "revoke", name, "control", ALICE)
    assert r.code == 3  # not held
    assert cloud.as_alice("machine", "start", name).code == 3


def test_permission_export_lets_a_user_package_a_machine(cloud, own):
    """`control` does not let alice take a copy of the disks away; `export` does."""
    name = own("vm")
    cloud.new_vm(name, "shutoff")
    assert cloud.run("permission", "grant", name, "control", f"user:{ALICE}").code == 0
    r = cloud.as_alice("machine", "package", name, "--no-wait")
    assert r.code == 4 and "'export'" in r.err, r.all
    r = cloud.run("permission", "grant", name, "export", f"user:{ALICE}")
    assert r.out == f"granted export on machine {name} to user {ALICE}\n", r.all
    doc = cloud.run("permission", "list", name, "--json").json
    assert ("export", ALICE) in {(g["permission"], g["principal_name"])
                                 for g in doc["permissions"]}
    r = cloud.as_alice("machine", "package", name, "--no-wait")
    assert r.code == 0 and r.out.strip(), r.all


@pytest.mark.parametrize("kind", ["cluster", "group", "network", "user", "hypervisor", "host"])
def test_permission_on_other_kinds(cloud, own, kind):
    if kind == "cluster":
        ref = cloud.run("cluster", "create", own("c"), "--json").json["name"]
    elif kind == "group":
        ref = cloud.run("group", "create", own("g"), "--json").json["name"]
    elif kind == "network":
        ref = own("n")
        cloud.ok("PUT", "/rest/networks/", json={"name": ref, "bridge": "br9", "ip": "10.99.0.0",
                                                 "netmask": "24"})
    elif kind == "user":
        ref = ALICE
    elif kind == "hypervisor":
        ref = cloud.h2_uri
    else:
        ref = cloud.host
    r = cloud.run("permission", "grant", f"{kind}:{ref}", "read", "--json", f"user:{ALICE}")
    assert r.code in (0, 5), r.all  # 5: alice holds it already (she may read herself)
    doc = cloud.run("permission", "list", f"{kind}:{ref}", "--json").json
    assert doc["object_type"] == {"host": "machine"}.get(kind, kind)


def test_permission_errors(cloud):
    r = cloud.run("permission", "grant", "web", "fly", "alice")
    assert r.code == 1 and "unknown permission" in r.err
    r = cloud.run("permission", "grant", "web", "read", "robot:r2d2")
    assert r.code == 1 and "user:NAME or group:NAME" in r.err
    r = cloud.run("permission", "list", "planet:earth")
    assert r.code == 3  # not a kind: read as a machine's name
    r = cloud.as_alice("permission", "list", f"user:{ALICE}")
    assert r.code == 4  # she may read herself, not change her access list


# -- tokens and audit ----------------------------------------------------------------------

def test_tokens(cloud, own):
    name = own("t")
    r = cloud.run("token", "create", name, "--expires-in-days", "2")
    assert r.code == 0, r.all
    secret = next(w for w in r.out.split() if w.startswith("enm_"))
    assert "shown only now" in r.out
    r = cloud.run("machine", "list", "--json", user=None, env={"ENOMALISM_TOKEN": secret})
    assert r.code == 0, r.all
    r = cloud.run("--token", secret, "token", "list", user=None)
    assert r.code == 0 and name in r.out
    listed = cloud.run("token", "list", "--json").json
    assert {"uuid", "name", "user", "created_at", "expires_at"} == set(listed[0])
    t = next(x for x in listed if x["name"] == name)
    assert t["expires_at"] is not None
    doc = cloud.run("token", "create", own("t2"), "--json").json
    assert set(doc) == {"token", "secret"} and doc["secret"].startswith("enm_")
    r = cloud.run("token", "revoke", name, doc["token"]["name"], "--json")
    assert r.code == 0 and [x["token"] for x in r.json] == [t["uuid"], doc["token"]["uuid"]]
    r = cloud.run("machine", "list", user=None, env={"ENOMALISM_TOKEN": secret})
    assert r.code == 4  # revoked at once
    r = cloud.run("token", "create", own("t3"), "--expires-in-days", "-1")
    assert r.code == 1


def test_tokens_of_another_user(cloud, own):
    name = own("t")
    cloud.as_alice("token", "create", name)
    r = cloud.run("token", "list", "--owner", ALICE, "--json")
    assert name in {t["name"] for t in r.json}
    assert cloud.as_alice("token", "list", "--owner", "admin").code == 3
    r = cloud.run("token", "revoke", name, "--owner", ALICE)
    assert r.code == 0, r.all
    assert name not in {t["name"] for t in cloud.as_alice("token", "list", "--json").json}


def test_audit(cloud, own):
    name = own("g")
    cloud.run("group", "create", name)
    r = cloud.run("audit", "list", "--limit", "5")
    assert r.code == 0 and "group.create" in r.out
    doc = cloud.run("audit", "list", "--object", f"group:{name}", "--json").json
    assert [e["action"] for e in doc] == ["group.create"] and doc[0]["actor_name"] == "admin"
    r = cloud.run("audit", "list", user=ALICE, password=ALICE_PASSWORD)
    assert r.code == 4
