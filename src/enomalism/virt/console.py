"""A guest's consoles as byte pipes: the serial console over a libvirt stream, the graphical
console (VNC) as a socket to QEMU (docs/consoles.md).

Serial: `virDomainOpenConsole` on a stream of the hypervisor's connection, so it works on a
remote hypervisor as on the local one; `force` takes the console from another holder (a stale
`virsh console`), otherwise libvirt's safe mode refuses while one holds it.

Graphics: on a local hypervisor libvirt hands over a socket connected to QEMU
(`virDomainOpenGraphicsFD`, with skip-auth: the project has authorised the user already).
File descriptors do not cross a remote connection, so on a hypervisor reached over SSH the
guest's VNC unix socket (or loopback port) is reached through the host's own SSH transport
(`ssh HOST nc -U SOCKET`, as virt-manager does). A TLS-only host has no such path.
"""

import contextlib
import os
import queue
import shlex
import socket
import subprocess
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import libvirt
from lxml import etree

from enomalism.errors import ConsoleBusy, ConsoleUnavailable
from enomalism.virt.errors import libvirt_errors, translate
from enomalism.virt.uri import is_local

CHUNK = 65536
_READ = (libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR |
         libvirt.VIR_STREAM_EVENT_HANGUP)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class SerialStream:
    """The guest's first serial console as a blocking byte pipe (one reader thread, any
    writer thread). `read` answers b"" once the console is gone (guest stopped, another
    client took it, `close` was called).

    The stream is non-blocking and libvirt's event loop hands over what arrives (as virsh
    console does). A blocking `recv` on a connection other threads use too could sleep
    through the arrival of the guest's next bytes until more came: a console's answer cut
    off mid-line, seen after a take-over."""

    def __init__(self, conn: libvirt.virConnect, uuid: str, *, force: bool) -> None:
        flags = libvirt.VIR_DOMAIN_CONSOLE_SAFE
        if force:
            flags |= libvirt.VIR_DOMAIN_CONSOLE_FORCE
        with libvirt_errors():
            dom = conn.lookupByUUIDString(uuid)
            if not dom.isActive():
                raise ConsoleUnavailable("the machine is not running: its serial console "
                                         "exists only while it runs")
            self._stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            dom.openConsole(None, self._stream, flags)
        except libvirt.libvirtError as e:
            self._abort()
            msg = e.get_error_message() or str(e)
            if "active console session" in msg.lower():
                raise ConsoleBusy("another client holds this machine's serial console (a "
                                  "virsh console?); connect with force=1 to take it over"
                                  ) from None
            if e.get_error_code() in (libvirt.VIR_ERR_OPERATION_FAILED,
                                      libvirt.VIR_ERR_INTERNAL_ERROR,
                                      libvirt.VIR_ERR_CONFIG_UNSUPPORTED):
                raise ConsoleUnavailable(f"the machine has no serial console libvirt can "
                                         f"open (it needs a pty serial port): {msg}") from None
            raise translate(e) from None
        self._closed = threading.Event()
        self._write_lock = threading.Lock()
        self._writable = threading.Event()
        self._chunks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        try:
            self._stream.eventAddCallback(_READ, self._on_event, None)
        except libvirt.libvirtError as e:
            self._abort()
            raise ConsoleUnavailable(f"libvirt could not watch the serial console: "
                                     f"{e.get_error_message()}") from None

    def _on_event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        """In libvirt's event loop: take everything the stream holds; note it can send."""
        if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
            self._writable.set()
        if not events & _READ:
            return
        while True:
            try:
                data = stream.recv(CHUNK)
            except libvirt.libvirtError:
                data = b""
            if data == -2:  # nothing more for now
                return
            if not isinstance(data, bytes) or not data:
                self._end()
                with contextlib.suppress(libvirt.libvirtError):
                    stream.eventUpdateCallback(0)  # the end is told once
                return
            self._chunks.put(data)

    def _end(self) -> None:
        self._chunks.put(b"")

    def read(self) -> bytes:
        """The next bytes the guest wrote (blocks); b"" at the end, and ever after."""
        data = self._chunks.get()
        if not data:
            self._chunks.put(b"")
        return data

    def write(self, data: bytes) -> None:
        """Send keystrokes to the guest (blocks until libvirt took them)."""
        with self._write_lock:
            view = memoryview(data)
            while view and not self._closed.is_set():
                try:
                    sent = self._stream.send(bytes(view))
                except libvirt.libvirtError as e:
                    raise ConsoleUnavailable(f"the serial console is gone: "
                                             f"{e.get_error_message()}") from None
                if sent == -2:  # libvirt's queue is full: wait until it can take more
                    self._wait_writable()
                    continue
                if sent < 0:
                    raise ConsoleUnavailable("the serial console is gone")
                view = view[sent:]

    def _wait_writable(self) -> None:
        self._writable.clear()
        try:
            self._stream.eventUpdateCallback(_READ | libvirt.VIR_STREAM_EVENT_WRITABLE)
            self._writable.wait(1.0)
            self._stream.eventUpdateCallback(_READ)
        except libvirt.libvirtError as e:
            raise ConsoleUnavailable(f"the serial console is gone: "
                                     f"{e.get_error_message()}") from None

    def close(self) -> None:
        """Give the console up; a blocked `read` answers b""."""
        if not self._closed.is_set():
            self._closed.set()
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.eventRemoveCallback()
            self._abort()
            self._end()

    def _abort(self) -> None:
        try:
            self._stream.abort()
        except libvirt.libvirtError:
            pass


