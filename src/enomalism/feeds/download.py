"""Fetching feeds and downloading packages over http(s).

Credentials come out of a URL at the edge (`split_credentials`) and travel as HTTP Basic auth
from there on: what is stored, logged or answered is the bare URL, or `redact(url)` (httpx's
own request log line included). They are sent to the URL's own origin only, at every redirect
hop (`_client`).

Every connection, redirects included, goes through `_GuardedBackend`: the host name is
resolved once, each address is checked against the `FetchPolicy` (no loopback, private,
link-local, ULA, CGNAT, multicast or unspecified address unless the admin allows it), and the
connection is made to the address that was checked, so a DNS answer that changes in between
cannot lead it inside. Failures to connect all read alike: a closed port and a filtered one
give the same message.

A download streams into `dest.part`, picks up an existing `.part` with a Range request, checks
size and sha256, and only then renames `.part` to `dest`: a file under its final name is
always whole. Network failures are `InvalidInput` (400): the URL came from the user or from a
feed the user added, and the message says what to check; there is no errno of its own for
"the server does not answer" because the person's remedy is the same as for a bad URL. Two
have: an address the policy refuses (AddressNotAllowed, an administrator's decision) and a
feed over its total time (FetchTimedOut).
"""

import errno
import fcntl
import hashlib
import ipaddress
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpcore
import httpx

from enomalism.errors import AddressNotAllowed, Conflict, FetchTimedOut, InvalidInput
from enomalism.writeback import Writeback

FETCH_LIMIT = 16 << 20  # a feed larger than this is not a feed
TIMEOUT = 30.0  # seconds without progress (connect, read or write)
TOTAL_TIMEOUT = 60.0  # seconds a whole fetch (a feed) may take, however it trickles
HASH_CHUNK = 4 << 20
READ_SIZE = 1 << 20  # bytes asked of the socket per read (httpcore's default: 64 KiB)
REPORT_EVERY = 0.2  # seconds between progress reports and cancellation checks
RETRY_DELAY = 0.25  # seconds before the first retry, doubling, at most 5
SENSITIVE_QUERY = frozenset({
    "password", "passwd", "pw", "pass", "token", "access_token", "auth", "key", "api_key",
    "apikey", "secret", "signature", "sig", "x-amz-signature", "x-amz-credential",
})
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Auth = tuple[str, str]


class DownloadCancelled(Exception):
    """The download stopped because `cancelled()` said so; its `.part` file is gone.

    Not an EnomalismError: it is no answer to a request, and a job turns it into its own
    cancellation.
    """


def split_credentials(url: str) -> tuple[str, Auth | None]:
    """`http://user:pw@host/x` -> (`http://host/x`, ("user", "pw")); no credentials -> None."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=hostport)), (unquote(user), unquote(password))


def redact(url: str) -> str:
    """The URL as logs and answers may show it: no credentials, no secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SENSITIVE_QUERY for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SENSITIVE_QUERY else v)
                               for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def check_url(url: str) -> str:
    """The URL, stripped, if it is an http(s) URL with a host; InvalidInput otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("the URL is empty")
    url = url.strip()
    if len(url) > 4096:
        raise InvalidInput("the URL is longer than 4096 characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInput("the URL contains spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise InvalidInput(f"{redact(url)} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"{parts.scheme}:" if parts.scheme else "a URL without a scheme"
        raise InvalidInput(f"only http and https URLs are accepted, not {scheme}")
    if not parts.hostname:
        raise InvalidInput(f"{redact(url)} has no host")
    return url


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port made explicit: what credentials are bound to."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").rstrip("."), port


def _prepare(url: str, auth: Auth | None) -> tuple[str, Auth | None]:
    bare, creds = split_credentials(check_url(url))
    return bare, auth or creds


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?$")


def is_inside(addr: Address) -> bool:
    """True for an address that is not on the public internet: loopback, private (RFC 1918),
    link-local, ULA, CGNAT, multicast, unspecified, reserved, and the IPv4-mapped and NAT64
    forms of those."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        elif addr in _NAT64:
            addr = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        elif addr.is_site_local:
            return True
    return (not addr.is_global or addr.is_multicast or addr.is_reserved
            or addr.is_unspecified or addr.is_loopback or addr.is_link_local)


