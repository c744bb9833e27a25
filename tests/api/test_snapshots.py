"""Snapshots through the API (issue 19) on libvirt's test driver, which keeps snapshots of its
own (their content is tested on the real libvirtd, tests/integration/test_snapshots.py): a
stopped machine's disk snapshot and a running one's with memory as transactions, the tree,
revert and delete, the audit log; what is refused before anything is queued (a bad or taken
name, a snapshot that is not there, memory of a stopped machine, a locked machine), and the
isolation rules (404 for a machine one may not read, 403 without `modify`)."""

import time

import pytest

from tests.api.accounts import audit, grant, new_user
from tests.conftest import Api, expect_error, manage
from tests.fakehost import domain_xml


def snaps(uuid: str) -> str:
    return f"/rest/machine/{uuid}/snapshots/"


def wait_done(api: Api, txid: str) -> dict:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        data = api.ok("GET", f"/rest/transaction/{txid}/")["data"]
        if data["state"] in ("done", "failed", "cancelled"):
            return data
        time.sleep(0.05)
    raise AssertionError(f"transaction {txid} did not finish")


def take(api: Api, uuid: str, auth: object = "admin", **data: object) -> dict:
    body = api.ok("PUT", snaps(uuid), data=data, auth=auth)
    assert wait_done(api, body["txid"])["state"] == "done"
    return body


def names(api: Api, uuid: str, auth: object = "admin") -> list[tuple[str, str | None]]:
    return [(s["name"], s["parent"]) for s in api.ok("GET", snaps(uuid), auth=auth)["snapshots"]]


def test_take_list_revert_and_delete_snapshots(api):
    uuid = manage(api, "idle")
    assert api.ok("GET", snaps(uuid))["snapshots"] == []
    body = take(api, uuid, name="first", description="a clean start")
    assert body["snapshot"] == "first"
    one = api.ok("GET", f"{snaps(uuid)}first/")["snapshot"]
    assert (one["name"], one["description"], one["parent"], one["state"], one["memory"]) == (
        "first", "a clean start", None, "shutoff", False)
    take(api, uuid, name="second")
    assert names(api, uuid) == [("first", None), ("second", "first")]
    # with memory, of the running machine
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    take(api, uuid, name="live", memory="true")
    live = api.ok("GET", f"{snaps(uuid)}live/")["snapshot"]
    assert (live["state"], live["memory"], live["parent"]) == ("running", True, "second")
    # back to the stopped one: the machine is stopped again
    tx = api.ok("POST", f"{snaps(uuid)}first/", data={"action": "revert"})
    assert wait_done(api, tx["txid"])["state"] == "done"
    api.settle()
    assert api.machine(uuid)["info"]["state"] == "shutoff"
    # back to the running one
    tx = api.ok("POST", f"{snaps(uuid)}live/", data={"action": "revert"})
    assert wait_done(api, tx["txid"])["state"] == "done"
    assert api.machine(uuid)["info"]["state"] == "running"
    # deleting the middle one: its child takes its parent
    tx = api.ok("DELETE", f"{snaps(uuid)}second/")
    assert wait_done(api, tx["txid"])["state"] == "done"
    assert names(api, uuid) == [("first", None), ("live", "first")]
    actions = [e["action"] for e in audit(api, uuid)]
    for done in ("machine.snapshot", "machine.snapshot_revert", "machine.snapshot_delete"):
        assert done in actions, actions
    # a POST without variables reads, as GET
    assert api.ok("POST", f"{snaps(uuid)}first/")["snapshot"]["name"] == "first"


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden", "x" * 65, "caf\u00e9", "a b"])
def test_a_bad_name_is_refused(api, bad):
    uuid = manage(api, "idle")
    expect_error(api.put(snaps(uuid), data={"name": bad}), 400, 1032)
    assert api.ok("GET", snaps(uuid))["snapshots"] == []