def why_ended(conn: libvirt.virConnect, uuid: str) -> str:
    """Why a console of the domain ended, by its state now: "moved" (shut off by a
    migration, or gone: a transient domain that migrated away), "running" (only the console
    was lost: libvirtd restarted, a client outside the project took it; paused counts, as
    at a migration's end), "unreachable" (the hypervisor did not answer), "stopped"."""
    try:
        state, reason = conn.lookupByUUIDString(uuid).state()
    except libvirt.libvirtError as e:
        return "moved" if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN else "unreachable"
    if state == libvirt.VIR_DOMAIN_SHUTOFF and reason == libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED:
        return "moved"
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                 libvirt.VIR_DOMAIN_BLOCKED):
        return "running"
    return "stopped"


@dataclass(frozen=True)
class Graphics:
    """Where a running guest's first VNC display is: a unix socket, or a host and port."""

    socket: str | None
    address: str | None
    port: int | None


def graphics_of(xml: str) -> Graphics | None:
    """The first VNC display of a live domain definition; None when it has none."""
    root = etree.fromstring(xml.encode(), _PARSER)
    g = root.find("./devices/graphics[@type='vnc']")
    if g is None:
        return None
    listen = g.find("listen")
    path = g.get("socket") or (listen.get("socket") if listen is not None and
                               listen.get("type") == "socket" else None)
    port = g.get("port")
    address = (listen.get("address") if listen is not None else None) or g.get("listen")
    return Graphics(path, address or "127.0.0.1",
                    int(port) if port and port.lstrip("-").isdigit() and int(port) > 0 else None)


def open_graphics(conn: libvirt.virConnect, uri: str, uuid: str) -> socket.socket:
    """A socket carrying the guest's RFB stream (see the module's docstring)."""
    with libvirt_errors():
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            raise ConsoleUnavailable("the machine is not running: its graphical console "
                                     "exists only while it runs")
        xml = dom.XMLDesc(0)
    gfx = graphics_of(xml)
    if gfx is None:
        raise ConsoleUnavailable("the machine has no VNC display (no <graphics type='vnc'/>)")
    if is_local(uri):
        try:
            fd = dom.openGraphicsFD(0, libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
        except libvirt.libvirtError as e:
            raise ConsoleUnavailable(f"libvirt could not open the VNC display: "
                                     f"{e.get_error_message()}") from None
        return socket.socket(fileno=fd)
    return _through_ssh(uri, gfx)


def ssh_command(uri: str, gfx: Graphics) -> list[str]:
    """The command that joins our end to the guest's display on the hypervisor's host, through
    the URI's own SSH transport: its user, port, `keyfile`, and host key checking as the URI
    asks for it (`no_verify=1`; libssh's `known_hosts=` and `known_hosts_verify=`)."""
    parts = urlsplit(uri)
    transport = parts.scheme.partition("+")[2].lower()
    if transport not in ("ssh", "libssh", "libssh2"):
        raise ConsoleUnavailable(
            f"the graphical console of a machine on a '{transport or 'tcp'}' hypervisor "
            "connection is not available: libvirt hands over QEMU's socket only to a local "
            "client, and only an SSH transport reaches the guest's display socket on its host "
            "(docs/hosts.md)")
    if not parts.hostname:
        raise ConsoleUnavailable("the hypervisor URI names no host")
    cmd = ["ssh", "-T", "-e", "none", "-o", "BatchMode=yes"]
    if parts.port:
        cmd += ["-p", str(parts.port)]
    if parts.username:
        cmd += ["-l", parts.username]
    params = {k.lower(): v[-1] for k, v in parse_qs(parts.query).items()}
    if params.get("keyfile"):
        cmd += ["-i", params["keyfile"]]
    if params.get("known_hosts"):  # libssh's parameters, meant the same for OpenSSH here
        cmd += ["-o", f"UserKnownHostsFile={params['known_hosts']}"]
    verify = params.get("known_hosts_verify", "").lower()
    if params.get("no_verify") == "1" or verify == "ignore":
        cmd += ["-o", "StrictHostKeyChecking=no"]
    elif verify == "auto":
        cmd += ["-o", "StrictHostKeyChecking=accept-new"]
    if gfx.socket:
        remote = f"nc -U {shlex.quote(gfx.socket)}"
    elif gfx.port:
        remote = f"nc {shlex.quote(gfx.address or '127.0.0.1')} {gfx.port}"
    else:
        raise ConsoleUnavailable("the machine's VNC display has neither socket nor port yet")
    return [*cmd, "--", parts.hostname, remote]


def _through_ssh(uri: str, gfx: Graphics) -> socket.socket:
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(ssh_command(uri, gfx), stdin=theirs.fileno(),
                                stdout=theirs.fileno(),
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "LC_ALL": "C"})
    except OSError as e:
        ours.close()
        raise ConsoleUnavailable(f"could not start ssh for the graphical console: {e}") \
            from None
    finally:
        theirs.close()
    # reap ssh when it ends (our end closed, or the guest's display went away)
    threading.Thread(target=proc.wait, name="vnc-ssh", daemon=True).start()
    return ours
