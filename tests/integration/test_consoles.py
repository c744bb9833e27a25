"""Consoles on a real guest (issue 17, items 3 to 5): the tiny guest (tests/guest) boots under
TCG with a pty serial port and a VNC display on a unix socket only; one guest and one real
server (uvicorn) for the module. Through the WebSockets, a command typed into the serial
console is answered by the guest's shell, the VNC display answers the RFB handshake and sends
a frame, a second serial viewer is refused or takes over (and the first is told), and every
session is in the audit log with its duration."""

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import libvirt
import pytest
from sqlalchemy import select

from enomalism.cli import console as term
from enomalism.client import Client
from enomalism.client.console import Console, ConsoleClosed
from enomalism.config import Settings
from enomalism.store.models import AuditEntry
from tests.api.accounts import PASSWORD, grant, new_user
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.guest import Serial
from tests.integration.conftest import URI, Host, Scratch, wait_for
from tests.integration.relay import Relay

pytestmark = [pytest.mark.integration, pytest.mark.guest]
ADMIN = ("admin", ADMIN_PASSWORD)
WAIT = 60.0  # seconds one awaited answer may take (TCG on a loaded machine) before failing


def guest_xml(name: str, disk: Path, log: Path) -> str:
    """The tiny guest under TCG: its serial port a pty (what virDomainOpenConsole needs),
    also logged to `log` for the boot markers; VNC on a unix socket, no network address."""
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        "<features><acpi/><apic/></features><on_poweroff>destroy</on_poweroff><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        f"<serial type='pty'><log file='{log}' append='on'/><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console>"
        "<graphics type='vnc'><listen type='socket'/></graphics>"
        "<video><model type='vga'/></video><memballoon model='none'/></devices></domain>")


@dataclass
class Guest:
    url: str
    app: object
    uuid: str
    serial: Serial
    settings: Settings

    def client(self, auth: tuple[str, str] = ADMIN) -> Client:
        return Client(self.url, *auth)


@pytest.fixture(scope="module")
def guest(host: Host, tiny_guest: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Guest]:
    scratch = Scratch(host)
    d = tmp_path_factory.mktemp("consoles")
    settings = Settings(data_dir=d / "data", hypervisors=[URI], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(d / "data"), console_ping=0.5, **FAST_HASHES)
    try:
        with running_server(settings) as (url, app):
            pool = scratch.pool
            disk = Path(scratch.dir) / "tiny.qcow2"
            shutil.copyfile(tiny_guest, disk)
            os.chmod(disk, 0o644)
            pool.refresh(0)
            log = Path(scratch.dir) / "serial.log"
            http = httpx.Client(base_url=url, auth=ADMIN, timeout=60)
            host_uuid = next(h["uuid"] for h in http.get("/rest/hosts/").json()["hosts"]
                             if h["is_local"])
            hv = next(h["uuid"] for h in http.get(
                f"/rest/machine/{host_uuid}/hypervisors/").json()["hypervisors"]
                if h["virt_url"] == URI)
            r = http.put("/rest/machines/", data={
                "xmldesc": guest_xml(scratch.domain_name(), disk, log), "hvmuuid": hv})
            assert r.status_code == 200, r.text
            uuid = r.json()["machine"]
            scratch.track(uuid)
            r = http.post(f"/rest/machine/{uuid}/actions/create/")
            assert r.status_code == 200, r.text
            serial = Serial(log)
            serial.wait("GUEST-READY", timeout=180)
            yield Guest(url, app, uuid, serial, settings)
    finally:
        problems = scratch.cleanup()
        assert not problems, problems


