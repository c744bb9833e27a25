"""How a 2008 client and a plain HTML form reach the spec's entries (docs/api.md, Compatibility).

- A GET never changes anything: a GET carrying an `action` or the variables of a change is
  refused with errno 1080 (use POST) rather than answered errno 0 with nothing done.
- A body is read only as a form or JSON; any other non-empty body is a 415 (errno 1081), not
  a request without variables.
- A form can only GET and POST: a POST with `_method=PUT` (or DELETE) in its form, or an
  `X-HTTP-Method-Override` header, is routed as that method.
- A literal path segment (`/rest/user/create/`) is not a UUID: a method its entry does not list
  is a 405 (errno 1005), not "'create' is not a valid UUID" from the `<UUID>` entry beside it.
"""

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, QueryParams, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enomalism.api.answers import error_answer
from enomalism.api.guard import STREAMED_BODIES
from enomalism.errors import (
    BadMethodOverride,
    EnomalismError,
    InvalidInput,
    MethodNotAllowed,
    MissingVariable,
    UnreadableBody,
    UsePost,
)

READ_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "application/json")
# A form's file part read as a variable: the limit of a form's text field (Starlette's
# max_part_size), so an uploaded XML description is held to what a typed one is.
FILE_VARIABLE_LIMIT = 1 << 20
# The largest form searched for `_method`; a larger one goes on as the POST it is.
OVERRIDE_FORM_LIMIT = 8 << 20
OVERRIDABLE = ("PUT", "DELETE")


def content_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def is_read(ctype: str) -> bool:
    return ctype in READ_TYPES or ctype.endswith("+json")


# -- GET changes nothing -------------------------------------------------------------------

def refuse_changes_on_get(*models: Any) -> Any:
    """A dependency for an entry's GET: any of the variables of its POST (or PUT) in the query
    string asks for a change GET does not make, so it is refused (errno 1080), never answered
    errno 0. `models`: the Vars models of the entry's changing methods."""
    names = sorted({n for m in models for n in m.model_fields})

    async def dep(request: Request) -> None:
        given = [n for n in names if n in request.query_params]
        if given:
            raise UsePost(f"GET does not change anything here and {', '.join(given)} asks for a "
                          "change: send the same variables with POST (an HTML form: "
                          "method=\"post\")")
    return Depends(dep)


# -- bodies --------------------------------------------------------------------------------

# Routes whose request body is a file (an image, a package) streamed to where it is kept: the
# body is never read whole, nor held to the size limit of variables' bodies (JSON, forms).


def streams_body(request: Request) -> bool:
    """Whether the request's route takes a streamed file as its body (`STREAMED_BODIES`)."""
    route = request.scope.get("route")
    return (request.method, getattr(route, "path", None)) in STREAMED_BODIES


async def readable_body(request: Request) -> None:
    """Refuse a non-empty body that no handler would read (415, errno 1081): a text/plain or
    untyped body, or a GET's body, would otherwise be dropped and the request answered as if it
    had no variables."""
    if streams_body(request):
        return
    headers = request.headers
    if "content-length" in headers:
        size = 0 if headers["content-length"].strip() in ("", "0") else 1
    elif "transfer-encoding" in headers:
        size = len(await request.body())
    else:
        size = 0
    if not size:
        return
    ctype = content_type(headers)
    if request.method in ("GET", "HEAD"):
        raise UnreadableBody("a GET's body is not read: put the variables in the query "
                             "string, or send a change as POST")
    if not is_read(ctype):
        raise UnreadableBody(f"a body of type '{ctype or 'none'}' is not read: send "
                             "application/x-www-form-urlencoded, multipart/form-data or "
                             "application/json")


