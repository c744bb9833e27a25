"""The dashboard's static files (api/ui.py `CompressedFiles`): text compressed once per file
version and kept (the newest only), everything HTTP expects of a file kept too (validators,
304, ranges)."""

import gzip
import os

from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount

from enomalism.api.ui import CompressedFiles

GZIP = {"Accept-Encoding": "gzip"}


def client(tmp_path) -> tuple[TestClient, CompressedFiles]:  # noqa: ANN001
    files = CompressedFiles(tmp_path)
    return TestClient(Starlette(routes=[Mount("/s", files)])), files


def test_a_text_file_is_compressed_once_and_keeps_its_validators(tmp_path) -> None:
    script = tmp_path / "app.js"
    script.write_text("const x = 1;\n" * 500)
    c, files = client(tmp_path)
    plain = c.get("/s/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == script.read_bytes()
    r = c.get("/s/app.js", headers=GZIP)
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.content == script.read_bytes()  # httpx undid the gzip
    assert r.headers["etag"] == plain.headers["etag"] and r.headers["vary"] == "Accept-Encoding"
    assert "javascript" in r.headers["content-type"]
    assert int(r.headers["content-length"]) < script.stat().st_size / 10
    assert len(files._gz) == 1
    c.get("/s/app.js", headers=GZIP)
    assert len(files._gz) == 1  # kept, not compressed again
    again = c.get("/s/app.js", headers={**GZIP, "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    # a new version is compressed anew, and replaces the old one
    script.write_text("const y = 2;\n" * 500)
    os.utime(script, ns=(1, 2))
    newer = c.get("/s/app.js", headers=GZIP)
    assert newer.content == script.read_bytes() and newer.headers["etag"] != r.headers["etag"]
    assert len(files._gz) == 1


def test_what_is_not_compressed(tmp_path) -> None:
    (tmp_path / "big.css").write_text("a{}" * 1000)
    (tmp_path / "tiny.css").write_text("a{}")
    (tmp_path / "image.png").write_bytes(os.urandom(4000))
    c, files = client(tmp_path)
    for name in ("tiny.css", "image.png"):  # too small to gain; already compressed
        r = c.get(f"/s/{name}", headers=GZIP)
        assert r.status_code == 200 and "content-encoding" not in r.headers
    part = c.get("/s/big.css", headers={**GZIP, "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == b"a{}" * 3 + b"a"
    head = c.head("/s/big.css", headers=GZIP)
    assert head.status_code == 200 and head.content == b""
    assert c.get("/s/missing.css", headers=GZIP).status_code == 404
    assert files._gz == {}
    raw = c.get("/s/big.css", headers=GZIP)
    assert gzip.decompress(files._gz.popitem()[1][1]) == raw.content


def test_nothing_outside_the_directory_is_served(tmp_path) -> None:
    """A path that climbs out of the directory (dots the client sends encoded, so that it
    does not fold them away itself) answers 404, compressed or not."""
    inside = tmp_path / "static"
    inside.mkdir()
    (inside / "app.css").write_text("a{}" * 1000)
    (tmp_path / "secret.txt").write_text("not for the web\n" * 100)
    c, _files = client(inside)
    assert c.get("/s/%2e%2e/static/app.css", headers=GZIP).status_code == 200  # still inside
    for path in ("/s/%2e%2e/secret.txt", "/s/%2e%2e/%2e%2e/etc/passwd", "/s/..%2fsecret.txt"):
        for headers in (GZIP, {"Accept-Encoding": "identity"}):
            r = c.get(path, headers=headers)
            assert r.status_code == 404 and b"not for the web" not in r.content, path
