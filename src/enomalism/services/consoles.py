"""Console sessions (docs/consoles.md): tickets, who holds a console, the byte pipes, and the
audit entry each session leaves.

A ticket is single use, lives at most `console_ticket_seconds` (30 s) and is bound to user,
machine and console kind; tickets are kept in the database, so the WebSocket may reach any
node. The user's `control` permission is checked when the ticket is issued and again at
the WebSocket's upgrade.

A serial console has one viewer: a second one is refused (`ConsoleBusy`) or, with `force`,
takes it over and the first is told who took it and when, whichever nodes the two reached
(the holder is a database row: `Holders`). VNC viewers share the display (QEMU serves
several clients).
"""

import asyncio
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from enomalism.errors import (
    BadConsoleTicket,
    ConsoleBusy,
    ConsoleMoving,
    ConsoleUnavailable,
    InvalidInput,
    MissingVariable,
    NotAuthenticated,
    NotFound,
)
from enomalism.services import access, audit, lookup
from enomalism.services.context import Context, Principal
from enomalism.store.db import Database
from enomalism.store.models import (
    ConsoleHolder,
    ConsoleTicket,
    Machine,
    Node,
    Transaction,
    User,
    utcnow,
)
from enomalism.virt import console as virt_console

KINDS = ("serial", "vnc")
PERMISSION = "control"  # what a console needs on the machine, for both kinds
TICKET_LIFE = 30.0
HOLDER_LEASE = 20.0  # a holder row of a node silent this long is stale (runtime/nodes.py LEASE)


def check_kind(kind: str | None) -> str:
    if not kind:
        raise MissingVariable(f"the variable 'kind' is required: {' or '.join(KINDS)}")
    if kind not in KINDS:
        raise InvalidInput(f"unknown console kind '{kind}'; use {' or '.join(KINDS)}")
    return kind


class Tickets:
    """Console tickets, kept in the database so that any node opens the WebSocket a ticket
    was issued for (several nodes behind a load balancer need no sticky sessions). Only the
    SHA-256 of a secret is stored; using a ticket deletes its row and reads it in one
    statement (DELETE ... RETURNING), so two nodes cannot both use one ticket."""

    def __init__(self, db: Database, life: float = TICKET_LIFE) -> None:
        self.db = db
        self.life = min(life, TICKET_LIFE)

    def issue(self, s: Session, user: Principal, machine: str, kind: str) -> str:
        """A new ticket, written in the caller's transaction (expired ones are swept)."""
        now = utcnow()
        s.execute(delete(ConsoleTicket).where(ConsoleTicket.expires_at < now))
        secret = secrets.token_urlsafe(32)
        s.add(ConsoleTicket(secret_hash=_digest(secret), user_uuid=user.uuid,
                            machine_uuid=machine, kind=kind,
                            expires_at=now + timedelta(seconds=self.life)))
        s.flush()
        return secret

    def redeem(self, secret: str, *, machine: str, kind: str) -> Principal:
        """The ticket's user (as the database has them now); the ticket is used up whatever
        the outcome. Blocking (database): call it in a worker thread."""
        with self.db.session() as s:
            row = s.execute(delete(ConsoleTicket)
                            .where(ConsoleTicket.secret_hash == _digest(secret))
                            .returning(ConsoleTicket.user_uuid, ConsoleTicket.machine_uuid,
                                       ConsoleTicket.kind, ConsoleTicket.expires_at)).first()
            user = s.get(User, row.user_uuid) if row is not None else None
        if row is None:
            raise BadConsoleTicket("the console ticket is unknown or already used (a ticket "
                                   "opens one console once; ask for a new one)")
        expires = row.expires_at if row.expires_at.tzinfo else \
            row.expires_at.replace(tzinfo=UTC)
        if expires <= utcnow():
            raise BadConsoleTicket(f"the console ticket has expired (it lives "
                                   f"{self.life:.0f} s); ask for a new one")
        if row.machine_uuid != machine or row.kind != kind:
            raise BadConsoleTicket("the console ticket was issued for another machine or "
                                   "console kind")
        if user is None or not user.enabled:
            raise NotAuthenticated("the console ticket's user is disabled or gone")
        return Principal(uuid=user.uuid, username=user.username, is_admin=user.is_admin)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Target:
    """A console the user may open: the machine and where it runs."""

    machine: str
    name: str
    hypervisor: str
    uri: str


def authorise(ctx: Context, uuid: str, kind: str) -> Target:
    """The machine, when the user holds `control` on it (404 when they may not read it, 403
    when they may read but not control it)."""
    check_kind(kind)
    m = lookup.get_vm(ctx.db, uuid)
    access.require(ctx, m, PERMISSION, "machine")
    if m.parent is None:
        raise ConsoleUnavailable("the machine is on no hypervisor")
    return Target(m.uuid, m.name, m.parent.uuid, m.parent.virt_url)


