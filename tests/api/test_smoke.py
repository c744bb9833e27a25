def test_lists_discovered_domains_unmanaged(api):
    ids = api.ok("GET", "/rest/machines/")["machines"]
    objs = api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    vms = {o["name"]: o for o in objs if o["kind"] == "vm"}
    assert set(vms) == {"web", "db", "idle"}
    assert {o["uuid"] for o in objs} == set(ids)
    assert vms["web"]["state"] == "running" and vms["db"]["state"] == "paused"
    assert vms["idle"]["state"] == "shutoff"
    assert not any(v["managed"] for v in vms.values())
