"""Section 6 (repositories, packages, retrieval, download) and the published feed, against real
HTTP feed servers on 127.0.0.1 serving packages built by the project's own writer. Bad input is
refused with a status and errno and leaves nothing half-made: no repository, no package, no file
in the data dir's packages/, no transaction left running."""

import io
import logging
import os
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

import feedparser
import httpx
import pytest
from fastapi.testclient import TestClient

from enomalism.api.app import create_app
from enomalism.config import Settings
from enomalism.feeds.feed import parse_feed
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, Api, expect_error
from tests.fakehost import FakeDomain, write_host
from tests.integration.provision_helpers import (
    PKG_TYPE,
    FeedServer,
    Pkg,
    build_package,
    feed_item,
    feed_server,
    have_qemu_img,
    log_lines,
    make_qcow2,
    package_files,
    publish,
    running,
    sha256_of,
    uvicorn_thread,
    wait_tx,
)

pytestmark = pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed for images")

NO_SUCH = "6f1b2c3d-0000-4000-8000-000000000000"
FEED_USER, FEED_PASSWORD = "feeder", "s3cret-Pa55-w0rd-xyzzy"


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pkg]:
    """Three small packages (alpha and beta tiny; big with 2 MiB of random data) and an
    unsafe copy of alpha for each way a member can be dangerous."""
    d = tmp_path_factory.mktemp("pkgs")
    tiny = make_qcow2(d / "tiny.qcow2", 16, data=b"hello from the package\n" * 100)
    rnd = make_qcow2(d / "random.qcow2", 16, data=os.urandom(2 << 20))
    out = {
        "alpha": build_package(d / "alpha.xvm2", tiny, name="alpha"),
        "beta": build_package(d / "beta.xvm2", tiny, name="beta", version="2"),
        "gamma": build_package(d / "gamma.xvm2", tiny, name="gamma"),
        "big": build_package(d / "big.xvm2", rnd, name="big"),
    }
    for kind in ("absolute", "dotdot", "symlink"):
        out[kind] = unsafe_copy(out["alpha"], d / f"{kind}.xvm2", kind)
    return out


def unsafe_copy(pkg: Pkg, dest: Path, kind: str) -> Pkg:
    """The package's members plus one dangerous member, as a tar anyone could serve."""
    with tarfile.open(pkg.path) as src, tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tar:
        for info in src.getmembers():
            tar.addfile(info, src.extractfile(info))
        if kind == "symlink":
            evil = tarfile.TarInfo("evil")
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(evil)
        else:
            evil = tarfile.TarInfo("/etc/cron.d/evil" if kind == "absolute" else "../../evil")
            evil.size = 1
            tar.addfile(evil, io.BytesIO(b"x"))
    return Pkg(dest, pkg.name, pkg.manifest, sha256_of(dest), dest.stat().st_size,
               pkg.virt_class, pkg.arch)


@pytest.fixture
def srv() -> FeedServer:
    with feed_server() as s:
        yield s


def data_dir(api: Api) -> Path:
    return Path(api.app.state.settings.data_dir)


def add_feed(api: Api, url: str) -> dict:
    body = api.ok("PUT", "/rest/vmfeed/", data={"url": url})
    assert set(body) >= {"uuid", "packages", "errno", "message"}
    return body


def pkg_by_name(packages: list[dict], name: str) -> dict:
    return next(p for p in packages if p["name"] == name)


def retrieve(api: Api, pkg_uuid: str, method: str = "GET") -> dict:
    body = api.ok(method, f"/rest/vmfeed/repo/package/{pkg_uuid}/")
    assert set(body) >= {"tx", "errno", "message"}
    return body


def snapshot(api: Api) -> dict:
    return {
        "repositories": api.ok("GET", "/rest/vmfeed/repo/")["repositories"],
        "packages": api.ok("GET", "/rest/vmfeed/")["packages"],
        "files": package_files(data_dir(api)),
        "transactions": len(api.ok("GET", "/rest/transactions/")["transactions"]),
    }


