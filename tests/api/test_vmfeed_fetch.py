"""Outbound fetches as a non-admin sees them (issue 12, classes 4 and 7): feeds, redirects and
enclosures that lead inside are refused; a feed that trickles holds no writer up and ends at
the total fetch time; feed credentials go to the feed's own origin only, are sealed in the
database, and neither they nor secret query values show in answers or the log. The feed
servers listen on 127.0.0.1, which the tests' ENOMALISM_FETCH_ALLOW allows, and on 127.0.0.2,
which it does not."""

import logging
import socket
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from enomalism.feeds import download as dl
from enomalism.feeds.feed import Feed, FeedItem, render_feed
from enomalism.store.models import Repository
from tests.api.accounts import new_user
from tests.conftest import expect_error
from tests.fetch_helpers import nobody_connected, tiny_server, wait_until
from tests.integration.provision_helpers import (
    build_package,
    feed_item,
    feed_server,
    have_qemu_img,
    make_qcow2,
    package_files,
    publish,
    running,
    wait_tx,
)

FEED_USER, FEED_PASSWORD = "feeder", "Pa55-s3aled-xyzzy"
TOKEN = "tok-9f8e7d6c5b4a"


def rss(items: list[FeedItem] = ()) -> bytes:
    return render_feed(Feed(title="t", link="http://example.org/", description="d",
                            items=list(items)))


@pytest.fixture(autouse=True)
def _policy_back():
    """A server started here sets the process's fetch policy; put the tests' one back."""
    before = dl.policy()
    yield
    dl.configure(before)


@pytest.fixture
def inside_listener():
    s = socket.create_server(("127.0.0.2", 0))
    yield s
    s.close()


def repositories(api, who) -> list[dict]:  # noqa: ANN001
    return api.ok("GET", "/rest/vmfeed/repo/", auth=who.auth)["repositories"]


# -- class 7: a slow peer stalls no writer ----------------------------------------------------


@pytest.mark.parametrize("how", ["add", "refresh"])
def test_a_trickling_feed_holds_no_writer_up(make_api, make_host, monkeypatch, how):
    """While a feed trickles in a byte at a time, other writes (a user, another feed, a
    rename) go through; the slow fetch then ends at the total fetch time with errno 1030 and
    changes nothing."""
    monkeypatch.setenv("ENOMALISM_FETCH_TOTAL_TIMEOUT", "8")
    with make_api(make_host("h", [])) as api, tiny_server() as srv:
        bob = new_user(api)
        srv.files["/feed.xml"] = srv.files["/other.xml"] = rss()
        repo = None
        if how == "refresh":
            repo = api.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/feed.xml")},
                          auth=bob.auth)["uuid"]
        srv.files["/feed.xml"] = rss() + b" " * 1000  # still a feed, but slow to arrive
        srv.dribble["/feed.xml"] = 0.5  # never idle for long: only the total cap ends it
        before = len(srv.requests)
        answer = {}

        def slow() -> None:
            if how == "add":
                answer["r"] = api.put("/rest/vmfeed/", data={"url": srv.url("/feed.xml")},
                                      auth=bob.auth)
            else:
                answer["r"] = api.post(f"/rest/vmfeed/repo/{repo}/",
                                       data={"action": "refresh"}, auth=bob.auth)

        t = threading.Thread(target=slow)
        t.start()
        assert wait_until(lambda: len(srv.requests) > before)  # the fetch is under way
        other = new_user(api)
        added = api.ok("PUT", "/rest/vmfeed/", data={"url": srv.url("/other.xml")},
                       auth=other.auth)
        api.ok("POST", "/rest/vmfeed/repo/" + added["uuid"] + "/", data={"action": "refresh"},
               auth=other.auth)
        assert t.is_alive(), "the other writes waited for the slow fetch"
        t.join(120)
        assert not t.is_alive()
        body = expect_error(answer["r"], 400, 1030)
        assert "took longer than 8 s in total" in body["message"]
        urls = sorted(r["url"] for r in repositories(api, bob))
        assert urls == ([srv.url("/feed.xml")] if how == "refresh" else [])
        assert running(api) == []


# -- class 4: fetches do not reach the inside -------------------------------------------------


@pytest.mark.parametrize("inside", ["http://127.0.0.2:{port}/feed.xml",
                                    "http://[::1]:{port}/feed.xml",
                                    "http://169.254.169.254/latest/meta-data/",
                                    "http://10.0.0.1/feed.xml", "http://[fd00::1]/feed.xml",
                                    "http://[::ffff:127.0.0.2]:{port}/feed.xml"])
