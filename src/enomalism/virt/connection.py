"""Long-lived libvirt connections: one `HypervisorLink` per hypervisor, subscribed to domain
lifecycle events, with keepalive and reconnection with back-off.

Libvirt's event loop runs in one daemon thread for the whole process (`start_event_loop`).
A link's supervisor thread opens the connection, watches it, and reopens it after libvirtd
restarts or a host drops; the listener is told of every change so the inventory follows.
"""

import logging
import threading
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import libvirt

from enomalism.errors import HypervisorUnreachable, InvalidInput
from enomalism.virt.hypervisor import HypervisorConnection

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 15.0  # seconds to wait for a hypervisor to answer a connect
KEEPALIVE = (5, 3)  # probe every 5 s, give up after 3 unanswered probes
BACKOFF_MAX = 30.0

_loop_lock = threading.Lock()
_loop_started = False


def start_event_loop() -> None:
    """Register libvirt's default event implementation and run it in a daemon thread, once."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come as exceptions
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def flush_events(timeout: float = 5.0) -> bool:
    """Wait until libvirt's event loop has dispatched every event already queued in this
    process (the test driver queues its events for the loop's next turn): a timer added now
    fires after every timer that was due before it. False if the loop did not turn in time."""
    if not _loop_started:
        return True
    for _ in range(2):  # two turns, so that the turn that fired ours has finished
        done = threading.Event()

        def fire(timer: int, _opaque: object, done: threading.Event = done) -> None:
            libvirt.virEventRemoveTimeout(timer)
            done.set()

        libvirt.virEventAddTimeout(0, fire, None)
        if not done.wait(timeout):
            return False
    return True


def noninteractive(uri: str) -> str:
    """The URI to open: for the ssh transport (qemu+ssh://), `no_tty=1` unless the URI says
    otherwise, so that ssh runs in batch mode and fails at once ("Permission denied") when it
    has no usable key, rather than asking for a password on the terminal the server was
    started from and holding the connect until someone answers."""
    parts = urlsplit(uri)
    if not parts.scheme.endswith("+ssh") or "no_tty" in parse_qs(parts.query):
        return uri
    return f"{uri}{'&' if parts.query else '?'}no_tty=1"


class _Opening:
    """One connect attempt, in a thread of its own: libvirt's open has no time limit, and a
    host that accepts the TCP connection but never answers (a hung libvirtd, a black hole)
    holds it for ever. Waiting on it is bounded; the attempt itself may outlive the wait, and
    whoever waited decides whether to wait on it again (a link does: it never starts a second
    attempt while one is still pending) or to abandon it (a connection it opens later is
    closed at once instead of leaking)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._conn: libvirt.virConnect | None = None
        self._error: str | None = None
        self._invalid = False
        threading.Thread(target=self._run, name="libvirt-open", daemon=True).start()

    def _run(self) -> None:
        conn, error, invalid = None, None, False
        try:
            conn = libvirt.openAuth(noninteractive(self.uri), [[], None, None], 0)
        except libvirt.libvirtError as e:
            error = e.get_error_message() or str(e)
            invalid = (e.get_error_code() == libvirt.VIR_ERR_INVALID_ARG
                       or e.get_error_domain() == libvirt.VIR_FROM_URI)
        except (TypeError, ValueError) as e:  # e.g. a NUL character in the URI
            error, invalid = str(e), True
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self._conn, self._error, self._invalid = conn, error, invalid
            self.done.set()
        if abandoned and conn is not None:
            _close_quietly(conn)

    def wait(self, timeout: float) -> libvirt.virConnect:
        """The connection, once the attempt succeeded; HypervisorUnreachable when it failed or
        is still pending after `timeout` s, InvalidInput for a URI libvirt cannot use."""
        if not self.done.wait(timeout):
            raise HypervisorUnreachable(f"{self.uri} did not answer within {timeout:.0f} s")
        if self._invalid:
            raise InvalidInput(f"'{self.uri}' is not a usable libvirt URI: {self._error}")
        if self._conn is None:
            raise HypervisorUnreachable(f"cannot connect to {self.uri}: {self._error}")
        return self._conn

    def abandon(self) -> None:
        """Nobody will take the result: close the connection if it opened or when it does."""
        with self._lock:
            self._abandoned = True
            conn, self._conn = self._conn, None
        if conn is not None:
            _close_quietly(conn)


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


def open_connection(uri: str, timeout: float | None = None) -> libvirt.virConnect:
    """Open a connection, giving up after `timeout` seconds (OPEN_TIMEOUT by default: a dead
    remote host can otherwise hold a TCP connect for minutes, one that accepts but never
    answers for ever). Never
    prompts for credentials. A URI libvirt cannot make sense of is the caller's mistake
    (InvalidInput), not an unreachable hypervisor."""
    start_event_loop()
    attempt = _Opening(uri)
    try:
        return attempt.wait(OPEN_TIMEOUT if timeout is None else timeout)
    except HypervisorUnreachable:
        attempt.abandon()  # a connection that opens after we gave up is closed, not leaked
        raise


def open_hypervisor(uri: str, timeout: float | None = None) -> HypervisorConnection:
    """`open_connection`, as the hypervisor object the services use."""
    return HypervisorConnection(open_connection(uri, timeout))


class LinkListener(Protocol):
    def connected(self, link: "HypervisorLink", conn: HypervisorConnection) -> None: ...
    def disconnected(self, link: "HypervisorLink", reason: str) -> None: ...
    def domain_event(self, link: "HypervisorLink", uuid: str, event: int, detail: int) -> None:
        ...


class HypervisorLink:
    """One hypervisor's connection, kept open for as long as the hypervisor is registered."""

    def __init__(self, uuid: str, uri: str, listener: LinkListener) -> None:
        self.uuid = uuid
        self.uri = uri
        self.listener = listener
        self.status = "connecting"
        self.last_error: str | None = None
        self._conn: libvirt.virConnect | None = None
        self._hv: HypervisorConnection | None = None  # self._conn, as handed out
        self._callbacks: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Set once the first connect has been tried (and, if it worked, resynced).
        self.first_attempt = threading.Event()
        self._wake = threading.Event()
        self._closed: str | None = None  # why libvirt closed the connection, not yet recorded
        self._thread: threading.Thread | None = None
        # The connect attempt still pending after OPEN_TIMEOUT, waited on again at the next
        # retry rather than started anew: each new attempt on a host that never answers
        # would leave one more thread and socket behind, for ever.
        self._opening: _Opening | None = None

    def start(self, conn: HypervisorConnection | None = None) -> None:
        """Supervise the connection from now on; `conn` is one already opened, if any."""
        if conn is not None:
            self._attach(conn.virconnect)
            self.first_attempt.set()
        self._thread = threading.Thread(
            target=self._supervise, name=f"hypervisor-{self.uuid[:8]}", daemon=True
        )
        self._thread.start()

    def connection(self) -> HypervisorConnection:
        conn = self._hv
        if conn is None:
            why = f": {self.last_error}" if self.last_error else ""
            raise HypervisorUnreachable(f"hypervisor {self.uri} is not connected{why}")
        return conn

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=OPEN_TIMEOUT + 5)
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.abandon()
        self._detach(close=True)

    def reconnect_now(self) -> None:
        """Skip the back-off wait (used after an operator fixed the hypervisor)."""
        self._wake.set()

    # -- supervisor thread -------------------------------------------------------------

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            closed, self._closed = self._closed, None
            if closed is not None:
                self._set_status("disconnected", closed)
            if self._conn is None:
                start_event_loop()
                if self._opening is None:
                    self._opening = _Opening(self.uri)
                opening = self._opening
                try:
                    conn = opening.wait(OPEN_TIMEOUT)
                except (HypervisorUnreachable, InvalidInput) as e:
                    if opening.done.is_set():
                        self._opening = None  # failed: the next retry tries afresh
                    self._set_status("disconnected", e.message)
                    self.first_attempt.set()
                    self._wake.wait(delay)
                    self._wake.clear()
                    delay = min(delay * 2, BACKOFF_MAX)
                    continue
                self._opening = None
                if self._stop.is_set():
                    _close_quietly(conn)
                    break
                self._attach(conn)
                delay = 1.0
            self.first_attempt.set()
            self._wake.wait(5.0)
            self._wake.clear()
            conn = self._conn
            if conn is not None and not self._stop.is_set():
                try:
                    alive = conn.isAlive()
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    self._lost("the connection stopped answering")

    def _attach(self, conn: libvirt.virConnect) -> None:
        try:
            conn.setKeepAlive(*KEEPALIVE)
        except libvirt.libvirtError:
            pass  # local and test drivers have no keepalive; their close is seen directly
        try:
            conn.registerCloseCallback(self._on_close, None)
        except libvirt.libvirtError:
            pass
        ids = [conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)]
        hv = HypervisorConnection(conn)
        with self._lock:
            self._conn, self._hv, self._callbacks = conn, hv, ids
        self._set_status("connected", None)
        try:
            self.listener.connected(self, hv)
        except Exception:  # a failed resync must not kill the supervisor
            log.exception("resync of %s after connecting failed", self.uri)

    def _detach(self, *, close: bool) -> None:
        with self._lock:
            conn, ids = self._conn, self._callbacks
            self._conn, self._hv, self._callbacks = None, None, []
        if conn is None:
            return
        if close:
            for cid in ids:
                try:
                    conn.domainEventDeregisterAny(cid)
                except libvirt.libvirtError:
                    pass
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            # No conn.close(): a request or resync may still be inside a call on it, and
            # closing frees what that call uses. Dropping our reference lets libvirt-python
            # close it when the last user lets go.

    def _lost(self, reason: str) -> None:
        self._detach(close=False)
        self._set_status("disconnected", reason)
        self._wake.set()

    def _set_status(self, status: str, error: str | None) -> None:
        changed = (status, error) != (self.status, self.last_error)
        self.status, self.last_error = status, error
        if changed and status == "disconnected":
            log.warning("hypervisor %s disconnected: %s", self.uri, error)
            try:
                self.listener.disconnected(self, error or "")
            except Exception:
                log.exception("recording the disconnect of %s failed", self.uri)

    # -- libvirt event loop thread -----------------------------------------------------

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        why = {
            libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection error",
            libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "libvirtd closed the connection",
            libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timed out",
            libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed",
        }.get(reason, "closed")
        if not self._stop.is_set():
            # libvirt calls this on whichever thread noticed the close, maybe one holding the
            # database (a request, the event worker, all inside a libvirt call): drop the
            # connection at once, leave recording the disconnect to the supervisor thread.
            self._detach(close=False)
            self._closed = why
            self._wake.set()

    def _on_lifecycle(self, _conn, dom, event, detail, _opaque) -> None:  # noqa: ANN001
        self.listener.domain_event(self, dom.UUIDString(), event, detail)