@contextmanager
def nothing_made(api: Api):
    """The block makes no repository, package, file or transaction, and leaves none running."""
    before = snapshot(api)
    yield
    assert snapshot(api) == before
    assert running(api) == []


# -- adding, listing, reading ----------------------------------------------------------------


def test_add_a_feed_and_list_its_packages(api, srv, pkgs):
    url = publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2"),
                        feed_item(srv, pkgs["beta"], "/p/beta.xvm2")], title="test feed")
    body = add_feed(api, url)
    assert body["errno"] == 0 and "2 package(s)" in body["message"]
    repo = body["uuid"]
    assert sorted(p["name"] for p in body["packages"]) == ["alpha", "beta"]
    alpha = pkg_by_name(body["packages"], "alpha")
    assert alpha["state"] == "remote" and alpha["repository"] == repo
    assert alpha["url"] == srv.url("/p/alpha.xvm2")
    assert alpha["length"] == pkgs["alpha"].size and alpha["sha256"] == pkgs["alpha"].sha256
    assert (alpha["virt_class"], alpha["arch"], alpha["version"]) == ("kvm", "x86_64", "1")
    assert alpha["size"] is None  # nothing here yet

    listed = api.ok("GET", "/rest/vmfeed/")
    assert set(listed) >= {"packages", "errno", "message"} and listed["errno"] == 0
    assert {p["uuid"] for p in listed["packages"]} == {p["uuid"] for p in body["packages"]}
    assert api.ok("GET", "/rest/vmfeed/", params={"state": "cached"})["packages"] == []
    assert len(api.ok("GET", "/rest/vmfeed/", params={"state": "remote"})["packages"]) == 2
    assert len(api.ok("GET", "/rest/vmfeed/", params={"state": ""})["packages"]) == 2
    body = expect_error(api.get("/rest/vmfeed/", params={"state": "bogus"}), 400, 1000)
    assert "remote, retrieving, cached" in body["message"]

    repos = api.ok("GET", "/rest/vmfeed/repo/")["repositories"]
    assert [(r["uuid"], r["url"], r["title"], r["packages"], r["has_credentials"])
            for r in repos] == [(repo, url, "test feed", 2, False)]
    one = api.ok("GET", f"/rest/vmfeed/repo/{repo}/")
    assert one["repository"]["uuid"] == repo
    assert sorted(p["name"] for p in one["packages"]) == ["alpha", "beta"]
    got = api.ok("GET", f"/rest/vmfeed/{alpha['uuid']}/")["package"]
    assert got["uuid"] == alpha["uuid"] and got["name"] == "alpha"


def test_rename_describe_and_delete_a_package(api, srv, pkgs):
    url = publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")])
    repo = add_feed(api, url)["uuid"]
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]

    same = api.ok("POST", f"/rest/vmfeed/{uuid}/")  # no variables: like GET
    assert same["package"]["name"] == "alpha"
    body = api.ok("POST", f"/rest/vmfeed/{uuid}/", data={"name": "  renamed ",
                                                         "description": "a new text"})
    assert (body["package"]["name"], body["package"]["description"]) == ("renamed", "a new text")
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["name"] == "renamed"
    for bad in ("", "   ", "x" * 256):
        expect_error(api.post(f"/rest/vmfeed/{uuid}/", data={"name": bad}), 400, 1000)
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["name"] == "renamed"

    api.ok("DELETE", f"/rest/vmfeed/{uuid}/")
    expect_error(api.get(f"/rest/vmfeed/{uuid}/"), 404, 1200)
    assert api.ok("GET", "/rest/vmfeed/")["packages"] == []
    # the feed still lists it: a refresh brings it back (as a new record)
    api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"})
    assert [p["name"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]] == ["alpha"]


