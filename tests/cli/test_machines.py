"""`enomalism machine ...` against a running server: listings and details in both forms, the
lifecycle, names, prefixes and their errors, permissions, an absent server."""

import re

import pytest

from enomalism.cli.machines import VERBS
from tests.cli.conftest import PREFIX_A, PREFIX_B, dead_url
from tests.conftest import ADMIN_PASSWORD

MACHINE_KEYS = {"uuid", "name", "kind", "state", "managed", "persistent", "parent", "host",
                "address", "is_local", "clusters", "locked_by", "owner", "actions",
                "xml_pending", "created_at", "updated_at", "synced_at", "vcpus", "memory_kib",
                "addresses", "restart_policy", "autostart"}


def test_list_table(cloud):
    r = cloud.run("machine", "list")
    assert r.code == 0, r.all
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "UUID", "KIND", "STATE", "HOST", "HYPERVISOR",
                                "ADDRESS", "SIZE", "NOTES"]
    web = next(line for line in lines if line.split()[0] == "web")
    assert cloud.names["web"] in web and "running" in web
    pa = next(line for line in lines if line.split()[0] == "pa")
    assert "unmanaged" in pa
    assert any("host" in line.split() and "local" in line for line in lines)


def test_list_json(cloud):
    r = cloud.run("machine", "list", "--json")
    assert r.code == 0, r.all
    doc = r.json
    assert isinstance(doc, list) and all(set(m) == MACHINE_KEYS for m in doc)
    by_name = {m["name"]: m for m in doc if m["name"] != "twin"}
    assert by_name["web"]["uuid"] == cloud.names["web"] and by_name["web"]["managed"] is True
    assert by_name["pa"]["managed"] is False
    assert sum(m["name"] == "twin" for m in doc) == 2
    assert r.err == ""


def test_list_filters(cloud):
    vms = cloud.run("--json", "machine", "list", "--kind", "vm").json
    assert {m["kind"] for m in vms} == {"vm"}
    paused = cloud.run("machine", "list", "--state", "paused", "--json").json
    assert "db" in {m["name"] for m in paused} and {m["state"] for m in paused} == {"paused"}
    on_h2 = cloud.run("machine", "list", "--hypervisor", cloud.h2_uri, "--json").json
    assert "twin" in {m["name"] for m in on_h2} and {m["parent"] for m in on_h2} == {cloud.h2}
    assert cloud.run("machine", "list", "--hypervisor", cloud.h2[:13], "--json").json == on_h2


@pytest.mark.parametrize("ref", ["web", "WEB-UUID", "WEB-PREFIX"])
def test_show_by_name_uuid_or_prefix(cloud, ref):
    uuid = cloud.names["web"]
    ref = {"WEB-UUID": uuid, "WEB-PREFIX": uuid[:8]}.get(ref, ref)
    r = cloud.run("machine", "show", ref)
    assert r.code == 0, r.all
    fields = dict(line.split(None, 1) for line in r.out.splitlines() if " " in line.strip())
    assert fields["uuid"].strip() == uuid and fields["state"].strip() == "running"
    assert cloud.h1_uri in r.out
    doc = cloud.run("machine", "show", ref, "--json").json
    assert set(doc) == {"machine", "info", "hypervisors", "snapshots"}
    assert doc["machine"]["uuid"] == uuid and doc["machine"]["xmldesc"].startswith("<domain")
    assert doc["info"]["vcpus"] == 1 and doc["hypervisors"][0]["uuid"] == cloud.h1


def test_show_xml(cloud):
    r = cloud.run("machine", "show", "web", "--xml")
    assert r.code == 0 and r.out.startswith("<domain") and "<name>web</name>" in r.out


def test_an_unknown_name(cloud):
    r = cloud.run("machine", "show", "no-such-machine")
    assert r.code == 3 and r.out == ""
    assert "no machine named 'no-such-machine'" in r.err
    r = cloud.run("machine", "start", "no-such-machine", "--json")
    assert r.code == 3
    assert r.json == {"errno": 1200, "status": 0,
                      "message": "no machine named 'no-such-machine' or with an id starting "
                                 "with it"}


def test_an_unknown_full_uuid(cloud):
    r = cloud.run("machine", "show", "6f1b2c3d-0000-4000-8000-000000000000", "--json")
    assert r.code == 3 and r.json["errno"] == 1200


def test_an_ambiguous_prefix(cloud):
    r = cloud.run("machine", "show", "abcd")
    assert r.code == 1 and r.out == ""
    assert "'abcd' is ambiguous" in r.err
    assert PREFIX_A in r.err and PREFIX_B in r.err and " pa " in r.err and " pb " in r.err
    doc = cloud.run("machine", "show", "abcd", "--json").json
    assert doc["errno"] == 1000 and sorted(doc["candidates"]) == [PREFIX_A, PREFIX_B]
    # a longer prefix is unique
    assert cloud.run("machine", "show", "abcd1", "--json").json["machine"]["name"] == "pa"


