"""Console tickets and what a console WebSocket refuses at its upgrade (issue 17, item 5;
docs/consoles.md): tickets single use, expiring, bound to user, machine and kind; the Origin
and the user's permission checked at the upgrade; each refusal a `closed` message and a close
code, and an audit entry. One real server (uvicorn) on a test-driver host for the module; the
test driver opens no consoles, so a request that passes every check ends in 4500 (libvirt).
The consoles themselves, on a real guest: tests/integration/test_consoles.py."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from enomalism.config import Settings
from enomalism.store.models import AuditEntry
from enomalism.virt.console import Graphics, graphics_of, ssh_command
from tests.api.accounts import PASSWORD, Account, grant, new_user
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.fakehost import FakeDomain, write_host

ADMIN = ("admin", ADMIN_PASSWORD)


class Http:
    """What tests/api/accounts.py needs of an API: `ok`."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def request(self, method: str, path: str, auth: object = "admin", **kw) -> httpx.Response:
        return self.http.request(method, path, auth=ADMIN if auth == "admin" else auth, **kw)

    def ok(self, method: str, path: str, auth: object = "admin", **kw) -> dict:
        r = self.request(method, path, auth=auth, **kw)
        assert r.status_code == 200, r.text
        return r.json()


@dataclass
class Server:
    url: str
    app: object
    api: Http
    web: str  # a running machine's UUID
    db_vm: str  # another machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("consoles")
    uri = write_host(d / "host.xml", [FakeDomain("web", state="running"),
                                      FakeDomain("db", state="running")], [])
    settings = Settings(data_dir=d / "data", hypervisors=[uri], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(d / "data"), **FAST_HASHES)
    with running_server(settings) as (url, app):
        api = Http(url)
        objs = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
        uuids = {o["name"]: o["uuid"] for o in objs["machine_objs"]}
        for u in uuids.values():
            api.ok("POST", f"/rest/machine/{u}/actions/manage/")
        yield Server(url, app, api, uuids["web"], uuids["db"])


def ticket(s: Server, uuid: str, kind: str = "serial", auth: object = "admin") -> dict:
    return s.api.ok("POST", f"/rest/machine/{uuid}/console/", auth=auth, data={"kind": kind})


def closed(s: Server, path: str, **kw) -> tuple[int, dict]:
    """Open the WebSocket at `path`; the close code and the `closed` message the server
    sent before closing it."""
    url = "ws://" + s.url.split("://", 1)[1] + path
    last: dict = {}
    with connect(url, open_timeout=10, **kw) as ws:
        try:
            while True:
                frame = ws.recv(timeout=10)
                if isinstance(frame, str):
                    last = json.loads(frame)
        except ConnectionClosed as e:
            return e.rcvd.code if e.rcvd else 1006, last
    raise AssertionError("unreachable")


def control_user(s: Server) -> Account:
    user = new_user(s.api)
    grant(s.api, s.web, "control", user=user.uuid)
    return user


def test_a_ticket_is_bound_to_user_machine_and_kind_and_needs_control(server: Server) -> None:
    body = ticket(server, server.web)
    assert set(body) == {"ticket", "url", "expires", "errno", "message"}
    assert body["url"] == f"/rest/machine/{server.web}/console/serial/?ticket={body['ticket']}"
    assert 0 < body["expires"] <= 30
    reader = new_user(server.api)
    grant(server.api, server.web, "read", user=reader.uuid)
    r = server.api.request("POST", f"/rest/machine/{server.web}/console/", auth=reader.auth,
                           data={"kind": "serial"})
    assert (r.status_code, r.json()["errno"]) == (403, 1101)
    r = server.api.request("POST", f"/rest/machine/{server.db_vm}/console/", auth=reader.auth,
                           data={"kind": "vnc"})
    assert (r.status_code, r.json()["errno"]) == (404, 1200)  # may not even read it
    for data, errno in (({}, 1001), ({"kind": "spice"}, 1000)):
        r = server.api.request("POST", f"/rest/machine/{server.web}/console/", data=data)
        assert (r.status_code, r.json()["errno"]) == (400, errno), r.text


def test_a_good_ticket_passes_every_check_once(server: Server) -> None:
    t = ticket(server, server.web)
    code, msg = closed(server, t["url"])
    assert code == 4500, msg  # past the checks: the test driver has no console to open
    assert msg["type"] == "closed" and "not supported" in msg["reason"]
    code, msg = closed(server, t["url"])  # used
    assert (code, msg["errno"]) == (4401, 1103)
    assert "already used" in msg["reason"]


def test_bad_expired_and_misdirected_tickets_are_refused(server: Server) -> None:
    web = f"/rest/machine/{server.web}/console"
    assert closed(server, f"{web}/serial/?ticket=nonsense")[0] == 4401
    assert closed(server, f"{web}/serial/")[0] == 4401  # no ticket, no credentials
    # for another machine, another kind
    t = ticket(server, server.db_vm)
    code, msg = closed(server, f"{web}/serial/?ticket={t['ticket']}")
    assert (code, msg["errno"]) == (4401, 1103) and "another machine" in msg["reason"]
    t = ticket(server, server.web, "vnc")
    assert closed(server, f"{web}/serial/?ticket={t['ticket']}")[0] == 4401
    # expired (a ticket that lives no time at all: no clock is waited on)
    tickets = server.app.state.console_tickets  # type: ignore[attr-defined]
    life, tickets.life = tickets.life, 0.0
    try:
        t = ticket(server, server.web)
    finally:
        tickets.life = life
    code, msg = closed(server, t["url"])
    assert code == 4401 and "expired" in msg["reason"]