def test_refresh_picks_up_a_new_item_and_drops_a_removed_one(api, srv, pkgs):
    a = feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")
    b = feed_item(srv, pkgs["beta"], "/p/beta.xvm2")
    c = feed_item(srv, pkgs["gamma"], "/p/gamma.xvm2")
    repo = add_feed(api, publish(srv, [a, b]))["uuid"]
    before = {p["name"]: p["uuid"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]}

    publish(srv, [b, c])
    body = api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"})
    assert "2 package(s)" in body["message"]
    assert sorted(p["name"] for p in body["packages"]) == ["beta", "gamma"]
    after = {p["name"]: p["uuid"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]}
    assert set(after) == {"beta", "gamma"}
    assert after["beta"] == before["beta"]  # the same record, not a new one
    expect_error(api.get(f"/rest/vmfeed/{before['alpha']}/"), 404, 1200)
    assert api.ok("GET", f"/rest/vmfeed/repo/{repo}/")["repository"]["packages"] == 2

    # a cached package the feed stops listing stays (it is here); a remote one goes
    tx = retrieve(api, after["beta"])["tx"]
    assert wait_tx(api, tx)["data"]["state"] == "done"
    publish(srv, [c])
    api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"})
    left = {p["name"]: p["state"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]}
    assert left == {"beta": "cached", "gamma": "remote"}


def test_a_new_build_under_the_same_guid_drops_the_stale_copy(api, srv, pkgs):
    item = feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2", guid="same-guid")
    repo = add_feed(api, publish(srv, [item]))["uuid"]
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    wait_tx(api, retrieve(api, uuid)["tx"])
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"

    publish(srv, [feed_item(srv, pkgs["beta"], "/p/beta.xvm2", guid="same-guid")])
    api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"})
    p = api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]
    assert (p["state"], p["sha256"]) == ("remote", pkgs["beta"].sha256)
    expect_error(api.get(f"/rest/vmfeed/{uuid}/download/"), 409, 1301)
    assert package_files(data_dir(api)) == []  # the old build is not kept as if it were new
    wait_tx(api, retrieve(api, uuid)["tx"])
    assert api.get(f"/rest/vmfeed/{uuid}/download/").content == pkgs["beta"].bytes()


@pytest.mark.parametrize("how", ["action", "method"])
def test_delete_a_repository_with_its_packages_and_files(api, srv, pkgs, how):
    repo = add_feed(api, publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2"),
                                       feed_item(srv, pkgs["beta"], "/p/beta.xvm2")]))["uuid"]
    alpha = pkg_by_name(api.ok("GET", "/rest/vmfeed/")["packages"], "alpha")["uuid"]
    wait_tx(api, retrieve(api, alpha)["tx"])
    assert package_files(data_dir(api)) == [f"{alpha}.xvm2"]
    if how == "action":
        body = api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "delete"})
    else:
        body = api.ok("DELETE", f"/rest/vmfeed/repo/{repo}/")
    assert body["repository"] is None and "deleted" in body["message"]
    expect_error(api.get(f"/rest/vmfeed/repo/{repo}/"), 404, 1200)
    assert api.ok("GET", "/rest/vmfeed/")["packages"] == []
    assert api.ok("GET", "/rest/vmfeed/repo/")["repositories"] == []
    assert package_files(data_dir(api)) == []
    add_feed(api, srv.url("/feed.xml"))  # the URL may be added again


# -- retrieval, the cache, download, the published feed ---------------------------------------