def parse_allow(text: str) -> tuple[tuple[Network, ...], frozenset[str]]:
    """`ENOMALISM_FETCH_ALLOW`: comma-separated addresses, CIDR networks or host names ->
    (networks, host names). ValueError names the first entry that is none of them."""
    networks: list[Network] = []
    hosts: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry))
            continue
        except ValueError as e:
            if "/" in entry or ":" in entry or re.fullmatch(r"[\d.]+", entry):
                raise ValueError(f"'{entry}' is not an address or CIDR network ({e})") from None
        name = entry.lower()
        if not _HOST_NAME.match(name) or len(name) > 253:
            raise ValueError(f"'{entry}' is not an address, a CIDR network or a host name "
                             "(wildcards are not supported)")
        hosts.add(name.rstrip("."))
    return tuple(networks), frozenset(hosts)


@dataclass(frozen=True)
class FetchPolicy:
    """Where outbound fetches may connect: public addresses, and on the inside only what the
    administrator allows (`ENOMALISM_FETCH_ALLOW`); how long a whole fetch may take."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()
    total_timeout: float = TOTAL_TIMEOUT

    @classmethod
    def from_setting(cls, allow: str, total_timeout: float = TOTAL_TIMEOUT) -> "FetchPolicy":
        networks, hosts = parse_allow(allow)
        return cls(networks, hosts, total_timeout)

    def permits(self, host: str, addr: Address) -> bool:
        if not is_inside(addr) or host.lower().rstrip(".") in self.hosts:
            return True
        mapped = getattr(addr, "ipv4_mapped", None)
        return any(a in net for net in self.networks for a in (addr, mapped) if a is not None
                   and a.version == net.version)


_policy = FetchPolicy()


def configure(policy: FetchPolicy) -> None:
    """Set the policy for every fetch and download of this process (at server start)."""
    global _policy
    _policy = policy


def policy() -> FetchPolicy:
    return _policy


class _LargeReadStream(httpcore.NetworkStream):
    """A connection whose reads ask the socket for up to READ_SIZE bytes. httpcore asks for
    64 KiB at a time, and each read then passes through h11 and httpx in Python: for a GiB,
    16,384 trips and about a third of the receiving thread's CPU time. A read returns what
    the socket holds, so small answers are unchanged. With a `deadline` (time.monotonic()),
    no read or write waits past it: a server that trickles a byte now and then is cut off."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float | None = None) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float | None:
        if self._deadline is None:
            return timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the fetch took too long in total")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max(max_bytes, READ_SIZE),
                                 self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _LargeReadStream(self._stream.start_tls(*args, **kwargs), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _cleartext_socket(resp: httpx.Response) -> socket.socket | None:
    """The plain TCP socket under an HTTP/1.x answer, or None (TLS, or a stream that is not
    a socket of its own: a body there must be read through httpx)."""
    stream = resp.extensions.get("network_stream")
    if stream is None or resp.http_version not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket) \
            or stream.get_extra_info("ssl_object") is not None:
        return None
    return sock


