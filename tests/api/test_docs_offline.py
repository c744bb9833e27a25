"""`/docs` (Swagger UI) and `/redoc` work offline: every file they load is served by the server
itself, from the package, and answers 200; no URL points elsewhere (a CDN)."""

import re

import pytest

URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_local_files(shared_api, page):
    r = shared_api.request("GET", page, auth=None)
    assert r.status_code == 200, r.text
    urls = {a or b for a, b in URL.findall(r.text)}
    assert not [u for u in urls if "//" in u], f"{page} loads files from elsewhere: {urls}"
    assert len(urls) >= 2, urls  # the script, and the OpenAPI description or the style sheet
    for url in urls:
        got = shared_api.request("GET", url, auth=None)
        assert got.status_code == 200, f"{page}: {url} answers {got.status_code}"
        assert got.content, url
    assert "/openapi.json" in urls


def test_the_swagger_ui_script_is_the_real_one(shared_api):
    r = shared_api.request("GET", "/docs", auth=None)
    [script] = re.findall(r"""<script src=["']([^"']+)["']""", r.text)
    js = shared_api.request("GET", script, auth=None)
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text
