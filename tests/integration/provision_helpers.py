"""What the section 6 and provision tests share: real HTTP feed servers on 127.0.0.1, packages
built by the project's own `archive.write_package` from tiny images, VMcast feeds for them,
waiting on transactions, and a server (uvicorn) in a thread of the test process.

Nothing here touches libvirt: the integration tests' pool and domains are
tests/integration/conftest.py's `scratch`.
"""

import base64
import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from enomalism.feeds import archive
from enomalism.feeds.feed import Feed, FeedItem, render_feed

PKG_TYPE = "application/enomalism2-xvm2"
FINAL = frozenset({"done", "failed", "cancelled"})
MiB = 1 << 20
# A MAC no provisioned machine may keep: the template's.
TEMPLATE_MAC = "52:54:00:11:22:33"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a feed server --------------------------------------------------------------------------


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    feed: "FeedServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (a cancelled download, a killed server) are expected


class _FeedHandler(BaseHTTPRequestHandler):
    """Answers from its server's `FeedServer`."""

    protocol_version = "HTTP/1.1"
    server: _Quiet

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        feed = self.server.feed
        feed.requests.append({"path": self.path, **{k.lower(): v for k, v in
                                                    self.headers.items()}})
        if feed.auth is not None:
            token = base64.b64encode(":".join(feed.auth).encode()).decode()
            if self.headers.get("Authorization") != f"Basic {token}":
                return self._reply(401, b"who are you?",
                                   {"WWW-Authenticate": 'Basic realm="feeds"'})
        path = self.path.split("?", 1)[0]
        data = feed.files.get(path)
        if data is None:
            return self._reply(404, b"not here")
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        start, code, headers = 0, 200, {}
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            if start >= size:
                return self._reply(416, b"", {"Content-Range": f"bytes */{size}"})
            code = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        self.send_response(code)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Type", feed.types.get(path, "application/octet-stream"))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self._body(path, data, start)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self, path: str, data: bytes | Path, start: int) -> None:
        feed = self.server.feed
        gate = feed.gates.get(path)
        sent = 0
        chunk = 256 << 10
        with (open(data, "rb") if isinstance(data, Path) else _Bytes(data)) as f:
            f.seek(start)
            while block := f.read(chunk):
                if gate is not None and sent >= feed.gate_after:
                    gate.wait(120)
                    gate = None
                self.wfile.write(block)
                sent += len(block)
                if feed.rate:
                    time.sleep(len(block) / feed.rate)

    def _reply(self, code: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class FeedServer:
    """Serves `files` (path -> bytes, or a Path streamed from disk) with Range support, and
    optionally: Basic auth, a rate limit (bytes per second, for downloads that take a moment),
    and gates (path -> Event) that hold the body after `gate_after` bytes until set. Every
    request's path and headers are recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.types: dict[str, str] = {}
        self.auth: tuple[str, str] | None = None
        self.rate: int | None = None
        self.gates: dict[str, threading.Event] = {}
        self.gate_after = 64 << 10
        self.requests: list[dict[str, str]] = []
        self.httpd = _Quiet(("127.0.0.1", 0), _FeedHandler)
        self.httpd.feed = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="feed-server",
                                       daemon=True)
        self.thread.start()

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        who = f"{user}:{password}@" if user is not None else ""
        return f"http://{who}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def __enter__(self) -> "_Bytes":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def seek(self, pos: int) -> None:
        self.pos = pos

    def read(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    srv = FeedServer()
    try:
        yield srv
    finally:
        srv.close()


# -- images and packages --------------------------------------------------------------------


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def make_qcow2(path: Path, virtual_mib: int = 64, data: bytes = b"") -> Path:
    """A qcow2 image; `data` is written at its start (through a raw image and convert)."""
    if data:
        raw = path.with_suffix(".raw")
        raw.write_bytes(data)
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
        qemu_img("resize", "-f", "qcow2", str(path), f"{virtual_mib}M")
        raw.unlink()
    else:
        qemu_img("create", "-f", "qcow2", str(path), f"{virtual_mib}M")
    return path


def make_random_raw(path: Path, mib: int) -> Path:
    """A raw image of random bytes (incompressible: downloads and uploads take a moment)."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
    return path


def domain_template(*, domain_type: str = "kvm", arch: str = "x86_64", fmt: str = "qcow2",
                    machine: str | None = None, interface: bool = True,
                    network: str = "default") -> str:
    """A guest with no OS and one virtio disk; its NIC (on the libvirt network `network`: the
    domain-XML policy lets a package's NIC onto a network only) carries TEMPLATE_MAC."""
    machine_attr = f" machine='{machine}'" if machine else ""
    nic = (f"<interface type='network'><mac address='{TEMPLATE_MAC}'/>"
           f"<source network='{network}'/><model type='virtio'/></interface>"
           ) if interface else ""
    return (f"<domain type='{domain_type}'><name>template</name>"
            "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            f"<os><type arch='{arch}'{machine_attr}>hvm</type></os><features><acpi/></features>"
            "<devices><disk type='file' device='disk'>"
            f"<driver name='qemu' type='{fmt}'/><source file='/nowhere/template.img'/>"
            f"<target dev='vda' bus='virtio'/></disk>{nic}</devices></domain>")


@dataclass
class Pkg:
    """A package file and what a feed says about it."""

    path: Path
    name: str
    manifest: archive.Manifest
    sha256: str
    size: int
    virt_class: str | None
    arch: str | None

    def bytes(self) -> bytes:
        return self.path.read_bytes()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


class Repeating:
    """An image of `size` bytes repeating one random MiB: no zero block (every byte is
    uploaded), yet it compresses well (a package of a GiB is quick to build and fetch)."""

    def __init__(self, size: int) -> None:
        self.block, self.left = os.urandom(MiB), size

    def __enter__(self) -> "Repeating":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = (self.block * (n // MiB + 1))[:n]
        self.left -= n
        return out


def build_package(dest: Path, image: Path | Callable[[], Any], *, name: str, fmt: str = "qcow2",
                  virt_class: str = "kvm", arch: str = "x86_64", version: str = "1",
                  domain_xml: str | None = None, compression: str = "zstd",
                  network: str = "default") -> Pkg:
    """A package written by the project's own writer."""
    domain_xml = domain_xml or domain_template(domain_type=virt_class, arch=arch, fmt=fmt,
                                               network=network)
    m = archive.Manifest(name=name, description=f"{name}, for the tests", version=version,
                         virt_class=virt_class, arch=arch,
                         disks=[archive.DiskInfo(target="vda", format=fmt)])
    written = archive.write_package(dest, domain_xml=domain_xml, manifest=m,
                                    disk_sources={"vda": image if callable(image)
                                                  else lambda: open(image, "rb")},
                                    compression=compression, fsync=False)
    return Pkg(dest, name, written, sha256_of(dest), dest.stat().st_size, virt_class, arch)


def feed_item(srv: FeedServer, pkg: Pkg, path: str, *, guid: str | None = None,
              length: int | None = None, sha256: str | None = None,
              title: str | None = None) -> FeedItem:
    """Serve the package at `path` and describe it as a feed item (length and sha256 may be
    overridden to lie)."""
    srv.files[path] = pkg.path
    srv.types[path] = PKG_TYPE
    return FeedItem(guid=guid or f"{pkg.name}-{pkg.manifest.version}", title=title or pkg.name,
                    description=pkg.manifest.description, url=srv.url(path),
                    length=pkg.size if length is None else length, type=PKG_TYPE,
                    sha256=pkg.sha256 if sha256 is None else sha256,
                    version=pkg.manifest.version, virt_class=pkg.virt_class, arch=pkg.arch)


def publish(srv: FeedServer, items: list[FeedItem], path: str = "/feed.xml",
            title: str = "test packages") -> str:
    """Serve a feed of `items` at `path`; returns its URL (without credentials)."""
    srv.files[path] = render_feed(Feed(title=title, link=srv.url("/"),
                                       description="packages the tests serve", items=items))
    srv.types[path] = "application/rss+xml"
    return srv.url(path)


# -- transactions ---------------------------------------------------------------------------


def wait_tx(client: Any, txid: str, states: set[str] | frozenset[str] = FINAL,
            deadline: float = 120.0, until: Callable[[dict], bool] | None = None) -> dict:
    """Poll GET /rest/transaction/<txid>/ (through anything with .get: the tests' Api, an httpx
    client) until its state is one of `states` (or `until(body)` holds)."""
    end = time.monotonic() + deadline
    body: dict = {}
    while True:
        r = client.get(f"/rest/transaction/{txid}/")
        assert r.status_code == 200, r.text
        body = r.json()
        if (until(body) if until else body["data"]["state"] in states):
            return body
        if time.monotonic() > end:
            raise AssertionError(f"transaction {txid} never got there ({states}): {body}")
        time.sleep(0.05)


def log_lines(body: dict) -> list[str]:
    return [entry[2] for entry in body["data"]["log"]]


def running(client: Any) -> list[dict]:
    """The transactions queued or running."""
    out = []
    for state in ("queued", "running"):
        r = client.get("/rest/transactions/", params={"state": state})
        assert r.status_code == 200, r.text
        out += r.json()["transactions"]
    return out


def package_files(data_dir: Path) -> list[str]:
    """Every file under the data dir's packages/ (temporary directories included)."""
    base = data_dir / "packages"
    if not base.exists():
        return []
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


# -- a server in a thread -------------------------------------------------------------------


@contextmanager
def uvicorn_thread(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(1200):  # a bounded number of tries, not a deadline
            if not thread.is_alive():
                raise RuntimeError("the server thread ended before answering")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{url}/healthz never answered")
        yield url
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def have_qemu_img() -> bool:
    return shutil.which("qemu-img") is not None
