"""`enomalism feed`, `package`, `machine provision|package` and `tx`, against a real HTTP feed
server and the test driver. Packages without disks go the whole way there (retrieve, provision,
package); a package with a disk fails in its transaction (the test driver cannot upload
volumes), which is the failure path; a slow feed holds a transaction long enough to see its
lock, time out waiting for it and cancel it."""

from tests.cli.conftest import dead_url, package_state
from tests.fakehost import domain_xml
from tests.integration.provision_helpers import sha256_of

# -- feeds ---------------------------------------------------------------------------------

def test_feed_add_list_show_refresh_delete(cloud, feed):
    url = feed["srv"].url("/other.xml")
    r = cloud.run("feed", "add", url)
    assert r.code == 0, r.all
    assert r.out.startswith(f"feed {url} added: ") and "1 package(s)" in r.out
    listed = cloud.run("feed", "list", "--json").json
    repo = next(x for x in listed if x["url"] == url)
    assert repo["title"] == "another feed" and repo["packages"] == 1
    assert url in cloud.run("feed", "list").out
    r = cloud.run("feed", "show", repo["uuid"][:8])
    assert r.code == 0 and "tiny-cli" in r.out and "another feed" in r.out
    doc = cloud.run("feed", "show", url, "--json").json
    assert set(doc) == {"repository", "packages", "message"}
    assert [p["name"] for p in doc["packages"]] == ["tiny-cli"]
    r = cloud.run("feed", "refresh", url)
    assert r.code == 0 and "refreshed" in r.out
    assert cloud.run("feed", "refresh", url, "--json").json["repository"]["uuid"] == repo["uuid"]
    r = cloud.run("feed", "add", url)
    assert r.code == 5 and "already" in r.err
    r = cloud.run("feed", "delete", url, input="n\n")
    assert r.code == 1
    r = cloud.run("feed", "delete", url, "--yes", "--json")
    assert r.code == 0 and r.json["repository"] == repo["uuid"]
    assert url not in cloud.run("feed", "list").out


def test_feed_add_refused(cloud):
    url = f"{dead_url()}/feed.xml"
    r = cloud.run("feed", "add", url, "--json")
    assert r.code == 1 and r.json["errno"] == 1000 and r.json["status"] == 400
    assert all(x["url"] != url for x in cloud.run("feed", "list", "--json").json)
    assert cloud.run("feed", "show", "no-such-feed").code == 3


# -- packages ------------------------------------------------------------------------------

def test_package_list_and_show(cloud, feed):
    r = cloud.run("package", "list")
    assert r.code == 0
    assert r.out.splitlines()[0].split()[:4] == ["NAME", "UUID", "VERSION", "STATE"]
    assert "tiny-cli" in r.out and "disky-cli" in r.out
    doc = cloud.run("package", "list", "--json").json
    tiny = next(p for p in doc if p["uuid"] == feed["ids"]["tiny"])
    assert tiny["repository"] == feed["repo"] and tiny["virt_class"] == "test"
    r = cloud.run("package", "show", "disky-cli")
    assert r.code == 0 and "remote" in r.out and feed["pkgs"]["disky"].sha256 in r.out
    doc = cloud.run("package", "show", feed["ids"]["disky"][:9], "--json").json
    assert doc["name"] == "disky-cli" and doc["sha256"] == feed["pkgs"]["disky"].sha256
    remote = cloud.run("package", "list", "--state", "remote", "--json").json
    assert {p["state"] for p in remote} <= {"remote"}