def test_an_ambiguous_name_lists_where_each_one_is(cloud):
    r = cloud.run("machine", "poweroff", "twin")
    assert r.code == 1
    assert "'twin' is ambiguous: it matches 2 machines" in r.err
    assert cloud.h1_uri in r.err and cloud.h2_uri in r.err


def test_lifecycle_table_and_json(cloud, own):
    name = own("vm")
    uuid = cloud.new_vm(name)
    steps = [("start", "running"), ("suspend", "paused"), ("resume", "running"),
             ("reboot", "running"), ("poweroff", "shutoff")]
    for i, (command, state) in enumerate(steps):
        if i % 2:
            r = cloud.run("machine", command, name, "--json")
            assert r.code == 0, r.all
            [doc] = r.json
            assert set(doc) == {"machine", "name", "action", "message"}
            assert doc["machine"] == uuid and doc["name"] == name and doc["message"]
        else:
            r = cloud.run("machine", command, uuid[:10])
            assert r.code == 0, r.all
            assert r.out.startswith(f"{name}: ")
        assert cloud.machine(uuid)["state"] == state, command


def test_stop_is_an_acpi_shutdown_and_can_wait(cloud, own):
    uuid = cloud.new_vm(own("vm"), "running")
    r = cloud.run("machine", "stop", uuid, "--wait", "--timeout", "30", "--json")
    assert r.code == 0, r.all
    [doc] = r.json
    assert doc["action"] == "shutdown" and doc["state"] == "shutoff"
    assert cloud.machine(uuid)["state"] == "shutoff"


def test_an_action_that_does_not_fit_the_state(cloud):
    r = cloud.run("machine", "resume", "web")
    assert r.code == 5
    assert "error 1301" in r.err and "possible now" in r.err
    assert cloud.run("machine", "resume", "web", "--json").json["status"] == 409


def test_several_machines_stop_at_the_first_failure(cloud, own):
    a, b = own("a"), own("b")
    ua = cloud.new_vm(a)
    cloud.new_vm(b, "running")
    r = cloud.run("machine", "start", a, b, "--json")
    assert r.code == 5
    doc = r.json
    assert doc["errno"] == 1301 and [x["machine"] for x in doc["results"]] == [ua]
    assert cloud.machine(ua)["state"] == "running"


def test_rename(cloud, own):
    old, new = own("old"), own("new")
    uuid = cloud.new_vm(old)
    r = cloud.run("machine", "rename", old, new)
    assert r.code == 0, r.all
    assert cloud.machine(uuid)["name"] == new
    doc = cloud.run("machine", "rename", new, old, "--json").json
    assert doc == {"machine": uuid, "name": old, "old_name": new, "message": doc["message"]}
    assert cloud.machine(uuid)["name"] == old


def test_actions(cloud):
    r = cloud.run("machine", "actions", "idle")
    assert r.code == 0
    api = cloud.ok("GET", f"/rest/machine/{cloud.names['idle']}/actions/")["result"]
    assert r.out.split() == [VERBS.get(a, a) for a in api]  # the CLI's verbs
    assert "start" in r.out.split() and "create" in api
    doc = cloud.run("machine", "actions", "idle", "--json").json
    assert doc["machine"] == cloud.names["idle"] and doc["actions"] == api


def test_delete_asks_first(cloud, own):
    name = own("vm")
    uuid = cloud.new_vm(name)
    r = cloud.run("machine", "delete", name, input="n\n")
    assert r.code == 1 and "Delete machine" in r.err and "nothing done" in r.err
    assert cloud.exists(uuid)
    r = cloud.run("machine", "delete", name)  # no answer at all
    assert r.code == 1 and "--yes" in r.err
    assert cloud.exists(uuid)
    r = cloud.run("machine", "delete", name, input="y\n")
    assert r.code == 0, r.all
    assert not cloud.exists(uuid)


def test_delete_yes_json(cloud, own):
    uuid = cloud.new_vm(own("vm"), "running")
    r = cloud.run("machine", "delete", uuid, "--yes", "--json")
    assert r.code == 0, r.all
    [doc] = r.json
    assert doc["machine"] == uuid and doc["action"] == "totaldelete"
    assert not cloud.exists(uuid)


def test_manage_refresh_and_unlock(cloud):
    r = cloud.run("machine", "refresh", "web", "--json")
    assert r.code == 0 and r.json[0]["action"] == "trigger_status_updates"
    r = cloud.run("machine", "unlock", "web")  # not locked: the action does not fit
    assert r.code in (4, 5), r.all
    r = cloud.run("machine", "manage", "web")  # managed already
    assert r.code == 5