def issue(ctx: Context, tickets: Tickets, uuid: str, kind: str | None) -> dict:
    """A ticket for the user's next WebSocket to this console."""
    kind = check_kind(kind)
    target = authorise(ctx, uuid, kind)
    secret = tickets.issue(ctx.db, ctx.user, target.machine, kind)
    return {"ticket": secret,
            "url": f"/rest/machine/{target.machine}/console/{kind}/?ticket={secret}",
            "expires": int(tickets.life)}


@dataclass(eq=False)
class Viewer:
    """One console session; `take_over` tells it another viewer took its console."""

    user: Principal
    source: str
    target: Target
    kind: str
    forced: bool = False
    started: float = field(default_factory=time.monotonic)
    since: datetime = field(default_factory=utcnow)
    session: str = field(default_factory=lambda: secrets.token_hex(16))
    bytes_in: int = 0
    bytes_out: int = 0
    taken_by: str | None = None
    taken_at: datetime | None = None
    on_taken: Callable[[str], None] | None = None

    def take_over(self, by: str, at: datetime | None = None) -> None:
        self.taken_by, self.taken_at = by, at or utcnow()
        if self.on_taken is not None:
            self.on_taken(by)


class Holders:
    """Who holds which console. A serial console's holder is a row of `console_holders`, so
    that a viewer reaching any node is refused while another holds it, or takes it over: a
    viewer on this node is told at once; one on another node learns it when libvirt ends its
    stream (the forced open does that) and its node reads here who took it and when. A row
    of a node that stopped renewing its heartbeat for `lease` seconds is stale (the node
    died) and is taken without force. VNC viewers share the display: kept here only.

    `enter` and `leave` read and write the database: call them in a worker thread."""

    def __init__(self, db: Database, node: str, *, lease: float = HOLDER_LEASE) -> None:
        self.db, self.node, self.lease = db, node, lease
        self._lock = threading.Lock()
        self._serial: dict[str, Viewer] = {}
        self._vnc: dict[str, set[Viewer]] = {}
        with db.session() as s:  # this node's sessions before a restart are gone
            s.execute(delete(ConsoleHolder).where(ConsoleHolder.node_id == node))

    def enter(self, viewer: Viewer, *, force: bool) -> None:
        """Register `viewer`; a serial viewer it displaces on this node is told at once."""
        machine = viewer.target.machine
        if viewer.kind == "vnc":
            with self._lock:
                self._vnc.setdefault(machine, set()).add(viewer)
            return
        with self._lock:  # the row and this node's own sessions agree
            self._claim(viewer, force=force)
            old = self._serial.get(machine)
            self._serial[machine] = viewer
        if old is not None:
            old.take_over(viewer.user.username, viewer.since)

    def _claim(self, viewer: Viewer, *, force: bool) -> None:
        machine = viewer.target.machine
        for attempt in (1, 2):  # two nodes inserting the first row at once: one retries
            try:
                with self.db.session() as s:
                    row = s.get(ConsoleHolder, machine, with_for_update=True)
                    if row is not None and not force and self._alive(s, row):
                        raise ConsoleBusy(
                            f"{row.username} holds this machine's serial console (since "
                            f"{row.since:%H:%M:%S} UTC); connect with force=1 to take it "
                            "over (they are told)")
                    if row is None:
                        row = ConsoleHolder(machine_uuid=machine)
                        s.add(row)
                    row.session, row.node_id, row.since = viewer.session, self.node, viewer.since
                    row.user_uuid, row.username = viewer.user.uuid, viewer.user.username
                return
            except IntegrityError:
                if attempt == 2:
                    raise ConsoleBusy("another viewer is opening this machine's serial "
                                      "console right now; try again") from None

    def _alive(self, s: Session, row: ConsoleHolder) -> bool:
        """Whether the session a holder row names still runs."""
        if row.node_id == self.node:
            mine = self._serial.get(row.machine_uuid)
            return mine is not None and mine.session == row.session
        node = s.get(Node, row.node_id)
        return node is not None and node.stopped_at is None and \
            node.seen_at > utcnow() - timedelta(seconds=self.lease)

    def leave(self, viewer: Viewer) -> None:
        machine = viewer.target.machine
        with self._lock:
            if viewer.kind == "vnc":
                self._vnc.get(machine, set()).discard(viewer)
                if not self._vnc.get(machine):
                    self._vnc.pop(machine, None)
                return
            if self._serial.get(machine) is viewer:
                del self._serial[machine]
        with self.db.session() as s:
            s.execute(delete(ConsoleHolder).where(ConsoleHolder.machine_uuid == machine,
                                                  ConsoleHolder.session == viewer.session))

    def taken(self, viewer: Viewer) -> bool:
        """Whether another session holds the viewer's serial console now (it took it over,
        maybe through another node); if so the viewer learns who and when."""
        if viewer.kind != "serial":
            return False
        if viewer.taken_by:
            return True
        with self.db.session(write=False) as s:
            row = s.get(ConsoleHolder, viewer.target.machine)
            if row is None or row.session == viewer.session:
                return False
            viewer.taken_by, viewer.taken_at = row.username, row.since
        return True

    def count(self) -> int:
        with self._lock:
            return len(self._serial) + sum(len(v) for v in self._vnc.values())