class _GuardedBackend(httpcore.NetworkBackend):
    """Connects only where the policy permits, to the very address it checked: the name is
    resolved here, once, and the connection made to the address (httpcore still starts TLS
    with the URL's host name, so SNI and the certificate check are unchanged). Its streams
    read in large pieces and keep to the fetch's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend, policy: FetchPolicy,
                 deadline: float | None = None) -> None:
        self._backend, self._policy, self._deadline = backend, policy, deadline

    def _addresses(self, host: str, port: int) -> list[Address]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise httpcore.ConnectError(f"cannot resolve {host}") from None
        addrs = list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0])
                                   for i in infos))
        allowed = [a for a in addrs if self._policy.permits(host, a)]
        if not allowed:
            raise AddressNotAllowed(
                f"{host} is not on the public internet (a loopback, private, link-local or "
                "other internal address); fetches may reach it only if the administrator "
                "lists it in ENOMALISM_FETCH_ALLOW")
        return allowed

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None
                    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for addr in self._addresses(host, port):
            if self._deadline is not None:
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise httpcore.ConnectTimeout("the fetch took too long in total")
                timeout = left if timeout is None else min(timeout, left)
            try:
                stream = self._backend.connect_tcp(str(addr), port, timeout, local_address,
                                                   socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
                continue
            return _LargeReadStream(stream, self._deadline)
        raise last or httpcore.ConnectError(f"cannot connect to {host}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("fetches use TCP only")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# httpcore's errors as httpx's, most specific first (what httpx's own transport raises).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError), (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except tuple(frm for frm, _ in _ERRORS) as e:
        kind = next(to for frm, to in _ERRORS if isinstance(e, frm))
        raise kind(str(e)) from e


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        self._stream.close()


class _GuardedTransport(httpx.BaseTransport):
    """An httpx transport over httpcore's connection pool with the guarded network backend.
    httpx has no setting for the backend, but httpcore's pool takes one (a public argument):
    this is httpx's own transport, built on that pool. HTTP/1.1 only, no proxies (trust_env
    is off: a proxy would connect past the guard)."""

    def __init__(self, deadline: float | None = None) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(httpcore.SyncBackend(), _policy, deadline))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        req = httpcore.Request(
            method=request.method, headers=request.headers.raw, content=request.stream,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            extensions=request.extensions)
        with _as_httpx_errors():
            resp = self._pool.handle_request(req)
        return httpx.Response(status_code=resp.status, headers=resp.headers,
                              stream=_Body(resp.stream), extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


def _client(auth: Auth | None, timeout: float, deadline: float | None = None,
            home: str | None = None) -> httpx.Client:
    """A client whose credentials reach `home`'s origin only: httpx drops them on a redirect
    elsewhere, but keeps them on an upgrade from http to https; every hop is checked here.
    trust_env is off: no proxy from the environment (it would connect past the guard), no
    .netrc."""
    hooks = []
    if auth is not None and home is not None:
        own = origin(home)

        def only_home(request: httpx.Request) -> None:
            if origin(str(request.url)) != own:
                request.headers.pop("Authorization", None)
        hooks.append(only_home)
    return httpx.Client(
        transport=_GuardedTransport(deadline), auth=auth, follow_redirects=True, max_redirects=5,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": "enomalism"}, trust_env=False, event_hooks={"request": hooks},
    )


class _RedactUrls(logging.Filter):
    """httpx logs each request line ("HTTP Request: GET <url> ...") at INFO: without secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(redact(str(a)) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())


def _network_error(e: httpx.HTTPError, url: str, deadline: float | None = None,
                   ) -> InvalidInput:
    """One message per kind of failure, and no detail from the socket: a closed port, a
    filtered one and a host that does not exist read alike."""
    where = redact(url)
    host = urlsplit(url).hostname
    if isinstance(e, httpx.TimeoutException) and deadline is not None \
            and time.monotonic() >= deadline:
        return FetchTimedOut(f"could not fetch {where}: it took longer than "
                             f"{_policy.total_timeout:g} s in total")
    if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
        return InvalidInput(f"could not fetch {where}: {host} does not answer "
                            "(no connection could be made)")
    if isinstance(e, httpx.TimeoutException):
        return InvalidInput(f"could not fetch {where}: it stopped answering, no data for too "
                            "long")
    if isinstance(e, httpx.TooManyRedirects):
        return InvalidInput(f"could not fetch {where}: it redirects too many times")
    if isinstance(e, httpx.UnsupportedProtocol):
        return InvalidInput(f"could not fetch {where}: it redirects to a URL that is not http "
                            "or https")
    if isinstance(e, httpx.TransportError):
        return InvalidInput(f"could not fetch {where}: the connection to {host} broke off")
    return InvalidInput(f"could not fetch {where}")


def _refused(e: AddressNotAllowed, url: str) -> AddressNotAllowed:
    return AddressNotAllowed(f"could not fetch {redact(url)}: {e.message}")


def _status_error(resp: httpx.Response, url: str, auth: Auth | None) -> InvalidInput:
    where, code = redact(url), resp.status_code
    if code == 401 and auth is None:
        return InvalidInput(f"{where} needs credentials (HTTP 401): give them in the URL as "
                            "http://user:password@host/...")
    if code in (401, 403):
        return InvalidInput(f"{where} refused {'the credentials' if auth else 'access'} "
                            f"(HTTP {code})")
    if code == 404:
        return InvalidInput(f"{where} was not found (HTTP 404)")
    return InvalidInput(f"{where} answered HTTP {code} {resp.reason_phrase}".rstrip())