def test_define_from_a_file_and_from_stdin(cloud, own, tmp_path):
    from tests.fakehost import domain_xml

    a, b = own("a"), own("b")
    (tmp_path / "a.xml").write_text(domain_xml(a))
    r = cloud.run("machine", "define", str(tmp_path / "a.xml"), "--hypervisor", cloud.h1_uri)
    assert r.code == 0, r.all
    assert r.out.startswith(f"machine {a} defined: ")
    r = cloud.run("machine", "define", "-", "--hypervisor", cloud.h2, "--json",
                  input=domain_xml(b))
    assert r.code == 0, r.all
    assert r.json["name"] == b and r.json["parent"] == cloud.h2
    r = cloud.run("machine", "define", str(tmp_path / "a.xml"))
    assert r.code == 1 and "several hypervisors" in r.err


def test_move_to_another_hypervisor(cloud, own):
    uuid = cloud.new_vm(own("vm"))
    r = cloud.run("machine", "move", uuid, cloud.h2_uri, "--json")
    assert r.code == 0, r.all
    assert cloud.machine(uuid)["parent"] == cloud.h2


def test_a_refused_permission(cloud, own):
    uuid = cloud.new_vm(own("vm"), "running")
    # alice cannot see it: as if it did not exist
    r = cloud.as_alice("machine", "poweroff", uuid)
    assert r.code == 3
    cloud.ok("PUT", f"/rest/permissions/{uuid}/", json={"permission": "read", "user": "alice"})
    r = cloud.as_alice("machine", "poweroff", uuid)
    assert r.code == 4 and "error 1101" in r.err and "control" in r.err
    r = cloud.as_alice("machine", "show", uuid)  # a host she may not read: by its UUID
    host = cloud.ok("GET", f"/rest/machine/{cloud.host}/")["machine_obj"]["name"]
    # the host's UUID, or its name when another test of the module let her read it
    assert r.code == 0 and (cloud.host in r.out or
                            re.search(rf"^host +{re.escape(host)} *$", r.out, re.M)), r.out
    doc = cloud.as_alice("machine", "delete", uuid, "--yes", "--json").json
    assert doc["errno"] == 1101 and doc["status"] == 403
    assert cloud.machine(uuid)["state"] == "running"
    cloud.api.put(f"/rest/permissions/{cloud.h2}/", json={"permission": "read", "user": "alice"},
                  auth=("admin", ADMIN_PASSWORD))  # 409 when another test granted it first
    r = cloud.as_alice("hypervisor", "show", cloud.h2)  # its host she may not read
    assert r.code == 0 and cloud.h2_uri in r.out
    listed = {m["uuid"] for m in cloud.as_alice("machine", "list", "--json").json}
    assert uuid in listed and cloud.names["web"] not in listed


def test_wrong_password_and_no_credentials(cloud):
    r = cloud.run("machine", "list", password="wrong-password")
    assert r.code == 4 and "error 1100" in r.err
    r = cloud.run("machine", "list", user=None)
    assert r.code == 4 and "not logged in" in r.err and "enomalism login" in r.err
    r = cloud.run("machine", "list", "--json", user=None)
    assert r.json["errno"] == 1100


def test_the_password_is_asked_for(cloud):
    r = cloud.run("--user", "admin", "machine", "list", "--json", user=None,
                  input="admin-test-password\n")
    assert r.code == 0, r.all
    assert "Password for admin" in r.err and isinstance(r.json, list)


def test_options_after_the_command_win(cloud):
    r = cloud.run("--server", dead_url(), "machine", "list", "--server", cloud.url, "--json")
    assert r.code == 0, r.all


@pytest.mark.parametrize("args", [["machine", "list"], ["machine", "show", "web"],
                                  ["machine", "start", "web"]])
def test_a_server_that_does_not_answer(cloud, args):
    url = dead_url()
    r = cloud.run(*args, server=url)
    assert r.code == 6 and r.out == ""
    assert "cannot reach the server" in r.err and url in r.err
    r = cloud.run(*args, "--json", server=url)
    assert r.code == 6 and r.json["errno"] == 0 and "cannot reach" in r.json["message"]


def test_top_once_lists_the_running_machines_with_their_rates(cloud):
    running = {m["name"] for m in cloud.run("machine", "list", "--json", "--kind", "vm").json
               if m["state"] == "running"}
    r = cloud.run("machine", "top", "--once")
    assert r.code == 0, r.all
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "CPU", "%"]
    assert {line.split()[0] for line in lines[2:] if line.strip()} == running
    doc = cloud.run("machine", "top", "--once", "--json").json
    assert {row["name"] for row in doc} == running and "web" in running
    assert all(set(row) == {"uuid", "name", "t", "cpu", "mem_used", "mem_total", "disk_read",
                            "disk_write", "net_rx", "net_tx"} for row in doc)
    # the test driver reports no counters: nothing is made up
    assert {row["cpu"] for row in doc} == {None}
