"""What a request may not do before any route sees it: change something from a browser page
of another site, or cost more than the server means to spend reading it (docs/access.md).

The two middlewares are pure ASGI and look only at headers, so the benchmarked action path
pays a header scan; the input checks run where variables are read (`deps.read_vars`)."""

import json
import logging
from urllib.parse import unquote_to_bytes

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enomalism.api.answers import error_answer
from enomalism.errors import (
    BodyTooLarge,
    CrossSiteRequest,
    EnomalismError,
    FieldTooLong,
    NestedTooDeep,
    NotUTF8,
)

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Variables that carry a whole document: bounded by the body limit, not the field limit.
DOCUMENT_FIELDS = frozenset({"xmldesc"})
MAX_JSON_DEPTH = 32
# Path prefixes whose routes read large bodies themselves (uploads, when there are any) and
# enforce a limit of their own: `BodyLimit` lets their bodies through.
# The routes whose body is a file streamed to its place (an image, a package): their own checks
# bound them (Content-Length against the pool's or the cache's free space), not this limit.
STREAMED_BODIES = frozenset({("PUT", "/rest/images/"), ("PUT", "/rest/vmfeed/upload/")})


async def _refused(scope: Scope, e: EnomalismError) -> None:
    """A change refused here is in the audit log too (api/audit.py)."""
    if scope["method"] not in SAFE_METHODS:
        from enomalism.api import audit  # audit -> deps -> guard

        await audit.refused_before_routing(scope, e)


def _origins(trusted: list[str]) -> frozenset[bytes]:
    return frozenset(o.strip().rstrip("/").lower().encode() for o in trusted if o.strip())


def cross_site(scope: Scope, trusted: frozenset[bytes]) -> str | None:
    """Why the request comes from a browser page of another site (a header to quote), or None.

    Go's `http.CrossOriginProtection` rule: a browser that sends `Sec-Fetch-Site` is believed
    (same-origin and none, a typed URL or bookmark, pass; same-site and cross-site do not: a
    sibling subdomain is not this server); an older one is judged by `Origin` against `Host`;
    no header at all is not a browser (curl, the 2008 clients) and passes. Origins listed in
    `trusted_origins` pass."""
    origin = site = host = None
    for key, value in scope["headers"]:
        if key == b"origin":
            origin = value
        elif key == b"sec-fetch-site":
            site = value
        elif key == b"host":
            host = value
    if origin is not None and origin.rstrip(b"/").lower() in trusted:
        return None
    if site is not None:
        if site in (b"same-origin", b"none"):
            return None
        return f"Sec-Fetch-Site: {site.decode('latin-1')}"
    if origin is None:
        return None
    netloc = origin.partition(b"://")[2].lower()
    if host is not None and netloc == host.lower():
        return None
    return f"Origin: {origin.decode('latin-1')}"


def refusal(why: str) -> CrossSiteRequest:
    return CrossSiteRequest(
        f"refused: a browser sent this request from a page of another site ({why}); requests "
        "that change something are accepted only from the server's own pages, from API "
        "clients, or from an origin listed in ENOMALISM_TRUSTED_ORIGINS")


