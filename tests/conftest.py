"""Shared fixtures: servers on libvirt's test driver, with one or more fake hosts."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from enomalism.api.app import create_app
from enomalism.config import Settings
from tests.fakehost import FakeDomain, write_host

ADMIN_PASSWORD = "admin-test-password"


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
        settings = Settings(data_dir=data_dir or tmp_path / "data", hypervisors=list(uris),
                            admin_password=ADMIN_PASSWORD, database_url=None)
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