def test_retrieval_progress_cache_download_and_uncache(api, srv, pkgs):
    big = pkgs["big"]
    add_feed(api, publish(srv, [feed_item(srv, big, "/p/big.xvm2")]))
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    srv.rate, srv.gate_after = 1 << 20, 512 << 10  # a few progress reports, then a hold
    srv.gates["/p/big.xvm2"] = gate = threading.Event()

    first = retrieve(api, uuid, "POST")
    tx = first["tx"]
    assert tx and first["message"] == "retrieval queued"
    body = wait_tx(api, tx, until=lambda b: b["data"]["state"] == "running"
                   and 0 < b["completion"] < 90, deadline=60)
    assert body["data"]["kind"] == "retrieve" and body["data"]["target"] == uuid
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "retrieving"
    assert retrieve(api, uuid)["tx"] == tx  # not started twice
    expect_error(api.get(f"/rest/vmfeed/{uuid}/download/"), 409, 1301)
    expect_error(api.delete(f"/rest/vmfeed/{uuid}/"), 409, 1301)  # busy
    expect_error(api.delete(f"/rest/vmfeed/repo/package/{uuid}/"), 409, 1301)
    gate.set()
    srv.rate = None

    done = wait_tx(api, tx)
    assert done["data"]["state"] == "done", done
    assert done["completion"] == 100 and done["data"]["error"] is None
    assert done["data"]["result"] == {"package": uuid, "size": big.size}
    assert any(line.startswith("downloading ") for line in log_lines(done))
    p = api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]
    assert (p["state"], p["size"]) == ("cached", big.size)
    assert [d["target"] for d in p["disks"]] == ["vda"]
    assert package_files(data_dir(api)) == [f"{uuid}.xvm2"]
    assert sha256_of(data_dir(api) / "packages" / f"{uuid}.xvm2") == big.sha256

    again = retrieve(api, uuid)
    assert again["tx"] is None and "cached already" in again["message"]

    r = api.get(f"/rest/vmfeed/{uuid}/download/")
    assert r.status_code == 200
    assert r.content == big.bytes()
    assert int(r.headers["content-length"]) == big.size
    assert r.headers["content-type"].startswith(PKG_TYPE)
    r = api.get(f"/rest/vmfeed/{uuid}/download/", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == big.bytes()[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{big.size}"
    assert int(r.headers["content-length"]) == 1000
    r = api.get(f"/rest/vmfeed/{uuid}/download/", headers={"Range": f"bytes={big.size - 10}-"})
    assert r.status_code == 206 and r.content == big.bytes()[-10:]

    body = api.ok("DELETE", f"/rest/vmfeed/repo/package/{uuid}/")
    assert body["tx"] is None and "removed" in body["message"]
    p = api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]
    assert (p["state"], p["size"]) == ("remote", None)
    assert package_files(data_dir(api)) == []
    expect_error(api.get(f"/rest/vmfeed/{uuid}/download/"), 409, 1301)
    # retrieved again from scratch
    assert wait_tx(api, retrieve(api, uuid)["tx"])["data"]["state"] == "done"
    assert package_files(data_dir(api)) == [f"{uuid}.xvm2"]


def test_cancel_a_retrieval_leaves_no_file(api, srv, pkgs):
    add_feed(api, publish(srv, [feed_item(srv, pkgs["big"], "/p/big.xvm2")]))
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    srv.rate = 1 << 20
    tx = retrieve(api, uuid)["tx"]
    wait_tx(api, tx, until=lambda b: b["data"]["state"] == "running" and b["completion"] > 0)
    api.ok("DELETE", f"/rest/transaction/{tx}/")
    body = wait_tx(api, tx)
    assert body["data"]["state"] == "cancelled", body
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "remote"
    assert package_files(data_dir(api)) == []
    assert running(api) == []
    srv.rate = None
    r = api.ok("POST", f"/rest/transaction/{tx}/", data={"action": "retry"})
    assert r["data"]["state"] == "queued"
    assert wait_tx(api, tx)["data"]["state"] == "done"
    assert package_files(data_dir(api)) == [f"{uuid}.xvm2"]


def test_published_feed_lists_cached_packages_with_download_enclosures(api, srv, pkgs):
    add_feed(api, publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2"),
                                feed_item(srv, pkgs["beta"], "/p/beta.xvm2")]))
    packages = api.ok("GET", "/rest/vmfeed/")["packages"]
    alpha = pkg_by_name(packages, "alpha")["uuid"]
    r = api.get("/rest/vmfeed/feed.xml")
    assert r.status_code == 200 and "rss" in r.headers["content-type"]
    assert parse_feed(r.content, "http://testserver/").items == []  # nothing cached yet

    wait_tx(api, retrieve(api, alpha)["tx"])
    r = api.get("/rest/vmfeed/feed.xml")
    feed = parse_feed(r.content, "http://testserver/")
    assert len(feed.items) == 1
    item = feed.items[0]
    assert item.url == f"http://testserver/rest/vmfeed/{alpha}/download/"
    assert (item.title, item.length, item.sha256, item.type) == \
        ("alpha", pkgs["alpha"].size, pkgs["alpha"].sha256, PKG_TYPE)
    assert (item.virt_class, item.arch, item.version) == ("kvm", "x86_64", "1")
    # a plain RSS reader sees one enclosure it can fetch
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo
    enc = parsed.entries[0].enclosures[0]
    assert (enc["href"], int(enc["length"]), enc["type"]) == (item.url, item.length, PKG_TYPE)
    got = api.get(item.url.replace("http://testserver", ""))
    assert got.status_code == 200 and got.content == pkgs["alpha"].bytes()

    # only what the requester may read, and only to someone signed in
    assert api.get("/rest/vmfeed/feed.xml", auth=None).status_code == 401