class Pipe:
    """A console's bytes as coroutines: `read` (b"" at the end), `write`, `close`."""

    async def read(self) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SerialPipe(Pipe):
    """A libvirt console stream: a reader thread hands what the guest writes to the event
    loop; keystrokes go out in a worker thread, in order."""

    def __init__(self, stream: virt_console.SerialStream,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._pump, name="serial-console", daemon=True).start()

    def _pump(self) -> None:
        while True:
            data = self.stream.read()
            try:
                self._loop.call_soon_threadsafe(self.queue.put_nowait, data)
            except RuntimeError:  # the loop is closed
                return
            if not data:
                return

    async def read(self) -> bytes:
        return await self.queue.get()

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.stream.write, data)

    def close(self) -> None:
        self.stream.close()


class SocketPipe(Pipe):
    """A socket to QEMU's VNC server (or to ssh reaching it)."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        sock.setblocking(False)
        self.sock, self._loop = sock, loop

    async def read(self) -> bytes:
        try:
            return await self._loop.sock_recv(self.sock, 65536)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        try:
            await self._loop.sock_sendall(self.sock, data)
        except OSError as e:
            raise ConsoleUnavailable(f"the graphical console is gone: {e}") from None

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def open_pipe(registry: object, viewer: Viewer, *, force: bool,
              loop: asyncio.AbstractEventLoop) -> Pipe:
    """Open the console in libvirt (blocking: call it in a worker thread)."""
    conn = registry.connection(viewer.target.hypervisor)  # type: ignore[attr-defined]
    try:
        if viewer.kind == "serial":
            return SerialPipe(conn.open_serial(viewer.target.machine, force=force), loop)
        return SocketPipe(conn.open_graphics(viewer.target.uri, viewer.target.machine), loop)
    except NotFound:
        if _migrating(registry, viewer.target.machine):
            # gone from the old host, not yet recorded on the new one: a client opening it
            # again in a moment (the CLI does) finds it there; 4404 would tell it to stop
            raise ConsoleMoving("the machine is migrating to another hypervisor; open its "
                                "console again in a moment") from None
        raise


def _migrating(registry: object, uuid: str) -> bool:
    """True while a `migrate` transaction holds the machine."""
    with registry.db.session(write=False) as s:  # type: ignore[attr-defined]
        return s.scalar(select(Transaction.kind).join(
            Machine, Machine.lock_txid == Transaction.uuid).where(
            Machine.uuid == uuid)) == "migrate"


ENDINGS = {  # why_ended's answer -> what the viewer is told, and whether to open it again
    "moved": ("the machine moved to another hypervisor (a migration); open the console "
              "again", True),
    "running": ("the console was lost while the machine runs (libvirtd restarted, or a "
                "client outside the project took it); open it again", True),
    "unreachable": ("the connection to the machine's hypervisor dropped; open the console "
                    "again", True),
    "stopped": ("the console ended: the machine stopped", False),
}


def why_ended(registry: object, viewer: Viewer) -> tuple[str, bool]:
    """Why the console's stream ended (blocking: a libvirt call), as the `closed` message's
    reason and whether opening the console again may help (its `reconnect`)."""
    try:
        conn = registry.connection(viewer.target.hypervisor)  # type: ignore[attr-defined]
        why = conn.console_ended(viewer.target.machine)
    except Exception:  # the link is down, or the registry lost the hypervisor
        why = "unreachable"
    return ENDINGS.get(why, ENDINGS["stopped"])


def record(db: object, *, user: Principal | None, source: str, machine: str, kind: str,
           errno: int, message: str, viewer: Viewer | None = None, ended: str = "") -> None:
    """The audit entry of one console session (with its duration) or of a refused one."""
    detail: dict[str, object] = {"kind": kind}
    if viewer is not None:
        detail.update(duration_s=round(time.monotonic() - viewer.started, 3),
                      bytes_in=viewer.bytes_in, bytes_out=viewer.bytes_out,
                      forced=viewer.forced, ended=ended[:120])
        if viewer.taken_by:
            detail["taken_by"] = viewer.taken_by
            if viewer.taken_at is not None:
                detail["taken_at"] = viewer.taken_at.isoformat()
    audit.write(db, actor_uuid=user.uuid if user else None,  # type: ignore[arg-type]
                actor_name=user.username if user else None, source=source,
                action="machine.console", object_type="machine", object_uuid=machine[:36],
                errno=errno, message=message, detail=detail)