def fetch(url: str, auth: Auth | None = None, timeout: float = TIMEOUT,
          limit: int = FETCH_LIMIT) -> bytes:
    """A small document (a feed), whole, in memory; larger than `limit` is refused, and so
    is a fetch that takes longer than the policy's total_timeout (FetchTimedOut)."""
    url, auth = _prepare(url, auth)
    too_big = InvalidInput(f"{redact(url)} is larger than {limit} bytes; that is not a feed")
    deadline = time.monotonic() + _policy.total_timeout
    try:
        with _client(auth, timeout, deadline, url) as client, \
                client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise _status_error(resp, url, auth)
            length = resp.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit and "content-encoding" not in resp.headers:
                raise too_big
            body = bytearray()
            for chunk in resp.iter_bytes():  # decoded: the limit holds for gzip bombs too
                body += chunk
                if len(body) > limit:
                    raise too_big
            return bytes(body)
    except httpx.HTTPError as e:
        raise _network_error(e, url, deadline) from None
    except AddressNotAllowed as e:
        raise _refused(e, url) from None


class PartFile:
    """`name.part`, opened for writing and locked against a second writer of the same file.

    Removed on leaving the `with` block unless committed (renamed to its final name) or
    `keep` was set, which a download does to resume later.
    """

    def __init__(self, path: Path, busy: str, truncate: bool = True) -> None:
        self.path = Path(path)
        # No O_TRUNC before holding the lock: the file may be another writer's.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Conflict(busy) from None
            raise
        os.fchmod(fd, 0o600)  # a package is a copy of disks: the owner's only, whatever the umask
        self.file = os.fdopen(fd, "r+b", buffering=0)
        if truncate:
            self.file.truncate(0)
        self.file.seek(0, os.SEEK_END)
        self.committed = False
        self.keep = False

    def __enter__(self) -> "PartFile":
        return self

    def commit(self, dest: Path, fsync: bool = True) -> None:
        """Make the file durable and give it its final name."""
        if fsync:
            os.fsync(self.file.fileno())
        os.replace(self.path, dest)
        self.committed = True
        if fsync:
            dirfd = os.open(Path(dest).parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)

    def __exit__(self, *exc: object) -> None:
        if not self.committed and not self.keep:
            with suppress(FileNotFoundError):
                os.unlink(self.path)  # still holding the lock: nobody else's file
        self.file.close()


