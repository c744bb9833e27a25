"""Address management under concurrency: many clients leasing at the same moment, over real
HTTP (uvicorn on a loopback port, one httpx client per thread, all released by a barrier),
never get the same address. As many succeed as the ranges hold, the rest get the clear "no free
address" answer (409, errno 1301), and the database holds each address once. Also: many clients
reserving one given address (exactly one wins), reservations and releases interleaved, and two
servers on one database (the scale-out shape) leasing from the same network.

Provision requests leasing at the same moment are in test_networks.py (the test driver) and
tests/integration/test_provision_network.py (qemu:///system)."""

import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from enomalism.api.app import create_app
from enomalism.config import Settings
from enomalism.store.models import Lease
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES
from tests.fakehost import write_host
from tests.integration.provision_helpers import uvicorn_thread

AUTH = ("admin", ADMIN_PASSWORD)


class Server:
    """An app served by uvicorn in a thread; `client()` makes an httpx client for it."""

    def __init__(self, app, url: str) -> None:  # noqa: ANN001
        self.app, self.url = app, url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=AUTH, timeout=60)

    def ok(self, method: str, path: str, **kw) -> dict:
        with self.client() as c:
            r = c.request(method, path, **kw)
        assert r.status_code == 200, r.text
        assert r.json()["errno"] == 0, r.text
        return r.json()


def start(stack: ExitStack, data_dir: Path, uri: str) -> Server:
    settings = Settings(data_dir=data_dir, hypervisors=[uri], admin_password=ADMIN_PASSWORD,
                        database_url=None, **FAST_HASHES)
    app = create_app(settings)
    return Server(app, stack.enter_context(uvicorn_thread(app)))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("ipam")
    with ExitStack() as stack:
        yield start(stack, d / "data", write_host(d / "host.xml", []))


def network(srv: Server, name: str, ip: str, netmask: str, start_ip: str, end_ip: str) -> str:
    u = srv.ok("PUT", "/rest/networks/", data={"name": name, "bridge": f"br-{name}", "ip": ip,
                                               "netmask": netmask})["network"]["uuid"]
    srv.ok("POST", f"/rest/networks/{u}/iprange/", data={"start_ip": start_ip, "end_ip": end_ip})
    return u


def db_leases(app, net: str) -> list[str]:  # noqa: ANN001
    """The network's leased addresses as the database holds them."""
    with app.state.db.session(write=False) as s:
        return list(s.scalars(select(Lease.address).where(Lease.network_uuid == net)))


def at_once(workers: int, work: Callable[[httpx.Client, int], object],
            clients: Callable[[int], httpx.Client]) -> list:
    """Run work(client, i) in `workers` threads released together; returns their results
    (an exception a thread raised is raised here)."""
    barrier = threading.Barrier(workers)
    results: list = [None] * workers
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with clients(i) as c:
                barrier.wait(timeout=60)
                results[i] = work(c, i)
        except BaseException as e:  # noqa: BLE001 (handed to the test's thread)
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_concurrent_leases_never_share_an_address(server):
    """60 clients at once on a range of 25: 25 addresses handed out, each once."""
    net = network(server, "burst", "10.20.0.0", "255.255.255.0", "10.20.0.100", "10.20.0.124")
    answers = at_once(60, lambda c, _i: c.put(f"/rest/networks/{net}/leases/"),
                      lambda _i: server.client())
    ok = [r.json()["lease"] for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code != 200]
    assert len(ok) == 25 and len(refused) == 35
    for r in refused:
        body = r.json()
        assert (r.status_code, body["errno"]) == (409, 1301), r.text
        assert "no free address" in body["message"]
    addresses = [x["address"] for x in ok]
    assert sorted(addresses, key=ipaddress.ip_address) == [f"10.20.0.{i}" for i in range(100, 125)]
    assert len({x["mac"] for x in ok}) == 25
    stored = db_leases(server.app, net)
    assert sorted(stored) == sorted(addresses) and not [a for a, n in Counter(stored).items()
                                                        if n > 1]


def test_each_client_leases_until_refused(server):
    """8 clients each leasing in a loop until the network is full: every address of two ranges
    goes to exactly one of them, and each ends with the "no free address" answer."""
    net = network(server, "loop", "fd00:20::", "64", "fd00:20::10", "fd00:20::2f")
    server.ok("POST", f"/rest/networks/{net}/iprange/",
              data={"start_ip": "fd00:20::1:0", "end_ip": "fd00:20::1:f"})

    def lease_until_full(c: httpx.Client, _i: int) -> list[str]:
        got = []
        while True:
            r = c.post(f"/rest/networks/{net}/leases/", data={"note": "loop"})
            if r.status_code != 200:
                assert (r.status_code, r.json()["errno"]) == (409, 1301), r.text
                assert "no free address" in r.json()["message"]
                return got
            got.append(r.json()["lease"]["address"])

    per_client = at_once(8, lease_until_full, lambda _i: server.client())
    everything = [a for got in per_client for a in got]
    expected = [str(ipaddress.ip_address("fd00:20::10") + i) for i in range(32)] + \
        [str(ipaddress.ip_address("fd00:20::1:0") + i) for i in range(16)]
    assert sorted(everything) == sorted(expected)  # each address once, none lost
    assert sorted(db_leases(server.app, net)) == sorted(expected)


