"""GET /rest/events/ (issue 17): a client of the stream hears what it may read, as it happens,
including changes made behind the server's back; reconnecting with Last-Event-ID gets exactly
what was missed, or `resync` past the retention window.

One real server (uvicorn in a thread: the TestClient buffers whole answers) on a test-driver
host for the module; each test works on domains of its own. Every read of the stream is
bounded (`Listener.next`), so a broken stream fails the test rather than hanging it."""

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select

from enomalism.client import Client
from enomalism.config import Settings
from enomalism.jobs.runner import JobContext
from enomalism.services import events, transactions
from enomalism.services.context import Context, Principal
from enomalism.store.models import Event, User
from tests.api.accounts import grant, new_user
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url, job_kind
from tests.fakehost import domain_xml, write_host

ADMIN = ("admin", ADMIN_PASSWORD)
WAIT = 20.0  # seconds any one awaited event may take before the test fails
GATES: dict[str, threading.Event] = {}


@job_kind("test.event_steps")
def _steps(job: JobContext) -> dict:
    """Four steps of progress, waiting on a gate before the last."""
    for i in range(4):
        if i == 3:
            gate = GATES[job.params["gate"]]
            while not gate.wait(0.05):
                job.check_cancelled()
        job.progress(25 * (i + 1), f"step {i}")
    return {"steps": 4}