class HashThread:
    """sha256 computed in a thread of its own. hashlib releases the GIL on large updates, so
    hashing runs beside receiving or decompressing instead of after each chunk. Chunks are
    handed over in batches of about a MiB; the queue is bounded, so memory stays small."""

    BATCH = 1 << 20

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[list | None] = queue.Queue(maxsize=16)
        self._batch: list = []
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            for chunk in batch:
                self._sha.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Hash `chunk`, which must not change afterwards (bytes, not a reused buffer)."""
        self._batch.append(chunk)
        self._pending += len(chunk)
        if self._pending >= self.BATCH:
            self._queue.put(self._batch)
            self._batch, self._pending = [], 0

    def close(self) -> None:
        """Stop the thread (idempotent); the digest is then final."""
        if self._thread.is_alive():
            if self._batch:
                self._queue.put(self._batch)
                self._batch = []
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


class _Retry(Exception):
    """The transfer broke off; what arrived is kept and the next attempt resumes."""

    def __init__(self, error: InvalidInput) -> None:
        self.error = error


class _Transfer:
    """One download's state across attempts: the .part file, its length and running hash."""

    def __init__(self, part: PartFile, url: str, auth: Auth | None, want_hash: bool,
                 expected_size: int | None,
                 progress: Callable[[int, int | None], None] | None,
                 cancelled: Callable[[], bool] | None, fsync: bool = True,
                 timeout: float = TIMEOUT) -> None:
        self.part, self.url, self.auth = part, url, auth
        self.fsync, self.timeout = fsync, timeout
        self.f = part.file
        self.expected_size = expected_size
        self.progress, self.cancelled = progress, cancelled
        self.sha = HashThread() if want_hash else None
        self.total: int | None = expected_size
        self.done = self.f.seek(0, os.SEEK_END)
        self.writeback = Writeback(self.f.fileno(), self.done, fsync)
        self.last_report = 0.0
        if self.sha is not None and self.done:
            self._hash_existing(self.sha)

    def digest(self) -> str | None:
        """The sha256 of what was received (None when no hash was asked for)."""
        return self.sha.hexdigest() if self.sha is not None else None

    def _hash_existing(self, sha: HashThread) -> None:
        self.f.seek(0)
        while data := self.f.read(HASH_CHUNK):
            sha.update(data)
        self.f.seek(0, os.SEEK_END)

    def restart(self) -> None:
        self.f.truncate(0)
        self.f.seek(0)
        self.done = 0
        self.writeback = Writeback(self.f.fileno(), 0, self.fsync)
        if self.sha is not None:
            self.sha.close()
            self.sha = HashThread()

    def close(self) -> None:
        if self.sha is not None:
            self.sha.close()

    def _size_mismatch(self, size: int) -> InvalidInput:
        self.part.keep = False
        return InvalidInput(f"{redact(self.url)} is {size} bytes, but the feed says "
                            f"{self.expected_size}: the package is not the one announced")

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_report < REPORT_EVERY:
            return
        self.last_report = now
        if self.cancelled is not None and self.cancelled():
            raise DownloadCancelled(f"download of {redact(self.url)} cancelled")
        if self.progress is not None:
            self.progress(self.done, self.total)

    def attempt(self, client: httpx.Client) -> bool:
        """One GET. True when the body is complete; False when the .part did not fit the
        file and was emptied, to be read again from the start; _Retry when it broke off."""
        headers = {"Accept-Encoding": "identity"}
        offset = self.done
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with client.stream("GET", self.url, headers=headers) as resp:
                started = self._start(resp, offset)
                if started is not None:
                    return started
                write, sha, writeback = self.f.write, self.sha, self.writeback
                for chunk in self._body(resp):
                    if sha is not None:  # first: hashes while the chunk is being written
                        sha.update(chunk)
                    n = write(chunk)
                    while n < len(chunk):  # a raw file may take less than it was given
                        n += write(memoryview(chunk)[n:])
                    self.done += len(chunk)
                    writeback.wrote(self.done)
                    if self.expected_size is not None and self.done > self.expected_size:
                        raise self._size_mismatch(self.done)
                    self.tick()
        except httpx.HTTPError as e:
            raise _Retry(_network_error(e, self.url)) from None
        except AddressNotAllowed as e:
            raise _refused(e, self.url) from None
        return True

    def _body(self, resp: httpx.Response) -> Iterator[bytes]:
        """The answer's body. A body of known length, not encoded, on a cleartext
        connection is read straight from the socket once h11 has handed over what it holds
        already: through h11 each MiB is copied three times, under the GIL, which the
        hashing thread then waits for (0.3 s of CPU per GiB here, a third of the receiving
        thread's). The connection is then not reused: h11 still expects the body, so httpx
        closes it."""
        length = resp.headers.get("content-length", "")
        sock = _cleartext_socket(resp)
        if (sock is None or not length.isdigit() or "content-encoding" in resp.headers
                or "transfer-encoding" in resp.headers):
            yield from resp.iter_bytes()
            return
        left = int(length)
        raw = resp.iter_raw()  # kept, not closed: closing it would close the connection
        if (chunk := next(raw, b"")):  # what h11 holds already, or its first read
            left -= len(chunk)
            yield chunk
        sock.settimeout(self.timeout)
        while left > 0:
            try:
                chunk = sock.recv(min(left, READ_SIZE))
            except TimeoutError:
                raise httpx.ReadTimeout("no data for too long") from None
            except OSError as e:
                raise httpx.ReadError(str(e)) from None
            if not chunk:
                raise httpx.RemoteProtocolError("the server closed the connection "
                                                f"{left} bytes before the end of the body")
            left -= len(chunk)
            yield chunk

    def _start(self, resp: httpx.Response, offset: int) -> bool | None:
        """Look at the answer's status and headers: None to read the body, else what
        `attempt` returns without reading it."""
        code = resp.status_code
        if offset and code == 416:  # the .part is at least as long as the file
            m = re.match(r"^bytes\s+\*/(\d+)$", resp.headers.get("content-range", ""))
            if m and int(m.group(1)) == offset:
                self.total = offset
                return True
            self.restart()  # longer than the file: not a part of it
            return False
        if code == 206 and offset:
            m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
            if not m or int(m.group(1)) != offset:
                self.restart()
                return False
            if m.group(3) != "*":
                self.total = int(m.group(3))
        elif code == 200:
            if offset:  # the server ignores Range: start over
                self.restart()
            length = resp.headers.get("content-length", "")
            if length.isdigit() and "content-encoding" not in resp.headers:
                self.total = int(length)
        else:
            error = _status_error(resp, self.url, self.auth)
            if code in (408, 429, 500, 502, 503, 504):
                raise _Retry(error)
            raise error
        if self.expected_size is not None and self.total is not None \
                and self.total != self.expected_size:
            raise self._size_mismatch(self.total)
        self.tick(force=True)
        return None

    def verify(self, expected_sha256: str | None) -> None:
        if self.expected_size is not None and self.done != self.expected_size:
            raise self._size_mismatch(self.done)
        if self.total is not None and self.done != self.total:
            raise InvalidInput(f"{redact(self.url)} sent {self.done} of {self.total} bytes")
        if expected_sha256 is not None and self.digest() != expected_sha256:
            raise InvalidInput(f"{redact(self.url)} does not match its sha256: the download is "
                               "corrupt or the package changed; it was discarded")