# -- credentials in a feed URL ------------------------------------------------------------------


def all_answers(api: Api, repo: str, txids: list[str]) -> list[str]:
    texts = [api.get("/rest/vmfeed/").text, api.get("/rest/vmfeed/repo/").text,
             api.get(f"/rest/vmfeed/repo/{repo}/").text,
             api.post(f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"}).text,
             api.get("/rest/transactions/").text, api.get("/rest/vmfeed/feed.xml").text]
    for p in api.ok("GET", "/rest/vmfeed/")["packages"]:
        texts.append(api.get(f"/rest/vmfeed/{p['uuid']}/").text)
    for tx in txids:
        texts.append(api.get(f"/rest/transaction/{tx}/").text)
    return texts


def test_feed_url_with_credentials_works_and_the_password_is_never_shown(api, srv, pkgs,
                                                                       caplog):
    caplog.set_level(logging.DEBUG)
    srv.auth = (FEED_USER, FEED_PASSWORD)
    publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2"),
                  feed_item(srv, pkgs["big"], "/p/big.xvm2")])
    plain = srv.url("/feed.xml")

    r = api.put("/rest/vmfeed/", data={"url": plain})
    body = expect_error(r, 400, 1000)
    assert "credentials" in body["message"]
    r = api.put("/rest/vmfeed/", data={"url": srv.url("/feed.xml", FEED_USER, "wrong-guess")})
    body = expect_error(r, 400, 1000)
    assert "wrong-guess" not in r.text and FEED_USER not in r.text
    assert api.ok("GET", "/rest/vmfeed/repo/")["repositories"] == []

    r = api.put("/rest/vmfeed/", data={"url": srv.url("/feed.xml", FEED_USER, FEED_PASSWORD)})
    assert r.status_code == 200, r.text
    texts = [r.text]
    repo = r.json()["uuid"]
    info = api.ok("GET", f"/rest/vmfeed/repo/{repo}/")["repository"]
    assert info["url"] == plain and info["has_credentials"] is True
    expect_error(api.put("/rest/vmfeed/", data={"url": plain}), 409, 1300)  # the same feed
    txids = []
    for p in api.ok("GET", "/rest/vmfeed/")["packages"]:
        tx = retrieve(api, p["uuid"])["tx"]
        txids.append(tx)
        assert wait_tx(api, tx)["data"]["state"] == "done"
    # the enclosures were fetched with the feed's credentials
    assert all(req.get("authorization") for req in srv.requests if req["path"].startswith("/p/"))
    assert {req["path"] for req in srv.requests} >= {"/feed.xml", "/p/alpha.xvm2",
                                                     "/p/big.xvm2"}
    # a failing retrieval's message and log are redacted too
    srv.files["/p/alpha.xvm2"] = b"not the package any more"
    uuid = pkg_by_name(api.ok("GET", "/rest/vmfeed/")["packages"], "alpha")["uuid"]
    api.ok("DELETE", f"/rest/vmfeed/repo/package/{uuid}/")
    tx = retrieve(api, uuid)["tx"]
    txids.append(tx)
    assert wait_tx(api, tx)["data"]["state"] == "failed"

    texts += all_answers(api, repo, txids)
    for text in texts:
        assert FEED_PASSWORD not in text
        assert f"{FEED_USER}:" not in text
    for record in caplog.records:
        assert FEED_PASSWORD not in record.getMessage()


