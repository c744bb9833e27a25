"""Remote hosts over libvirt's TCP transport, against the local libvirtd listening on
127.0.0.1:16509 (`ENOMALISM_LIBVIRT_TCP=1 scripts/start-libvirt.sh`; `make test` sets it).

The server (a real uvicorn in a thread, real HTTP) is started on a fake host of libvirt's test
driver, never on qemu:///system: a qemu+tcp and a qemu:///system hypervisor on the same machine
see the same domains, and the server keeps a domain on the hypervisor that reported it first.
The remote host is then registered through /rest/hosts/ as an operator would.

Links that drop, hang or never answer are made with the test's own TCP plumbing (relay.py): a
forwarder in front of libvirtd that can be cut, refused or frozen, and a socket that accepts and
never answers. libvirtd itself is never stopped. Deadlines only bound waits; the tests assert
the order in which things happened (an answer came while a hung connection was still held),
never how long anything took."""

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from enomalism.config import Settings
from enomalism.virt import connection
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.fakehost import FakeDomain, write_host
from tests.integration.conftest import DEADLINE, Host, Scratch, unique, wait_for
from tests.integration.relay import LIBVIRTD_TCP, BlackHole, Relay, in_thread, libvirtd_listens

pytestmark = pytest.mark.integration

TCP_URI = "qemu+tcp://127.0.0.1/system"
RECONNECT_DEADLINE = 90.0  # the back-off between attempts grows to 30 s
# keepalive: a probe after 5 s of silence, dead after 3 unanswered; libvirtd's own side gives
# up after 5 (its default). Either way well within this.
KEEPALIVE_DEADLINE = 90.0
AUTH = ("admin", ADMIN_PASSWORD)


@pytest.fixture(scope="module", autouse=True)
def libvirtd_on_tcp() -> None:
    if not libvirtd_listens():
        pytest.skip(f"libvirtd does not listen on {LIBVIRTD_TCP[0]}:{LIBVIRTD_TCP[1]} (TCP); "
                    "start it with `ENOMALISM_LIBVIRT_TCP=1 scripts/start-libvirt.sh` on a "
                    "machine where libvirtd is not yet running (`make test` does)")


@dataclass
class Server:
    url: str
    app: Any
    http: httpx.Client
    other_hv: str  # the test-driver hypervisor the server was started on
    other_vm: str  # a running, managed VM on it

    def client(self) -> httpx.Client:
        """A client of its own, for a request made from another thread."""
        return httpx.Client(base_url=self.url, auth=AUTH, timeout=300)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.http.request(method, path, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("errno", 0) == 0, body
        return body

    def machine(self, uuid: str) -> dict:
        return self.ok("GET", f"/rest/machine/{uuid}/")

    def state(self, uuid: str) -> str:
        return self.machine(uuid)["info"]["state"]

    def wait_state(self, uuid: str, state: str, timeout: float = DEADLINE) -> dict:
        return wait_for(lambda: self.machine(uuid), lambda m: m["info"]["state"] == state,
                        f"machine {uuid} to be {state} in the API", timeout)

    def hypervisor(self, hv: str) -> dict:
        return self.ok("GET", f"/rest/hypervisor/{hv}/")["hypervisor"]

    def wait_hypervisor(self, hv: str, status: str, timeout: float = DEADLINE) -> dict:
        return wait_for(lambda: self.hypervisor(hv), lambda h: h["status"] == status,
                        f"hypervisor {hv} to be {status}", timeout)

    def register(self, uri: str) -> str:
        """Register a host with its hypervisor at `uri`; returns the hypervisor's UUID."""
        body = self.ok("PUT", "/rest/hosts/", data={"name": unique("host"), "virt_url": uri})
        (hv,) = body["hypervisors"]
        assert hv["virt_url"] == uri and hv["status"] == "connected", hv
        return hv["uuid"]

    def define(self, hv: str, scratch: Scratch) -> tuple[str, str]:
        """PUT a new VM on the remote hypervisor, on a new volume; returns (uuid, name)."""
        vol = scratch.volume()
        name = scratch.domain_name()
        body = self.ok("PUT", "/rest/machines/",
                       data={"xmldesc": scratch.domain_xml(name, vol.path()), "hvmuuid": hv})
        scratch.track(body["machine"])
        assert body["machine_obj"]["name"] == name
        return body["machine"], name

    def action(self, uuid: str, action: str, client: httpx.Client | None = None
               ) -> httpx.Response:
        return (client or self.http).post(f"/rest/machine/{uuid}/actions/{action}/")


@contextmanager
def serve(tmp_path: Path) -> Iterator[Server]:
    """A real HTTP server on one fake test-driver host holding a running VM (managed)."""
    other_uri = write_host(tmp_path / "other.xml", [FakeDomain("other-vm", state="running")])
    data = tmp_path / "data"
    settings = Settings(data_dir=data, hypervisors=[other_uri], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data), **FAST_HASHES)
    with running_server(settings) as (url, app), \
            httpx.Client(base_url=url, auth=AUTH, timeout=300) as http:
        assert app.state.registry.wait_idle(30)
        host = next(h["uuid"] for h in http.get("/rest/hosts/").json()["hosts"] if h["is_local"])
        (hv,) = http.get(f"/rest/machine/{host}/hypervisors/").json()["hypervisors"]
        objs = http.get("/rest/machines/", params={"detail": "true", "kind": "vm"}).json()
        vm = next(o["uuid"] for o in objs["machine_objs"] if o["name"] == "other-vm")
        s = Server(url, app, http, hv["uuid"], vm)
        s.ok("POST", f"/rest/machine/{vm}/actions/manage/")
        yield s


