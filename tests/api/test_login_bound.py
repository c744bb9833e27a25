"""While the server's password verifications are all taken (a spray of user names), a login
that needs one waits its turn for a bounded time and is then refused with 503 errno 1142 and
Retry-After, without counting as a failed login; a credential in the cache and an API token
need no verification and are answered at once; once a slot frees, logins succeed again."""

import anyio
import pytest

from tests.api.accounts import PASSWORD
from tests.conftest import expect_error


@pytest.fixture
def bounded_api(make_api, make_host, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("ENOMALISM_LOGIN_SLOTS", "1")
    monkeypatch.setenv("ENOMALISM_LOGIN_WAIT_SECONDS", "0.2")
    with make_api(make_host("h")) as api:
        yield api


class Spray:
    """Holds the server's verification slots from other addresses, in the app's event loop."""

    def __init__(self, api, sources: list[str]) -> None:  # noqa: ANN001
        self.portal, self.gate, self.sources = api.client.portal, api.app.state.logins, sources

    def __enter__(self) -> "Spray":
        self.release = self.portal.call(anyio.Event)
        self.futures = []
        for source in self.sources:
            held = self.portal.call(anyio.Event)
            self.futures.append(self.portal.start_task_soon(self._hold, source, held))
            self.portal.call(held.wait)
        return self

    async def _hold(self, source: str, held: anyio.Event) -> None:
        async with self.gate.admit(source):
            held.set()
            await self.release.wait()

    def __exit__(self, *exc: object) -> None:
        self.portal.call(self.release.set)
        for f in self.futures:
            f.result(timeout=10)


def test_a_full_server_refuses_new_logins_but_not_known_ones(bounded_api):
    api = bounded_api
    api.ok("POST", "/rest/user/create/", data={"username": "bob", "password": PASSWORD})
    token = api.ok("PUT", "/rest/tokens/", data={"name": "t"})["secret"]
    api.ok("GET", "/rest/machines/")  # the admin's credential is in the cache
    with Spray(api, ["198.51.100.1"]):
        r = api.get("/rest/machines/", auth=("bob", PASSWORD))
        expect_error(r, 503, 1142)
        assert r.headers["retry-after"] == "1"
        api.ok("GET", "/rest/machines/")  # cached: no verification needed
        api.ok("GET", "/rest/machines/", auth=None, headers={"Authorization": f"Bearer {token}"})
    assert api.app.state.throttle.pending() == 0  # a refusal is not a failed login
    api.ok("GET", "/rest/machines/", auth=("bob", PASSWORD))
