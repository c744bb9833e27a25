"""One server, one identity: the HTTP connection every resource sends its requests through,
the answers checked into `ClientError`s, file uploads, and the events stream."""

import json
import os
import re
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from enomalism import __version__
from enomalism.client.errors import ClientError, UnreachableError, error_for


class Connection:
    """HTTP Basic (`username`, `password`) or a bearer `token`, to the server at `url`."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise ClientError(0, 1000, f"'{url}' is not a server URL (http://host:port)")
        auth: Any = None
        headers = {"User-Agent": f"enomalism-client/{__version__}", "Accept": "application/json"}
        if username is not None and password is not None:
            auth = (username, password)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        # Certificates are only loaded for https (loading them costs more than a request).
        self.http = httpx.Client(base_url=self.url, auth=auth, headers=headers,
                                 timeout=timeout, transport=transport,
                                 verify=self.url.startswith("https:"))

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        try:
            if stream:
                return self.http.send(self.http.build_request(method, path, **kw), stream=True)
            return self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise UnreachableError(0, 0, f"cannot reach the server at {self.url}: "
                                         f"{e or type(e).__name__}") from None

    @staticmethod
    def check(r: httpx.Response) -> dict:
        try:
            answer = r.json()
        except ValueError:
            if r.status_code >= 400:
                raise error_for(r.status_code, 1, f"HTTP {r.status_code} "
                                f"{r.reason_phrase} (not an enomalism answer)") from None
            raise ClientError(r.status_code, 1, "the server's answer is not JSON; is this "
                              "an enomalism server?") from None
        if not isinstance(answer, dict):
            raise ClientError(r.status_code, 1, "the server's answer is not a JSON object")
        errno = answer.get("errno") or 0
        if r.status_code >= 400 or errno:
            raise error_for(r.status_code, errno or 1,
                            answer.get("message") or f"HTTP {r.status_code}", answer)
        return answer

    def call(self, method: str, path: str, **variables: Any) -> dict:
        """One request; `variables` (None ones left out) go as the query string of a GET and
        as a JSON body otherwise. Returns the answer, or raises a `ClientError`."""
        body = {k: v for k, v in variables.items() if v is not None}
        if method in ("GET", "HEAD"):
            r = self.send(method, path, params=body)
        else:
            r = self.send(method, path, json=body)
        return self.check(r)

    def upload(self, path: str, file: str | os.PathLike,
               progress: Callable[[int, int], None] | None, **variables: Any) -> dict:
        """PUT a local file as the request body, read a MiB at a time (never whole), with
        `variables` in the query string."""
        size = os.path.getsize(file)

        def chunks() -> typing.Iterator[bytes]:
            done = 0
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    done += len(chunk)
                    yield chunk
                    if progress is not None:
                        progress(done, size)
        params = {k: v for k, v in variables.items() if v is not None}
        r = self.send("PUT", path, params=params, content=chunks(), timeout=None,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size)})
        return self.check(r)

    def health(self) -> bool:
        """Whether the server answers /healthz (no credentials needed)."""
        r = self.send("GET", "/healthz")
        return r.status_code == 200

    def events(self, types: Iterable[str] = (), last_event_id: str | int | None = None, *,
               idle: float = 45.0) -> Iterator[dict]:
        """Follow `GET /rest/events/`: yield each event the user may read, as a dict (`id`,
        `type`, `time`, `object`), forever. A broken stream (or one silent for `idle`
        seconds: the server sends a heartbeat every 15) is reopened with `Last-Event-ID`, so
        nothing within the server's retention window is missed; past it the server sends a
        `resync` event (re-read what you show). Gives up with `UnreachableError` after five
        failed reconnects in a row. `types`: event types or families (`machine`)."""
        for event in self.follow(list(types), last_event_id, idle=idle):
            if event is not OPENED:
                yield event

    def follow(self, types: list[str], last_event_id: str | int | None, *, idle: float,
                deadline: float | None = None) -> Iterator[Any]:
        """The events, and `OPENED` each time the stream is (re)opened; ends at `deadline`."""
        last = None if last_event_id is None else str(last_event_id)
        retry, failures = 2.0, 0
        while deadline is None or time.monotonic() < deadline:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            left = idle if deadline is None else max(0.1, min(idle, deadline - time.monotonic()))
            try:
                with self.http.stream("GET", "/rest/events/", params={"type": types},
                                      headers=headers,
                                      timeout=httpx.Timeout(self.http.timeout.connect or 10,
                                                            read=left)) as r:
                    if r.status_code != 200:
                        r.read()
                        self.check(r)
                        raise ClientError(r.status_code, 1, "the events stream did not open")
                    failures = 0
                    yield OPENED
                    for block in sse_blocks(r.iter_lines()):
                        last = block.get("id", last)
                        if "retry" in block and block["retry"].isdigit():
                            retry = int(block["retry"]) / 1000
                        if "data" in block:
                            yield json.loads(block["data"])
                        if deadline is not None and time.monotonic() >= deadline:
                            return
            except httpx.TransportError as e:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                failures += 1
                if failures > 5:
                    raise UnreachableError(0, 0, f"the events stream of {self.url} broke and "
                                                 f"could not be reopened: {e or type(e).__name__}"
                                           ) from None
            time.sleep(min(retry * failures, 30) if failures else 0.05)


OPENED = object()  # `Connection.follow`: the stream was (re)opened


def sse_blocks(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The fields of each Server-Sent Events block (comments left out; `data` lines joined)."""
    block: dict[str, str] = {}
    for line in lines:
        if not line:
            if block:
                yield block
            block = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data" and "data" in block:
            block["data"] += "\n" + value
        elif name in ("id", "event", "data", "retry"):
            block[name] = value
