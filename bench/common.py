"""What the benchmarks share: starting a server in its own process on a free loopback port,
timing calls, and printing a table of medians.

The servers run as subprocesses (not threads of the benchmark) so the client's own Python work
never competes with the server for the GIL; with 2 cores, client and server each get one.
"""

import base64
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-password"
# This checkout's code, in the benchmark and in the servers it starts, whatever the virtual
# environment was installed from (a venv shared between checkouts measures another tree).
SRC = str(ROOT / "src")
sys.path.insert(0, SRC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally:` blocks clean up what the run created."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Server:
    """A process serving HTTP on 127.0.0.1:<port>, stopped (and only it) on exit."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                         filter(None, (SRC, os.environ.get("PYTHONPATH")))),
                                         **(env or {})}, cwd=ROOT)

    def wait_ready(self, path: str = "/healthz", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        self._out.flush()
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: lifespan end
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def enomalism_server(data_dir: Path, hypervisors: list[str]) -> Server:
    """`enomalism serve` on a free port with its own data dir and admin password."""
    port = free_port()
    argv = [sys.executable, "-m", "enomalism.cli.main", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(data_dir)]
    for uri in hypervisors:
        argv += ["--hypervisor", uri]
    # the benchmarks' feed servers listen on loopback, which fetches reach only when allowed
    env = {"ENOMALISM_ADMIN_PASSWORD": ADMIN_PASSWORD, "ENOMALISM_FETCH_ALLOW": "127.0.0.1"}
    return Server(argv, port, data_dir.parent / "server.log", env)


# A bare ASGI app (no framework, no authentication, no database) served by uvicorn as the server
# is: argv is the port, then path=file pairs; each path answers (any method) the JSON in its file.
BARE_APP = '''
import json, sys
import uvicorn

bodies = {p: json.loads(open(f).read()) for p, f in
          (arg.rsplit("=", 1) for arg in sys.argv[2:])}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    key = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    obj = bodies.get(key)
    status = 200 if obj is not None or scope["path"] == "/healthz" else 404
    body = json.dumps(obj if obj is not None else {}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
'''


def bare_server(log: Path, files: list[str]) -> Server:
    """BARE_APP on a free port, answering `path=file` pairs."""
    port = free_port()
    return Server([sys.executable, "-c", BARE_APP, str(port), *files], port, log)


class PlainClient:
    """One keep-alive HTTP/1.1 connection through the standard library's http.client: a client
    that adds as little of its own as a client can, so that a request's time is the server's
    and the network's. httpx, for all it does, adds about 0.6 ms a request here."""

    IDLE = 4.0  # seconds; uvicorn closes a keep-alive connection idle for 5

    def __init__(self, port: int, *, auth: bool = True) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"} if auth else {}
        self.used = 0.0

    def post(self, path: str) -> tuple[int, dict]:
        """One POST; a connection idle long enough for the server to have closed it is
        opened again first (http.client, unlike httpx, does not do that on its own)."""
        if time.monotonic() - self.used > self.IDLE:
            self.conn.close()
        try:
            self.conn.request("POST", path, headers=self.headers)
            r = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()  # closed by the server anyway: once more, on a new connection
            self.conn.request("POST", path, headers=self.headers)
            r = self.conn.getresponse()
        body = json.loads(r.read())
        self.used = time.monotonic()
        return r.status, body

    def close(self) -> None:
        self.conn.close()


def client(base_url: str, *, auth: bool = True) -> httpx.Client:
    """One keep-alive connection, as a long-running API client holds."""
    return httpx.Client(base_url=base_url, timeout=60.0,
                        auth=("admin", ADMIN_PASSWORD) if auth else None,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


def timed(call: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1000.0


def load() -> str:
    """The 1-minute load average, to judge how quiet the machine was."""
    return f"{os.getloadavg()[0]:.2f}"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))
    return "\n".join([fmt(header), line, *(fmt(r) for r in rows)])
