"""Provision (2.20) and package (2.19) requests: everything that can be checked when the request
arrives is refused then, with a status and errno, and changes nothing (no machine record, no
transaction, no domain, no volume); a machine a transaction holds answers 423 with its txid.

The server runs on libvirt's test driver (fake hosts), whose storage cannot take uploads: a
provision that passes the checks fails in its transaction, which must then leave nothing behind
either. The refusals that need a real KVM hypervisor (another architecture) are marked
integration."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import Api, expect_error, serve, unchanged
from tests.fakehost import FakeDomain, add_bridge, write_host
from tests.integration.provision_helpers import (
    FeedServer,
    Pkg,
    build_package,
    domain_template,
    feed_item,
    have_qemu_img,
    log_lines,
    make_qcow2,
    package_files,
    publish,
    running,
    wait_tx,
)

pytestmark = pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed for images")

NO_SUCH = "6f1b2c3d-0000-4000-8000-000000000000"


class World:
    """The module's server: host1 (local, fake) with web (running, unmanaged), db (managed,
    shutoff); node2, another host with its own fake hypervisor; a feed with packages for the
    test class, for Xen, and for KVM on x86_64 and aarch64."""

    def __init__(self, api: Api, srv: FeedServer, pkgs: dict[str, str], gated: str) -> None:
        self.api, self.srv, self.pkgs, self.gated = api, srv, pkgs, gated
        self.host = api.local_host()
        self.hv = api.hypervisors()[0]["uuid"]
        node2 = api.ok("PUT", "/rest/hosts/", data={"name": "node2", "virt_url": srv.node2_uri})
        self.node2 = node2["machine"]
        self.hv2 = api.ok("GET", f"/rest/machine/{self.node2}/hypervisors/")["hypervisors"][0][
            "uuid"]
        objs = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
        self.vms = {o["name"]: o["uuid"] for o in objs["machine_objs"]}
        api.ok("POST", f"/rest/machine/{self.vms['db']}/actions/manage/")

    def provision(self, method: str = "POST", target: str | None = None, **data: str):
        return self.api.request(method, f"/rest/machine/{target or self.host}/actions/provision/",
                                data=data)

    def valid(self, **over: str) -> dict:
        return {"pkguuid": self.pkgs["test"], "hvmuuid": self.hv, "name": "fresh", **over}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    d = tmp_path_factory.mktemp("provreq")
    img = make_qcow2(d / "tiny.qcow2", 16, data=b"tiny" * 1000)
    built: dict[str, Pkg] = {
        "test": build_package(d / "test.xvm2", img, name="for-test", virt_class="test"),
        "xen": build_package(d / "xen.xvm2", img, name="for-xen", virt_class="xen"),
        "kvm": build_package(d / "kvm.xvm2", img, name="for-kvm", virt_class="kvm"),
        "arm": build_package(d / "arm.xvm2", img, name="for-arm", virt_class="kvm",
                             arch="aarch64"),
        # as `package` exports: its interface left for the target's networks
        "unsourced": build_package(d / "unsourced.xvm2", img, name="unsourced",
                                   virt_class="test", domain_xml=domain_template(
                                       domain_type="test").replace(
                                       "<source network='default'/>", "")),
        "slow": build_package(d / "slow.xvm2", make_qcow2(d / "big.qcow2", 16,
                                                          data=os.urandom(2 << 20)),
                              name="slow", virt_class="test"),
    }
    host1 = write_host(d / "host1.xml", [FakeDomain("web", state="running", disks=["web.img"]),
                                         FakeDomain("db", state="shutoff")],
                       ["web.img", "spare.img"])
    srv = FeedServer()
    srv.node2_uri = write_host(d / "node2.xml", [FakeDomain("far", state="shutoff")])
    srv.gates["/p/slow.xvm2"] = threading.Event()
    srv.gate_after = 0
    srv.rate = 4 << 20  # the slow package takes half a second once its gate opens
    try:
        url = publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in built.items()])
        with serve(d / "data", host1) as api:
            packages = api.ok("PUT", "/rest/vmfeed/", data={"url": url})["packages"]
            by_name = {p["name"]: p["uuid"] for p in packages}
            uuids = {k: by_name[p.name] for k, p in built.items()}
            yield World(api, srv, uuids, "/p/slow.xvm2")
    finally:
        srv.close()


@contextmanager
def nothing_made(w: World) -> Iterator[None]:
    """No machine, domain or volume (conftest's `unchanged`), no transaction, no package file,
    nothing running."""
    before = (len(w.api.ok("GET", "/rest/transactions/")["transactions"]),
              package_files(w.api.app.state.settings.data_dir),
              w.api.ok("GET", "/rest/vmfeed/")["packages"])
    with unchanged(w.api):
        yield
    after = (len(w.api.ok("GET", "/rest/transactions/")["transactions"]),
             package_files(w.api.app.state.settings.data_dir),
             w.api.ok("GET", "/rest/vmfeed/")["packages"])
    assert after == before
    assert running(w.api) == []


# -- provision: refused at once ---------------------------------------------------------------


@pytest.mark.parametrize("change, status, errno, words", [
    ({"pkguuid": NO_SUCH}, 404, 1200, "package"),
    ({"pkguuid": "not-a-uuid"}, 400, 1002, "package"),
    ({"pkguuid": None}, 400, 1001, "pkguuid"),
    ({"pkguuid": ""}, 400, 1001, "pkguuid"),
    ({"hvmuuid": NO_SUCH}, 404, 1200, "hypervisor"),
    ({"hvmuuid": "nope"}, 400, 1002, "hypervisor"),
    ({"name": None}, 400, 1001, "name"),
    ({"name": ""}, 400, 1001, "name"),
    ({"name": "a/b"}, 400, 1000, "name"),
    ({"name": "x" * 256}, 400, 1000, "name"),
    ({"name": "web"}, 409, 1300, "web"),  # a discovered domain's name
    ({"name": "db"}, 409, 1300, "db"),  # a managed machine's name
    ({"pool": "no-such-pool"}, 404, 1200, "no-such-pool"),
    ({"virt_type": "xen"}, 400, 1000, "virt_type"),
    ({"libvirt_network": "nonet"}, 404, 1200, "nonet"),
    ({"hostname": "not a host"}, 400, 1000, "hostname"),
    ({"ssh_key": "ssh-ed25519 AAAA"}, 400, 1027, "ssh-ed25519"),
    # over 64 KiB: the request limit on one variable answers before the cloud-init check
    ({"user_data": "x" * 65537}, 413, 1041, "65536 bytes"),
])
def test_provision_refusals(world, change, status, errno, words):
    data = {k: v for k, v in world.valid(**change).items() if v is not None}
    with nothing_made(world):
        for method in ("POST", "PUT"):
            body = expect_error(world.provision(method, **data), status, errno)
            assert words in body["message"], body


def test_a_package_for_another_hypervisor_class(world):
    with nothing_made(world):
        for kind in ("xen", "kvm"):  # neither runs on the test driver
            body = expect_error(world.provision(**world.valid(pkguuid=world.pkgs[kind])),
                                400, 1000)
            assert kind in body["message"] and "test" in body["message"]


def test_a_hypervisor_of_another_host(world):
    with nothing_made(world):
        body = expect_error(world.provision(**world.valid(hvmuuid=world.hv2)), 400, 1000)
        assert "does not belong" in body["message"]
        # and the other way round: node2 with host1's hypervisor
        expect_error(world.provision(target=world.node2, **world.valid()), 400, 1000)


def test_unknown_or_malformed_target(world):
    with nothing_made(world):
        expect_error(world.provision(target=NO_SUCH, **world.valid()), 404, 1200)
        expect_error(world.provision(target="not-a-uuid", **world.valid()), 400, 1002)


def test_the_generic_machine_action_takes_the_same_checks(world):
    """POST /rest/machine/<host>/ action=provision is the same request, pool included."""
    with nothing_made(world):
        r = world.api.post(f"/rest/machine/{world.host}/",
                           data={"action": "provision", **world.valid(pool="no-such-pool")})
        expect_error(r, 404, 1200)
        r = world.api.post(f"/rest/machine/{world.host}/",
                           data={"action": "provision", **world.valid(name="web")})
        expect_error(r, 409, 1300)


# -- provision: queued, then failing or cancelled, leaving nothing --------------------------------


def test_a_provision_that_fails_in_its_transaction_leaves_nothing(world):
    """The test driver's storage takes no uploads: the transaction fails after retrieving."""
    api = world.api
    with unchanged(api):
        body = api.ok("PUT", f"/rest/machine/{world.host}/actions/provision/",
                      data=world.valid(name="doomed"))
        assert set(body) >= {"newuuid", "txid", "errno", "message"}
        tx = wait_tx(api, body["txid"])
        assert tx["data"]["state"] == "failed", tx
        assert "upload" in tx["data"]["error"] or "not supported" in tx["data"]["error"]
        assert tx["data"]["target"] == body["newuuid"] and tx["data"]["kind"] == "provision"
        expect_error(api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)
    assert running(api) == []
    # the package it retrieved stays cached: that part succeeded and is a cache
    pkg = api.ok("GET", f"/rest/vmfeed/{world.pkgs['test']}/")["package"]
    assert pkg["state"] == "cached"
    # retried, it fails the same way and still leaves nothing
    with unchanged(api):
        api.ok("POST", f"/rest/transaction/{body['txid']}/", data={"action": "retry"})
        assert wait_tx(api, body["txid"])["data"]["state"] == "failed"
        expect_error(api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)


def test_a_package_whose_interfaces_name_no_network_needs_one_on_the_target(world):
    """An exported package leaves its interfaces to the target's networks; a hypervisor with
    none (and no libvirt_network given) fails the transaction before any copy, saying so."""
    api = world.api
    with unchanged(api):
        body = api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                      data=world.valid(name="netless", pkguuid=world.pkgs["unsourced"]))
        tx = wait_tx(api, body["txid"])["data"]
        assert tx["state"] == "failed", tx
        assert "name no network" in tx["error"] and "libvirt_network" in tx["error"], tx
        expect_error(api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)
    assert running(api) == []