def test_a_feed_inside_directly_or_by_redirect_is_refused(api, inside_listener, inside):
    bob = new_user(api)
    target = inside.format(port=inside_listener.getsockname()[1])
    with tiny_server() as srv:
        srv.redirects["/feed.xml"] = target
        for url in (target, srv.url("/feed.xml")):
            body = expect_error(api.put("/rest/vmfeed/", data={"url": url}, auth=bob.auth),
                                403, 1130)
            assert "ENOMALISM_FETCH_ALLOW" in body["message"]
        assert [r["path"] for r in srv.requests] == ["/feed.xml"]
    assert nobody_connected(inside_listener)
    assert repositories(api, bob) == []


def test_an_unreachable_feed_does_not_tell_closed_from_filtered(api):
    bob = new_user(api)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    filtered = socket.create_server(("127.0.0.1", 0), backlog=0)  # full backlog: SYN dropped
    port = filtered.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    try:
        messages = [expect_error(api.put("/rest/vmfeed/", auth=bob.auth, data={
            "url": f"http://127.0.0.1:{p}/feed.xml"}), 400, 1000)["message"].replace(str(p), "P")
            for p in (closed, port)]
    finally:
        first.close()
        filtered.close()
    assert messages[0] == messages[1]
    assert "refused" not in messages[0].lower() and "timed out" not in messages[0].lower()


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if not have_qemu_img():
        pytest.skip("qemu-img is needed to build a package")
    d = tmp_path_factory.mktemp("fetchpkg")
    return build_package(d / "alpha.xvm2", make_qcow2(d / "tiny.qcow2", 16, data=b"hi\n" * 50),
                         name="alpha")


@pytest.mark.parametrize("where", ["http://169.254.169.254/latest/alpha.xvm2",
                                   "http://10.1.2.3/alpha.xvm2", "http://[fe80::1]/a.xvm2",
                                   "http://127.0.0.2:{port}/alpha.xvm2"])
def test_an_enclosure_inside_is_refused_at_retrieval(api, pkg, inside_listener, where):
    bob = new_user(api)
    with feed_server() as srv:
        item = feed_item(srv, pkg, "/p/alpha.xvm2")
        item.url = where.format(port=inside_listener.getsockname()[1])
        api.ok("PUT", "/rest/vmfeed/", data={"url": publish(srv, [item])}, auth=bob.auth)
        uuid = api.ok("GET", "/rest/vmfeed/", auth=bob.auth)["packages"][0]["uuid"]
        tx = api.ok("POST", f"/rest/vmfeed/repo/package/{uuid}/", auth=bob.auth)["tx"]
        body = wait_tx(api, tx)
        assert body["data"]["state"] == "failed", body
        assert "ENOMALISM_FETCH_ALLOW" in body["data"]["error"], body
        assert all(r["path"] != "/p/alpha.xvm2" for r in srv.requests)
    assert nobody_connected(inside_listener)
    assert api.ok("GET", f"/rest/vmfeed/{uuid}/", auth=bob.auth)["package"]["state"] == "remote"
    assert package_files(Path(api.app.state.settings.data_dir)) == []


def test_credentials_go_to_the_feeds_own_origin_only(api, pkg):
    """The feed and an enclosure on its origin get the credentials; an enclosure on another
    port of the same host (another origin) gets none, and is still fetched."""
    bob = new_user(api)
    with feed_server() as home, feed_server() as elsewhere:
        home.auth = (FEED_USER, FEED_PASSWORD)
        items = [feed_item(home, pkg, "/p/alpha.xvm2", guid="here"),
                 feed_item(elsewhere, pkg, "/p/alpha.xvm2", guid="there", title="beta")]
        url = publish(home, items).replace("http://", f"http://{FEED_USER}:{FEED_PASSWORD}@")
        api.ok("PUT", "/rest/vmfeed/", data={"url": url}, auth=bob.auth)
        for p in api.ok("GET", "/rest/vmfeed/", auth=bob.auth)["packages"]:
            tx = api.ok("POST", f"/rest/vmfeed/repo/package/{p['uuid']}/", auth=bob.auth)["tx"]
            assert wait_tx(api, tx)["data"]["state"] == "done"
        assert home.requests and all(r.get("authorization") for r in home.requests)
        assert [r["path"] for r in elsewhere.requests] == ["/p/alpha.xvm2"]
        assert "authorization" not in elsewhere.requests[0]


def _database_bytes(api) -> bytes:  # noqa: ANN001
    """The database as a copy of it would hold it: SQLite's file and its WAL, or on
    PostgreSQL the repositories table as stored."""
    db = api.app.state.db
    if db.engine.dialect.name == "sqlite":
        path = Path(db.engine.url.database)
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    with db.session(write=False) as s:
        return repr(list(s.execute(select(Repository.__table__)))).encode()