def test_what_cannot_be_done_is_refused_and_queues_nothing(api):
    uuid = manage(api, "idle")
    take(api, uuid, name="one")
    before = api.ok("GET", "/rest/transactions/")
    expect_error(api.put(snaps(uuid), data={"name": "one"}), 409, 1390)  # taken
    expect_error(api.put(snaps(uuid), data={"name": "m", "memory": "true"}), 409, 1301)
    expect_error(api.put(snaps(uuid), data={"name": "m", "memory": "maybe"}), 400, 1000)
    expect_error(api.post(f"{snaps(uuid)}nothere/", data={"action": "revert"}), 404, 1210)
    expect_error(api.delete(f"{snaps(uuid)}nothere/"), 404, 1210)
    expect_error(api.get(f"{snaps(uuid)}nothere/"), 404, 1210)
    expect_error(api.post(f"{snaps(uuid)}one/", data={"action": "explode"}), 400, 1003)
    running = manage(api, "web")
    expect_error(api.put(snaps(running), data={"name": "disk-only"}), 409, 1301)
    host = api.local_host()
    expect_error(api.put(snaps(host), data={"name": "h"}), 409, 1301)
    assert api.ok("GET", "/rest/transactions/") == before
    assert names(api, uuid) == [("one", None)]


def test_a_locked_machine_is_refused_with_the_holder(api):
    uuid = manage(api, "idle")
    take(api, uuid, name="one")
    with api.registry.db.session() as s:
        from enomalism.store.models import Machine
        s.get(Machine, uuid).lock_txid = "5b0c5bde-0000-4000-8000-000000000000"
    for r in (api.put(snaps(uuid), data={"name": "two"}),
              api.post(f"{snaps(uuid)}one/", data={"action": "revert"}),
              api.delete(f"{snaps(uuid)}one/")):
        body = expect_error(r, 423, 1400)
        assert "5b0c5bde" in body["message"]
    assert names(api, uuid) == [("one", None)]


def test_snapshots_follow_the_machine_permissions(api):
    uuid = manage(api, "idle")
    take(api, uuid, name="one")
    bob = new_user(api)
    # may not read the machine: as if it did not exist
    expect_error(api.get(snaps(uuid), auth=bob.auth), 404, 1200)
    expect_error(api.put(snaps(uuid), data={"name": "x"}, auth=bob.auth), 404, 1200)
    expect_error(api.delete(f"{snaps(uuid)}one/", auth=bob.auth), 404, 1200)
    # may read: lists, but changes nothing without modify
    grant(api, uuid, "read", user=bob.uuid)
    assert names(api, uuid, auth=bob.auth) == [("one", None)]
    expect_error(api.put(snaps(uuid), data={"name": "x"}, auth=bob.auth), 403, 1101)
    expect_error(api.post(f"{snaps(uuid)}one/", data={"action": "revert"}, auth=bob.auth),
                 403, 1101)
    expect_error(api.delete(f"{snaps(uuid)}one/", auth=bob.auth), 403, 1101)
    refused = [e for e in audit(api, uuid) if e["action"] == "machine.snapshot"
               and e["errno"] == 1101]
    assert refused
    # with modify: takes and deletes (idle has no disk that is not its own)
    grant(api, uuid, "modify", user=bob.uuid)
    take(api, uuid, auth=bob.auth, name="bobs")
    tx = api.ok("DELETE", f"{snaps(uuid)}bobs/", auth=bob.auth)
    assert wait_done(api, tx["txid"])["state"] == "done"
    assert names(api, uuid) == [("one", None)]


def test_totaldelete_takes_the_snapshots_with_it(api):
    uuid = manage(api, "idle")
    take(api, uuid, name="one")
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")
    hv = api.hypervisors()[0]["uuid"]
    conn = api.registry.connection(hv).virconnect
    assert "idle" not in [d.name() for d in conn.listAllDomains(0)]


def test_a_non_administrator_snapshots_only_a_machine_whose_disks_are_its_own(api):
    manage(api, "web")  # web.img becomes web's own volume
    hv = api.hypervisors()[0]["uuid"]
    other = api.ok("PUT", "/rest/machines/", data={
        "hvmuuid": hv, "xmldesc": domain_xml("borrower", disks=["web.img"])})["machine"]
    bob = new_user(api)
    grant(api, other, "modify", user=bob.uuid)
    body = expect_error(api.put(snaps(other), data={"name": "x"}, auth=bob.auth), 409, 1310)
    assert "web.img" in body["message"] and "snapshot" in body["message"]
    assert names(api, other) == []