def test_a_provision_in_progress_holds_its_machine_and_its_name(world):
    """While a provision retrieves its package (held by the feed server), the new machine
    exists, locked: changing actions answer 423 with the txid; its name is taken. Cancelled,
    it leaves nothing."""
    api, gate = world.api, world.srv.gates[world.gated]
    data_dir = api.app.state.settings.data_dir
    with unchanged(api):
        body = api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                      data=world.valid(pkguuid=world.pkgs["slow"], name="held"))
        new, txid = body["newuuid"], body["txid"]
        wait_tx(api, txid, until=lambda b: b["data"]["state"] == "running"
                and any(line.startswith("downloading") for line in log_lines(b)))
        m = api.machine(new)
        assert m["machine_obj"]["locked_by"] == txid
        assert m["machine_obj"]["name"] == "held" and m["info"]["state"] == "provisioning"
        assert api.ok("GET", f"/rest/machine/{new}/actions/")["result"] == ["unlock"]
        for action in ("package", "create", "totaldelete", "rename"):
            r = api.post(f"/rest/machine/{new}/actions/{action}/", data={"name": "x"})
            assert expect_error(r, 423, 1400)["txid"] == txid, action
        r = api.post(f"/rest/machine/{new}/", data={"action": "package"})
        assert expect_error(r, 423, 1400)["txid"] == txid
        expect_error(world.provision(**world.valid(name="held")), 409, 1300)

        api.ok("DELETE", f"/rest/transaction/{txid}/")
        gate.set()  # the download goes on, sees the cancel and stops
        done = wait_tx(api, txid)
        assert done["data"]["state"] == "cancelled", done
        expect_error(api.get(f"/rest/machine/{new}/"), 404, 1200)
    gate.clear()
    pkg = api.ok("GET", f"/rest/vmfeed/{world.pkgs['slow']}/")["package"]
    assert pkg["state"] == "remote"
    assert not [f for f in package_files(data_dir) if world.pkgs["slow"] in f]
    assert running(api) == []