def test_one_installation_consumes_anothers_feed(api, srv, pkgs, tmp_path):
    """Installation A (uvicorn in a thread) caches a package; installation B (the `api`
    fixture) adds A's feed.xml with A's admin credentials and retrieves it from A."""
    add_feed(api, publish(srv, []))  # B has a repository of its own already
    uri = write_host(tmp_path / "a-host.xml", [FakeDomain("a-vm")])
    settings = Settings(data_dir=tmp_path / "a-data", hypervisors=[uri],
                        admin_password=ADMIN_PASSWORD, database_url=None, **FAST_HASHES)
    app = create_app(settings)
    with TestClient(app) as client_a:  # lifespan: A's runner threads start
        a = Api(client_a)
        add_feed(a, publish(srv, [feed_item(srv, pkgs["big"], "/p/big.xvm2")]))
        a_pkg = a.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
        assert wait_tx(a, retrieve(a, a_pkg)["tx"])["data"]["state"] == "done"
        with uvicorn_thread(app) as base:
            feed_url = f"{base}/rest/vmfeed/feed.xml"
            assert httpx.get(feed_url).status_code == 401
            host = base.removeprefix("http://")
            r = api.put("/rest/vmfeed/", data={"url": f"http://admin:{ADMIN_PASSWORD}@{host}"
                                                      "/rest/vmfeed/feed.xml"})
            assert r.status_code == 200, r.text
            assert ADMIN_PASSWORD not in r.text
            body = r.json()
            assert [p["name"] for p in body["packages"]] == ["big"]
            p = body["packages"][0]
            assert p["url"] == f"{base}/rest/vmfeed/{a_pkg}/download/"
            assert (p["length"], p["sha256"]) == (pkgs["big"].size, pkgs["big"].sha256)
            tx = retrieve(api, p["uuid"])["tx"]
            done = wait_tx(api, tx)
            assert done["data"]["state"] == "done", done
            assert ADMIN_PASSWORD not in api.get(f"/rest/transaction/{tx}/").text
            got = api.get(f"/rest/vmfeed/{p['uuid']}/download/")
            assert got.content == pkgs["big"].bytes()
            # B publishes it again in turn
            feed = parse_feed(api.get("/rest/vmfeed/feed.xml").content, "http://testserver/")
            assert [i.sha256 for i in feed.items] == [pkgs["big"].sha256]


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, errno", [
    ("ftp://127.0.0.1/feed.xml", 1000),
    ("file:///etc/passwd", 1000),
    ("gopher://127.0.0.1:70/", 1000),
    ("127.0.0.1/feed.xml", 1000),
    ("http:///feed.xml", 1000),
    ("http://127.0.0.1:99999/feed.xml", 1000),
    ("http://127.0.0.1/feed xml", 1000),
    ("", 1001),
    (None, 1001),
])
def test_feed_urls_that_are_not_http(shared_api, url, errno):
    api = shared_api
    with nothing_made(api):
        expect_error(api.put("/rest/vmfeed/", data={} if url is None else {"url": url}),
                     400, errno)


