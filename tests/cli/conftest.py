"""The CLI tests' world: one real server (uvicorn on a free loopback port, in a thread of the
test process) on two fake libvirt test-driver hosts, driven through typer's CliRunner.

Tests that change things make objects with names of their own (`own`); every test runs with a
configuration file of its own (ENOMALISM_CONFIG) and no ENOMALISM_* connection variables, so
nothing of the person running the tests is read or written."""

import hashlib
import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main
import typer.testing
import uvicorn
from typer.testing import CliRunner

from enomalism.api.app import create_app
from enomalism.cli.main import app
from enomalism.config import Settings
from enomalism.feeds import archive
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES
from tests.fakehost import FakeDomain, domain_xml, write_host
from tests.integration.provision_helpers import (
    FeedServer,
    Pkg,
    build_package,
    feed_item,
    publish,
    sha256_of,
)

ALICE, ALICE_PASSWORD = "alice", "alice-test-password"
PREFIX_A = "abcd1111-0000-4000-8000-000000000001"
PREFIX_B = "abcd2222-0000-4000-8000-000000000002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, server: uvicorn.Server, thread: threading.Thread) -> None:
    for _ in range(600):  # a bounded number of tries, not a deadline
        if not thread.is_alive():
            raise RuntimeError("the server thread ended before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.should_exit = True
    raise RuntimeError(f"{url}/healthz never answered")


@contextmanager
def running_server(settings: Settings) -> Iterator[tuple[str, Any]]:
    """uvicorn serving the app in a thread; yields its URL and the app."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    application = create_app(settings)
    srv = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for_health(url, srv, thread)
    try:
        yield url, application
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


@dataclass
class Result:
    code: int
    out: str  # stdout: the command's result
    err: str  # stderr: errors, progress, prompts
    exception: BaseException | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def all(self) -> str:
        return self.out + self.err


@dataclass
class Cloud:
    url: str
    dir: Path
    app: Any
    h1: str  # hypervisor UUIDs
    h2: str
    h1_uri: str
    h2_uri: str
    host: str  # the local host's UUID
    names: dict[str, str] = field(default_factory=dict)  # VM name -> UUID (the unique ones)
    api: httpx.Client | None = None

    def ok(self, method: str, path: str, auth: tuple[str, str] | None = None, **kw) -> dict:
        r = self.api.request(method, path, auth=auth or ("admin", ADMIN_PASSWORD), **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def machine(self, uuid: str) -> dict:
        return self.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]

    def exists(self, uuid: str) -> bool:
        return self.api.get(f"/rest/machine/{uuid}/", auth=("admin", ADMIN_PASSWORD)
                            ).status_code == 200

    def new_vm(self, name: str, state: str = "shutoff", hv: str | None = None) -> str:
        """A managed VM of the test's own, defined through the API, brought to `state`."""
        uuid = self.ok("PUT", "/rest/machines/", json={
            "xmldesc": domain_xml(name), "hvmuuid": hv or self.h1})["machine"]
        if state in ("running", "paused"):
            self.ok("POST", f"/rest/machine/{uuid}/actions/create/")
        if state == "paused":
            self.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")
        return uuid

    def run(self, *args: str, user: str | None = "admin", password: str | None = ADMIN_PASSWORD,
            input: str | None = None, env: dict[str, str] | None = None,
            server: str | None = None) -> Result:
        """`enomalism ARGS` against this server, as `user` (None: no credentials given)."""
        return invoke(*args, input=input, env={
            "ENOMALISM_URL": server or self.url,
            **({"ENOMALISM_USER": user} if user else {}),
            **({"ENOMALISM_PASSWORD": password} if user and password is not None else {}),
            **(env or {})})

    def as_alice(self, *args: str, **kw) -> Result:
        return self.run(*args, user=ALICE, password=ALICE_PASSWORD, **kw)


# typer builds the click command tree from the functions on every CliRunner.invoke (a quarter
# of a second for this app); build it once for all the tests.
_command = typer.main.get_command(app)
_get_command = typer.testing._get_command
typer.testing._get_command = lambda a: _command if a is app else _get_command(a)


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    r = CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "250", **(env or {})})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Result(r.exit_code, r.stdout, r.stderr, r.exception)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of the test's own; no connection settings from the environment."""
    for var in ("ENOMALISM_URL", "ENOMALISM_USER", "ENOMALISM_PASSWORD", "ENOMALISM_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "home" / "config.toml"
    monkeypatch.setenv("ENOMALISM_CONFIG", str(cfg))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return cfg


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One server for every CLI test: the local host with two fake hypervisors. h1 holds web
    (running), db (paused), idle (shut off), all managed; twin; and pa and pb, whose UUIDs
    share the prefix 'abcd', unmanaged. h2 holds another twin. The user alice is no
    administrator."""
    d = tmp_path_factory.mktemp("cli")
    h1_uri = write_host(d / "h1.xml", [
        FakeDomain("web", state="running"), FakeDomain("db", state="paused"),
        FakeDomain("idle", state="shutoff"), FakeDomain("twin"),
        FakeDomain("pa", uuid=PREFIX_A), FakeDomain("pb", uuid=PREFIX_B)])
    h2_uri = write_host(d / "h2.xml", [FakeDomain("twin", state="shutoff")])
    settings = Settings(data_dir=d / "data", hypervisors=[h1_uri, h2_uri],
                        admin_password=ADMIN_PASSWORD, database_url=None, **FAST_HASHES)
    with running_server(settings) as (url, application), httpx.Client(base_url=url) as api:
        assert application.state.registry.wait_idle(30)
        c = Cloud(url=url, dir=d, app=application, h1="", h2="", h1_uri=h1_uri,
                  h2_uri=h2_uri, host="", api=api)
        hosts = c.ok("GET", "/rest/hosts/")["hosts"]
        c.host = next(h["uuid"] for h in hosts if h["is_local"])
        hvs = {h["virt_url"]: h["uuid"] for h in
               c.ok("GET", f"/rest/machine/{c.host}/hypervisors/")["hypervisors"]}
        c.h1, c.h2 = hvs[h1_uri], hvs[h2_uri]
        objs = c.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
        for o in objs["machine_objs"]:
            if o["name"] != "twin":
                c.names[o["name"]] = o["uuid"]
        for name in ("web", "db", "idle"):
            c.ok("POST", f"/rest/machine/{c.names[name]}/actions/manage/")
        c.ok("POST", "/rest/user/create/", json={"username": ALICE, "password": ALICE_PASSWORD})
        yield c


_names = iter(range(1, 1_000_000))


@pytest.fixture
def own(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names of the test's own: own("vm") -> 'vm-test-something-7'."""
    import re

    stem = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:30].strip("-")
    n = next(_names)
    return lambda kind="x": f"{kind}-{stem}-{n}"