def test_the_feed_password_is_sealed_in_the_database(make_api, make_host, tmp_path):
    uri = make_host("h", [])
    with tiny_server() as srv:
        srv.files["/feed.xml"] = rss()
        url = srv.url("/feed.xml", f"{FEED_USER}:{FEED_PASSWORD}@")
        with make_api(uri) as api:
            bob = new_user(api)
            repo = api.ok("PUT", "/rest/vmfeed/", data={"url": url}, auth=bob.auth)["uuid"]
            assert FEED_PASSWORD.encode() not in _database_bytes(api)
            key = tmp_path / "data" / "secret.key"
            assert key.stat().st_mode & 0o777 == 0o600
            with api.app.state.db.session() as s:  # as a version before sealing stored it
                s.execute(update(Repository).where(Repository.uuid == repo)
                          .values(password=FEED_PASSWORD))
        with make_api(uri) as api:  # started again: the plain password is sealed
            with api.app.state.db.session(write=False) as s:
                stored = s.scalar(select(Repository.password).where(Repository.uuid == repo))
            assert stored.startswith("fernet:") and FEED_PASSWORD not in stored
            srv.requests.clear()
            api.ok("POST", f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"},
                   auth=bob.auth)
            assert srv.requests[0]["authorization"]  # and it still opens
        key.write_bytes(Fernet.generate_key())  # another key than the one that sealed it
        with make_api(uri) as api:  # a clear error, not a 500, and nothing sent
            srv.requests.clear()
            body = expect_error(api.post(f"/rest/vmfeed/repo/{repo}/",
                                         data={"action": "refresh"}, auth=bob.auth), 409, 1301)
            assert "cannot be decrypted" in body["message"] and str(key) in body["message"]
            assert srv.requests == []


def test_secrets_in_the_url_never_show_in_answers_or_the_log(api, caplog):
    caplog.set_level(logging.DEBUG)
    bob = new_user(api)
    with tiny_server() as srv:
        srv.files["/feed.xml"] = rss()
        url = srv.url(f"/feed.xml?token={TOKEN}&page=1", f"{FEED_USER}:{FEED_PASSWORD}@")
        r = api.put("/rest/vmfeed/", data={"url": url}, auth=bob.auth)
        assert r.status_code == 200, r.text
        repo = r.json()["uuid"]
        texts = [r.text, expect_error(api.put("/rest/vmfeed/", data={"url": url},
                                              auth=bob.auth), 409, 1300)["message"]]
        srv.files["/feed.xml"] = b"<html>gone</html>"  # a failing refresh's message
        texts.append(api.post(f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"},
                              auth=bob.auth).text)
        del srv.files["/feed.xml"]
        texts.append(api.post(f"/rest/vmfeed/repo/{repo}/", data={"action": "refresh"},
                              auth=bob.auth).text)
        texts.append(api.get("/rest/vmfeed/repo/", auth=bob.auth).text)
        texts.append(api.get(f"/rest/vmfeed/repo/{repo}/", auth=bob.auth).text)
        texts.append(api.delete(f"/rest/vmfeed/repo/{repo}/", auth=bob.auth).text)
        assert srv.requests[0]["path"] == f"/feed.xml?token={TOKEN}&page=1"  # used as given
    assert "token=***" in texts[0]
    texts += [rec.getMessage() for rec in caplog.records]
    assert any("HTTP Request" in t and "token=***" in t for t in texts)  # httpx's own line
    for text in texts:
        assert TOKEN not in text and FEED_PASSWORD not in text and f"{FEED_USER}:" not in text


def test_an_enclosure_url_with_a_secret_is_redacted(api, pkg):
    with feed_server() as srv:
        item = feed_item(srv, pkg, "/p/alpha.xvm2")
        item.url += f"?signature={TOKEN}"
        r = api.put("/rest/vmfeed/", data={"url": publish(srv, [item])})
        assert r.status_code == 200 and TOKEN not in r.text, r.text
        listed = api.get("/rest/vmfeed/")
        assert TOKEN not in listed.text and "signature=***" in listed.text


@pytest.mark.parametrize("user, password", [("u" * 256, "pw"), ("feeder", "p" * 513)])
def test_credentials_too_long_to_keep_are_refused(api, user, password):
    bob = new_user(api)
    with tiny_server() as srv:
        srv.files["/feed.xml"] = rss()
        body = expect_error(api.put("/rest/vmfeed/", auth=bob.auth, data={
            "url": srv.url("/feed.xml", f"{user}:{password}@")}), 400, 1000)
        assert "at most" in body["message"] and password not in body["message"]
        assert srv.requests == []  # refused before fetching
    assert repositories(api, bob) == []