def test_one_address_reserved_by_many_at_once(server):
    net = network(server, "same", "10.21.0.0", "16", "10.21.1.0", "10.21.1.255")
    answers = at_once(30, lambda c, i: c.put(f"/rest/networks/{net}/leases/",
                                             data={"address": "10.21.1.7", "note": f"c{i}"}),
                      lambda _i: server.client())
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 1
    for r in answers:
        if r.status_code != 200:
            assert (r.status_code, r.json()["errno"]) == (409, 1300), r.text
            assert "already leased" in r.json()["message"]
    assert db_leases(server.app, net) == ["10.21.1.7"]
    with server.client() as c:
        (only,) = c.get(f"/rest/networks/{net}/leases/").json()["leases"]
    assert only["note"] == ok[0].json()["lease"]["note"]


def test_releases_and_leases_interleaved(server):
    """Clients releasing what they hold and leasing again, all at once, on a range just big
    enough: at every moment each address has one holder (the unique rows prove it), and every
    address a client ended with is leased to it in the database."""
    net = network(server, "churn", "10.22.0.0", "24", "10.22.0.10", "10.22.0.21")  # 12

    def churn(c: httpx.Client, i: int) -> list[str]:
        mine: list[str] = []
        for _round in range(6):
            while len(mine) < 2:
                r = c.put(f"/rest/networks/{net}/leases/", data={"note": f"client {i}"})
                assert r.status_code == 200, r.text  # 6 clients x 2 never exceed 12
                mine.append(r.json()["lease"]["address"])
            gone = mine.pop(0)
            r = c.delete(f"/rest/networks/{net}/leases/{gone}/")
            assert r.status_code == 200 and r.json()["lease"]["note"] == f"client {i}", r.text
        return mine

    kept = at_once(6, churn, lambda _i: server.client())
    held = [a for mine in kept for a in mine]
    assert len(held) == len(set(held)) == 6
    with server.client() as c:
        rows = c.get(f"/rest/networks/{net}/leases/").json()["leases"]
    assert sorted((x["address"], x["note"]) for x in rows) == \
        sorted((a, f"client {i}") for i, mine in enumerate(kept) for a in mine)


def test_two_servers_on_one_database(tmp_path):
    """Two servers sharing one database (as several servers behind a balancer would), clients
    on both at once: still each address once."""
    uri = write_host(tmp_path / "host.xml", [])
    with ExitStack() as stack:
        one = start(stack, tmp_path / "data", uri)
        two = start(stack, tmp_path / "data", uri)
        net = network(one, "shared", "10.23.0.0", "24", "10.23.0.2", "10.23.0.31")  # 30
        for s in (one, two):  # credentials verified once per server, not 40 times at once
            with s.client() as c:  # (password checks in flight are bounded: docs/access.md)
                assert c.get("/rest/networks/").status_code == 200
        answers = at_once(40, lambda c, _i: c.put(f"/rest/networks/{net}/leases/"),
                          lambda i: (one if i % 2 else two).client())
        ok = [r.json()["lease"]["address"] for r in answers if r.status_code == 200]
        assert len(ok) == len(set(ok)) == 30
        assert all((r.status_code, r.json()["errno"]) == (409, 1301)
                   for r in answers if r.status_code != 200)
        assert sorted(db_leases(one.app, net)) == sorted(ok)
        with two.client() as c:
            seen = [x["address"] for x in c.get(f"/rest/networks/{net}/leases/").json()["leases"]]
        assert sorted(seen) == sorted(ok)


def test_a_lost_race_takes_the_next_free_address(server, monkeypatch):
    """Where another server's transaction took the address between reading the free ones and
    inserting (PostgreSQL's snapshots allow it; SQLite's write lock does not), the unique row
    refuses the insert and the lease takes the next free address instead of failing."""
    from enomalism.services import networks

    net = network(server, "race", "10.24.0.0", "24", "10.24.0.10", "10.24.0.19")
    server.ok("PUT", f"/rest/networks/{net}/leases/", data={"address": "10.24.0.10"})
    real_free = networks._free
    stale = []

    def free_with_a_stale_first(ctx, n, held):  # noqa: ANN001, ANN202
        if not stale:  # the first look still sees 10.24.0.10 free
            stale.append(True)
            yield ipaddress.ip_address("10.24.0.10")
        yield from real_free(ctx, n, held)

    monkeypatch.setattr(networks, "_free", free_with_a_stale_first)
    got = server.ok("PUT", f"/rest/networks/{net}/leases/")["lease"]
    assert stale and got["address"] == "10.24.0.11"
    assert sorted(db_leases(server.app, net)) == ["10.24.0.10", "10.24.0.11"]
