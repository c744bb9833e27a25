"""`enomalism snapshot create|list|revert|delete`, `machine show`'s snapshots and restart
policy, and `machine set --restart-policy/--autostart`, against a running server (libvirt's
test driver)."""


def test_snapshot_commands_follow_their_transactions(cloud, own):
    name = own("vm")
    uuid = cloud.new_vm(name)
    r = cloud.run("snapshot", "create", name, "first", "--description", "clean")
    assert r.code == 0, r.all
    assert "done" in r.out
    assert cloud.run("snapshot", "create", name, "second").code == 0
    r = cloud.run("snapshot", "list", name)
    assert r.code == 0 and "first" in r.out and "  second" in r.out, r.all
    doc = cloud.run("snapshot", "list", name, "--json").json
    assert [(s["name"], s["parent"]) for s in doc] == [("first", None), ("second", "first")]
    r = cloud.run("machine", "show", name)
    assert "first (shutoff" in r.out and "clean" in r.out, r.all
    assert cloud.run("machine", "show", name, "--json").json["snapshots"][0]["name"] == "first"
    assert cloud.run("snapshot", "revert", name, "first").code == 0
    r = cloud.run("snapshot", "delete", name, "first", "--no-wait")
    assert r.code == 0, r.all
    assert len(r.out.strip()) == 36  # the transaction id alone
    cloud.run("tx", "wait", r.out.strip())
    doc = cloud.run("snapshot", "list", uuid, "--json").json
    assert [(s["name"], s["parent"]) for s in doc] == [("second", None)]


def test_what_is_refused_is_said(cloud, own):
    name = own("vm")
    cloud.new_vm(name)
    r = cloud.run("snapshot", "revert", name, "nothere", "--json")
    assert (r.json["errno"], r.json["status"]) == (1210, 404)
    r = cloud.run("snapshot", "create", name, "a/b", "--json")
    assert r.json["errno"] == 1032
    r = cloud.run("snapshot", "create", name, "m", "--memory", "--json")
    assert r.json["errno"] == 1301


def test_set_restart_policy_and_autostart(cloud, own):
    name = own("vm")
    uuid = cloud.new_vm(name)
    r = cloud.run("machine", "set", name, "--restart-policy", "on-failure", "--autostart")
    assert r.code == 0, r.all
    m = cloud.machine(uuid)
    assert (m["restart_policy"], m["autostart"]) == ("on-failure", True)
    r = cloud.run("machine", "show", name)
    assert "on-failure" in r.out, r.all
    r = cloud.run("machine", "set", name, "--restart-policy", "sometimes", "--json")
    assert r.json["errno"] == 1033
