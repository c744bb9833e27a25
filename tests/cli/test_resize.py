"""`enomalism machine set NAME --vcpus N --memory MiB` against a running server."""


def test_set_resizes_a_stopped_machine(cloud, own):
    name = own("vm")
    uuid = cloud.new_vm(name)
    r = cloud.run("machine", "set", name, "--vcpus", "2", "--memory", "768")
    assert r.code == 0, r.all
    assert r.out.startswith(f"{name}: ") and "2 vCPUs" in r.out
    m = cloud.machine(uuid)
    assert m["vcpus"] == 2 and m["memory_kib"] == 768 * 1024
    doc = cloud.run("machine", "set", uuid[:10], "--memory", "512", "--json").json
    assert doc["machine"] == uuid and doc["memory"] == 512 and doc["vcpus"] is None
    assert cloud.machine(uuid)["memory_kib"] == 512 * 1024


def test_set_needs_a_size_and_reports_the_servers_refusal(cloud, own):
    name = own("vm")
    cloud.new_vm(name)
    r = cloud.run("machine", "set", name)
    assert r.code != 0 and "--vcpus" in r.err
    r = cloud.run("machine", "set", name, "--vcpus", "100", "--json")
    assert r.json["errno"] == 1031 and r.json["status"] == 400