@pytest.fixture
def server(tmp_path: Path, scratch: Scratch) -> Iterator[Server]:
    """Stops before `scratch` cleans up (the fixture order does that)."""
    with serve(tmp_path) as s:
        yield s


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay()
    yield r
    r.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    b = BlackHole()
    yield b
    b.close()


def virsh(uri: str, *args: str) -> None:
    subprocess.run(["virsh", "-c", uri, *args], check=True, capture_output=True, timeout=120)


def check(server: Server, host: Host, uuid: str, state: str) -> None:
    """The state as the API and as libvirt itself (its own qemu:///system connection) see it."""
    assert host.state(uuid) == state, "libvirt disagrees"
    m = server.machine(uuid)
    assert m["info"]["state"] == state and m["machine_obj"]["state"] == state, m


def unreachable(r: httpx.Response) -> None:
    assert r.status_code == 503 and r.json()["errno"] == 1501, r.text
    assert r.json()["message"]


# -- the whole life of a VM over qemu+tcp ----------------------------------------------------

def test_vm_lifecycle_over_tcp(server, scratch, host):
    hv = server.register(TCP_URI)
    h = server.hypervisor(hv)
    assert h["hostname"] and h["libvirt_version"], h
    uuid, name = server.define(hv, scratch)
    check(server, host, uuid, "shutoff")
    assert server.machine(uuid)["info"]["hypervisor_status"] == "connected"

    for action, state in (("create", "running"), ("suspend", "paused"), ("resume", "running"),
                          ("poweroff", "shutoff"), ("create", "running")):
        assert server.action(uuid, action).status_code == 200
        check(server, host, uuid, state)

    # Out of band, over a TCP connection of its own: the server learns it from the events that
    # come over its TCP connection (its only connection to this libvirtd).
    virsh(TCP_URI, "destroy", name)
    server.wait_state(uuid, "shutoff")
    check(server, host, uuid, "shutoff")

    assert server.action(uuid, "totaldelete").status_code == 200
    assert host.domain(uuid) is None
    assert server.http.get(f"/rest/machine/{uuid}/").status_code == 404
    assert uuid not in server.ok("GET", "/rest/machines/")["machines"]


def test_tcp_and_unix_socket_of_one_libvirtd_do_not_share_domains(server, scratch, host):
    """A second URI to the same libvirtd (qemu:///system beside qemu+tcp) is a second
    hypervisor seeing the same domains: each domain stays on the hypervisor that reported it
    first, and the other's resyncs and events never move or duplicate it."""
    tcp = server.register(TCP_URI)
    uuid, name = server.define(tcp, scratch)
    unix = server.register("qemu:///system")
    assert server.app.state.registry.wait_idle(30)
    assert server.machine(uuid)["machine_obj"]["parent"] == tcp
    assert server.action(uuid, "create").status_code == 200
    check(server, host, uuid, "running")
    virsh("qemu:///system", "suspend", name)  # both connections get the event
    server.wait_state(uuid, "paused")
    assert server.app.state.registry.wait_idle(30)
    assert server.machine(uuid)["machine_obj"]["parent"] == tcp
    objs = server.ok("GET", "/rest/machines/", params={"detail": "true"})["machine_objs"]
    assert [o["uuid"] for o in objs].count(uuid) == 1
    assert unix != tcp
    assert server.action(uuid, "poweroff").status_code == 200
    check(server, host, uuid, "shutoff")


