"""`enomalism machine set NAME --vcpus N --memory MiB` against a running server, and the
addresses `machine show` prints."""


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


def test_show_prints_each_address_with_its_source():
    from enomalism.cli.machines import _address_lines
    from enomalism.client import Address, Machine

    mac = "52:54:00:00:00:01"
    m = Machine.model_construct(addresses=[
        Address(address="10.0.0.5", prefix=24, mac=mac, source="lease"),
        Address(address="10.0.0.5", prefix=24, mac=mac, source="dhcp"),
        Address(address="fe80::1", prefix=None, mac=None, source="agent")])
    assert _address_lines(m, [{"address": "10.0.0.5", "network_name": "net1"}]) == [
        f"10.0.0.5/24 (lease on net1, {mac})", f"10.0.0.5/24 (dhcp, {mac})", "fe80::1 (agent)"]