def _receive(t: _Transfer, client: httpx.Client, retries: int) -> None:
    """Read the body into the .part, retrying a broken connection `retries` times."""
    failures = 0
    while True:
        try:
            if t.attempt(client):
                return
            if not t.attempt(client):  # from the start, the .part emptied: no Range
                raise InvalidInput(f"{redact(t.url)} does not answer Range requests "
                                   "consistently")
            return
        except _Retry as r:
            failures += 1
            if failures > retries:
                t.part.keep = t.done > 0
                raise r.error from None
            time.sleep(min(RETRY_DELAY * 2 ** (failures - 1), 5.0))
            t.tick(force=True)


def download(url: str, dest: Path, *, auth: Auth | None = None,
             expected_size: int | None = None, expected_sha256: str | None = None,
             progress: Callable[[int, int | None], None] | None = None,
             cancelled: Callable[[], bool] | None = None,
             timeout: float = TIMEOUT, retries: int = 2, fsync: bool = True) -> Path:
    """Download `url` to `dest`, whole and checked, and return `dest`.

    Streams into `dest.part` (resuming one left by an earlier attempt with a Range request;
    a server that ignores Range is read from the start), retrying a broken connection
    `retries` times. A resumed `.part` whose whole does not match the sha256 (what was there
    was not a part of this file) is read once more from the start. `progress(done, total)` and
    `cancelled()` are called every 0.2 s or so; cancelling removes the `.part` and raises
    DownloadCancelled. A size or sha256 mismatch removes the `.part` and raises InvalidInput;
    a network failure raises InvalidInput and keeps the `.part` for the next attempt. Only a
    verified file is renamed to `dest`. With `fsync` False the caller puts it on the disk
    (runtime/package_sync.py); nothing starts writing it back early either.
    """
    url, auth = _prepare(url, auth)
    if expected_sha256 is not None:
        expected_sha256 = expected_sha256.strip().lower()
        if not _SHA256.match(expected_sha256):
            raise InvalidInput("the expected sha256 is not 64 hexadecimal digits")
    dest = Path(dest)
    part_path = dest.with_name(dest.name + ".part")
    busy = f"{dest.name} is already being downloaded"
    with PartFile(part_path, busy, truncate=False) as part, \
            _client(auth, timeout, home=url) as client:
        t = _Transfer(part, url, auth, expected_sha256 is not None, expected_size, progress,
                      cancelled, fsync, timeout)
        try:
            t.tick(force=True)
            resumed = t.done > 0
            _receive(t, client, retries)
            if resumed and expected_sha256 is not None \
                    and t.digest() != expected_sha256:
                t.restart()
                t.tick(force=True)
                _receive(t, client, retries)
            t.verify(expected_sha256)
            t.tick(force=True)
            part.commit(dest, fsync)
        finally:
            t.close()
    return dest
