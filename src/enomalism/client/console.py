"""A machine's console from Python: a ticket from `POST /rest/machine/<UUID>/console/`, then
the WebSocket it names (docs/consoles.md). Pings are answered here; the other control
messages end the session as a `ConsoleClosed` saying why."""

import json
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from enomalism.client.connection import Connection
from enomalism.client.errors import ClientError


class ConsoleClosed(ClientError):
    """The console ended: `code` is the WebSocket's close code (4401 ticket, 4403 permission,
    4404 machine, 4409 busy or taken over, 4500 libvirt, 1000 ended), `taken_by` the user who
    took it over, if that is why."""

    def __init__(self, code: int, message: str, taken_by: str | None = None) -> None:
        super().__init__(0, 0, message)
        self.code, self.taken_by = code, taken_by


class Console:
    """One open console: `send` bytes to it, `recv` what it answers."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._last: dict[str, Any] = {}

    def send(self, data: bytes | str) -> None:
        """Bytes are keystrokes; a str is a control message. Either raises `ConsoleClosed`
        once the server has ended the session (even between our read and this write)."""
        try:
            self.ws.send(data)
        except ConnectionClosed as e:
            raise self._closed(e) from None

    def recv(self, timeout: float | None = None) -> bytes:
        """The next bytes from the console; raises TimeoutError after `timeout` seconds of
        silence, `ConsoleClosed` when it ends."""
        while True:
            try:
                frame = self.ws.recv(timeout=timeout)
            except ConnectionClosed as e:
                raise self._closed(e) from None
            if isinstance(frame, bytes):
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
        self.ws.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _closed(self, e: ConnectionClosed) -> ConsoleClosed:
        code = e.rcvd.code if e.rcvd else 1006
        reason = self._last.get("reason") or (e.rcvd.reason if e.rcvd else "") or \
            "the connection was lost"
        taken = self._last.get("by") if self._last.get("type") == "taken" else None
        if taken:
            reason = f"{taken} took the console over"
        return ConsoleClosed(code, reason, taken)


def ticket(conn: Connection, uuid: str, kind: str) -> dict:
    return conn.call("POST", f"/rest/machine/{uuid}/console/", kind=kind)


def open_console(conn: Connection, uuid: str, kind: str = "serial", *, force: bool = False,
                 timeout: float = 30.0) -> Console:
    """Ask for a ticket and open the console WebSocket with it."""
    path = ticket(conn, uuid, kind)["url"] + ("&force=1" if force else "")
    url = ("wss://" if conn.url.startswith("https:") else "ws://") + \
        conn.url.split("://", 1)[1] + path
    try:
        ws = connect(url, subprotocols=["binary"], open_timeout=timeout,  # type: ignore[list-item]
                     max_size=None, compression=None)
    except OSError as e:
        raise ClientError(0, 0, f"cannot open the console at {conn.url}: {e}") from None
    return Console(ws)