# -- a link that drops, and one that hangs -------------------------------------------------

def test_dropped_link_is_unreachable_then_reconnects_and_resyncs(server, scratch, host, relay):
    hv = server.register(relay.uri())
    uuid, name = server.define(hv, scratch)
    assert server.action(uuid, "create").status_code == 200
    check(server, host, uuid, "running")

    relay.refuse()
    relay.cut()
    h = server.wait_hypervisor(hv, "disconnected")
    assert h["last_error"], h
    unreachable(server.action(uuid, "suspend"))
    m = server.machine(uuid)  # reads answer from the inventory
    assert m["info"]["hypervisor_status"] == "disconnected" and m["info"]["state"] == "running"
    assert uuid in server.ok("GET", "/rest/machines/")["machines"]

    virsh("qemu:///system", "suspend", name)  # changed while the server cannot see it
    relay.accept()
    server.wait_hypervisor(hv, "connected", RECONNECT_DEADLINE)
    server.wait_state(uuid, "paused", RECONNECT_DEADLINE)  # the resync after reconnecting
    check(server, host, uuid, "paused")

    virsh("qemu:///system", "resume", name)  # events flow on the new connection
    server.wait_state(uuid, "running")
    assert server.action(uuid, "poweroff").status_code == 200
    check(server, host, uuid, "shutoff")


def test_hung_link_is_declared_dead_by_keepalive(server, scratch, host, relay, monkeypatch):
    monkeypatch.setattr(connection, "KEEPALIVE", (1, 2))  # dead after ~3 s, not ~20
    hv = server.register(relay.uri())
    uuid, _ = server.define(hv, scratch)
    relay.freeze()  # every socket stays open; nothing passes any more
    h = server.wait_hypervisor(hv, "disconnected", KEEPALIVE_DEADLINE)
    assert "keepalive" in h["last_error"] or "stopped answering" in h["last_error"], h
    unreachable(server.action(uuid, "create"))

    relay.cut()
    relay.thaw()
    server.wait_hypervisor(hv, "connected", RECONNECT_DEADLINE)
    assert server.action(uuid, "create").status_code == 200
    check(server, host, uuid, "running")


# -- one unreachable host never slows requests about the others ---------------------------
#
# Each test holds a hang (a connect or a call that gets no answer) for as long as it likes:
# keepalive and OPEN_TIMEOUT are raised where they would end it, and the relay keeps even
# libvirtd's own close from the server while frozen. Requests about the other hypervisor must
# all answer while the hang is still held; only then does the test release it.

# On SQLite every write takes the one database write lock (BEGIN IMMEDIATE): no path may hold
# it across a libvirt call that can hang. An action checks and commits before it calls libvirt,
# a host's registration connects before its first write, and resyncs read libvirt first and
# write only what no one changed meanwhile. PostgreSQL locks rows, not the database.


def others_answer(server: Server) -> None:
    """Requests about the other hypervisor: a listing, a GET, an action (a write) and back."""
    with server.client() as c:
        r = c.get("/rest/machines/")
        assert r.status_code == 200 and server.other_vm in r.json()["machines"], r.text
        r = c.get(f"/rest/machine/{server.other_vm}/")
        assert r.status_code == 200, r.text
        for action, state in (("suspend", "paused"), ("resume", "running")):
            r = server.action(server.other_vm, action, c)
            assert r.status_code == 200, r.text
            assert c.get(f"/rest/machine/{server.other_vm}/").json()["info"]["state"] == state


def answered_while(held: Callable[[], bool], fn: Callable[[], object]) -> None:
    """Run `fn` (requests about other hypervisors) while a hang is held: it must have finished
    before the test releases the hang, and the hang must still be held then."""
    _, out = in_thread(fn)
    out["done"].wait(DEADLINE)  # bounds the wait; on SQLite the writer gives up after 30 s
    assert held(), "the hang ended before the test released it: the test proves nothing"
    assert out["done"].is_set(), "requests about another hypervisor waited on the hung one"
    if "error" in out:
        raise out["error"]