# -- package: refused at once ---------------------------------------------------------------------


def test_package_refusals(world):
    api = world.api
    with nothing_made(world):
        body = expect_error(api.post(f"/rest/machine/{world.vms['web']}/actions/package/"),
                            409, 1301)
        assert "manage" in body["message"]
        expect_error(api.post(f"/rest/machine/{world.host}/actions/package/"), 409, 1301)
        expect_error(api.post(f"/rest/machine/{world.vms['db']}/actions/package/",
                              data={"compression": "lz4"}), 400, 1000)
        expect_error(api.post(f"/rest/machine/{NO_SUCH}/actions/package/"), 404, 1200)
        expect_error(api.post("/rest/machine/not-a-uuid/actions/package/"), 400, 1002)
        expect_error(api.get(f"/rest/machine/{world.vms['db']}/actions/package/"), 405, 1005)


def test_package_of_a_locked_machine(world):
    """A machine held by a package transaction: a second package, and any change, is 423."""
    api = world.api
    db = world.vms["db"]
    from enomalism.jobs import locks

    with api.app.state.db.session() as s:  # a stale lock, as a crashed transaction leaves
        locks.lock(s, db, NO_SUCH)
    try:
        with nothing_made(world):
            r = api.post(f"/rest/machine/{db}/actions/package/")
            assert expect_error(r, 423, 1400)["txid"] == NO_SUCH
            r = api.post(f"/rest/machine/{db}/", data={"action": "package"})
            assert expect_error(r, 423, 1400)["txid"] == NO_SUCH
    finally:
        api.ok("POST", f"/rest/machine/{db}/actions/unlock/")
    assert api.machine(db)["machine_obj"]["locked_by"] is None


