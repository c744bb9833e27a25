"""Two API nodes on one database (docs/deployment.md), as behind a load balancer without sticky
sessions: a console ticket issued by one node opens the WebSocket on the other, once; and
failed logins spread over the nodes count together. Two real servers (uvicorn) in this
process on one database: SQLite here, PostgreSQL with ENOMALISM_TEST_DATABASE=postgresql.
The test driver opens no consoles, so a ticket that passes every check ends in 4500."""

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from enomalism.config import Settings
from enomalism.store.models import ConsoleTicket, LoginFailure, utcnow
from tests.api.accounts import new_user
from tests.api.test_consoles import Http, Server, closed, ticket
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, ON_POSTGRES, database_url
from tests.fakehost import FakeDomain, write_host


@dataclass
class Nodes:
    a: Server
    b: Server


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    d = tmp_path_factory.mktemp("console-nodes")
    uri = write_host(d / "host.xml", [FakeDomain("web", state="running")], [])
    url = database_url(d / "shared") if ON_POSTGRES else f"sqlite:///{d / 'shared.db'}"
    servers = []
    with ExitStack() as stack:
        for name in ("a", "b"):
            settings = Settings(data_dir=d / name, hypervisors=[uri], node_id=name,
                                admin_password=ADMIN_PASSWORD, database_url=url, **FAST_HASHES)
            node_url, app = stack.enter_context(running_server(settings))
            servers.append((node_url, app, Http(node_url)))
        api = servers[0][2]
        objs = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
        web = next(o["uuid"] for o in objs["machine_objs"] if o["name"] == "web")
        api.ok("POST", f"/rest/machine/{web}/actions/manage/")
        a, b = (Server(u, app, http, web, web) for u, app, http in servers)
        yield Nodes(a, b)


def test_a_ticket_from_one_node_opens_the_console_on_the_other_once(nodes: Nodes) -> None:
    t = ticket(nodes.a, nodes.a.web)
    code, msg = closed(nodes.b, t["url"])
    assert code == 4500, msg  # past every check on the other node: libvirt's turn
    code, msg = closed(nodes.a, t["url"])
    assert (code, msg["errno"]) == (4401, 1103) and "already used" in msg["reason"]


def test_two_nodes_racing_for_one_ticket_let_one_use_it(nodes: Nodes) -> None:
    for _ in range(5):
        assert sorted(race(nodes, ticket(nodes.b, nodes.b.web)["url"])) == [4401, 4500]


def race(nodes: Nodes, url: str) -> list[int]:
    """The close codes of one WebSocket to `url` on each node, opened at once."""
    codes: list[int] = []
    start = threading.Barrier(2)

    def use(node: Server) -> None:
        start.wait()
        codes.append(closed(node, url)[0])
    threads = [threading.Thread(target=use, args=(n,)) for n in (nodes.a, nodes.b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return codes


def test_expired_tickets_are_refused_anywhere_and_swept(nodes: Nodes) -> None:
    tickets = nodes.a.app.state.console_tickets  # type: ignore[attr-defined]

    def expired_ticket() -> dict:  # a ticket that lives no time at all: no clock waited on
        life, tickets.life = tickets.life, 0.0
        try:
            return ticket(nodes.a, nodes.a.web)
        finally:
            tickets.life = life
    code, msg = closed(nodes.b, expired_ticket()["url"])
    assert code == 4401 and "expired" in msg["reason"]
    expired_ticket()
    live = ticket(nodes.b, nodes.b.web)  # issuing sweeps what expired, whoever issued it
    db = nodes.b.app.state.db  # type: ignore[attr-defined]
    with db.session(write=False) as s:
        left = s.scalars(select(ConsoleTicket.expires_at)).all()
    assert len(left) == 1 and left[0] > utcnow()
    assert closed(nodes.a, live["url"])[0] == 4500


def test_failed_logins_spread_over_nodes_count_together(nodes: Nodes) -> None:
    alice = new_user(nodes.a.api)
    wrong = (alice.name, "not-her-password")
    for node in (nodes.a, nodes.b, nodes.a, nodes.b, nodes.a):
        r = node.api.request("GET", "/rest/users/", auth=wrong)
        assert (r.status_code, r.json()["errno"]) == (401, 1100), r.text
    for node in (nodes.b, nodes.a):  # the sixth, wherever it lands; even the right password
        r = node.api.request("GET", "/rest/users/", auth=alice.auth)
        assert (r.status_code, r.json()["errno"]) == (429, 1102), r.text
        assert 0 < int(r.headers["retry-after"]) <= 60
    nodes.b.app.state.throttle.succeeded(alice.name, "127.0.0.1")  # type: ignore[attr-defined]
    assert nodes.a.api.request("GET", "/rest/users/", auth=alice.auth).status_code == 200
    db = nodes.a.app.state.db  # type: ignore[attr-defined]
    with db.session(write=False) as s:  # only a hash of name and address is kept
        keys = s.scalars(select(LoginFailure.key)).all()
    assert all(alice.name not in k for k in keys)
