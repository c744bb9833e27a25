"""Several `enomalism serve` processes (nodes) on one PostgreSQL database.

Every test gets a fresh, empty database (`nodes` fixture) and starts its nodes as real
subprocesses of the console script, each with its own data dir, port, node id and log, and all
with one packages directory (as nodes would share one over NFS). The test looks at the database
directly (`Cluster.db`, SQLAlchemy) for what the API does not show: which node claimed a
transaction, which node owns a hypervisor.

libvirt's test:/// driver keeps its world inside each process, so two nodes on test:///default
see two different (if identical at start) worlds: tests whose point is the shared machine state
use qemu:///system (the `integration` tests, with tests/integration/conftest.py's `host` and
`scratch` fixtures: only domains, volumes and pools named enomalism-test-* that the test made
are ever removed).

Deadlines only bound waits; no test asserts how long something took.
"""

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_PASSWORD, POSTGRES_URL, fresh_postgres_database
from tests.integration.conftest import host, scratch  # noqa: F401  (fixtures for the qemu tests)
from tests.integration.provision_helpers import (
    FINAL,
    FeedServer,
    Pkg,
    build_package,
    feed_item,
    free_port,
    publish,
)

REPO = Path(__file__).resolve().parents[2]
ENOMALISM = REPO / ".venv" / "bin" / "enomalism"
TEST_URI = "test:///default"
QEMU_URI = "qemu:///system"
DEADLINE = 60.0
FAST_HASHES = {"ENOMALISM_ARGON2_TIME_COST": "1", "ENOMALISM_ARGON2_MEMORY_KIB": "1024",
               "ENOMALISM_ARGON2_PARALLELISM": "1"}


def wait_for(probe: Callable[[], Any], done: Callable[[Any], bool], what: str,
             timeout: float = DEADLINE, interval: float = 0.1) -> Any:
    """Call `probe` until `done(value)`; on time-out, say what was awaited and the last value."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}; "
                                 f"last seen: {value!r}")
        time.sleep(interval)


class Node:
    """One `enomalism serve` subprocess: launched, waited for, killed or stopped."""

    def __init__(self, cluster: "Cluster", name: str, hypervisors: tuple[str, ...],
                 env: dict[str, str]) -> None:
        self.cluster, self.name, self.hypervisors = cluster, name, hypervisors
        self.node_id = name
        self.data_dir = cluster.base / name
        self.log = cluster.base / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None
        self.port: int | None = None

    def launch(self) -> "Node":
        """Start the process (without waiting for it: several nodes start together)."""
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENOMALISM_")}
        env.update(FAST_HASHES)
        env.update({
            "ENOMALISM_FETCH_ALLOW": "127.0.0.1",  # the tests' feed servers
            "ENOMALISM_NODE_ID": self.node_id,
            "ENOMALISM_ADMIN_PASSWORD": self.cluster.password,
            "ENOMALISM_PACKAGES_DIR": str(self.cluster.packages_dir),
            **self.env,
        })
        args = [str(ENOMALISM), "serve", "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--database-url", self.cluster.url]
        for uri in self.hypervisors:
            args += ["--hypervisor", uri]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}",
                                   auth=("admin", self.cluster.password), timeout=60)
        return self

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self) -> "Node":
        """Until /healthz answers from this process (not whoever else got the port)."""
        bound = f"Uvicorn running on http://127.0.0.1:{self.port}"

        def health() -> int | None:
            if not self.alive():
                raise AssertionError(f"node {self.name} exited ({self.proc.returncode}): "
                                     f"{self.tail()}")
            if bound not in self.log.read_text(errors="replace"):
                return None
            try:
                return self.client.get("/healthz").status_code
            except httpx.TransportError:
                return None
        wait_for(health, lambda code: code == 200, f"node {self.name} to answer", timeout=120)
        return self

    def start(self) -> "Node":
        return self.launch().wait_ready()

    # -- HTTP ------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> dict:
        """A request that must succeed; a 503 (this node's own connection to the hypervisor
        still being opened) is tried again."""
        def attempt() -> httpx.Response:
            return self.client.request(method, path, **kw)
        r = wait_for(attempt, lambda r: r.status_code != 503,
                     f"{method} {path} on {self.name} to find its hypervisor connected")
        assert r.status_code == 200, f"{self.name}: {method} {path}: {r.text}"
        body = r.json()
        assert body.get("errno", 0) == 0, body
        return body

    def local_host(self) -> str:
        return next(h["uuid"] for h in self.ok("GET", "/rest/hosts/")["hosts"] if h["is_local"])

    def hypervisor(self, uri: str) -> dict:
        hvs = self.ok("GET", f"/rest/machine/{self.local_host()}/hypervisors/")["hypervisors"]
        return next(h for h in hvs if h["virt_url"] == uri)

    def tx(self, txid: str) -> dict:
        return self.ok("GET", f"/rest/transaction/{txid}/")

    def wait_tx(self, txid: str, until: Callable[[dict], bool] | None = None,
                timeout: float = 120.0) -> dict:
        return wait_for(lambda: self.tx(txid),
                        until or (lambda b: b["data"]["state"] in FINAL),
                        f"transaction {txid} (through {self.name})", timeout)

    def machine(self, uuid: str) -> dict:
        return self.ok("GET", f"/rest/machine/{uuid}/")

    # -- stopping --------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL to the node and everything it started: it dies without a word."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)

    def terminate(self) -> int:
        """SIGTERM, as a service manager stops it; waits for the exit, returns its code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"node {self.name} did not stop on SIGTERM: "
                                     f"{self.tail()}") from None
        return self.proc.returncode

    def close(self) -> None:
        if self.alive():
            try:
                self.terminate()
            except AssertionError:
                pass
        if self.client is not None:
            self.client.close()