class CrossSite:
    """Refuses (403, errno 1140) every request but GET, HEAD and OPTIONS that `cross_site`
    finds comes from another site: whatever credentials the browser holds for this server
    (HTTP Basic is cached), a page elsewhere cannot use them to change anything. The GETs that
    change something refuse the same way (`deps.writes_on_get`)."""

    def __init__(self, app: ASGIApp, trusted_origins: list[str]) -> None:
        self.app = app
        self.trusted = _origins(trusted_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            why = cross_site(scope, self.trusted)
            if why is not None:
                client = scope.get("client")
                log.warning("refused %s %s from %s: a browser page of another site (%s)",
                            scope["method"], scope["path"], client[0] if client else "?", why)
                await _refused(scope, refusal(why))
                await error_answer(refusal(why))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refuse_cross_site(request: Request) -> None:
    """For a GET that changes something: refuse it as `CrossSite` refuses a POST."""
    why = cross_site(request.scope, _origins(request.app.state.settings.trusted_origins))
    if why is not None:
        raise refusal(why)


class BodyLimit:
    """Stops reading a request body at `limit` bytes: a declared Content-Length over it is
    answered 413 (errno 1040) at once, a longer chunked body fails its read with the same.
    The routes in `STREAMED_BODIES` are let through (they stream and bound their files)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in STREAMED_BODIES:
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared == b"0":
            await self.app(scope, receive, send)
            return
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refused(scope, self._too_large())
            await error_answer(self._too_large())(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await _refused(scope, self._too_large())
                raise self._too_large()
            return message
        await self.app(scope, bounded, send)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body is larger than {self.limit} bytes "
                            "(ENOMALISM_MAX_BODY_BYTES)")


# -- the variables themselves --------------------------------------------------------------

def _urlencoded(data: bytes, where: str) -> None:
    """Every name and value of a query string or urlencoded form is UTF-8 once unquoted
    (Starlette would replace bad escapes with U+FFFD and read raw bytes as Latin-1)."""
    for pair in data.split(b"&"):
        for part in pair.split(b"=", 1):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                raise NotUTF8(f"the {where} holds a name or value that is not valid UTF-8 "
                              f"({part[:40].decode('latin-1')!r}); nothing was done") from None


def _multipart(body: bytes, content_type: str) -> None:
    """Every part name and every value of a part that is not a file is UTF-8 (Starlette would
    read it as Latin-1). Malformed bodies are left to the form parser, which refuses them."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        return
    part: dict = {}

    def header_field(data: bytes, start: int, end: int) -> None:
        part["field"] = part.get("field", b"") + data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        part["value"] = part.get("value", b"") + data[start:end]

    def header_end() -> None:
        if part.pop("field", b"").lower() == b"content-disposition":
            part["disposition"] = part.get("value", b"")
        part.pop("value", None)

    def data(data: bytes, start: int, end: int) -> None:
        part.setdefault("data", bytearray()).extend(data[start:end])

    def part_end() -> None:
        _, options = parse_options_header(part.get("disposition", b""))
        name = options.get(b"name", b"")
        texts = [name] if b"filename" in options else [name, bytes(part.get("data", b""))]
        for text in texts:
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise NotUTF8(f"the multipart part {name[:40].decode('latin-1')!r} is not "
                              "valid UTF-8 (only file parts may be binary); nothing was "
                              "done") from None
        part.clear()

    parser = MultipartParser(boundary, {
        "on_header_field": header_field, "on_header_value": header_value,
        "on_header_end": header_end, "on_part_data": data, "on_part_end": part_end})
    try:
        parser.write(body)
        parser.finalize()
    except EnomalismError:
        raise
    except Exception:  # malformed: the form parser answers it
        return


def _depth(obj: object) -> int:
    deepest, todo = 0, [(obj, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            todo.extend((v, level + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest


def _json(body: bytes) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotUTF8("the JSON body is not valid UTF-8; nothing was done") from None
    try:
        obj = json.loads(text)
    except RecursionError:
        obj = None
        deep = True
    except ValueError:
        return  # not JSON: read_vars says so
    else:
        deep = _depth(obj) > MAX_JSON_DEPTH
    if deep:
        raise NestedTooDeep(f"the JSON body nests more than {MAX_JSON_DEPTH} levels deep; "
                            "HTTP variables are flat")


async def check_input(request: Request, ctype: str) -> None:
    """Before variables are read: the query string and a form, multipart or JSON body are
    UTF-8 text, and JSON does not nest deeper than `MAX_JSON_DEPTH`. Reading the body here
    also bounds it (`BodyLimit`) before any parser holds it."""
    if request.scope["query_string"]:
        _urlencoded(request.scope["query_string"], "query string")
    if ctype == "application/x-www-form-urlencoded":
        _urlencoded(await request.body(), "form")
    elif ctype == "multipart/form-data":
        _multipart(await request.body(), request.headers.get("content-type", ""))
    elif ctype == "application/json" or ctype.endswith("+json"):
        _json(await request.body())


def check_lengths(request: Request, raw: dict[str, list]) -> None:
    """No variable longer than `max_field_bytes` (those in `DOCUMENT_FIELDS` only bounded by
    the body): a 30 MB name is refused before it reaches the database or the audit log."""
    limit = request.app.state.settings.max_field_bytes
    for name, values in raw.items():
        if name in DOCUMENT_FIELDS:
            continue
        for value in values:
            if isinstance(value, str) and len(value) * 4 > limit and \
                    len(value.encode("utf-8", "surrogatepass")) > limit:
                raise FieldTooLong(f"variable '{name[:64]}' is longer than {limit} bytes "
                                   "(ENOMALISM_MAX_FIELD_BYTES); nothing was done")
