"""Placement (docs/provisioning.md): a provision with `hvmuuid` left out, or naming a cluster,
goes to the hypervisor with the most free memory among those the requester may use.

One server for the module, on fake hosts of different sizes, with no runner threads: queued
provisions stay queued (the test driver's storage would fail them at once otherwise), which is
exactly the moment placement must count them. Each test cancels what it queued; a cancelled
queued provision takes its machine record with it."""

import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from enomalism.api.app import create_app
from enomalism.config import Settings
from enomalism.feeds import archive
from enomalism.store.models import Package
from tests.api.accounts import grant, new_user
from tests.conftest import (
    ADMIN_PASSWORD,
    FAST_HASHES,
    Api,
    database_url,
    expect_error,
    serve,
    unchanged,
    vm_uuid,
)
from tests.fakehost import FakeDomain, write_host
from tests.integration.provision_helpers import free_port, wait_tx

GiB = 1 << 20  # KiB
# host name -> (memory in GiB, domains): free memory local 1, big 9, mid 6, small 4 GiB
HOSTS = {
    "local": (4, [FakeDomain("l1", memory_kib=3 * GiB)]),
    "big": (16, [FakeDomain("b1", memory_kib=5 * GiB), FakeDomain("b2", memory_kib=GiB),
                 FakeDomain("b3", state="shutoff", memory_kib=8 * GiB),  # holds no memory
                 FakeDomain("b4", state="paused", memory_kib=GiB)]),
    "mid": (8, [FakeDomain("m1", memory_kib=2 * GiB)]),
    "small": (4, []),
}


def package_file(path: Path, *, virt_class: str = "test", memory: str = "2 GiB",
                 vcpus: int = 1) -> archive.Manifest:
    number, unit = memory.split()
    xml = (f"<domain type='{virt_class}'><name>template</name>"
           f"<memory unit='{unit}'>{number}</memory><vcpu>{vcpus}</vcpu>"
           "<os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>"
           "<driver name='qemu' type='raw'/><source file='/nowhere/t.img'/>"
           "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    m = archive.Manifest(name=path.stem, virt_class=virt_class, arch="x86_64",
                         disks=[archive.DiskInfo(target="vda", format="raw")])
    return archive.write_package(path, domain_xml=xml, manifest=m, compression="gzip",
                                 disk_sources={"vda": lambda: io.BytesIO(b"\0" * 4096)},
                                 fsync=False)


def add_package(api: Api, path: Path, *, state: str = "cached", **kw: object) -> str:
    """A package as retrieval leaves it in the cache (a remote one: as a feed lists it); no
    runner thread here could retrieve it."""
    m = package_file(path, **kw)
    with api.app.state.db.session() as s:
        p = Package(name=path.stem, virt_class=m.virt_class, arch=m.arch, state=state,
                    path=str(path) if state == "cached" else None, size=path.stat().st_size,
                    manifest=m.to_json(), url=None if state == "cached" else "http://x/p")
        s.add(p)
        s.flush()
        return p.uuid


@dataclass
class Cloud:
    api: Api
    host: str  # the local host: the path of the requests
    hosts: dict[str, str]  # name -> host machine
    hv: dict[str, str]  # name -> its hypervisor
    uris: dict[str, str]
    pkg: dict[str, str]
    queued: list[str] = field(default_factory=list)

    def provision(self, name: str, auth: object = "admin", **data: str):
        data = {"pkguuid": self.pkg["2g"], "name": name, **data}
        return self.api.post(f"/rest/machine/{self.host}/actions/provision/", data=data,
                             auth=auth)

    def placed(self, name: str, **data: str) -> str:
        """Provision; the name of the host it went to."""
        r = self.provision(name, **data)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"newuuid", "txid", "errno", "message", "hvmuuid"}
        self.queued.append(body["txid"])
        m = self.api.machine(body["newuuid"])
        assert m["machine_obj"]["parent"] == body["hvmuuid"]
        assert m["info"]["state"] == "provisioning"
        return next(n for n, hv in self.hv.items() if hv == body["hvmuuid"])

    def cancel_all(self) -> None:
        for txid in self.queued:
            assert self.api.ok("DELETE", f"/rest/transaction/{txid}/")["data"]["state"] == \
                "cancelled"
        self.queued.clear()