class Cluster:
    """A fresh database, a shared packages directory and the nodes started on them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.url = fresh_postgres_database("multinode")
        self.packages_dir = base / "packages"
        self.packages_dir.mkdir()
        # one admin password for every node: the first node to start creates `admin` with it
        self.password = f"{ADMIN_PASSWORD}-{secrets.token_hex(8)}"
        self.engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        self.nodes: list[Node] = []

    def node(self, name: str, *, hypervisors: tuple[str, ...] = (TEST_URI,),
             **env: Any) -> Node:
        """A node (not started); `env`: ENOMALISM_* settings without the prefix, e.g.
        owner_lease=3 (ENOMALISM_OWNER_LEASE=3)."""
        n = Node(self, name, hypervisors,
                 {f"ENOMALISM_{k.upper()}": str(v) for k, v in env.items()})
        self.nodes.append(n)
        return n

    def start_together(self, *nodes: Node) -> None:
        for n in nodes:
            n.launch()
        for n in nodes:
            n.wait_ready()

    # -- the database, read directly -----------------------------------------------------

    def rows(self, sql: str, **params: Any) -> list[sa.Row]:
        with self.engine.connect() as c:
            return list(c.execute(sa.text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as c:
            return c.execute(sa.text(sql), params).scalar()

    def claimed_by(self, txid: str) -> str | None:
        return self.scalar("SELECT claimed_by FROM transactions WHERE uuid = :u", u=txid)

    def owner(self, uri: str) -> str | None:
        return self.scalar("SELECT owner_node FROM hypervisors WHERE virt_url = :u", u=uri)

    def wait_owner(self, uri: str, done: Callable[[str | None], bool], what: str,
                   timeout: float = DEADLINE) -> str | None:
        return wait_for(lambda: self.owner(uri), done, what, timeout)

    def package_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.packages_dir))
                      for p in self.packages_dir.rglob("*"))

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        self.engine.dispose()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh PostgreSQL database for the test's nodes, which are stopped at the end."""
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL: set ENOMALISM_TEST_POSTGRES_URL (make test starts one with "
                    "scripts/start-postgres.sh)")
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def qemu_nodes(scratch, nodes: Cluster) -> Iterator[Cluster]:  # noqa: ANN001, F811
    """`nodes`, stopped before `scratch` removes the domains and pool they worked on."""
    yield nodes
    nodes.close()


# -- packages on a feed server of the test's own ------------------------------------------------


def random_package(d: Path, name: str, kib: int = 256, virt_class: str = "kvm") -> Pkg:
    """A package with a raw disk of `kib` KiB of random bytes (it does not compress: its
    download streams past the feed server's gate)."""
    raw = d / f"{name}.raw"
    raw.write_bytes(os.urandom(kib * 1024))
    pkg = build_package(d / f"{name}.xvm2", raw, name=name, fmt="raw", virt_class=virt_class)
    raw.unlink()
    return pkg


def enclosure(name: str) -> str:
    return f"/p/{name}.xvm2"


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[FeedServer]:
    srv = FeedServer()
    srv.gate_after = 16 << 10
    try:
        yield srv
    finally:
        srv.close()


def serve_packages(srv: FeedServer, pkgs: list[Pkg]) -> str:
    """Publish the packages at /p/<name>.xvm2 in /feed.xml; returns the feed's URL."""
    return publish(srv, [feed_item(srv, p, enclosure(p.name)) for p in pkgs])


def gets(srv: FeedServer, path: str) -> int:
    """How many GETs of `path` the feed server answered."""
    return sum(1 for r in list(srv.requests) if r["path"].split("?", 1)[0] == path)
