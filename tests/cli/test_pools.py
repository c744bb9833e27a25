"""`enomalism pool ...` and `machine attach-disk|detach-disk` against a running server on the
test driver."""


def test_pools_volumes_and_a_disk_of_ones_own(cloud, own):
    pools = cloud.run("pool", "list", "--json").json
    assert pools and {"name", "uuid", "hypervisor", "capacity", "available"} <= set(pools[0])
    pool = pools[0]["uuid"]
    name = own("vol")
    r = cloud.run("pool", "create-volume", pool, name, "--size", "1")
    assert r.code == 0, r.all
    assert name in {v["name"] for v in cloud.run("pool", "volumes", pool, "--json").json}
    vm = own("vm")
    uuid = cloud.new_vm(vm)
    hv = cloud.machine(uuid)["parent"]
    assert hv == pools[0]["hypervisor"]  # new_vm's host is the first one listed
    r = cloud.run("machine", "attach-disk", vm, "--volume", name)
    assert r.code == 0, r.all
    vols = {v["name"]: v for v in cloud.run("pool", "volumes", pool, "--json").json}
    assert vols[name]["machine"] == uuid
    target = r.out.split("disk ")[1].split()[0]
    assert cloud.run("machine", "detach-disk", vm, target).code == 0
    assert cloud.run("pool", "delete-volume", pool, name).code == 0
    assert cloud.run("machine", "attach-disk", vm).code != 0