@pytest.fixture(scope="module")
def module_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    d = tmp_path_factory.mktemp("placement")
    uris = {name: write_host(d / f"{name}.xml", doms, memory_kib=gib * GiB)
            for name, (gib, doms) in HOSTS.items()}
    settings = Settings(data_dir=d / "data", hypervisors=[uris["local"]],
                        admin_password=ADMIN_PASSWORD, database_url=database_url(d / "data"),
                        job_threads=0, **FAST_HASHES)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        api.settle()
        host = api.local_host()
        hosts, hv = {"local": host}, {"local": api.hypervisors()[0]["uuid"]}
        for name in ("big", "mid", "small"):
            hosts[name] = api.ok("PUT", "/rest/hosts/",
                                 data={"name": name, "virt_url": uris[name]})["machine"]
            hv[name] = api.ok("GET", f"/rest/machine/{hosts[name]}/hypervisors/")[
                "hypervisors"][0]["uuid"]
        api.settle()
        pkg = {"2g": add_package(api, d / "two-gib.xvm2"),
               "kvm": add_package(api, d / "for-kvm.xvm2", virt_class="kvm"),
               "remote": add_package(api, d / "not-here.xvm2", state="remote")}
        yield Cloud(api, host, hosts, hv, uris, pkg)


@pytest.fixture
def cloud(module_cloud: Cloud) -> Iterator[Cloud]:
    """The module's cloud; what a test queued is cancelled after it, leaving it as it was."""
    with unchanged(module_cloud.api):
        try:
            yield module_cloud
        finally:
            module_cloud.cancel_all()


def test_hvmuuid_left_out_picks_the_most_free_memory(cloud):
    assert cloud.placed("p-first") == "big"  # 9 GiB free (shut-off b3 holds none)
    r = cloud.api.post(f"/rest/machine/{cloud.host}/", data={
        "action": "provision", "pkguuid": cloud.pkg["2g"], "name": "p-second"})
    assert r.status_code == 200, r.text
    cloud.queued.append(r.json()["txid"])
    assert r.json()["hvmuuid"] == cloud.hv["big"]  # 7 GiB free still beats mid's 6
    # the machine being provisioned has the package's size from the start
    info = cloud.api.machine(r.json()["newuuid"])["info"]
    assert (info["memory_kib"], info["vcpus"]) == (2 * GiB, 1)


def test_successive_provisions_spread_as_memory_fills(cloud):
    """Free: big 9, mid 6, small 4, local 1 GiB; 2 GiB each. Equal free memory goes to the
    host with fewer vCPUs committed (mid runs m1)."""
    picked = [cloud.placed(f"p-spread-{i}") for i in range(9)]
    assert picked == ["big", "big", "mid", "big", "small", "mid", "big", "small", "mid"]
    r = cloud.provision("p-spread-full")
    body = expect_error(r, 409, 1302)
    assert "not enough free memory" in body["message"] and "2048 MiB" in body["message"]
    assert "the most free is 1024 MiB" in body["message"]
    assert "(1024 MiB short)" in body["message"]
    # an explicit hypervisor is not placement: it is taken as asked
    assert cloud.placed("p-spread-explicit", hvmuuid=cloud.hv["local"]) == "local"


