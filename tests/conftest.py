"""Shared fixtures: servers on libvirt's test driver, with one or more fake hosts."""

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from enomalism.api.app import create_app
from enomalism.config import Settings
from enomalism.feeds import download as dl
from enomalism.jobs.runner import Handler
from enomalism.wiring.job_table import JOBS
from tests.fakehost import FakeDomain, write_host

# The tests' feed servers listen on 127.0.0.1, which outbound fetches reach only when the
# administrator allows it (docs/deployment.md). Other loopback addresses (127.0.0.2) stay
# refused, for the tests of that. Servers the tests start read it from the environment; the
# tests of feeds/download.py alone get it here.
os.environ.setdefault("ENOMALISM_FETCH_ALLOW", "127.0.0.1")
dl.configure(dl.FetchPolicy.from_setting(os.environ["ENOMALISM_FETCH_ALLOW"]))

ADMIN_PASSWORD = "admin-test-password"
# Cheap argon2 parameters: tests create and verify hundreds of passwords. The production
# defaults are measured in bench/ and exercised by tests/api/test_auth.py.
# A hypervisor URI that fails at once: nothing listens on the discard port.
UNREACHABLE_URI = "qemu+tcp://127.0.0.1:9/system"
FAST_HASHES = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
# A PostgreSQL server the tests may use (make test starts one: scripts/start-postgres.sh),
# e.g. postgresql+psycopg://enomalism:enomalism@127.0.0.1:5433. Tests that need PostgreSQL
# skip without it, saying so.
POSTGRES_URL = os.environ.get("ENOMALISM_TEST_POSTGRES_URL", "").rstrip("/") or None
# "postgresql": the test servers run on PostgreSQL (a database of their own per data dir);
# otherwise on SQLite in their data dir. make test runs the API and job tests both ways.
ON_POSTGRES = os.environ.get("ENOMALISM_TEST_DATABASE") == "postgresql"
if ON_POSTGRES and not POSTGRES_URL:
    raise RuntimeError("ENOMALISM_TEST_DATABASE=postgresql needs ENOMALISM_TEST_POSTGRES_URL")
NEEDS_POSTGRES = pytest.mark.skipif(
    not POSTGRES_URL, reason="no PostgreSQL: set ENOMALISM_TEST_POSTGRES_URL (make test "
    "starts one with scripts/start-postgres.sh)")

_CREATED: list[str] = []


def job_kind(kind: str) -> Callable[[Handler], Handler]:
    """A test's own kind of job, added to the servers' job table (wiring/job_table.py)."""
    def add(fn: Handler) -> Handler:
        JOBS[kind] = fn
        return fn
    return add


def _admin_connection():  # noqa: ANN202
    import psycopg

    return psycopg.connect(POSTGRES_URL.replace("+psycopg", "") + "/postgres", autocommit=True)


def fresh_postgres_database(label: str) -> str:
    """A new, empty PostgreSQL database (dropped at the end of the run); its URL."""
    import uuid

    name = f"enm_{label}_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    _CREATED.append(name)
    return f"{POSTGRES_URL}/{name}"


def database_url(data_dir: Path) -> str | None:
    """The database for a test server using `data_dir` (the same dir: the same database)."""
    if not ON_POSTGRES:
        return None
    import hashlib

    name = "enm_" + hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:20]
    with _admin_connection() as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_migrated_template()}"')
            _CREATED.append(name)
    return f"{POSTGRES_URL}/{name}"


_TEMPLATE: list[str] = []


