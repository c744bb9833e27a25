"""The dashboard's files: `GET /` and `GET /ui/...` answer its one HTML page (the page's
script routes by the URL's fragment and logs in with `/rest/session/`), `/ui/static/` its
scripts, styles and the vendored libraries (scripts/vendor-ui.sh). It adds no behaviour:
everything it shows and does goes through the API (docs/dashboard.md)."""

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

UI = Path(str(resources.files("enomalism") / "ui"))
# The page may load only its own files and talk only to its own server (no CDN, no inline
# script): what a injected string in a machine's name could do is bounded here too.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}


def mount(app: FastAPI) -> None:
    page = (UI / "index.html").read_text()

    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/", index, methods=["GET"], include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=UI / "static"), name="ui-static")