def test_package_retrieve_download_and_uncache(cloud, feed, tmp_path):
    pid = feed["ids"]["spare"]
    r = cloud.run("package", "download", pid, str(tmp_path))
    assert r.code == 5 and "retrieve it first" in r.err  # not cached yet
    r = cloud.run("package", "retrieve", "spare-cli")
    assert r.code == 0, r.all
    assert "retrieved" in r.out and "retrieve spare-cli: " in r.err and "%" in r.err
    assert package_state(cloud, pid) == "cached"
    doc = cloud.run("package", "retrieve", pid, "--json").json
    assert doc == {"package": pid, "name": "spare-cli", "txid": None, "state": "cached"}
    r = cloud.run("package", "download", "spare-cli", str(tmp_path))
    assert r.code == 0, r.all
    [saved] = tmp_path.glob("*.xvm2")
    assert sha256_of(saved) == feed["pkgs"]["spare"].sha256
    doc = cloud.run("package", "download", pid, str(tmp_path / "copy.xvm2"), "--json").json
    assert doc["path"] == str(tmp_path / "copy.xvm2") and doc["size"] == saved.stat().st_size
    r = cloud.run("package", "delete", pid, "--cache-only", "--yes")
    assert r.code == 0, r.all
    assert package_state(cloud, pid) == "remote"


def test_package_retrieve_no_wait_then_tx_wait(cloud, feed):
    pid = feed["ids"]["tiny"]
    if package_state(cloud, pid) == "cached":
        cloud.ok("DELETE", f"/rest/vmfeed/repo/package/{pid}/")
    r = cloud.run("package", "retrieve", "tiny-cli", "--no-wait")
    assert r.code == 0, r.all
    txid = r.out.strip()
    assert r.out == f"{txid}\n" and len(txid) == 36
    r = cloud.run("tx", "wait", txid[:8], "--json")
    assert r.code == 0, r.all
    assert r.json["uuid"] == txid and r.json["state"] == "done" and r.json["kind"] == "retrieve"
    assert package_state(cloud, pid) == "cached"


def test_package_update_and_delete(cloud, own):
    uuid = cloud.new_vm(own("src"))
    pkg = cloud.run("machine", "package", uuid, "--name", own("pkg"), "--json").json["package"]
    r = cloud.run("package", "update", pkg, "--description", "made by a test", "--json")
    assert r.code == 0 and r.json["description"] == "made by a test"
    r = cloud.run("package", "update", pkg)
    assert r.code == 1 and "--name" in r.err
    r = cloud.run("package", "delete", pkg, "--yes")
    assert r.code == 0, r.all
    assert cloud.run("package", "show", pkg).code == 3


# -- machine package -----------------------------------------------------------------------

def test_machine_package_waits_with_progress(cloud, own):
    name = own("src")
    cloud.new_vm(name, "running")
    r = cloud.run("machine", "package", name, "--version", "7")
    assert r.code == 0, r.all
    assert r.out.startswith(f"package {name} created: ")
    assert f"package {name}: " in r.err and "100%" in r.err
    pkg = r.out.split()[-1]
    p = cloud.ok("GET", f"/rest/vmfeed/{pkg}/")["package"]
    assert p["name"] == name and p["version"] == "7" and p["state"] == "cached"
    doc = cloud.run("machine", "package", name, "--name", own("again"), "--json").json
    assert set(doc) == {"txid", "machine", "name", "package", "state", "transaction"}
    assert doc["state"] == "done" and doc["transaction"]["result"]["package"] == doc["package"]


def test_machine_package_no_wait(cloud, own):
    name = own("src")
    uuid = cloud.new_vm(name)
    r = cloud.run("machine", "package", name, "--no-wait")
    assert r.code == 0, r.all
    txid = r.out.strip()
    assert f"transaction {txid}" in r.err
    assert cloud.run("tx", "wait", txid).code == 0  # the machine is locked until then
    doc = cloud.run("machine", "package", uuid, "--no-wait", "--json", "--name", own("b"))
    assert set(doc.json) == {"txid", "machine", "name"} and doc.json["machine"] == uuid
    assert cloud.run("tx", "wait", doc.json["txid"]).code == 0


def test_machine_package_failing_transaction(cloud, own):
    name = own("disky")
    conn = cloud.app.state.registry.connection(cloud.h1).virconnect
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML(f"<volume><name>{name}.img</name><capacity unit='MiB'>1</capacity>"
                   "</volume>", 0)
    cloud.ok("PUT", "/rest/machines/", json={
        "xmldesc": domain_xml(name, disks=[f"{name}.img"]), "hvmuuid": cloud.h1})
    r = cloud.run("machine", "package", name)
    assert r.code == 1
    assert "failed" in r.err and r.out == ""
    doc = cloud.run("machine", "package", name, "--json").json
    assert doc["transaction"]["state"] == "failed" and doc["txid"]