def _migrated_template() -> str:
    """A database migrated once per run, copied for each test server: a copy costs a tenth
    of running the migrations again (the servers still run them, and find nothing to do)."""
    if not _TEMPLATE:
        from enomalism.store.db import Database

        name = f"enm_template_{os.getpid()}"
        with _admin_connection() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        _CREATED.append(name)
        db = Database(f"{POSTGRES_URL}/{name}")
        db.migrate()
        db.dispose()  # a template must have no connections
        _TEMPLATE.append(name)
    return _TEMPLATE[0]


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases this run created, so runs do not pile them up."""
    yield
    if _CREATED:
        import warnings

        import psycopg

        with _admin_connection() as c:
            for name in _CREATED:
                try:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except psycopg.Error as e:  # housekeeping: the tests' outcome stands
                    warnings.warn(f"test database {name} was left behind: {e}", stacklevel=1)


class Api:
    """A TestClient with the admin's credentials and a few helpers."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.app = client.app
        self.auth = ("admin", ADMIN_PASSWORD)

    def request(self, method: str, path: str, *, auth: object = "admin", **kw):  # noqa: ANN201
        return self.client.request(method, path, auth=self.auth if auth == "admin" else auth,
                                   **kw)

    def get(self, path: str, **kw):  # noqa: ANN201
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw):  # noqa: ANN201
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw):  # noqa: ANN201
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw):  # noqa: ANN201
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.request(method, path, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("errno", 0) == 0, body
        return body

    @property
    def registry(self):  # noqa: ANN201
        return self.app.state.registry

    def settle(self) -> None:
        """Wait until every libvirt event so far is in the inventory."""
        assert self.registry.wait_idle(30)

    @contextmanager
    def unplugged(self, hv_uuid: str, uri: str) -> Iterator[None]:
        """The hypervisor as when its host drops, until the block ends: its link points at
        an address nothing answers on. (A link merely detached would not stay away: the
        registry attaches every registered hypervisor again within seconds.)"""
        self.registry.attach(hv_uuid, UNREACHABLE_URI)
        deadline = time.monotonic() + 30
        while not any(u == hv_uuid and status == "disconnected"
                      for u, _uri, status, _e in self.registry.links()):
            assert time.monotonic() < deadline, "the unplugged link never failed"
            time.sleep(0.02)
        try:
            yield
        finally:
            self.registry.attach(hv_uuid, uri)
            self.settle()

    def local_host(self) -> str:
        hosts = self.ok("GET", "/rest/hosts/")["hosts"]
        return next(h["uuid"] for h in hosts if h["is_local"])

    def hypervisors(self) -> list[dict]:
        return self.ok("GET", f"/rest/machine/{self.local_host()}/hypervisors/")["hypervisors"]

    def machine(self, uuid: str) -> dict:
        return self.ok("GET", f"/rest/machine/{uuid}/")


@pytest.fixture
def make_host(tmp_path: Path) -> Callable[..., str]:
    """Write a fake host file: make_host("h1", [FakeDomain(...)], volumes=[...]) -> URI."""
    def make(name: str, domains: list[FakeDomain] = (), volumes: list[str] = (),
             pool_path: str = "/default-pool") -> str:
        return write_host(tmp_path / f"{name}.xml", list(domains), list(volumes), pool_path)
    return make


@pytest.fixture
def make_api(tmp_path: Path) -> Callable:
    """A context manager starting a server on the given hypervisor URIs."""
    @contextmanager
    def start(*uris: str, data_dir: Path | None = None) -> Iterator[Api]:
        data_dir = data_dir or tmp_path / "data"
        settings = Settings(data_dir=data_dir, hypervisors=list(uris),
                            admin_password=ADMIN_PASSWORD, database_url=database_url(data_dir),
                            **FAST_HASHES)
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            api.settle()
            yield api
    return start


@pytest.fixture
def api(make_api: Callable, make_host: Callable) -> Iterator[Api]:
    """A server with one fake host holding a running, a paused and a stopped domain."""
    uri = make_host("host1", [
        FakeDomain("web", state="running", disks=["web.img"]),
        FakeDomain("db", state="paused"),
        FakeDomain("idle", state="shutoff"),
    ], volumes=["web.img", "spare.img"])
    with make_api(uri) as a:
        yield a


# -- helpers shared by the API tests ---------------------------------------------------------

VOLATILE = {"updated_at", "synced_at"}  # timestamps a harmless resync may move


def vm_uuid(api: Api, name: str) -> str:
    """The UUID of the VM with this name (through the API)."""
    objs = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
    return next(o["uuid"] for o in objs["machine_objs"] if o["name"] == name)


def manage(api: Api, name: str) -> str:
    """Adopt the discovered domain `name`; returns its UUID."""
    uuid = vm_uuid(api, name)
    api.ok("POST", f"/rest/machine/{uuid}/actions/manage/")
    return uuid


def expect_error(r, status: int, errno: int) -> dict:  # noqa: ANN001
    """Assert an error answer: the HTTP status, the errno and a message for a person."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["errno"] == errno, body
    assert body["message"], body
    return body


def libvirt_domains(api: Api, hv_uuid: str) -> dict[str, tuple]:
    """What libvirt itself says about every domain of a hypervisor: name, state, XML."""
    import libvirt

    conn = api.registry.connection(hv_uuid).virconnect
    return {d.UUIDString(): (d.name(), d.state()[0], d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            for d in conn.listAllDomains(0)}


def pool_volumes(api: Api, hv_uuid: str) -> list[str]:
    conn = api.registry.connection(hv_uuid).virconnect
    return sorted(conn.storagePoolLookupByName("default-pool").listVolumes())


def world(api: Api) -> dict:
    """Everything a failed request must leave as it was: the machines as the API shows them,
    hosts, hypervisors, clusters, and every hypervisor's domains and volumes as libvirt has them."""
    api.settle()
    objs = api.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    machines = {o["uuid"]: {k: v for k, v in o.items() if k not in VOLATILE} for o in objs}
    hypervisors = {}
    for host in (o["uuid"] for o in objs if o["kind"] == "host"):
        for hv in api.ok("GET", f"/rest/machine/{host}/hypervisors/")["hypervisors"]:
            hypervisors[hv["uuid"]] = (hv["machine"], hv["virt_class"], hv["virt_url"])
    return {
        "machines": machines,
        "hypervisors": hypervisors,
        "clusters": api.ok("GET", "/rest/cluster/list/")["clusters"],
        "domains": {hv: libvirt_domains(api, hv) for hv in hypervisors},
        "volumes": {hv: pool_volumes(api, hv) for hv in hypervisors},
    }


@contextmanager
def unchanged(api: Api) -> Iterator[None]:
    """`with unchanged(api): ...` asserts the block changed nothing anyone can see."""
    before = world(api)
    yield
    assert world(api) == before


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The `api` server's fake host, one server for a whole module: only for tests that change
    nothing (bad input checked with `unchanged`), so one failure may spill into the next."""
    d = tmp_path_factory.mktemp("shared")
    uri = write_host(d / "host1.xml", [
        FakeDomain("web", state="running", disks=["web.img"]),
        FakeDomain("db", state="paused"),
        FakeDomain("idle", state="shutoff"),
    ], ["web.img", "spare.img"])
    settings = Settings(data_dir=d / "data", hypervisors=[uri], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(d / "data"), **FAST_HASHES)
    with TestClient(create_app(settings)) as client:
        a = Api(client)
        a.settle()
        yield a


@contextmanager
def serve(data_dir: Path, *uris: str) -> Iterator[Api]:
    """A server on the given hypervisor URIs, as make_api starts it, for fixtures of any scope."""
    settings = Settings(data_dir=data_dir, hypervisors=list(uris), admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data_dir), **FAST_HASHES)
    with TestClient(create_app(settings)) as client:
        a = Api(client)
        a.settle()
        yield a


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server per module on a fake host with no domains, for tests that change only what
    they create themselves under names of their own (`new_vm`, `new_volume`): starting a
    server per test costs more than all the rest of the test."""
    d = tmp_path_factory.mktemp("sandbox")
    with serve(d / "data", write_host(d / "sandbox.xml", [])) as a:
        yield a


def new_volume(api: Api, name: str, hv_uuid: str | None = None) -> str:
    """Create a volume in the fake host's pool; returns its path."""
    conn = api.registry.connection(hv_uuid or api.hypervisors()[0]["uuid"]).virconnect
    pool = conn.storagePoolLookupByName("default-pool")
    xml = f"<volume><name>{name}</name><capacity unit='MiB'>1</capacity></volume>"
    return pool.createXML(xml, 0).path()


def new_vm(api: Api, name: str, state: str = "shutoff", *, managed: bool = True,
           disks: list[str] = (), hv_uuid: str | None = None) -> str:
    """Define a domain of the test's own on the fake host (with volumes for `disks`), bring it
    to `state` (shutoff, running or paused) and, if `managed`, manage it through the API."""
    from tests.fakehost import domain_xml

    hv = hv_uuid or api.hypervisors()[0]["uuid"]
    for disk in disks:
        new_volume(api, disk, hv)
    dom = api.registry.connection(hv).virconnect.defineXML(domain_xml(name, disks=list(disks)))
    if state in ("running", "paused"):
        dom.create()
    if state == "paused":
        dom.suspend()
    api.settle()
    if managed:
        api.ok("POST", f"/rest/machine/{dom.UUIDString()}/actions/manage/")
    return dom.UUIDString()


_names = __import__("itertools").count(1)


@pytest.fixture
def own(request: pytest.FixtureRequest) -> str:
    """A name of the test's own for the domains, clusters and hosts it creates in a shared
    server: readable, unique in the session, valid for libvirt."""
    import re

    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', request.node.name)[:48].strip('-')}-{next(_names)}"