@contextmanager
def over_http(api: Api) -> Iterator[str]:
    """The module's app (already started) also served by uvicorn on a loopback port, so that
    requests really run at the same moment; yields its URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(api.app, host="127.0.0.1", port=port,
                                        log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not srv.started:
            assert thread.is_alive(), "uvicorn ended before it started"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def test_provisions_requested_at_the_same_moment_see_each_other(cloud):
    """Ten clients released together over real HTTP: each placement counts the machines
    recorded before it (SQLite: the request's write lock orders them; PostgreSQL: placement's
    advisory lock), so they spread exactly as one after another would, and the tenth, with no
    room left, is refused. (Without the lock, on PostgreSQL all ten land on one host.)"""
    barrier = threading.Barrier(10)

    def request(url: str, i: int) -> httpx.Response:
        with httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=60) as c:
            barrier.wait()
            return c.post(f"/rest/machine/{cloud.host}/actions/provision/",
                          data={"pkguuid": cloud.pkg["2g"], "name": f"p-together-{i}"})

    with over_http(cloud.api) as url, ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: request(url, i), range(10)))
    done = [r.json() for r in answers if r.status_code == 200]
    cloud.queued.extend(a["txid"] for a in done)
    where = Counter(next(n for n, hv in cloud.hv.items() if hv == a["hvmuuid"]) for a in done)
    assert where == {"big": 4, "mid": 3, "small": 2}
    refused = [r for r in answers if r.status_code != 200]
    assert len(refused) == 1 and expect_error(refused[0], 409, 1302)


def test_a_cluster_picks_only_among_its_hosts(cloud):
    c = cloud.api.ok("PUT", "/rest/cluster/", data={"cluster_name": "pair"})["cluster"]["uuid"]
    try:
        for member in (cloud.hosts["mid"], cloud.hosts["small"], vm_uuid(cloud.api, "b1")):
            cloud.api.ok("POST", f"/rest/machine/{member}/clusters/", data={"clusters": c})
        picked = [cloud.placed(f"p-pair-{i}", hvmuuid=c) for i in range(5)]
        # a VM member (b1, on big) brings no hypervisor: big, with the most free, is not used
        assert picked == ["mid", "small", "mid", "small", "mid"]
        body = expect_error(cloud.provision("p-pair-full", hvmuuid=c), 409, 1302)
        assert "in cluster pair" in body["message"] and "2048 MiB short" in body["message"]
        assert cloud.placed("p-pair-elsewhere") == "big"  # the rest of the cloud is not full
    finally:
        cloud.cancel_all()
        cloud.api.ok("DELETE", f"/rest/cluster/{c}/")


def test_a_cluster_without_hosts(cloud):
    c = cloud.api.ok("PUT", "/rest/cluster/", data={"cluster_name": "vms"})["cluster"]["uuid"]
    try:
        cloud.api.ok("POST", f"/rest/machine/{vm_uuid(cloud.api, 'm1')}/clusters/",
                     data={"clusters": c})
        with unchanged(cloud.api):
            body = expect_error(cloud.provision("p-nowhere", hvmuuid=c), 409, 1302)
            assert "cluster vms has no host" in body["message"]
    finally:
        cloud.api.ok("DELETE", f"/rest/cluster/{c}/")


def test_disconnected_hypervisors_are_never_picked(cloud):
    api, big = cloud.api, cloud.hv["big"]
    c = api.ok("PUT", "/rest/cluster/", data={"cluster_name": "bigonly"})["cluster"]["uuid"]
    api.ok("POST", f"/rest/machine/{cloud.hosts['big']}/clusters/", data={"clusters": c})
    try:
        with api.unplugged(big, cloud.uris["big"]):
            assert api.ok("GET", f"/rest/hypervisor/{big}/")["hypervisor"]["status"] == \
                "disconnected"
            assert cloud.placed("p-while-big-is-away") == "mid"
            before = (api.ok("GET", "/rest/machines/")["machines"],
                      api.ok("GET", "/rest/transactions/")["transactions"])
            body = expect_error(cloud.provision("p-bigonly", hvmuuid=c), 503, 1501)
            assert "in cluster bigonly" in body["message"]
            assert "127.0.0.1:9" in body["message"]  # why: the link's own error
            assert (api.ok("GET", "/rest/machines/")["machines"],
                    api.ok("GET", "/rest/transactions/")["transactions"]) == before
    finally:
        cloud.cancel_all()
        assert api.ok("GET", f"/rest/hypervisor/{big}/")["hypervisor"]["status"] == "connected"
        api.ok("DELETE", f"/rest/cluster/{c}/")


def test_hypervisors_the_requester_may_not_control_are_never_picked(cloud):
    api = cloud.api
    user, other = new_user(api), new_user(api)
    for u in (user, other):
        grant(api, cloud.host, "read", user=u.uuid)  # the machine the request is addressed to
        # a package of no repository (as `package` makes): provisioning it needs `export`
        grant(api, cloud.pkg["2g"], "export", user=u.uuid)
    grant(api, cloud.hv["small"], "control", user=user.uuid)
    r = cloud.provision("p-mine", auth=user.auth)
    assert r.status_code == 200, r.text
    cloud.queued.append(r.json()["txid"])
    assert r.json()["hvmuuid"] == cloud.hv["small"]  # not big, though it has more free
    with unchanged(api):
        body = expect_error(cloud.provision("p-not-mine", auth=other.auth), 403, 1101)
        assert "'control'" in body["message"]


def test_no_compatible_hypervisor(cloud):
    with unchanged(cloud.api):
        body = expect_error(cloud.provision("p-kvm", pkguuid=cloud.pkg["kvm"]), 409, 1302)
        assert "can run package for-kvm" in body["message"]
        assert "for kvm; hypervisor test://" in body["message"]


def test_a_name_taken_on_a_candidate(cloud):
    with unchanged(cloud.api):
        body = expect_error(cloud.provision("b3"), 409, 1300)
        assert cloud.uris["big"] in body["message"]


def test_unknown_or_malformed_hvmuuid(cloud):
    with unchanged(cloud.api):
        body = expect_error(cloud.provision("p-x", hvmuuid="6f1b2c3d-0000-4000-8000-00000000"
                                                           "0000"), 404, 1200)
        assert "no hypervisor or cluster" in body["message"]
        expect_error(cloud.provision("p-x", hvmuuid="nope"), 400, 1002)
        user = new_user(cloud.api)  # a cluster they may not read is as good as none
        grant(cloud.api, cloud.host, "read", user=user.uuid)
        grant(cloud.api, cloud.pkg["2g"], "export", user=user.uuid)  # (no repository)
        c = cloud.api.ok("PUT", "/rest/cluster/", data={"cluster_name": "secret"})["cluster"]
        try:
            expect_error(cloud.provision("p-x", auth=user.auth, hvmuuid=c["uuid"]), 404, 1200)
        finally:
            cloud.api.ok("DELETE", f"/rest/cluster/{c['uuid']}/")


def test_a_package_not_retrieved_yet_has_no_size_to_check(cloud):
    """A feed does not say how much memory a package needs: placement ranks as usual but
    refuses no host for memory, and the queued machine counts nothing until it is defined."""
    assert cloud.placed("p-remote", pkguuid=cloud.pkg["remote"]) == "big"
    assert cloud.placed("p-after", pkguuid=cloud.pkg["2g"]) == "big"  # 9 GiB free still


def test_the_openapi_says_hvmuuid_is_optional_and_may_name_a_cluster(cloud):
    doc = cloud.api.get("/openapi.json").json()
    op = doc["paths"]["/rest/machine/{uuid}/actions/provision/"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert "hvmuuid" not in schema.get("required", [])
    text = schema["properties"]["hvmuuid"]["description"]
    assert "optional" in text and "cluster" in text
    answer = doc["components"]["schemas"]["ProvisionAnswer"]["properties"]
    assert "hvmuuid" in answer


def _libvirt_answers(uri: str) -> bool:
    import libvirt

    try:
        libvirt.open(uri).close()
        return True
    except libvirt.libvirtError:
        return False


@pytest.mark.integration
def test_an_incompatible_hypervisor_with_more_memory_is_never_picked(tmp_path):
    """qemu:///system (a real host, KVM class) beside a 4 GiB fake host: a test-class package
    goes to the fake host, whatever the real one has free."""
    if not _libvirt_answers("qemu:///system"):
        pytest.skip("qemu:///system does not answer")
    with serve(tmp_path / "data", "qemu:///system") as api:
        api.ok("PUT", "/rest/hosts/", data={
            "name": "fake", "virt_url": write_host(tmp_path / "fake.xml", [],
                                                   memory_kib=4 * GiB)})
        fake = next(h for h in api.ok("GET", "/rest/hosts/")["hosts"] if h["name"] == "fake")
        fake_hv = api.ok("GET", f"/rest/machine/{fake['uuid']}/hypervisors/")["hypervisors"][0]
        pkg = add_package(api, tmp_path / "t.xvm2", memory="64 MiB")
        r = api.post(f"/rest/machine/{api.local_host()}/actions/provision/",
                     data={"pkguuid": pkg, "name": "enomalism-test-placement"})
        assert r.status_code == 200, r.text
        assert r.json()["hvmuuid"] == fake_hv["uuid"]
        # the test driver's storage takes no upload: the job fails, leaving nothing
        assert wait_tx(api, r.json()["txid"])["data"]["state"] == "failed"
