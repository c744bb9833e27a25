"""The dashboard's files: `GET /` and `GET /ui/...` answer its one HTML page (the page's
script routes by the URL's fragment and logs in with `/rest/session/`), `/ui/static/` its
scripts, styles and the vendored libraries (scripts/vendor-ui.sh). It adds no behaviour:
everything it shows and does goes through the API (docs/dashboard.md)."""

import gzip
import os
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enomalism.services import sessions

UI = Path(str(resources.files("enomalism") / "ui"))
# The page may load only its own files and talk only to its own server (no CDN, no inline
# script): what a injected string in a machine's name could do is bounded here too.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}


# The rows the machine list asks for first (app.js: machinesQuery with no filter, PAGE rows),
# fetched by the browser while it still loads the page's files (see `preloads`).
FIRST_ROWS = ("/rest/machines/?detail=1&fields=name%2Cstate%2Chost%2Cowner%2Cvcpus%2C"
              "memory_kib%2Cclusters&kind=vm&limit=50&offset=0")


def _scripted(headers: list[tuple[bytes, bytes]]) -> bool:
    """A request a page's script made: `X-Requested-With`, or a browser's fetch metadata
    for a fetch (a preload `as=fetch` cannot send headers of its own)."""
    return any(k == b"x-requested-with" or (k == b"sec-fetch-dest" and v == b"empty")
               for k, v in headers)


class NoBasicPrompt:
    """The dashboard's own requests (see `_scripted`) get their 401 without
    `WWW-Authenticate`: a browser would otherwise open its Basic login dialog over the page
    (and a headless one would wait on it forever); the page shows its own login instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _scripted(scope["headers"]):
            await self.app(scope, receive, send)
            return

        async def strip(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[
                    (k, v) for k, v in message.get("headers", [])
                    if k.lower() != b"www-authenticate"])
            await send(message)
        await self.app(scope, receive, strip)


class CompressedFiles(StaticFiles):
    """The dashboard's static files, each text file gzip-compressed once per version and kept,
    the newest version only (a few hundred KB in all): compressing every answer anew, as
    GZipMiddleware did, cost the event loop about 7 ms per page load, while the page's first
    requests waited on it."""

    KINDS = ("text/", "application/javascript", "application/json", "image/svg+xml")

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory)
        self._gz: dict[str, tuple[tuple[int, int], bytes]] = {}  # path: (version, gzip)

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        headers = Headers(scope=scope)
        if not (isinstance(response, FileResponse) and scope["method"] == "GET"
                and "gzip" in headers.get("accept-encoding", "") and "range" not in headers
                and stat_result.st_size >= 1024
                and (response.media_type or "").startswith(self.KINDS)):
            return response
        version = (stat_result.st_mtime_ns, stat_result.st_size)
        kept_version, body = self._gz.get(str(full_path), (None, b""))
        if kept_version != version:
            body = gzip.compress(Path(full_path).read_bytes(), 9)
            self._gz[str(full_path)] = (version, body)
        kept = {k: v for k, v in response.headers.items()
                if k in ("etag", "last-modified", "content-type")}
        return Response(body, status_code, headers={
            **kept, "content-encoding": "gzip", "vary": "Accept-Encoding"})


def preloads(page: str) -> str:
    """The page with the first requests of a logged-in visit (the session, the list's first
    rows) named in its head, so that the browser asks for them while it loads the files, not
    after app.js has run (about 150 ms later); app.js takes the answers (docs/dashboard.md)."""
    links = "".join(f'<link rel="preload" as="fetch" crossorigin href="{url}">\n'
                    for url in ("/rest/session/", FIRST_ROWS))
    return page.replace("<link rel=\"stylesheet\"", links + "<link rel=\"stylesheet\"", 1)


def mount(app: FastAPI) -> None:
    page = (UI / "index.html").read_text()
    eager = preloads(page)

    def index(request: Request) -> HTMLResponse:
        # with no session cookie the page is the login form: nothing to ask for early
        logged_in = sessions.COOKIE in request.cookies
        return HTMLResponse(eager if logged_in else page, headers=HEADERS)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/", index, methods=["GET"], include_in_schema=False)
    app.add_middleware(NoBasicPrompt)
    # compressed when the browser takes it: Pico and the scripts shrink to a fifth or so
    app.mount("/ui/static", CompressedFiles(UI / "static"), name="ui-static")
