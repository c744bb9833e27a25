"""Network plumbing for the remote-transport tests: a TCP byte forwarder between the server and
libvirtd's 127.0.0.1:16509 that a test can cut, refuse, freeze and thaw, and a "black hole" that
accepts connections and never answers. Neither speaks libvirt's protocol: the bytes are the real
libvirtd's, only their path is in the test's hands."""

import socket
import threading
from collections.abc import Callable
from queue import SimpleQueue

LIBVIRTD_TCP = ("127.0.0.1", 16509)


def libvirtd_listens(address: tuple[str, int] = LIBVIRTD_TCP) -> bool:
    try:
        with socket.create_connection(address, timeout=2):
            return True
    except OSError:
        return False


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.closed = threading.Event()
        # The server closed its side (say its keepalive gave up), seen even while frozen.
        self.client_gone = threading.Event()
        self.forwarded = {"up": 0, "down": 0}  # bytes passed on, per direction
        self.held = {"up": 0, "down": 0}  # bytes read and not passed on (frozen)
        self._count = threading.Lock()

    def count(self, direction: str, read: int = 0, sent: int = 0) -> None:
        with self._count:
            self.held[direction] += read - sent
            self.forwarded[direction] += sent

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            _close(self.client)
            _close(self.upstream)


class Relay:
    """Listens on 127.0.0.1:<port> and forwards every connection to `upstream`.

    - `refuse()`: new connections are closed as soon as they are accepted (a host whose libvirtd
      is not there); `accept()` undoes it.
    - `cut()`: closes every open connection (both sides), as a dropped link would.
    - `freeze(up=..., down=...)`: stop passing anything on, in one or both directions ("up" is
      server -> libvirtd), while every socket stays open: a host that hangs. What is read
      meanwhile (bytes, and a close: libvirtd's own keepalive gives up on a frozen client) is
      held and passed on in order by `thaw()`. Applies to new connections too.
    """

    def __init__(self, upstream: tuple[str, int] = LIBVIRTD_TCP) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._refusing = False
        self._stopped = False
        self._flow = {"up": threading.Event(), "down": threading.Event()}
        for ev in self._flow.values():
            ev.set()
        self.accepted = 0  # connections accepted and forwarded, ever
        threading.Thread(target=self._accept_loop, name="relay-accept", daemon=True).start()

    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    # -- control ---------------------------------------------------------------------------

    def refuse(self) -> None:
        with self._lock:
            self._refusing = True

    def accept(self) -> None:
        with self._lock:
            self._refusing = False

    def cut(self) -> None:
        for pair in self.pairs():
            pair.close()

    def freeze(self, *, up: bool = True, down: bool = True) -> None:
        if up:
            self._flow["up"].clear()
        if down:
            self._flow["down"].clear()

    def thaw(self) -> None:
        for ev in self._flow.values():
            ev.set()

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        _close(self._listener)
        self.thaw()
        self.cut()

    # -- state -----------------------------------------------------------------------------

    def pairs(self) -> list[_Pair]:
        with self._lock:
            return list(self._pairs)

    def open_pairs(self) -> list[_Pair]:
        return [p for p in self.pairs() if not p.closed.is_set()]

    # -- plumbing --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                stopped, refusing = self._stopped, self._refusing
            if stopped or refusing:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.append(pair)
                self.accepted += 1
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                queue: SimpleQueue = SimpleQueue()
                threading.Thread(target=self._read, args=(pair, src, direction, queue),
                                 name=f"relay-read-{direction}", daemon=True).start()
                threading.Thread(target=self._send, args=(pair, dst, direction, queue),
                                 name=f"relay-send-{direction}", daemon=True).start()

    @staticmethod
    def _read(pair: _Pair, src: socket.socket, direction: str, queue: SimpleQueue) -> None:
        """Read all the time, frozen or not, so that a close is seen when it happens."""
        try:
            while data := src.recv(65536):
                pair.count(direction, read=len(data))
                queue.put(data)
        except OSError:
            pass
        if direction == "up":
            pair.client_gone.set()
        queue.put(None)

    def _send(self, pair: _Pair, dst: socket.socket, direction: str, queue: SimpleQueue) -> None:
        flow = self._flow[direction]
        try:
            while (data := queue.get()) is not None:
                while not flow.wait(0.1):  # frozen: hold it, keep the sockets open
                    if pair.closed.is_set():
                        return
                dst.sendall(data)
                pair.count(direction, sent=len(data))
            while not flow.wait(0.1):  # a close is passed on in its turn too
                if pair.closed.is_set():
                    return
        except OSError:
            pass
        pair.close()


class BlackHole:
    """Listens on 127.0.0.1:<port>, accepts every connection, reads and discards what comes,
    and never answers: libvirt's connect to it waits for ever. `release()` closes what it
    holds (the waiting connect then fails at once)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self.accepted = 0
        self.arrived = threading.Condition(self._lock)
        threading.Thread(target=self._accept_loop, name="black-hole", daemon=True).start()

    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def held(self) -> int:
        """Connections accepted and still held open (the peer has not given up either)."""
        with self._lock:
            return len(self._held)

    def wait_held(self, n: int = 1, timeout: float = 60.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self._held) >= n, timeout)

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for s in held:
            _close(s)

    def close(self) -> None:
        _close(self._listener)
        self.release()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self.arrived:
                self._held.append(conn)
                self.accepted += 1
                self.arrived.notify_all()
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        with self._lock:  # the peer gave up (or we released it)
            if conn in self._held:
                self._held.remove(conn)
        conn.close()


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict]:
    """Run `fn` in a daemon thread; the dict gets "result" or "error", and "done" is set last."""
    out: dict = {"done": threading.Event()}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 (handed to the test as is)
            out["error"] = e
        finally:
            out["done"].set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out