def dead_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


# -- packages and a feed ---------------------------------------------------------------

MiB = 1 << 20


def diskless(dest: Path, name: str) -> Pkg:
    """A package of a test-driver domain without disks: provisionable on the test driver."""
    m = archive.Manifest(name=name, description=f"{name}, for the CLI tests", version="1",
                         virt_class="test", arch="x86_64", disks=[])
    written = archive.write_package(dest, domain_xml=domain_xml("template"), manifest=m,
                                    disk_sources={}, fsync=False)
    return Pkg(dest, name, written, sha256_of(dest), dest.stat().st_size, "test", "x86_64")


def raw(size: int, seed: bytes = b"") -> Callable[[], io.BytesIO]:
    data = (hashlib.sha256(seed).digest() * (size // 32 + 1))[:size] if seed else \
        os.urandom(size)
    return lambda: io.BytesIO(data)


@pytest.fixture(scope="session")
def feed(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The feed server, its packages, and the package UUIDs once /main.xml is added."""
    d = tmp_path_factory.mktemp("feed")
    pkgs = {
        "tiny": diskless(d / "tiny.xvm2", "tiny-cli"),
        "spare": diskless(d / "spare.xvm2", "spare-cli"),
        "disky": build_package(d / "disky.xvm2", raw(64 << 10, b"d"), name="disky-cli",
                               fmt="raw", virt_class="test"),
        "kvm": build_package(d / "kvm.xvm2", raw(64 << 10, b"k"), name="kvm-cli", fmt="raw"),
        "slow": build_package(d / "slow.xvm2", raw(4 * MiB), name="slow-cli", fmt="raw",
                              virt_class="test", compression="gzip"),
    }
    srv = FeedServer()
    try:
        url = publish(srv, [feed_item(srv, p, f"/p/{k}.xvm2") for k, p in pkgs.items()],
                      "/main.xml")
        publish(srv, [feed_item(srv, pkgs["tiny"], "/p/tiny.xvm2", guid="other-tiny")],
                "/other.xml", title="another feed")
        body = cloud.ok("PUT", "/rest/vmfeed/", json={"url": url})
        ids = {p["name"]: p["uuid"] for p in body["packages"]}
        yield {"srv": srv, "pkgs": pkgs, "url": url, "repo": body["uuid"],
               "ids": {k: ids[p.name] for k, p in pkgs.items()}}
    finally:
        srv.close()


def package_state(cloud: Cloud, uuid: str) -> str:
    return cloud.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"]