# -- KVM: another architecture --------------------------------------------------------------------


@pytest.fixture(scope="module")
def kvm(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict]]:
    """A server on qemu:///system with the same feed (nothing is created on the host)."""
    import libvirt

    try:
        libvirt.open("qemu:///system").close()
    except libvirt.libvirtError as e:
        pytest.skip(f"qemu:///system: {e}")
    d = tmp_path_factory.mktemp("kvm")
    with serve(d / "data", "qemu:///system") as api:
        packages = api.ok("PUT", "/rest/vmfeed/", data={"url": world.srv.url("/feed.xml")})
        yield api, {p["name"]: p["uuid"] for p in packages["packages"]}


@pytest.mark.integration
@pytest.mark.parametrize("name, words", [
    ("for-arm", ("aarch64", "x86_64")), ("for-xen", ("xen", "kvm")),
    ("for-test", ("test", "kvm"))])
def test_a_package_for_another_architecture_or_class_on_kvm(kvm, name, words):
    api, pkgs = kvm
    hv = next(h for h in api.hypervisors() if h["virt_url"] == "qemu:///system")
    before = len(api.ok("GET", "/rest/transactions/")["transactions"])
    machines = api.ok("GET", "/rest/machines/")["machines"]
    r = api.post(f"/rest/machine/{api.local_host()}/actions/provision/",
                 data={"pkguuid": pkgs[name], "hvmuuid": hv["uuid"],
                       "name": "enomalism-test-never"})
    body = expect_error(r, 400, 1000)
    assert all(w in body["message"] for w in words), body
    assert len(api.ok("GET", "/rest/transactions/")["transactions"]) == before
    assert api.ok("GET", "/rest/machines/")["machines"] == machines


def test_a_queued_provision_cancelled_leaves_no_machine(world):
    """With both runner threads busy (two provisions waiting on the held download), a third
    provision stays queued; cancelled there, its machine record goes with it. A package being
    fetched for a provision cannot be deleted or uncached meanwhile."""
    api, gate = world.api, world.srv.gates[world.gated]
    slow = world.pkgs["slow"]
    with unchanged(api):
        held = [api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                       data=world.valid(pkguuid=slow, name=f"busy{i}")) for i in range(2)]
        for body in held:
            wait_tx(api, body["txid"], until=lambda b: b["data"]["state"] == "running")
        queued = api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                        data=world.valid(name="waiting"))
        assert api.ok("GET", f"/rest/transaction/{queued['txid']}/")["data"]["state"] == "queued"
        assert api.machine(queued["newuuid"])["machine_obj"]["locked_by"] == queued["txid"]

        expect_error(api.delete(f"/rest/vmfeed/{slow}/"), 409, 1301)
        expect_error(api.delete(f"/rest/vmfeed/repo/package/{slow}/"), 409, 1301)

        r = api.ok("DELETE", f"/rest/transaction/{queued['txid']}/")
        assert r["data"]["state"] == "cancelled"
        expect_error(api.get(f"/rest/machine/{queued['newuuid']}/"), 404, 1200)
        expect_error(world.provision(**world.valid(name="busy0")), 409, 1300)
        r = api.post(f"/rest/machine/{world.host}/actions/provision/",
                     data=world.valid(name="waiting"))  # the name is free again
        assert r.status_code == 200, r.text
        again = r.json()
        api.ok("DELETE", f"/rest/transaction/{again['txid']}/")

        for body in held:
            api.ok("DELETE", f"/rest/transaction/{body['txid']}/")
        gate.set()
        for body in held + [again]:
            assert wait_tx(api, body["txid"])["data"]["state"] == "cancelled"
            expect_error(api.get(f"/rest/machine/{body['newuuid']}/"), 404, 1200)
    gate.clear()
    assert running(api) == []
    assert api.ok("GET", f"/rest/vmfeed/{slow}/")["package"]["state"] == "remote"