def test_host_that_never_answers_a_reconnect_does_not_slow_the_others(server, scratch, relay):
    hv = server.register(relay.uri())
    uuid, _ = server.define(hv, scratch)
    relay.cut()
    relay.freeze()  # the reconnect is accepted and forwarded, and nothing ever comes back
    server.wait_hypervisor(hv, "disconnected")
    wait_for(relay.open_pairs, lambda pairs: len(pairs) == 1, "the reconnect to be held")
    (pending,) = relay.open_pairs()

    def about_both() -> None:
        unreachable(server.action(uuid, "create"))  # no waiting on the pending connect
        assert server.machine(uuid)["info"]["hypervisor_status"] == "disconnected"
        others_answer(server)

    answered_while(lambda: not pending.client_gone.is_set(), about_both)
    relay.thaw()
    server.wait_hypervisor(hv, "connected", RECONNECT_DEADLINE)
    assert server.action(uuid, "create").status_code == 200


def test_registering_a_host_that_never_answers_times_out(server, black_hole, monkeypatch):
    """The registration waits OPEN_TIMEOUT for the connect, then answers 503 and stores
    nothing (no host, no hypervisor)."""
    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 2.0)  # not 15 s of waiting
    r = server.http.put("/rest/hosts/", data={"name": unique("host"),
                                             "virt_url": black_hole.uri()})
    unreachable(r)
    assert f"did not answer within {connection.OPEN_TIMEOUT:.0f} s" in r.json()["message"], r.text
    hosts = server.ok("GET", "/rest/hosts/")["hosts"]
    assert [h["is_local"] for h in hosts] == [True]


def test_registering_a_host_that_never_answers_does_not_slow_the_others(server, black_hole,
                                                                       monkeypatch):
    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 3600.0)  # the test releases it
    _, reg = in_thread(lambda: server.client().put(
        "/rest/hosts/", data={"name": unique("host"), "virt_url": black_hole.uri()}))
    try:
        assert black_hole.wait_held(1)
        answered_while(lambda: black_hole.held() == 1 and not reg["done"].is_set(),
                       lambda: others_answer(server))
    finally:
        black_hole.release()
    assert reg["done"].wait(DEADLINE)
    unreachable(reg["result"])
    assert len(server.ok("GET", "/rest/hosts/")["hosts"]) == 1


def test_host_that_hangs_during_an_action_does_not_block_the_others(server, scratch, relay,
                                                                   monkeypatch):
    monkeypatch.setattr(connection, "KEEPALIVE", (3600, 1))  # the test ends the hang
    hv = server.register(relay.uri())
    uuid, _ = server.define(hv, scratch)
    assert server.action(uuid, "create").status_code == 200
    (pair,) = relay.open_pairs()
    relay.freeze()
    _, hung = in_thread(lambda: server.action(uuid, "suspend", server.client()))
    try:
        wait_for(lambda: pair.held["up"], bool, "the suspend to be sent into the frozen link")
        answered_while(lambda: not hung["done"].is_set() and not pair.client_gone.is_set(),
                       lambda: others_answer(server))
    finally:
        relay.cut()  # the hung call fails at once: 503
    assert hung["done"].wait(DEADLINE)
    unreachable(hung["result"])
    relay.thaw()
    server.wait_hypervisor(hv, "connected", RECONNECT_DEADLINE)


def test_events_of_other_hypervisors_are_not_held_up_by_a_hung_host(server, scratch, relay,
                                                                    monkeypatch):
    """An event comes from a host whose link then hangs: the worker reading that domain waits
    for an answer that never comes. Events of the other hypervisors, and requests about them,
    must still go through."""
    monkeypatch.setattr(connection, "KEEPALIVE", (3600, 1))
    hv = server.register(relay.uri())
    uuid, name = server.define(hv, scratch)
    assert server.action(uuid, "create").status_code == 200
    (pair,) = relay.open_pairs()
    relay.freeze(up=True, down=False)
    virsh("qemu:///system", "suspend", name)  # the event comes down; the read goes nowhere
    wait_for(lambda: pair.held["up"], bool, "the worker's read to be sent into the frozen link")
    relay.freeze()  # now nothing comes down either (not even libvirtd giving up on us)
    other = server.app.state.registry.connection(server.other_hv).virconnect

    def other_events_and_requests() -> None:
        dom = other.lookupByUUIDString(server.other_vm)
        dom.suspend()  # out of band: only the event tells the inventory
        server.wait_state(server.other_vm, "paused")
        dom.resume()
        server.wait_state(server.other_vm, "running")
        others_answer(server)

    try:
        answered_while(lambda: not pair.client_gone.is_set() and pair.held["up"] > 0,
                       other_events_and_requests)
        assert server.state(uuid) == "running"  # its own event is still being read
    finally:
        relay.cut()
    relay.thaw()
    server.wait_hypervisor(hv, "connected", RECONNECT_DEADLINE)
    server.wait_state(uuid, "paused")  # the resync after reconnecting