async def file_variable(name: str, part: UploadFile) -> str:
    """A multipart form's file part as the text of the variable of its name (an XML
    description chosen in a form's file input)."""
    data = await part.read(FILE_VARIABLE_LIMIT + 1)
    if len(data) > FILE_VARIABLE_LIMIT:
        raise InvalidInput(f"the file sent as variable '{name}' is larger than "
                           f"{FILE_VARIABLE_LIMIT // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"the file sent as variable '{name}' is not UTF-8 text") from None


# -- method override -----------------------------------------------------------------------

class MethodOverride:
    """A POST to a /rest/ path with `X-HTTP-Method-Override: PUT` (or DELETE), or a `_method`
    field in its form (or query string), is routed as that method: the only way an HTML form
    reaches a PUT-only entry (2.21, 3.7, 6.1, 7.1, 7.4, 7.5) or a DELETE. Any other method named
    is refused (errno 1082); an override on any other method is refused as well (errno 1080)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/rest/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        wanted = headers.get("x-http-method-override")
        query = QueryParams(scope["query_string"]) if b"_method" in scope["query_string"] \
            else QueryParams()
        in_query = "_method" in query
        if scope["method"] != "POST":
            if wanted is not None or in_query:
                await _answer(UsePost("a method override is read on POST only"),
                              scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if wanted is None and content_type(headers) in READ_TYPES[:2] and \
                _size(headers) <= OVERRIDE_FORM_LIMIT:
            body = await _read_all(receive)
            receive = _replay(body, then=receive)
            if b"_method" in body:
                wanted = await _form_method(scope, body)
        if wanted is None and in_query:
            wanted = query["_method"]
        if wanted is not None:
            method = wanted.strip().upper()
            if method not in OVERRIDABLE + ("POST",):
                await _answer(BadMethodOverride(
                    f"a POST may stand for PUT or DELETE, not '{wanted[:20]}'"),
                    scope, receive, send)
                return
            scope = dict(scope, method=method)
        await self.app(scope, receive, send)


def _size(headers: Headers) -> int:
    try:
        return int(headers.get("content-length", ""))
    except ValueError:
        return OVERRIDE_FORM_LIMIT + 1  # chunked or unknown: not buffered here


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, then: Receive) -> Receive:
    """The body read already, then what the server says next (a disconnect, when it comes)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()
    return receive


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


async def _form_method(scope: Scope, body: bytes) -> str | None:
    request = Request(scope, _replay(body, then=_disconnected))
    try:
        async with request.form() as form:
            value = form.get("_method")
    except Exception:  # an unreadable form: the route refuses it with its own message
        return None
    return value if isinstance(value, str) else None


async def _answer(error: EnomalismError, scope: Scope, receive: Receive, send: Send) -> None:
    await error_answer(error)(scope, receive, send)


# -- literal path segments -----------------------------------------------------------------

def guard_literal_paths(router: APIRouter) -> None:
    """For each /rest/ path that a `<UUID>` path beside it also matches (`/rest/group/create/`
    and `/rest/group/{uuid}/`), answer the methods only the `<UUID>` path takes with 405
    (errno 1005) rather than letting them reach it with 'create' as the UUID. Run once per
    router, before it is included."""
    routes = [r for r in router.routes if isinstance(r, APIRoute)]
    methods: dict[str, set[str]] = {}
    for r in routes:
        methods.setdefault(r.path, set()).update(r.methods or ())
    for path, taken in methods.items():
        sample = re.sub(r"\{[^}]+\}", "x", path)
        shadowing = set().union(*(r.methods or () for r in routes
                                  if r.path != path and r.path_regex.match(sample)))
        missing = shadowing - taken
        if missing:
            router.add_api_route(path, _refuse(path, taken), methods=sorted(missing),
                                 include_in_schema=False)
            first = next(i for i, r in enumerate(router.routes)
                         if isinstance(r, APIRoute) and r.path == path)
            router.routes.insert(first, router.routes.pop())


def _refuse(path: str, taken: set[str]) -> Any:
    allowed = ", ".join(sorted(taken))

    async def refuse(request: Request) -> None:
        raise MethodNotAllowed(f"{path} takes {allowed}, not {request.method}")
    return refuse


# -- a POST without variables --------------------------------------------------------------

def posted_nothing(v: Any, needs: str | None = None) -> bool:
    """The one rule for a POST to an entry that takes GET and POST (docs/api.md,
    Compatibility): carrying none of the entry's variables, it reads, answering what GET
    answers (the spec lists POST beside GET on every such entry, and a 2008 client may POST
    where it reads). Carrying some but not `needs` (the `action`), it asked for a change it did
    not name: 400, errno 1001, rather than errno 0 with nothing done."""
    given = sorted(v.model_fields_set)
    if not given:
        return True
    if needs and needs not in given:
        raise MissingVariable(f"the variable '{needs}' is required with {', '.join(given)}")
    return False
