"""A machine's console from Python: a ticket from `POST /rest/machine/<UUID>/console/`, then
the WebSocket it names (docs/consoles.md). Pings are answered here; the other control
messages end the session as a `ConsoleClosed` saying why.

A session that ends in a way worth coming back from (the server says `reconnect`: the machine
moved, its hypervisor's link dropped; or the connection broke, or the server went away) is
opened again by itself with a fresh ticket, up to `retries` times a second apart; a refusal
(ticket, permission) or a take-over is never retried."""

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from enomalism.client.connection import Connection
from enomalism.client.errors import ClientError

# Close codes of a connection that broke or a server that went away (not a refusal).
DROPPED = frozenset({1001, 1006, 1011, 1012, 1013, 1014})
# Refusals that may pass a moment later while a console comes back (the machine arriving on
# its new hypervisor, our previous session being let go): retried within the budget.
TRANSIENT = frozenset({4404, 4409, 4500})
# The machine is between hosts (a live migration): opened again without counting against the
# budget, for at most MOVING_FOR seconds.
MOVING, MOVING_FOR = 4503, 120.0


class ConsoleClosed(ClientError):
    """The console ended: `code` is the WebSocket's close code (4401 ticket, 4403 permission,
    4404 machine, 4409 busy or taken over, 4500 libvirt, 4503 migrating, 1000 ended, 1012
    ended but worth opening again), `taken_by` the user who took it over, if that is why,
    and `taken_at` when (ISO 8601, UTC), and `reconnect` whether opening it again may
    help."""

    def __init__(self, code: int, message: str, taken_by: str | None = None,
                 reconnect: bool = False, taken_at: str | None = None) -> None:
        super().__init__(0, 0, message)
        self.code, self.taken_by, self.reconnect = code, taken_by, reconnect
        self.taken_at = taken_at


Opener = Callable[[], ClientConnection]


class Console:
    """One open console: `send` bytes to it, `recv` what it answers. With an `opener` it
    comes back by itself after a drop (`reconnects` counts how often; `notify` hears why)."""

    def __init__(self, ws: ClientConnection, opener: Opener | None = None, *,
                 retries: int = 10, delay: float = 1.0,
                 notify: Callable[[str], None] | None = None) -> None:
        self.ws = ws
        self.opener, self.retries, self.delay, self.notify = opener, retries, delay, notify
        self.reconnects = 0
        self._budget = retries  # attempts left; full again once a console sends bytes
        self._fresh = False  # opened again and nothing received yet
        self._last: dict[str, Any] = {}
        self._closing = False
        self._reopening = threading.Lock()
        self._moving_since: float | None = None

    def send(self, data: bytes | str) -> None:
        """Bytes are keystrokes; a str is a control message. Either raises `ConsoleClosed`
        once the session has ended for good (even between our read and this write)."""
        while True:
            ws = self.ws
            try:
                ws.send(data)
                return
            except ConnectionClosed as e:
                self._again(self._closed(e), ws)

    def recv(self, timeout: float | None = None) -> bytes:
        """The next bytes from the console; raises TimeoutError after `timeout` seconds
        without any (the server's pings do not count: they come every few seconds whether
        the console says anything or not), `ConsoleClosed` when it ends for good."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ws = self.ws
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                frame = ws.recv(timeout=left)
            except ConnectionClosed as e:
                self._again(self._closed(e), ws)
                continue
            if isinstance(frame, bytes):
                self._fresh, self._budget, self._moving_since = False, self.retries, None
                return frame
            try:
                control = json.loads(frame)
            except ValueError:
                continue
            if control.get("type") == "ping":
                self.send('{"type":"pong"}')
            else:
                self._last = control

    def resize(self, cols: int, rows: int) -> None:
        self.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def close(self) -> None:
        self._closing = True
        self.ws.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _closed(self, e: ConnectionClosed) -> ConsoleClosed:
        code = e.rcvd.code if e.rcvd else 1006
        last = self._last
        reason = last.get("reason") or (e.rcvd.reason if e.rcvd else "") or \
            "the connection was lost"
        taken = last.get("by") if last.get("type") == "taken" else None
        at = last.get("at") if taken else None
        if taken:
            reason = f"{taken} took the console over" + (f" at {at}" if at else "")
        again = not taken and (bool(last.get("reconnect")) or code == MOVING or
                               (code in DROPPED and not last))
        return ConsoleClosed(code, reason, taken, again, at)

    def _again(self, ended: ConsoleClosed, failed: ClientConnection) -> None:
        """Open the console again after `ended`, or raise it when that would not help. A
        console opened again that is refused before it sent anything (4404, 4409, 4500: the
        machine still arriving on its new host, our previous session still being let go) is
        tried again within the same budget. One thread opens it; another that met the same
        end (a key sent while the screen's reader reconnects) takes the new one."""
        with self._reopening:
            if self.ws is not failed:
                return  # opened again meanwhile
            self._reopen(ended)

    def _reopen(self, ended: ConsoleClosed) -> None:
        if self.opener is None or self._closing or ended.taken_by or not (
                ended.reconnect or (self._fresh and ended.code in TRANSIENT)):
            raise ended
        moving = ended.code == MOVING and (
            self._moving_since is None or time.monotonic() - self._moving_since < MOVING_FOR)
        if moving and self._moving_since is None:
            self._moving_since = time.monotonic()
        while self._budget > 0:
            self._budget -= 0 if moving else 1
            if self.notify is not None:
                self.notify(f"console lost ({ended}); opening it again "
                            f"({self.retries - self._budget}/{self.retries})")
            time.sleep(self.delay)
            try:
                ws = self.opener()
            except ClientError as e:  # the ticket refused: final unless the server is away
                if e.status in (401, 403, 404):
                    raise ended from e
                continue
            self.ws, self._last, self._fresh = ws, {}, True
            self.reconnects += 1
            return
        raise ended


def ticket(conn: Connection, uuid: str, kind: str) -> dict:
    return conn.call("POST", f"/rest/machine/{uuid}/console/", kind=kind)


def open_socket(conn: Connection, uuid: str, kind: str = "serial", *, force: bool = False,
                timeout: float = 30.0) -> ClientConnection:
    """A fresh ticket, and the console WebSocket opened with it."""
    path = ticket(conn, uuid, kind)["url"] + ("&force=1" if force else "")
    url = ("wss://" if conn.url.startswith("https:") else "ws://") + \
        conn.url.split("://", 1)[1] + path
    try:
        return connect(url, subprotocols=["binary"],  # type: ignore[list-item]
                       open_timeout=timeout, max_size=None, compression=None)
    except OSError as e:
        raise ClientError(0, 0, f"cannot open the console at {conn.url}: {e}") from None


def open_console(conn: Connection, uuid: str, kind: str = "serial", *, force: bool = False,
                 timeout: float = 30.0, reconnect: bool = True,
                 notify: Callable[[str], None] | None = None) -> Console:
    """Ask for a ticket and open the console WebSocket with it; with `reconnect` the console
    comes back by itself (fresh tickets, never forcing) after a drop or a migration."""
    ws = open_socket(conn, uuid, kind, force=force, timeout=timeout)
    opener = (lambda: open_socket(conn, uuid, kind, timeout=timeout)) if reconnect else None
    return Console(ws, opener, notify=notify)