def test_machine_package_refused(cloud):
    r = cloud.run("machine", "package", "pa")  # unmanaged
    assert r.code == 5
    r = cloud.run("machine", "package", "web", "--compression", "bzip2")
    assert r.code == 1 and "zstd or gzip" in r.err


# -- provision -----------------------------------------------------------------------------

def test_provision_waits_and_the_machine_exists(cloud, feed, own):
    name = own("new")
    r = cloud.run("machine", "provision", "tiny-cli", name, "--hypervisor", cloud.h1_uri)
    assert r.code == 0, r.all
    assert r.out.startswith(f"machine {name} provisioned: ")
    assert f"provision {name}: " in r.err
    uuid = r.out.split()[-1]
    m = cloud.machine(uuid)
    assert m["name"] == name and m["parent"] == cloud.h1 and m["managed"]
    name2 = own("json")
    doc = cloud.run("machine", "provision", feed["ids"]["tiny"], name2, "--hypervisor",
                    cloud.h2, "--json").json
    assert set(doc) == {"txid", "machine", "name", "package", "hypervisor", "state",
                        "transaction"}
    assert doc["state"] == "done" and cloud.machine(doc["machine"])["parent"] == cloud.h2


def test_provision_no_wait(cloud, feed, own):
    name = own("nw")
    r = cloud.run("machine", "provision", "tiny-cli", name, "--hypervisor", cloud.h1, "--no-wait")
    assert r.code == 0, r.all
    txid = r.out.strip()
    assert r.out == f"{txid}\n"
    r = cloud.run("tx", "wait", txid)
    assert r.code == 0 and f"transaction {txid} done" in r.out
    r = cloud.run("tx", "show", txid)
    assert r.code == 0 and "provision" in r.out and "MESSAGE" in r.out
    names = {m["name"] for m in cloud.run("machine", "list", "--json").json}
    assert name in names


def test_provision_placed_by_the_server(cloud, feed, own):
    """Without --hypervisor the server picks one (docs/provisioning.md, Placement); with
    --cluster, one of the cluster's hosts'."""
    # the server is shared: other tests may have registered hypervisors of their own
    every = {h["uuid"] for h in cloud.run("hypervisor", "list", "--json").json}
    local = {h["uuid"] for h in cloud.run("hypervisor", "list", "--host", cloud.host,
                                          "--json").json}
    assert {cloud.h1, cloud.h2} <= local <= every
    doc = cloud.run("machine", "provision", "tiny-cli", own("placed"), "--json").json
    assert doc["state"] == "done" and doc["hypervisor"] in every
    assert cloud.machine(doc["machine"])["parent"] == doc["hypervisor"]
    cluster = own("c")
    c = cloud.ok("PUT", "/rest/cluster/", data={"cluster_name": cluster})["cluster"]["uuid"]
    try:
        r = cloud.run("machine", "provision", "tiny-cli", own("nowhere"), "--cluster", cluster,
                      "--json")
        assert r.code == 5 and r.json["errno"] == 1302 and "has no host" in r.json["message"]
        cloud.ok("POST", f"/rest/machine/{cloud.host}/clusters/", data={"clusters": c})
        r = cloud.run("machine", "provision", "tiny-cli", own("in-c"), "--cluster", cluster,
                      "--no-wait", "--json")
        assert r.code == 0 and r.json["hypervisor"] in local
        assert cloud.run("tx", "wait", r.json["txid"]).code == 0
    finally:
        cloud.ok("DELETE", f"/rest/cluster/{c}/")