def test_a_ticket_is_refused_with_another_user_s_credentials(server: Server) -> None:
    alice, bob = control_user(server), control_user(server)
    t = ticket(server, server.web, auth=alice.auth)
    basic = httpx.BasicAuth(*bob.auth)._auth_header
    code, msg = closed(server, t["url"], additional_headers={"Authorization": basic})
    assert code == 4401 and "another user" in msg["reason"]
    t = ticket(server, server.web, auth=alice.auth)
    basic = httpx.BasicAuth(*alice.auth)._auth_header
    assert closed(server, t["url"], additional_headers={"Authorization": basic})[0] == 4500


def test_the_permission_is_checked_again_at_the_upgrade(server: Server) -> None:
    alice = control_user(server)
    t = ticket(server, server.web, auth=alice.auth)
    server.api.ok("DELETE", f"/rest/permissions/{server.web}/",
                  data={"permission": "control", "user": alice.uuid})
    code, msg = closed(server, t["url"])
    assert (code, msg["errno"]) == (4404, 1200)  # nothing left: she may not even read it
    grant(server.api, server.web, "read", user=alice.uuid)
    basic = httpx.BasicAuth(*alice.auth)._auth_header
    code, msg = closed(server, f"/rest/machine/{server.web}/console/vnc/",
                       additional_headers={"Authorization": basic})
    assert (code, msg["errno"]) == (4403, 1101)


def test_a_console_from_a_page_of_another_site_is_refused(server: Server) -> None:
    t = ticket(server, server.web)
    code, msg = closed(server, t["url"], origin="https://evil.example")
    assert (code, msg["errno"]) == (4403, 1136)
    own = server.url  # the server's own pages pass
    t = ticket(server, server.web)
    assert closed(server, t["url"], origin=own)[0] == 4500


def test_a_token_may_come_as_a_subprotocol_and_binary_is_accepted(server: Server) -> None:
    alice = control_user(server)
    secret = server.api.ok("PUT", "/rest/tokens/", auth=alice.auth,
                           data={"name": "console"})["secret"]
    url = "ws://" + server.url.split("://", 1)[1] + \
        f"/rest/machine/{server.web}/console/serial/"
    with connect(url, subprotocols=["binary", f"enomalism.token.{secret}"],
                 open_timeout=10) as ws:
        assert ws.subprotocol == "binary"  # never the token
        with pytest.raises(ConnectionClosed) as e:
            while True:
                ws.recv(timeout=10)
        assert e.value.rcvd.code == 4500  # authenticated and authorised
    code, _ = closed(server, f"/rest/machine/{server.web}/console/serial/",
                     subprotocols=["enomalism.token.wrong"])
    assert code == 4401


def test_unknown_kinds_and_machines_answer_4404(server: Server) -> None:
    basic = {"Authorization": httpx.BasicAuth(*ADMIN)._auth_header}
    assert closed(server, f"/rest/machine/{server.web}/console/spice/",
                  additional_headers=basic)[0] == 4404
    assert closed(server, "/rest/machine/00000000-0000-0000-0000-000000000000/console/vnc",
                  additional_headers=basic)[0] == 4404


def test_refused_consoles_are_in_the_audit_log(server: Server) -> None:
    before = _entries(server)
    closed(server, f"/rest/machine/{server.web}/console/serial/?ticket=nonsense")
    new = [e for i, e in _entries(server).items() if i not in before]
    assert [(e.action, e.errno, e.detail["kind"]) for e in new] == \
        [("machine.console", 1103, "serial")]


def _entries(server: Server) -> dict[int, AuditEntry]:
    with server.app.state.db.session(write=False) as s:  # type: ignore[attr-defined]
        return {e.id: e for e in s.scalars(select(AuditEntry).where(
            AuditEntry.action == "machine.console"))}


def test_a_remote_display_is_reached_through_the_hosts_ssh_transport() -> None:
    xml = ("<domain><devices><graphics type='vnc' socket='/run/libvirt/qemu/vnc-1.sock'>"
           "<listen type='socket' socket='/run/libvirt/qemu/vnc-1.sock'/></graphics>"
           "</devices></domain>")
    gfx = graphics_of(xml)
    assert gfx == Graphics("/run/libvirt/qemu/vnc-1.sock", "127.0.0.1", None)
    cmd = ssh_command("qemu+ssh://ops@h1:2222/system?keyfile=/k/id", gfx)
    assert cmd[-2:] == ["h1", "nc -U /run/libvirt/qemu/vnc-1.sock"]
    assert ["-p", "2222"] == cmd[cmd.index("-p"):cmd.index("-p") + 2]
    assert "ops" in cmd and "/k/id" in cmd
    assert "StrictHostKeyChecking=no" not in cmd  # checked unless the URI says otherwise
    cmd = ssh_command("qemu+ssh://h1/system?no_verify=1", gfx)
    assert cmd[cmd.index("StrictHostKeyChecking=no") - 1] == "-o"
    cmd = ssh_command("qemu+libssh://h1/system?known_hosts=/k/kh&known_hosts_verify=auto", gfx)
    assert "UserKnownHostsFile=/k/kh" in cmd and "StrictHostKeyChecking=accept-new" in cmd
    port = Graphics(None, "127.0.0.1", 5901)
    assert ssh_command("qemu+ssh://h1/system", port)[-1] == "nc 127.0.0.1 5901"
    from enomalism.errors import ConsoleUnavailable

    with pytest.raises(ConsoleUnavailable, match="TLS|tls"):
        ssh_command("qemu+tls://h1/system", gfx)
    assert PASSWORD  # (accounts' password: the users above log in with it)
