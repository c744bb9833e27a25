"""`enomalism cache list` and `enomalism cache prune` against a real server (its fake hosts
have no base volumes; what the cache holds and removes is tested on the real libvirtd:
tests/integration/test_cache.py)."""


def test_cache_list_and_prune(cloud):
    listed = cloud.run("cache", "list", "--json")
    assert listed.code == 0, listed.all
    assert listed.json == {"bases": [], "problems": []}
    human = cloud.run("cache", "list")
    assert human.code == 0 and "HYPERVISOR" in human.out and "USED BY" in human.out
    pruned = cloud.run("cache", "prune", "--json")
    assert pruned.code == 0, pruned.all
    assert pruned.json["removed"] == [] and pruned.json["txid"]
    said = cloud.run("cache", "prune")
    assert said.code == 0 and "0 base volume(s) removed, 0 kept" in said.out


def test_cache_one_hypervisor_by_uri(cloud):
    hv = cloud.run("hypervisor", "list", "--json").json[0]
    r = cloud.run("cache", "list", "--hypervisor", hv["virt_url"], "--json")
    assert r.code == 0 and r.json["bases"] == []
    missing = cloud.run("cache", "list", "--hypervisor", "test:///nowhere.xml")
    assert missing.code != 0 and "hypervisor" in missing.err


def test_cache_is_for_administrators(cloud):
    for args in (("cache", "list", "--json"), ("cache", "prune", "--json")):
        r = cloud.as_alice(*args)
        assert r.code == 4 and r.json["errno"] == 1101, r.all