def test_provision_refused(cloud, feed, own):
    r = cloud.run("machine", "provision", "tiny-cli", own("x"), "--cluster", "any",
                  "--hypervisor", cloud.h1)
    assert r.code == 2 and "--cluster" in r.err
    r = cloud.run("machine", "provision", "tiny-cli", own("x"), "--host", "no-such-host")
    assert r.code == 3
    r = cloud.run("machine", "provision", "no-such-package", own("x"), "--hypervisor", cloud.h1)
    assert r.code == 3 and "no package named" in r.err
    r = cloud.run("machine", "provision", "kvm-cli", own("x"), "--hypervisor", cloud.h1,
                  "--json")
    assert r.code == 1 and r.json["errno"] == 1000 and "is for kvm" in r.json["message"]
    r = cloud.run("machine", "provision", "tiny-cli", "web", "--hypervisor", cloud.h1)
    assert r.code == 5 and "already" in r.err


def test_provision_failing_transaction_leaves_nothing(cloud, feed, own):
    name = own("fails")
    r = cloud.run("machine", "provision", "disky-cli", name, "--hypervisor", cloud.h1, "--json")
    assert r.code == 1
    doc = r.json
    assert doc["errno"] == 1 and doc["transaction"]["state"] == "failed"
    assert "failed" in doc["message"] and "failed" in r.err
    assert name not in {m["name"] for m in cloud.run("machine", "list", "--json").json}
    # the failed transaction can be retried; it fails again the same way
    r = cloud.run("tx", "retry", doc["txid"], "--json")
    assert r.code == 0 and r.json["transaction"]["uuid"] == doc["txid"]
    assert cloud.run("tx", "wait", doc["txid"]).code == 1


def test_a_held_transaction_locks_times_out_and_cancels(cloud, feed, own):
    """A provision of a package not yet cached, from a slow feed: its machine is locked (423,
    exit 5, with the txid), waiting times out (exit 1), cancel ends it and it leaves
    nothing."""
    srv = feed["srv"]
    srv.rate = 512 << 10
    try:
        name = own("held")
        r = cloud.run("machine", "provision", "slow-cli", name, "--hypervisor", cloud.h1,
                      "--no-wait", "--json")
        assert r.code == 0, r.all
        txid, uuid = r.json["txid"], r.json["machine"]
        r = cloud.run("machine", "start", name, "--json")
        assert r.code == 5 and r.json["errno"] == 1400 and r.json["txid"] == txid
        r = cloud.run("tx", "wait", txid, "--timeout", "0.3")
        assert r.code == 1 and "goes on" in r.err
        listed = cloud.run("tx", "list", "--state", "running", "--json").json
        assert txid in {t["uuid"] for t in listed}
        r = cloud.run("tx", "list", "--target", name)
        assert r.code == 0 and txid in r.out
        r = cloud.run("tx", "cancel", txid[:13])
        assert r.code == 0 and f"transaction {txid}" in r.out
        r = cloud.run("tx", "wait", txid, "--json", "--timeout", "60")
        assert r.code == 1 and r.json["transaction"]["state"] == "cancelled"
        assert not cloud.exists(uuid)
        r = cloud.run("tx", "cancel", txid)
        assert r.code == 5  # a finished transaction cannot be cancelled
    finally:
        srv.rate = None


def test_tx_list_show_and_errors(cloud, feed, own):
    cloud.run("machine", "package", cloud.new_vm(own("src")))
    r = cloud.run("tx", "list")
    assert r.code == 0 and r.out.splitlines()[0].split()[:3] == ["UUID", "KIND", "STATE"]
    doc = cloud.run("tx", "list", "--json", "--limit", "3").json
    assert 1 <= len(doc) <= 3 and {"uuid", "kind", "state", "completion", "log"} <= set(doc[0])
    done = cloud.run("tx", "list", "--state", "done", "--json").json
    assert done and {t["state"] for t in done} == {"done"}
    t = done[0]
    shown = cloud.run("tx", "show", t["uuid"], "--json").json
    assert shown["uuid"] == t["uuid"] and shown["log"]
    assert cloud.run("tx", "show", "ffffffff").code == 3
    r = cloud.run("tx", "list", "--state", "sleeping")
    assert r.code == 1 and "unknown state" in r.err
    r = cloud.as_alice("tx", "show", t["uuid"])
    assert r.code == 3  # not hers: as if it did not exist
