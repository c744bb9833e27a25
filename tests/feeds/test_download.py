"""Downloads and fetches against real HTTP servers on 127.0.0.1, started by the tests."""

import base64
import hashlib
import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import pytest

from enomalism import writeback
from enomalism.errors import Conflict, InvalidInput
from enomalism.feeds import download as dl
from enomalism.feeds.download import (
    DownloadCancelled,
    PartFile,
    check_url,
    download,
    fetch,
    redact,
    split_credentials,
)

PAYLOAD = os.urandom(3 << 20) + bytes(1 << 20)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class QuietServer(ThreadingHTTPServer):
    manners: "Server"

    def handle_error(self, request, client_address):
        pass  # clients that hang up (a cancelled or refused download) are part of the tests


class Handler(BaseHTTPRequestHandler):
    """Answers as its server's `Server` (its manners) says."""

    protocol_version = "HTTP/1.1"
    server: QuietServer

    def log_message(self, *args):
        pass

    def do_GET(self):
        manners = self.server.manners
        manners.requests.append({"path": self.path, **{k.lower(): v for k, v in
                                                       self.headers.items()}})
        if self._refused(manners):
            return
        data = manners.files.get(self.path)
        if data is None:
            return self.reply(404, b"not here")
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if m and manners.ranges:
            return self._partial(data, int(m.group(1)))
        self.reply(200, data)

    def _refused(self, manners: "Server") -> bool:
        """Answered already: credentials wanted, a redirect, an error status."""
        if manners.auth:
            token = base64.b64encode(":".join(manners.auth).encode()).decode()
            if self.headers.get("Authorization") != f"Basic {token}":
                self.reply(401, b"who are you?", {"WWW-Authenticate": 'Basic realm="feeds"'})
                return True
        if self.path in manners.redirects:
            self.reply(302, b"", {"Location": manners.redirects[self.path]})
            return True
        if self.path in manners.statuses:
            self.reply(manners.statuses[self.path], b"no")
            return True
        return False

    def _partial(self, data: bytes, start: int) -> None:
        if start >= len(data):
            return self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        self.reply(206, data[start:], {
            "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})

    def reply(self, code, body, headers=None):
        manners = self.server.manners
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if manners.chunked and body:
            return self._chunked(body)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if manners.drops and manners.drop_after is not None and len(body) > 1000:
            manners.drops -= 1
            self.wfile.write(body[: manners.drop_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if manners.stall_after is not None and len(body) > 1000:
            self.wfile.write(body[: manners.stall_after])
            self.wfile.flush()
            manners.stalled.wait(10)
            return
        self.wfile.write(body)

    def _chunked(self, body: bytes) -> None:
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 100_000):
            piece = body[i:i + 100_000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")


class Server:
    """A file server whose manners each test sets: Range or not, dropped connections,
    Basic auth, redirects, error statuses. It records every request's headers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/p.xvm2": PAYLOAD}
        self.ranges = True
        self.drop_after: int | None = None  # body bytes sent before the connection is cut
        self.drops = 0  # how many answers are cut
        self.stall_after: int | None = None  # body bytes sent before the server goes quiet
        self.stalled = threading.Event()  # set to let a stalled answer go on
        self.chunked = False  # Transfer-Encoding: chunked instead of Content-Length
        self.auth: tuple[str, str] | None = None
        self.redirects: dict[str, str] = {}
        self.statuses: dict[str, int] = {}
        self.requests: list[dict[str, str]] = []
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.manners = self
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str = "/p.xvm2", creds: str = "") -> str:
        return f"http://{creds}127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def other_server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY", 0.0)
    monkeypatch.setattr(dl, "REPORT_EVERY", 0.0)


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url, bare, creds", [
    ("http://host/x", "http://host/x", None),
    ("http://alice:s3cret@host:8080/x?y=1", "http://host:8080/x?y=1", ("alice", "s3cret")),
    ("https://bob@host/x", "https://host/x", ("bob", "")),
    ("http://a%40b:p%3Aw%2Fd@[::1]:81/f", "http://[::1]:81/f", ("a@b", "p:w/d")),
])
def test_split_credentials(url, bare, creds):
    assert split_credentials(url) == (bare, creds)


def test_redact():
    assert redact("http://alice:s3cret@host/x") == "http://***@host/x"
    assert redact("https://host/f.xml?token=abc&page=2&Signature=zz") == (
        "https://host/f.xml?token=***&page=2&Signature=***")
    assert redact("http://host/x?a=1") == "http://host/x?a=1"
    assert redact("http://[::1") == "<malformed URL>"


@pytest.mark.parametrize("url, message", [
    ("", "empty"),
    ("   ", "empty"),
    ("ftp://host/feed.xml", "not ftp:"),
    ("file:///etc/passwd", "not file:"),
    ("javascript:alert(1)", "not javascript:"),
    ("host/feed.xml", "without a scheme"),
    ("http:///feed.xml", "has no host"),
    ("http://host:99999/x", "not a valid URL"),
    ("http://host/a b", "spaces"),
    ("http://host/a\nb", "control characters"),
    ("http://" + "a" * 5000, "longer than"),
])
def test_check_url_refuses(url, message):
    with pytest.raises(InvalidInput, match=message):
        check_url(url)


def test_check_url_accepts_and_never_shows_passwords():
    assert check_url("  https://Host.example:8443/feed.xml  ") == (
        "https://Host.example:8443/feed.xml")
    with pytest.raises(InvalidInput) as e:
        check_url("http://alice:s3cret@host:bad/x")
    assert "s3cret" not in e.value.message


# -- fetch ----------------------------------------------------------------------------------


def test_fetch(server):
    server.files["/feed.xml"] = b"<rss/>"
    assert fetch(server.url("/feed.xml")) == b"<rss/>"


def test_fetch_errors(server):
    with pytest.raises(InvalidInput, match=r"/nope was not found \(HTTP 404\)"):
        fetch(server.url("/nope"))
    server.statuses["/broken"] = 500
    with pytest.raises(InvalidInput, match="answered HTTP 500"):
        fetch(server.url("/broken"))
    with pytest.raises(InvalidInput, match="larger than 1000 bytes"):
        fetch(server.url(), limit=1000)


def test_fetch_from_nobody():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InvalidInput, match=r"127.0.0.1 does not answer \(no connection"):
        fetch(f"http://127.0.0.1:{port}/feed.xml")


def test_fetch_with_basic_auth(server):
    server.auth = ("alice", "s3cret pw")
    server.files["/feed.xml"] = b"<rss/>"
    assert fetch(server.url("/feed.xml", "alice:s3cret%20pw@")) == b"<rss/>"
    assert fetch(server.url("/feed.xml"), auth=("alice", "s3cret pw")) == b"<rss/>"
    with pytest.raises(InvalidInput, match="needs credentials"):
        fetch(server.url("/feed.xml"))
    with pytest.raises(InvalidInput, match="refused the credentials") as e:
        fetch(server.url("/feed.xml", "alice:wrong-secret@"))
    assert "wrong-secret" not in e.value.message and "alice" not in e.value.message


def test_credentials_do_not_follow_a_redirect_to_another_origin(server, other_server):
    server.auth = ("alice", "s3cret")
    server.redirects["/feed.xml"] = other_server.url("/feed.xml")
    other_server.files["/feed.xml"] = b"<rss/>"
    assert fetch(server.url("/feed.xml", "alice:s3cret@")) == b"<rss/>"
    assert "authorization" in server.requests[-1]
    assert "authorization" not in other_server.requests[-1]


def test_redirect_to_another_scheme(server):
    server.redirects["/feed.xml"] = "file:///etc/passwd"
    with pytest.raises(InvalidInput, match="not http or https"):
        fetch(server.url("/feed.xml"))


# -- download -------------------------------------------------------------------------------


def test_download(server, tmp_path):
    seen = []
    dest = download(server.url(), tmp_path / "p.xvm2", expected_size=len(PAYLOAD),
                    expected_sha256=SHA.upper(), progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["p.xvm2"]
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert server.requests[-1]["accept-encoding"] == "identity"


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/1.0"])  # 1.0: python -m http.server
def test_a_plain_body_is_read_from_the_socket(server, tmp_path, monkeypatch, protocol):
    """The body of a cleartext answer of known length bypasses h11 (see _Transfer._body); a
    later httpx that no longer exposes the socket would quietly lose that."""
    server.httpd.RequestHandlerClass.protocol_version = protocol
    found = []
    real = dl._cleartext_socket
    monkeypatch.setattr(dl, "_cleartext_socket", lambda resp: found.append(real(resp)) or found[-1])
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert len(found) == 1 and isinstance(found[0], socket.socket)


def test_a_chunked_body_is_read_through_httpx(server, tmp_path):
    server.chunked = True
    download(server.url(), tmp_path / "p.xvm2", expected_size=len(PAYLOAD),
             expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["p.xvm2"]


def test_a_server_that_goes_quiet_mid_body_times_out_and_the_part_is_kept(server, tmp_path):
    server.stall_after = 2 << 20
    try:
        with pytest.raises(InvalidInput, match="stopped answering"):
            download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, timeout=0.5,
                     retries=0)
    finally:
        server.stalled.set()
    assert leftovers(tmp_path) == ["p.xvm2.part"]
    assert (tmp_path / "p.xvm2.part").stat().st_size > 0
    server.stall_after = None
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD


def test_download_without_checks(server, tmp_path):
    assert download(server.url(), tmp_path / "p").read_bytes() == PAYLOAD


def test_resume_with_range(server, tmp_path):
    (tmp_path / "p.xvm2.part").write_bytes(PAYLOAD[: 1 << 20])
    seen = []
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA,
             progress=lambda d, t: seen.append(d))
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert server.requests[-1]["range"] == f"bytes={1 << 20}-"
    assert seen[0] == 1 << 20
    assert leftovers(tmp_path) == ["p.xvm2"]


def test_server_ignoring_range_is_read_from_the_start(server, tmp_path):
    server.ranges = False
    (tmp_path / "p.xvm2.part").write_bytes(b"stale bytes from some other file")
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD


def test_complete_part_is_answered_416(server, tmp_path):
    (tmp_path / "p.xvm2.part").write_bytes(PAYLOAD)
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_part_longer_than_the_file_starts_over(server, tmp_path):
    (tmp_path / "p.xvm2.part").write_bytes(PAYLOAD + b"extra")
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, retries=0)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert "range" not in server.requests[-1]


def test_dropped_connection_resumes_on_the_next_attempt(server, tmp_path):
    server.drop_after, server.drops = 1 << 20, 1
    with pytest.raises(InvalidInput, match="connection to 127.0.0.1 broke off"):
        download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, retries=0)
    part = tmp_path / "p.xvm2.part"
    assert leftovers(tmp_path) == ["p.xvm2.part"]  # never under the final name
    assert 0 < part.stat().st_size < len(PAYLOAD)
    have = part.stat().st_size
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, retries=0)
    assert server.requests[-1]["range"] == f"bytes={have}-"
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["p.xvm2"]


def test_dropped_connections_are_retried_within_one_call(server, tmp_path):
    server.drop_after, server.drops = 1 << 20, 2
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, retries=2)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert len(server.requests) == 3 and "range" in server.requests[-1]


def test_dropped_connection_on_a_server_without_range(server, tmp_path):
    server.ranges = False
    server.drop_after, server.drops = 1 << 20, 1
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, retries=1)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD


def test_wrong_sha256_discards_the_download(server, tmp_path):
    with pytest.raises(InvalidInput, match="does not match its sha256"):
        download(server.url(), tmp_path / "p.xvm2", expected_sha256="0" * 64)
    assert leftovers(tmp_path) == []


def test_a_resumed_part_that_does_not_match_is_read_again_from_the_start(server, tmp_path):
    """What a .part holds may not be a part of this file (the file changed on the server, or
    the machine crashed before the .part was on the disk): once the whole does not match the
    sha256, it is fetched once more from the start."""
    (tmp_path / "p.xvm2.part").write_bytes(b"\xff" * (1 << 20))
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    assert [r.get("range") for r in server.requests] == [f"bytes={1 << 20}-", None]
    assert leftovers(tmp_path) == ["p.xvm2"]


def test_a_download_that_does_not_match_even_from_the_start_is_discarded(server, tmp_path):
    (tmp_path / "p.xvm2.part").write_bytes(PAYLOAD[: 1 << 20])
    with pytest.raises(InvalidInput, match="does not match its sha256"):
        download(server.url(), tmp_path / "p.xvm2", expected_sha256="0" * 64)
    assert len(server.requests) == 2 and "range" not in server.requests[-1]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("size", [len(PAYLOAD) + 1, len(PAYLOAD) - 1, 10])
def test_wrong_size_discards_the_download(server, tmp_path, size):
    with pytest.raises(InvalidInput, match=f"is {len(PAYLOAD)} bytes, but the feed says {size}"):
        download(server.url(), tmp_path / "p.xvm2", expected_size=size)
    assert leftovers(tmp_path) == []
    assert len(server.requests) == 1


def test_cancel(server, tmp_path):
    seen = []

    def cancelled():
        return bool(seen) and seen[-1] > 0

    with pytest.raises(DownloadCancelled):
        download(server.url(), tmp_path / "p.xvm2", cancelled=cancelled,
                 progress=lambda d, t: seen.append(d))
    assert leftovers(tmp_path) == []


def test_download_with_basic_auth(server, tmp_path):
    server.auth = ("alice", "s3cret")
    download(server.url(creds="alice:s3cret@"), tmp_path / "a", expected_sha256=SHA)
    download(server.url(), tmp_path / "b", auth=("alice", "s3cret"))
    with pytest.raises(InvalidInput, match="refused the credentials") as e:
        download(server.url(creds="alice:nope-secret@"), tmp_path / "c")
    assert "nope-secret" not in str(e.value)
    assert leftovers(tmp_path) == ["a", "b"]


def test_not_found_and_server_errors(server, tmp_path):
    with pytest.raises(InvalidInput, match="not found"):
        download(server.url("/gone.xvm2"), tmp_path / "p.xvm2")
    server.statuses["/p.xvm2"] = 503
    with pytest.raises(InvalidInput, match="HTTP 503"):
        download(server.url(), tmp_path / "p.xvm2", retries=2)
    assert len(server.requests) == 4  # the 404 once, the 503 three times
    assert leftovers(tmp_path) == []


def test_bad_arguments(server, tmp_path):
    with pytest.raises(InvalidInput, match="only http and https"):
        download("ftp://h/p.xvm2", tmp_path / "p")
    with pytest.raises(InvalidInput, match="64 hexadecimal"):
        download(server.url(), tmp_path / "p", expected_sha256="abc")
    assert leftovers(tmp_path) == [] and server.requests == []


def test_second_download_of_the_same_file_is_refused(server, tmp_path):
    with PartFile(tmp_path / "p.xvm2.part", "busy", truncate=False):
        with pytest.raises(Conflict, match="already being downloaded"):
            download(server.url(), tmp_path / "p.xvm2")
    assert server.requests == []


def test_connections_read_in_large_pieces():
    """httpcore's 64 KiB reads cost a third of a download's CPU; the guarded backend's
    streams ask the socket for READ_SIZE (that every fetch goes through that backend is what
    tests/feeds/test_fetch_policy.py shows: nothing inside is reached)."""
    backend = dl._GuardedBackend(httpcore.SyncBackend(), dl.FetchPolicy.from_setting("127.0.0.1"))
    server = socket.create_server(("127.0.0.1", 0))
    try:
        stream = backend.connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
        peer.sendall(b"x" * (300 << 10))
        assert isinstance(stream, dl._LargeReadStream)
        got = b""
        while len(got) < (300 << 10):
            got += stream.read(64 << 10, timeout=5)
        assert len(got) == 300 << 10
        stream.close()
        peer.close()
    finally:
        server.close()


@pytest.mark.parametrize("fsync", [True, False])
def test_writeback_is_started_behind_a_download_that_will_be_synced(server, tmp_path,
                                                                   monkeypatch, fsync):
    calls = []
    monkeypatch.setattr(writeback, "_START_WRITEBACK", lambda fd, off, n: calls.append((off, n)))
    monkeypatch.setattr(writeback, "EVERY", 256 << 10)
    (tmp_path / "p.xvm2.part").write_bytes(PAYLOAD[: 1 << 20])  # resumed: from there on
    download(server.url(), tmp_path / "p.xvm2", expected_sha256=SHA, fsync=fsync)
    assert (tmp_path / "p.xvm2").read_bytes() == PAYLOAD
    if not fsync:
        assert calls == []
        return
    assert calls and calls[0][0] == 1 << 20
    assert all(a + n == b for (a, n), (b, _) in zip(calls, calls[1:], strict=False))
    assert calls[-1][0] + calls[-1][1] <= len(PAYLOAD)