def test_a_retried_provision_holds_its_addresses_again(world):
    """A provision on a host with a static network leases an address; cancelled, the lease
    goes with the machine record; retried, the same address is leased again for the same
    machine, or, taken meanwhile, the retry fails and leaves nothing."""
    api, gate = world.api, world.srv.gates[world.gated]
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": "leasing"})["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{world.host}/clusters/", data={"clusters": c})
    add_bridge(api, "br-leasing")
    net = api.ok("PUT", "/rest/networks/", data={
        "name": "leasing", "bridge": "br-leasing", "ip": "10.9.0.0", "netmask": "24",
        "gateway": "10.9.0.1", "cluster": c})["network"]["uuid"]
    api.ok("POST", f"/rest/networks/{net}/iprange/", data={"start_ip": "10.9.0.10",
                                                           "end_ip": "10.9.0.20"})

    def leases() -> list[tuple[str, str | None]]:
        return [(x["address"], x["machine"])
                for x in api.ok("GET", f"/rest/networks/{net}/leases/")["leases"]]

    def downloads(b: dict) -> int:
        return sum(line.startswith("downloading") for line in log_lines(b))

    def held_then_cancelled(txid: str, before: int = 0) -> dict:
        # a retry keeps the log of the attempts before: wait for this attempt's own download
        wait_tx(api, txid, until=lambda b: b["data"]["state"] == "running"
                and downloads(b) > before)
        found = leases()
        api.ok("DELETE", f"/rest/transaction/{txid}/")
        gate.set()
        try:
            assert wait_tx(api, txid)["data"]["state"] in ("cancelled", "failed")
        finally:
            gate.clear()
        return found

    try:
        body = api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                      data=world.valid(pkguuid=world.pkgs["slow"], name="leased"))
        new, txid = body["newuuid"], body["txid"]
        assert held_then_cancelled(txid) == [("10.9.0.10", new)]
        assert leases() == []
        expect_error(api.get(f"/rest/machine/{new}/"), 404, 1200)

        before = downloads(api.ok("GET", f"/rest/transaction/{txid}/"))
        api.ok("POST", f"/rest/transaction/{txid}/", data={"action": "retry"})
        assert held_then_cancelled(txid, before) == [("10.9.0.10", new)]  # the same address
        assert leases() == []

        api.ok("PUT", f"/rest/networks/{net}/leases/", data={"address": "10.9.0.10"})
        api.ok("POST", f"/rest/transaction/{txid}/", data={"action": "retry"})
        failed = wait_tx(api, txid)
        assert failed["data"]["state"] == "failed", failed
        assert "10.9.0.10" in failed["data"]["error"]
        assert leases() == [("10.9.0.10", None)]
        expect_error(api.get(f"/rest/machine/{new}/"), 404, 1200)
    finally:
        gate.clear()
        api.delete(f"/rest/networks/{net}/leases/10.9.0.10/")
        api.delete(f"/rest/networks/{net}/")
        api.delete(f"/rest/cluster/{c}/")
    assert running(api) == []


def test_libvirt_is_asked_with_no_database_lock_and_the_name_checked_again(world, monkeypatch):
    """queue_provision asks libvirt whether the name is free with no transaction open (other
    writes go on meanwhile), then checks the name again as it records the machine: a
    provision of the same name recorded meanwhile wins, the held one answers 409."""
    from enomalism.virt import driver
    from tests.api.accounts import new_user

    api = world.api
    real, entered, go, answered = driver.name_taken, *(threading.Event() for _ in range(3))
    calls, lock = [], threading.Lock()

    def held(conn, name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        """The first request's question waits for `go`; the other provision's job (the third
        question about the name) waits until the first request has answered: that job fails
        on the test driver and takes its machine record with it, which would free the name
        before the first request checks it again."""
        if name == "raced":
            with lock:
                calls.append(name)
                n = len(calls)
            if n == 1:
                entered.set()
                assert go.wait(60)
            elif n > 2:
                assert answered.wait(60)
        return real(conn, name, *args, **kwargs)

    monkeypatch.setattr(driver, "name_taken", held)
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault(
        "r", world.provision(**world.valid(name="raced"))))
    t.start()
    try:
        assert entered.wait(30), "libvirt was never asked"
        new_user(api)  # another writer goes through
        other = api.ok("POST", f"/rest/machine/{world.host}/actions/provision/",
                       data=world.valid(name="raced"))
        assert t.is_alive(), "the other writes waited for libvirt"
    finally:
        go.set()
        t.join(60)
        answered.set()
    expect_error(answer["r"], 409, 1300)
    done = wait_tx(api, other["txid"])  # the test driver cannot take the upload: it fails
    assert done["data"]["state"] == "failed"
    assert running(api) == []