class Server:
    def __init__(self, url: str, app) -> None:  # noqa: ANN001
        self.url, self.app = url, app
        self.http = httpx.Client(base_url=url, timeout=30)

    def ok(self, method: str, path: str, auth: tuple[str, str] = ADMIN, **kw) -> dict:
        r = self.http.request(method, path, auth=auth, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    @property
    def conn(self):  # noqa: ANN201
        """The server's own libvirt connection: what is done there is done behind its back."""
        registry = self.app.state.registry
        return registry.connection(registry.links()[0][0]).virconnect

    def new_vm(self, name: str, state: str = "running") -> str:
        dom = self.conn.defineXML(domain_xml(name))
        if state == "running":
            dom.create()
        self.app.state.registry.wait_idle(30)
        return dom.UUIDString()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("events")
    settings = Settings(data_dir=d / "data", hypervisors=[write_host(d / "h.xml", [])],
                        admin_password=ADMIN_PASSWORD, database_url=database_url(d / "data"),
                        events_heartbeat=1.0, **FAST_HASHES)
    with running_server(settings) as (url, app):
        app.state.registry.wait_idle(30)
        s = Server(url, app)
        yield s
        s.http.close()


class Listener:
    """A client of the stream in a thread of its own, its raw blocks in a queue."""

    def __init__(self, server: Server, auth: tuple[str, str] | None = ADMIN, *,
                 params: dict | None = None, headers: dict | None = None) -> None:
        self.blocks: queue.Queue = queue.Queue()
        self.opened = threading.Event()
        self.status: int | None = None
        self.seen: list[dict] = []  # every event read so far
        self._stop = False
        self._args = (server.url, auth, params or {}, headers or {})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        _open.append(self)
        assert self.opened.wait(WAIT), "the stream did not open"

    def _read(self) -> None:
        url, auth, params, headers = self._args
        try:
            with httpx.stream("GET", f"{url}/rest/events/", auth=auth, params=params,
                              headers=headers, timeout=httpx.Timeout(10, read=WAIT)) as r:
                self.status = r.status_code
                self.opened.set()
                block: dict = {}
                for line in r.iter_lines():
                    if self._stop:
                        return
                    if line == "":
                        self.blocks.put(block)
                        block = {}
                    elif line.startswith(":"):
                        block["comment"] = line[1:].strip()
                    else:
                        name, _, value = line.partition(": ")
                        block[name] = value
        except httpx.HTTPError as e:
            self.blocks.put({"error": repr(e)})
        finally:
            self.opened.set()

    def next(self, match: Callable[[dict], bool], timeout: float = WAIT) -> dict:
        """The next event for which `match(event)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            try:
                block = self.blocks.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no matching event within {timeout} s; got {skipped}")
            if time.monotonic() > deadline:
                pytest.fail(f"no matching event within {timeout} s; got {skipped}")
            skipped.append(block)
            assert "error" not in block, block["error"]
            if "data" in block:
                event = json.loads(block["data"])
                event["_raw"] = block
                self.seen.append(event)
                if match(event):
                    return event

    def events(self) -> list[dict]:
        """Every event received so far (without waiting)."""
        found = []
        while True:
            try:
                block = self.blocks.get_nowait()
            except queue.Empty:
                return found
            if "data" in block:
                found.append(json.loads(block["data"]))
                self.seen.append(found[-1])

    def close(self) -> None:
        """Let go of the stream (at its next line: a heartbeat comes every second)."""
        self._stop = True
        self._thread.join(timeout=WAIT)


_open: list[Listener] = []


@pytest.fixture(autouse=True)
def _close_listeners() -> Iterator[None]:
    """A stream left open holds the server's shutdown: every test's are closed after it."""
    yield
    while _open:
        _open.pop().close()


def about(uuid: str, type_: str | None = None, **fields: object) -> Callable[[dict], bool]:
    def match(e: dict) -> bool:
        return e["object"].get("uuid") == uuid and (type_ is None or e["type"] == type_) \
            and all(e["object"].get(k) == v for k, v in fields.items())
    return match


# -- what a client hears -------------------------------------------------------------------

def test_a_change_behind_the_servers_back_arrives_as_an_event(server, own):
    uuid = server.new_vm(own)
    listener = Listener(server, params={"type": "machine"})
    server.conn.lookupByUUIDString(uuid).suspend()  # libvirt directly: not through the API
    e = listener.next(about(uuid, "machine.state"))
    assert e["object"] == {"uuid": uuid, "name": own, "kind": "vm", "state": "paused",
                           "previous": "running"}
    assert e["_raw"]["id"] == str(e["id"]) and e["_raw"]["event"] == "machine.state"
    assert e["time"].endswith("+00:00")
    assert len(e["_raw"]["data"]) < 1024  # one change is small: no lists resent
    server.conn.lookupByUUIDString(uuid).destroy()
    e = listener.next(about(uuid))
    assert (e["type"], e["object"]["state"]) == ("machine.state", "shutoff")
    listener.close()


def test_no_one_listening_nothing_is_read_and_the_next_listener_starts_at_the_newest(
        server, own):
    """With no subscriber a commit does not wake the hub and nothing is read (a read per
    change for nobody cost every action its CPU); the next subscriber starts from the newest
    event: what happened before it is not sent live, what happens after is."""
    hub: events.Hub = server.app.state.events
    deadline = time.monotonic() + WAIT
    while hub._subs and time.monotonic() < deadline:  # the other tests' streams let go
        time.sleep(0.05)
    assert not hub._subs
    cursor = hub.cursor
    uuid = server.new_vm(own)  # machine.created, machine.state, audit entries: written
    time.sleep(1.0)  # two of the hub's polls
    with server.app.state.db.session(write=False) as s:
        newest = s.scalar(select(func.max(Event.id)))
    assert newest > cursor and hub.cursor == cursor  # nothing read
    listener = Listener(server, params={"type": "machine"})
    assert int(listener.blocks.get(timeout=WAIT)["id"]) >= newest  # where it starts
    server.conn.lookupByUUIDString(uuid).suspend()
    e = listener.next(about(uuid))  # the first event of this machine it hears
    assert (e["type"], e["object"]["state"]) == ("machine.state", "paused")
    listener.close()


def test_inventory_changes_through_the_api(server, own):
    uuid = server.new_vm(own, state="shutoff")
    listener = Listener(server, params={"type": ["machine.renamed", "machine.state"]})
    server.ok("POST", f"/rest/machine/{uuid}/actions/manage/")
    server.ok("POST", f"/rest/machine/{uuid}/", data={"action": "rename", "name": f"{own}-b"})
    e = listener.next(about(uuid, "machine.renamed"))
    assert (e["object"]["name"], e["object"]["previous"]) == (f"{own}-b", own)
    server.ok("POST", f"/rest/machine/{uuid}/actions/create/")  # the quick path (raw SQL)
    e = listener.next(about(uuid, "machine.state"))
    assert (e["object"]["state"], e["object"]["previous"]) == ("running", "shutoff")
    assert all(ev["type"] in ("machine.renamed", "machine.state")
               for ev in listener.events())  # the filter holds
    listener.close()


def _admin(server: Server, s) -> Context:  # noqa: ANN001
    admin = s.scalar(select(User).where(User.username == "admin"))
    return Context(db=s, registry=server.app.state.registry, jobs=server.app.state.runner,
                   user=Principal(admin.uuid, "admin", True))


def test_a_transactions_progress_and_end(server, own):
    GATES[own] = threading.Event()
    listener = Listener(server, params={"type": "transaction"})
    with server.app.state.db.session() as s:
        txid = transactions.enqueue(_admin(server, s), "test.event_steps", target=None,
                                    params={"gate": own}).uuid
    first = listener.next(about(txid, "transaction.progress"))
    assert first["object"]["kind"] == "test.event_steps"
    # (steps read together are told once: queued, running, 25, 50 may come as one)
    moved = listener.next(lambda e: about(txid, "transaction.progress", state="running")(e)
                          and e["object"]["completion"] >= 75)
    assert moved["object"]["completion"] == 75 and moved["id"] >= first["id"]
    GATES[own].set()
    end = listener.next(about(txid, "transaction.end"))
    assert (end["object"]["state"], end["object"]["completion"]) == ("done", 100)
    assert [e for e in listener.events() if e["object"].get("uuid") == txid] == []
    listener.close()


def test_progress_read_together_is_told_once(server, own):
    """Fifty steps of one transaction committed at once reach a client as one event."""
    GATES[own] = threading.Event()
    listener = Listener(server, params={"type": "transaction"})
    with server.app.state.db.session() as s:
        txid = transactions.enqueue(_admin(server, s), "test.event_steps", target=None,
                                    params={"gate": own}).uuid
        s.add_all(events.row("transaction.progress", txid, None, uuid=txid, completion=pct)
                  for pct in range(1, 51))
        s.info["events"] = True
    listener.next(about(txid, "transaction.progress"))
    GATES[own].set()
    listener.next(about(txid, "transaction.end"))
    told = [x["object"]["completion"] for x in listener.seen
            if about(txid, "transaction.progress")(x)]
    # the newest of the batch (50, or the job's own start read with it), never the steps
    # (the job itself then reports 25, 50, 75)
    assert told and not set(told) & (set(range(1, 50)) - {25}) and len(told) < 10
    listener.close()


def test_reconnecting_with_last_event_id_gets_exactly_what_was_missed(server, own):
    uuid = server.new_vm(own)
    dom = server.conn.lookupByUUIDString(uuid)
    listener = Listener(server, params={"type": "machine.state"})
    dom.suspend()
    seen = listener.next(about(uuid, state="paused"))
    listener.close()
    # missed while away: two changes of this machine (each read by the server before the
    # next: a change undone before the server reads the domain is no change to it)
    dom.resume()
    server.app.state.registry.wait_idle(30)
    dom.suspend()
    server.app.state.registry.wait_idle(30)
    back = Listener(server, params={"type": "machine.state"},
                    headers={"Last-Event-ID": seen["_raw"]["id"]})
    resumed = back.next(about(uuid))
    paused = back.next(about(uuid))
    assert (resumed["object"]["state"], paused["object"]["state"]) == ("running", "paused")
    assert seen["id"] < resumed["id"] < paused["id"]
    dom.resume()  # live again, after the replay, and once only
    live = back.next(about(uuid))
    assert live["object"]["state"] == "running"
    server.app.state.registry.wait_idle(30)
    dom.suspend()
    assert back.next(about(uuid))["object"]["state"] == "paused"
    back.close()


def test_a_detailed_list_says_from_which_event_a_stream_misses_nothing(server, own):
    """The list's `X-Last-Event-ID`: read before its rows, so a stream opened with it later
    gets every change made after the list was read (the dashboard asks for its first rows
    before it opens the stream)."""
    uuid = server.new_vm(own)
    r = server.http.get("/rest/machines/", params={"detail": 1, "search": own}, auth=ADMIN)
    assert r.status_code == 200 and r.json()["machine_objs"][0]["state"] == "running"
    cursor = r.headers["X-Last-Event-ID"]
    with server.app.state.db.session(write=False) as s:  # nothing changed since: the newest
        assert int(cursor) == s.scalar(select(func.max(Event.id)))
    plain = server.http.get("/rest/machines/", auth=ADMIN)
    assert "X-Last-Event-ID" not in plain.headers  # the ids alone: nothing to follow
    server.conn.lookupByUUIDString(uuid).suspend()  # after the read, before the stream
    server.app.state.registry.wait_idle(30)
    later = Listener(server, params={"type": "machine.state"},
                     headers={"Last-Event-ID": cursor})
    missed = later.next(about(uuid))
    assert missed["object"]["state"] == "paused" and missed["id"] > int(cursor)
    later.close()


def test_an_id_past_the_retention_window_gets_resync(server, own):
    uuid = server.new_vm(own)
    dom = server.conn.lookupByUUIDString(uuid)
    listener = Listener(server, params={"type": "machine.state"})
    dom.suspend()
    old = listener.next(about(uuid))["id"]
    for _ in range(2):
        dom.resume()
        server.app.state.registry.wait_idle(30)
        dom.suspend()
        server.app.state.registry.wait_idle(30)
    listener.next(lambda e: about(uuid)(e) and e["id"] > old + 2)
    listener.close()
    events.prune(server.app.state.db, retention=0, keep=1)  # the window is past
    with server.app.state.db.session(write=False) as s:
        assert s.scalar(select(Event.id).order_by(Event.id).limit(1)) > old + 1
    back = Listener(server, params={"type": "machine.state"},
                    headers={"Last-Event-ID": str(old)})
    e = back.next(lambda e: True)
    assert e["type"] == "resync" and "retention window" in e["object"]["reason"]
    dom.resume()  # and the stream goes on from now
    assert back.next(about(uuid))["object"]["state"] == "running"
    back.close()


def test_a_user_without_read_hears_nothing_of_a_machine(server, own):
    hidden, shown = server.new_vm(own), server.new_vm(f"{own}-shown")
    user = new_user(_Api(server))
    grant(_Api(server), shown, "read", user=user.uuid)
    listener = Listener(server, user.auth)
    server.conn.lookupByUUIDString(hidden).suspend()
    server.conn.lookupByUUIDString(shown).suspend()  # after it: a barrier
    e = listener.next(about(shown, "machine.state"))
    before = listener.events()
    assert e["object"]["state"] == "paused"
    assert not [x for x in before if x["object"].get("uuid") == hidden]
    assert not [x for x in before if x["type"] == "audit"]  # audit is for administrators
    grant(_Api(server), hidden, "read", user=user.uuid)
    server.conn.lookupByUUIDString(hidden).resume()
    assert listener.next(about(hidden, "machine.state"))["object"]["state"] == "running"
    listener.close()


def test_administrators_hear_audit_entries_and_others_do_not(server, own):
    uuid = server.new_vm(own, state="shutoff")
    user = new_user(_Api(server))
    admin = Listener(server, params={"type": "audit"})
    other = Listener(server, user.auth)
    server.ok("POST", f"/rest/machine/{uuid}/actions/manage/")
    e = admin.next(lambda e: e["object"].get("object_uuid") == uuid)
    assert (e["type"], e["object"]["action"], e["object"]["actor"]) == \
        ("audit", "machine.manage", "admin")
    grant(_Api(server), uuid, "read", user=user.uuid)
    server.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    other.next(about(uuid, "machine.state"))  # after the audit entries: a barrier
    assert not [x for x in other.events() if x["type"] == "audit"]
    admin.close()
    other.close()


def test_an_idle_stream_gets_heartbeats(server):
    listener = Listener(server, params={"type": "hypervisor.down"})
    got = []
    while len(got) < 2:
        block = listener.blocks.get(timeout=WAIT)
        if block.get("comment") == "keepalive":
            got.append(block)
    assert all(int(b["id"]) >= 0 for b in got)  # a position to reconnect from
    listener.close()


# -- authentication and bad input ----------------------------------------------------------

def test_a_token_in_the_query_string_and_nothing_else_without_credentials(server, own):
    r = server.http.get("/rest/events/")
    assert (r.status_code, r.json()["errno"]) == (401, 1100)
    r = server.http.get("/rest/events/", params={"access_token": "enm_wrong"})
    assert (r.status_code, r.json()["errno"]) == (401, 1100)
    token = server.ok("PUT", "/rest/tokens/", data={"name": own})["secret"]
    uuid = server.new_vm(own)
    listener = Listener(server, None, params={"access_token": token, "type": "machine"})
    assert listener.status == 200
    server.conn.lookupByUUIDString(uuid).suspend()
    assert listener.next(about(uuid))["object"]["state"] == "paused"
    listener.close()


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}])
def test_cross_site_requests_are_refused(server, headers):
    r = server.http.get("/rest/events/", auth=ADMIN, headers=headers)
    assert (r.status_code, r.json()["errno"]) == (403, 1136)


@pytest.mark.parametrize("params, headers, errno, says", [
    ({"type": "machine.exploded"}, {}, 1036, "unknown event type 'machine.exploded'"),
    ({"type": "<script>"}, {}, 1036, "machine.state"),
    ({}, {"Last-Event-ID": "12; DROP TABLE events"}, 1037, "is not an event id"),
    ({"last_event_id": "-1"}, {}, 1037, "is not an event id"),
    ({}, {"Last-Event-ID": "9" * 40}, 1037, "is not an event id"),
])
def test_bad_input_is_refused_clearly(server, params, headers, errno, says):
    r = server.http.get("/rest/events/", auth=ADMIN, params=params, headers=headers)
    assert (r.status_code, r.json()["errno"]) == (400, errno)
    assert says in r.json()["message"]


# -- the Python client ---------------------------------------------------------------------

def test_the_client_iterates_and_reconnects_with_last_event_id(server, own):
    uuid = server.new_vm(own)
    dom = server.conn.lookupByUUIDString(uuid)
    with server.app.state.db.session(write=False) as s:
        now = s.scalar(select(func.max(Event.id)))  # from here: no race with the opening
    with Client(server.url, *ADMIN) as c:
        stream = c.events(types=["machine.state"], last_event_id=now, idle=WAIT)
        result: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: result.put(next(
            e for e in stream if e["object"].get("uuid") == uuid)), daemon=True).start()
        dom.suspend()
        first = result.get(timeout=WAIT)
        assert first["object"]["state"] == "paused"
    dom.resume()
    server.app.state.registry.wait_idle(30)
    with Client(server.url, *ADMIN) as c:
        replayed = c.events(types=["machine"], last_event_id=first["id"], idle=WAIT)
        e = next(e for e in replayed if e["object"].get("uuid") == uuid)
        assert (e["type"], e["object"]["state"]) == ("machine.state", "running")


def test_client_wait_follows_the_stream(server, own):
    GATES[own] = threading.Event()
    with server.app.state.db.session() as s:
        txid = transactions.enqueue(_admin(server, s), "test.event_steps", target=None,
                                    params={"gate": own}).uuid
    seen = []

    def progress(tx) -> None:  # noqa: ANN001
        seen.append(tx.completion)
        if tx.completion >= 75:
            GATES[own].set()
    with Client(server.url, *ADMIN) as c:
        tx = c.wait(txid, progress=progress, timeout=WAIT, interval=30)
    assert tx.state == "done" and seen[-1] == 100
    # with a 30 s polling interval, only the stream could follow it this soon
    assert 75 <= max(seen[:-1])


class _Api:
    """What tests/api/accounts.py's helpers call, on the real server."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def ok(self, method: str, path: str, *, auth: object = "admin", **kw) -> dict:
        return self.server.ok(method, path, auth=ADMIN if auth == "admin" else auth, **kw)


def test_the_cli_prints_a_line_per_event():
    from enomalism.cli.events import line

    shown = line({"id": 7, "type": "machine.state", "time": "2026-12-06T05:00:00.000+00:00",
                  "object": {"uuid": "u-1", "name": "web", "state": "paused",
                             "previous": "running", "kind": "vm"}})
    assert shown == ("2026-12-06T05:00:00.000+00:00  machine.state  web  state=paused "
                     "previous=running kind=vm")
    assert "resync" in line({"type": "resync", "object": {"reason": "too old"}})