def read_until(console: Console, wanted: bytes, timeout: float = WAIT) -> bytes:
    """What the console sends until `wanted` appears in it."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {wanted!r}; the console sent {seen[-500:]!r}")
        try:
            seen += console.recv(timeout=min(left, 1.0))
        except TimeoutError:
            continue
    return seen


def shell(console: Console, command: str, answer: bytes) -> bytes:
    console.send(command.encode() + b"\r")
    return read_until(console, answer)


def test_typing_into_the_serial_console_gets_the_shell_s_answer(guest: Guest) -> None:
    with guest.client() as c, c.machines.console(guest.uuid) as con:
        # the guest computes the answer: its text is not in what was typed (the echo)
        out = shell(con, "echo $((6*7))-ANSWER", b"42-ANSWER")
        assert b"$((6*7))-ANSWER" in out  # the terminal echoed the keys


def test_the_vnc_websocket_answers_the_rfb_handshake_and_sends_a_frame(guest: Guest) -> None:
    with guest.client() as c, c.machines.console(guest.uuid, "vnc") as con:
        assert read_exactly(con, 12) == b"RFB 003.008\n"
        con.send(b"RFB 003.008\n")
        count = read_exactly(con, 1)[0]
        types = read_exactly(con, count)
        assert 1 in types, types  # None: libvirt opened the display with skip-auth
        con.send(b"\x01")
        assert read_exactly(con, 4) == b"\0\0\0\0"  # SecurityResult: OK
        con.send(b"\x01")  # ClientInit: shared
        init = read_exactly(con, 24)
        width, height = int.from_bytes(init[0:2]), int.from_bytes(init[2:4])
        assert width > 0 and height > 0
        read_exactly(con, int.from_bytes(init[20:24]))  # the desktop's name
        con.send(b"\x03\x00" + b"\0\0\0\0" + width.to_bytes(2) + height.to_bytes(2))
        assert read_exactly(con, 1) == b"\x00"  # FramebufferUpdate


_buffers: dict[int, bytes] = {}


def read_exactly(con: Console, n: int) -> bytes:
    """n bytes of the RFB stream (frames need not follow its messages' edges)."""
    buf = _buffers.get(id(con), b"")
    while len(buf) < n:
        buf += con.recv(timeout=WAIT)
    _buffers[id(con)] = buf[n:]
    return buf[:n]


def test_a_second_serial_viewer_is_refused_or_takes_over_and_the_first_is_told(
        guest: Guest) -> None:
    with guest.client() as admin:
        bob = new_user_api(guest)
        with admin.machines.console(guest.uuid) as first:
            shell(first, "echo FIRST-$((1+1))", b"FIRST-2")
            with guest.client(bob) as c, pytest.raises(ConsoleClosed) as refused:
                c.machines.console(guest.uuid).recv(timeout=WAIT)
            assert refused.value.code == 4409
            assert "force" in str(refused.value)
            shell(first, "echo STILL-$((2+2))", b"STILL-4")  # the first viewer kept it
            with guest.client(bob) as c, c.machines.console(guest.uuid, force=True) as second:
                with pytest.raises(ConsoleClosed) as taken:
                    read_until(first, b"never printed")
                assert (taken.value.code, taken.value.taken_by) == (4409, bob[0])
                shell(second, "echo SECOND-$((3+3))", b"SECOND-6")


def new_user_api(guest: Guest) -> tuple[str, str]:
    """A user holding `control` on the guest (through the API)."""
    class Http:
        def __init__(self) -> None:
            self.http = httpx.Client(base_url=guest.url, auth=ADMIN, timeout=60)

        def ok(self, method: str, path: str, *, data: dict, auth: object = "admin") -> dict:
            r = self.http.request(method, path, data=data,
                                  auth=ADMIN if auth == "admin" else auth)
            assert r.status_code == 200, r.text
            return r.json()

    api = Http()
    bob = new_user(api)
    grant(api, guest.uuid, "control", user=bob.uuid)
    return (bob.name, PASSWORD)


def test_every_console_session_is_in_the_audit_log_with_its_duration(guest: Guest) -> None:
    with guest.client() as c:
        with c.machines.console(guest.uuid) as con:
            shell(con, "echo AUDIT-$((5*5))", b"AUDIT-25")
    db = guest.app.state.db  # type: ignore[attr-defined]

    def sessions() -> list[AuditEntry]:
        with db.session(write=False) as s:
            return list(s.scalars(select(AuditEntry).where(
                AuditEntry.action == "machine.console", AuditEntry.object_uuid == guest.uuid,
                AuditEntry.errno == 0)))

    found = wait_for(sessions, lambda xs: any(e.detail.get("bytes_in") for e in xs),
                     "the session's audit entry")
    entry = next(e for e in found if e.detail.get("bytes_in"))
    assert entry.actor_name == "admin"
    assert entry.detail["kind"] == "serial"
    assert entry.detail["duration_s"] > 0
    assert entry.detail["bytes_out"] > 0


def free_console(c: Client, uuid: str) -> Console:
    """The serial console once the previous test's session is let go: the server ends a
    session a moment after its client closes, and a viewer in between is refused (4409)."""
    deadline = time.monotonic() + WAIT
    while True:
        con = c.machines.console(uuid)
        try:
            con.send(b"\r")
            con.recv(timeout=1.0)  # a prompt; a refused session is closed by now
            return con
        except TimeoutError:
            return con
        except ConsoleClosed:  # 4409; or under load, pinged out before we read (1000)
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


class Screen:
    """A terminal's output side for `attach`: what it was given, and a wait on it."""

    def __init__(self) -> None:
        self.data = b""
        self.changed = threading.Condition()

    def write(self, data: bytes) -> int:
        with self.changed:
            self.data += data
            self.changed.notify_all()
        return len(data)

    def flush(self) -> None:
        pass

    def wait(self, wanted: bytes) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: wanted in self.data, WAIT), self.data[-500:]