def test_a_feed_that_does_not_answer(shared_api, srv):
    api = shared_api
    closed = srv.url("/feed.xml").replace(str(srv.port), "1")
    with nothing_made(api):
        body = expect_error(api.put("/rest/vmfeed/", data={"url": closed}), 400, 1000)
        assert "does not answer" in body["message"]
        body = expect_error(api.put("/rest/vmfeed/", data={"url": srv.url("/none.xml")}),
                            400, 1000)
        assert "404" in body["message"]


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title></channel></rss>"""
XXE = (b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY s SYSTEM "file:///etc/passwd">]>'
       b'<rss version="2.0"><channel><title>&s;</title></channel></rss>')


@pytest.mark.parametrize("content, words", [
    (b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>", "HTML"),
    (os.urandom(3000), "XML"),
    (b"", "empty"),
    (BOMB, "entit"),
    (XXE, "entit"),
    (b'<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title></feed>', "Atom"),
    (b"<opml><body/></opml>", "not an RSS feed"),
    (b'<rss version="2.0"><channel><item><title>x</title><enclosure url="file:///etc/passwd"'
     b' type="application/octet-stream" length="1"/></item></channel></rss>', "http"),
])
def test_a_feed_that_is_not_rss(shared_api, srv, content, words):
    api = shared_api
    srv.files["/bad.xml"] = content
    with nothing_made(api):
        r = api.put("/rest/vmfeed/", data={"url": srv.url("/bad.xml")})
        body = expect_error(r, 400, 1000)
        assert words.lower() in body["message"].lower(), body
        assert "root:" not in r.text


def test_a_feed_url_is_added_once(api, srv, pkgs):
    url = publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")])
    add_feed(api, url)
    with nothing_made(api):
        expect_error(api.put("/rest/vmfeed/", data={"url": url}), 409, 1300)
        expect_error(api.put("/rest/vmfeed/", data={"url": srv.url("/feed.xml", "u", "p")}),
                     409, 1300)


@pytest.mark.parametrize("lie, message", [
    ({"length": 1234}, "1234"),
    ({"sha256": "0" * 64}, "sha256"),
])
def test_an_enclosure_that_does_not_match_is_not_cached(api, srv, pkgs, lie, message):
    add_feed(api, publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2", **lie)]))
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    tx = retrieve(api, uuid)["tx"]
    body = wait_tx(api, tx)
    assert body["data"]["state"] == "failed", body
    assert message in body["data"]["error"] and body["message"].startswith("failed: ")
    p = api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]
    assert (p["state"], p["size"]) == ("remote", None)
    assert package_files(data_dir(api)) == []
    expect_error(api.get(f"/rest/vmfeed/{uuid}/download/"), 409, 1301)
    assert running(api) == []


@pytest.mark.parametrize("kind, message", [
    ("absolute", "absolute path"), ("dotdot", "'..'"), ("symlink", "symbolic link")])
def test_an_unsafe_archive_is_refused_at_retrieval(api, srv, pkgs, kind, message):
    add_feed(api, publish(srv, [feed_item(srv, pkgs[kind], f"/p/{kind}.xvm2")]))
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    body = wait_tx(api, retrieve(api, uuid)["tx"])
    assert body["data"]["state"] == "failed", body
    assert message in body["data"]["error"], body
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "remote"
    assert package_files(data_dir(api)) == []
    assert running(api) == []


def test_an_archive_that_is_not_a_package(api, srv, pkgs):
    srv.files["/junk.xvm2"] = junk = os.urandom(5000)
    item = feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")
    item.url, item.length = srv.url("/junk.xvm2"), len(junk)
    item.sha256 = None
    add_feed(api, publish(srv, [item]))
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    body = wait_tx(api, retrieve(api, uuid)["tx"])
    assert body["data"]["state"] == "failed" and not body["data"]["error"].startswith("internal")
    assert package_files(data_dir(api)) == []


@pytest.mark.parametrize("method, path", [
    ("GET", "/rest/vmfeed/{}/"), ("POST", "/rest/vmfeed/{}/"), ("DELETE", "/rest/vmfeed/{}/"),
    ("GET", "/rest/vmfeed/{}/download/"),
    ("GET", "/rest/vmfeed/repo/package/{}/"), ("POST", "/rest/vmfeed/repo/package/{}/"),
    ("DELETE", "/rest/vmfeed/repo/package/{}/"),
    ("GET", "/rest/vmfeed/repo/{}/"), ("POST", "/rest/vmfeed/repo/{}/"),
    ("DELETE", "/rest/vmfeed/repo/{}/"),
])
def test_unknown_and_malformed_uuids(shared_api, method, path):
    api = shared_api
    with nothing_made(api):
        data = {"action": "refresh"} if "repo/{}" in path and method == "POST" else None
        expect_error(api.request(method, path.format(NO_SUCH), data=data), 404, 1200)
        expect_error(api.request(method, path.format("not-a-uuid"), data=data), 400, 1002)


def test_unknown_repository_action(api, srv):
    repo = add_feed(api, publish(srv, []))["uuid"]
    with nothing_made(api):
        body = expect_error(api.post(f"/rest/vmfeed/repo/{repo}/", data={"action": "explode"}),
                            400, 1003)
        assert "refresh" in body["message"]


def test_refresh_of_a_feed_that_broke_keeps_the_packages(api, srv, pkgs):
    repo = add_feed(api, publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")]))["uuid"]
    srv.files["/feed.xml"] = b"<html>gone</html>"
    with nothing_made(api):
        expect_error(api.post(f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"}),
                     400, 1000)
    assert [p["name"] for p in api.ok("GET", "/rest/vmfeed/")["packages"]] == ["alpha"]


def test_credentials_with_reserved_characters(api, srv, pkgs):
    """A password holding '@', ':' and '/' travels percent-encoded in the URL and is used as
    the person meant it; neither form is ever shown."""
    password = "p@ss:w/rd%x"
    srv.auth = ("we@ird", password)
    publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")])
    from urllib.parse import quote

    encoded = quote(password, safe="")
    r = api.put("/rest/vmfeed/",
                data={"url": f"http://{quote('we@ird', safe='')}:{encoded}@127.0.0.1:{srv.port}"
                             "/feed.xml"})
    assert r.status_code == 200, r.text
    repo = r.json()["uuid"]
    uuid = r.json()["packages"][0]["uuid"]
    tx = retrieve(api, uuid)["tx"]
    assert wait_tx(api, tx)["data"]["state"] == "done"
    for text in [r.text] + all_answers(api, repo, [tx]):
        assert password not in text and encoded not in text and "we@ird" not in text


def test_another_user_sees_only_what_they_may_read(api, srv, pkgs):
    """Packages are readable by whoever may read their repository: a user without a grant
    sees none of the admin's, in the list, the published feed and downloads; with read on the
    repository, all of them (and may download them), without being able to delete them."""
    from tests.api.accounts import grant, new_user

    repo = add_feed(api, publish(srv, [feed_item(srv, pkgs["alpha"], "/p/alpha.xvm2")]))["uuid"]
    uuid = api.ok("GET", "/rest/vmfeed/")["packages"][0]["uuid"]
    wait_tx(api, retrieve(api, uuid)["tx"])
    bob = new_user(api)
    assert api.ok("GET", "/rest/vmfeed/", auth=bob.auth)["packages"] == []
    assert api.ok("GET", "/rest/vmfeed/repo/", auth=bob.auth)["repositories"] == []
    assert parse_feed(api.get("/rest/vmfeed/feed.xml", auth=bob.auth).content,
                      "http://testserver/").items == []
    for path in (f"/rest/vmfeed/{uuid}/", f"/rest/vmfeed/{uuid}/download/",
                 f"/rest/vmfeed/repo/{repo}/"):
        r = api.get(path, auth=bob.auth)
        assert r.status_code in (403, 404) and r.json()["errno"] in (1101, 1200), r.text
    r = api.put("/rest/vmfeed/", data={"url": srv.url("/feed.xml")}, auth=bob.auth)
    assert r.status_code in (403, 409), r.text  # taken, or not bob's to add

    grant(api, repo, "read", user=bob.uuid)
    assert [p["uuid"] for p in api.ok("GET", "/rest/vmfeed/", auth=bob.auth)["packages"]] == \
        [uuid]
    got = api.get(f"/rest/vmfeed/{uuid}/download/", auth=bob.auth)
    assert got.status_code == 200 and got.content == pkgs["alpha"].bytes()
    items = parse_feed(api.get("/rest/vmfeed/feed.xml", auth=bob.auth).content,
                       "http://testserver/").items
    assert [i.guid for i in items] == [uuid]
    for method, path in (("DELETE", f"/rest/vmfeed/{uuid}/"),
                         ("DELETE", f"/rest/vmfeed/repo/package/{uuid}/"),
                         ("DELETE", f"/rest/vmfeed/repo/{repo}/")):
        r = api.request(method, path, auth=bob.auth)
        assert r.status_code == 403 and r.json()["errno"] == 1101, (path, r.text)
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"
