"""A small HTTP server for the tests of outbound fetches: it listens on any loopback address
(127.0.0.2 is not in the tests' ENOMALISM_FETCH_ALLOW), redirects, trickles a body one byte
at a time, and records every request's headers."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (a fetch cut off by its deadline) are expected


class TinyServer:
    """`files` (path -> bytes), `redirects` (path -> Location), `dribble` (path -> seconds
    between bytes: the body is sent one byte at a time). `reached` is set at the first
    request."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.dribble: dict[str, float] = {}
        self.requests: list[dict[str, str]] = []
        self.reached = threading.Event()
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append({"path": self.path, **{k.lower(): v for k, v in
                                                              self.headers.items()}})
                server.reached.set()
                path = self.path.split("?", 1)[0]
                if path in server.redirects:
                    return self._reply(302, b"", {"Location": server.redirects[path]})
                data = server.files.get(path)
                if data is None:
                    return self._reply(404, b"not here")
                if path not in server.dribble:
                    return self._reply(200, data)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                for i in range(len(data)):
                    if server.closing.wait(server.dribble[path]):
                        return
                    try:
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return  # the client gave up

            def _reply(self, code: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (_Quiet,), {"address_family": family})
        self.host = host
        self.httpd = server_class((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       name="tiny-server", daemon=True)
        self.thread.start()

    def url(self, path: str, creds: str = "") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{creds}{host}:{self.port}{path}"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def tiny_server(host: str = "127.0.0.1") -> Iterator[TinyServer]:
    srv = TinyServer(host)
    try:
        yield srv
    finally:
        srv.close()


def nobody_connected(listener: socket.socket) -> bool:
    """True when no connection is waiting on a listening socket (the kernel completes a
    handshake into the backlog without accept: a fetch that reached it would be there)."""
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def wait_until(check: Any, tries: int = 600) -> bool:
    """Poll `check()` a bounded number of times (not a deadline), 0.05 s apart."""
    for _ in range(tries):
        if check():
            return True
        time.sleep(0.05)
    return False