def test_the_cli_attaches_keys_and_screen_and_ctrl_bracket_detaches(guest: Guest) -> None:
    keys_r, keys_w = os.pipe()
    screen, said = Screen(), []
    with guest.client() as c:
        done: list[int] = []
        free_console(c, guest.uuid).close()
        t = threading.Thread(target=lambda: done.append(term.attach(
            lambda: c.machines.console(guest.uuid, force=True), keys_r, screen,
            said.append)))
        t.start()
        try:
            os.write(keys_w, b"echo $((7*6))-CLI\r")
            screen.wait(b"42-CLI")
            os.write(keys_w, b"\x1d")  # Ctrl-]
            t.join(WAIT)
        finally:
            os.close(keys_w)
            t.join(WAIT)
            os.close(keys_r)
    assert done == [0]
    assert "Ctrl-]" in said[0]
    with guest.client() as c, free_console(c, guest.uuid) as con:
        shell(con, "echo FREE-$((4+4))", b"FREE-8")  # the CLI let the console go


def test_an_idle_console_is_pinged_and_kept(guest: Guest) -> None:
    with guest.client() as c, c.machines.console(guest.uuid) as con:
        pings = 0
        while pings < 3:  # the server pings every 0.5 s here; the client answers each
            frame = con.ws.recv(timeout=WAIT)
            if isinstance(frame, str) and '"ping"' in frame:
                pings += 1
                con.ws.send('{"type":"pong"}')
        shell(con, "echo ALIVE-$((9+9))", b"ALIVE-18")


def test_a_console_comes_back_by_itself_when_its_node_stops(guest: Guest) -> None:
    """Two nodes on the guest's database behind a load balancer (a relay): the node holding
    the session stops (the server's side of the WebSocket goes away, close 1012); the client
    opens the console again by itself, with a fresh ticket, on the other node."""
    other = guest.settings.model_copy(update={"node_id": "second-node"})
    main = ("127.0.0.1", int(guest.url.rsplit(":", 1)[1]))
    said: list[str] = []
    with ExitStack() as second:
        second_url, _app = second.enter_context(running_server(other))
        balancer = Relay(("127.0.0.1", int(second_url.rsplit(":", 1)[1])))
        try:
            with Client(f"http://127.0.0.1:{balancer.port}", *ADMIN) as c:
                free_console(c, guest.uuid).close()
                con = c.machines.console(guest.uuid, notify=said.append)
                shell(con, "echo BEFORE-$((2*21))", b"BEFORE-42")
                balancer.upstream = main  # new connections reach the main node
                stopping = threading.Thread(target=second.close)  # the second node stops
                stopping.start()
                stopping.join(WAIT)
                wait_for(lambda: listen(con), lambda n: n >= 1, "the console to come back")
                assert said and "opening it again" in said[0], said
                shell(con, "echo AFTER-$((3*14))", b"AFTER-42")
                con.close()
        finally:
            balancer.close()


def test_a_console_taken_outside_the_project_comes_back_once_let_go(
        guest: Guest, host: Host) -> None:
    """A `virsh console --force` (here: the test's own libvirt stream, forced) takes the
    console from our session while the machine runs: the server says so with `reconnect`;
    the client tries again (refused 4409 while the outsider holds it) and is back once the
    outsider lets go."""
    said: list[str] = []
    with guest.client() as c:
        free_console(c, guest.uuid).close()
        con = c.machines.console(guest.uuid, notify=said.append)
        shell(con, "echo MINE-$((4*4))", b"MINE-16")
        outsider = host.conn.newStream(0)
        host.conn.lookupByUUIDString(guest.uuid).openConsole(
            None, outsider, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        reading = threading.Event()
        reading.set()

        def reader() -> None:  # the client mends a drop inside recv: someone must read
            while reading.is_set():
                listen(con)
        t = threading.Thread(target=reader)
        t.start()
        try:
            wait_for(lambda: said[:], lambda s: len(s) >= 2, "the client to try again")
            assert "while the machine runs" in said[0], said
        finally:
            outsider.abort()
            reading.clear()
            t.join(WAIT)
        shell(con, "echo BACK-$((8*8))", b"BACK-64")
        con.close()


def listen(con: Console) -> int:
    """Read the console for a moment (what it says is dropped); how often it came back."""
    try:
        con.recv(timeout=0.5)
    except TimeoutError:
        pass
    return con.reconnects


def test_a_guest_that_stops_ends_its_console_with_a_reason(guest: Guest) -> None:
    """Last in the module: it powers the shared guest off."""
    with guest.client() as c, free_console(c, guest.uuid) as con:
        shell(con, "echo BYE-$((1+0))", b"BYE-1")
        c.machines.poweroff(guest.uuid)
        with pytest.raises(ConsoleClosed) as ended:
            read_until(con, b"never printed")
        assert ended.value.code == 1000
        assert "console ended" in str(ended.value)
        with pytest.raises(ConsoleClosed) as refused:
            c.machines.console(guest.uuid).recv(timeout=WAIT)
        assert refused.value.code == 4500 and "not running" in str(refused.value)
