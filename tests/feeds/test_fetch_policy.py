"""Outbound fetches reach the public internet only, plus what ENOMALISM_FETCH_ALLOW names:
the policy's address table, its parsing, and fetches and downloads against real servers on
loopback addresses the tests allow (127.0.0.1) and do not (127.0.0.2, ::1)."""

import ipaddress
import logging
import socket
import threading

import pytest
from pydantic import ValidationError

from enomalism.config import Settings
from enomalism.errors import AddressNotAllowed, FetchTimedOut, InvalidInput
from enomalism.feeds import download as dl
from tests.fetch_helpers import nobody_connected, tiny_server


@pytest.fixture
def policy():
    """Set the process's fetch policy for one test; the tests' own is put back after."""
    before = dl.policy()

    def set_policy(allow: str, total_timeout: float = dl.TOTAL_TIMEOUT) -> None:
        dl.configure(dl.FetchPolicy.from_setting(allow, total_timeout))
    yield set_policy
    dl.configure(before)


@pytest.fixture
def srv():
    with tiny_server() as s:
        s.files["/feed.xml"] = b"<rss/>"
        yield s


@pytest.fixture
def inside_listener():
    """A port listening on 127.0.0.2, which the tests' policy does not allow."""
    s = socket.create_server(("127.0.0.2", 0))
    yield s
    s.close()


INSIDE = ["127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
          "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255",
          "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "fec0::1",
          "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"]
OUTSIDE = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.216.34",
           "64:ff9b::5db8:d822"]


@pytest.mark.parametrize("addr", INSIDE)
def test_internal_addresses_are_inside(addr):
    assert dl.is_inside(ipaddress.ip_address(addr))
    assert not dl.FetchPolicy().permits("example.org", ipaddress.ip_address(addr))


@pytest.mark.parametrize("addr", OUTSIDE)
def test_public_addresses_are_not(addr):
    assert not dl.is_inside(ipaddress.ip_address(addr))
    assert dl.FetchPolicy().permits("example.org", ipaddress.ip_address(addr))


def test_the_allow_list_names_addresses_networks_and_hosts():
    p = dl.FetchPolicy.from_setting(" 127.0.0.1, 10.0.0.0/8,,fd00::/8 , Feeds.LAN. ")
    ip = ipaddress.ip_address
    assert p.permits("x", ip("127.0.0.1")) and not p.permits("x", ip("127.0.0.2"))
    assert p.permits("x", ip("10.200.0.1")) and not p.permits("x", ip("192.168.0.1"))
    assert p.permits("x", ip("::ffff:10.0.0.1"))  # the IPv4-mapped form of an allowed one
    assert p.permits("x", ip("fd00::1")) and not p.permits("x", ip("fc00::1"))
    assert p.permits("feeds.lan", ip("192.168.0.1")) and p.permits("FEEDS.lan.", ip("::1"))
    assert not p.permits("other.lan", ip("192.168.0.1"))


@pytest.mark.parametrize("value, words", [
    ("10.0.0.1/8", "host bits set"),
    ("300.1.1.1", "not an address or CIDR"),
    ("10.0.0.0/33", "not an address or CIDR"),
    ("fe80::zz", "not an address or CIDR"),
    ("*.lan", "wildcards are not supported"),
    ("feeds lan", "not an address, a CIDR network or a host name"),
    ("127.0.0.1;rm", "not an address, a CIDR network or a host name"),
])
def test_a_bad_allow_list_is_refused_at_start(monkeypatch, value, words):
    monkeypatch.setenv("ENOMALISM_FETCH_ALLOW", value)
    with pytest.raises(ValidationError) as e:
        Settings()
    message = str(e.value)
    assert "ENOMALISM_FETCH_ALLOW" in message and words in message and value in message


def test_the_total_fetch_time_must_be_positive(monkeypatch):
    monkeypatch.setenv("ENOMALISM_FETCH_TOTAL_TIMEOUT", "0")
    with pytest.raises(ValidationError, match="fetch_total_timeout"):
        Settings()


def test_an_internal_address_is_refused_before_connecting(inside_listener):
    port = inside_listener.getsockname()[1]
    for url in (f"http://127.0.0.2:{port}/feed.xml", f"http://user:pw@127.0.0.2:{port}/x"):
        with pytest.raises(AddressNotAllowed, match="ENOMALISM_FETCH_ALLOW") as e:
            dl.fetch(url)
        assert e.value.errno == 1130 and e.value.status == 403
        assert "pw" not in e.value.message
    assert nobody_connected(inside_listener)


def test_a_host_name_is_checked_by_what_it_resolves_to(policy, srv):
    policy("")  # nothing allowed: localhost resolves to loopback
    with pytest.raises(AddressNotAllowed):
        dl.fetch(f"http://localhost:{srv.port}/feed.xml")
    assert srv.requests == []
    policy("localhost")  # allowed by name: whichever of its addresses answers
    assert dl.fetch(f"http://localhost:{srv.port}/feed.xml") == b"<rss/>"


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/feed.xml",
                                    "http://[::1]:{port}/feed.xml",
                                    "http://[::ffff:127.0.0.2]:{port}/feed.xml",
                                    "http://169.254.169.254/latest/meta-data/"])
def test_every_redirect_hop_is_checked(srv, inside_listener, target):
    srv.redirects["/feed.xml"] = target.format(port=inside_listener.getsockname()[1])
    with pytest.raises(AddressNotAllowed):
        dl.fetch(srv.url("/feed.xml"))
    assert [r["path"] for r in srv.requests] == ["/feed.xml"]
    assert nobody_connected(inside_listener)


def test_a_download_from_an_internal_address_is_refused(inside_listener, tmp_path):
    port = inside_listener.getsockname()[1]
    with pytest.raises(AddressNotAllowed):
        dl.download(f"http://127.0.0.2:{port}/p.xvm2", tmp_path / "p.xvm2")
    assert list(tmp_path.iterdir()) == []
    assert nobody_connected(inside_listener)


def test_a_closed_port_and_a_filtered_one_read_alike():
    with socket.socket() as s:  # a port nobody listens on: refused at once
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    # A port whose backlog is full: the kernel drops the SYN, as a filtering firewall does.
    filtered = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = filtered.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    try:
        messages = []
        for p in (closed, port):
            with pytest.raises(InvalidInput) as e:
                dl.fetch(f"http://127.0.0.1:{p}/feed.xml", timeout=0.5)
            assert e.value.errno == 1000
            messages.append(e.value.message.replace(str(p), "PORT"))
    finally:
        first.close()
        filtered.close()
    assert messages[0] == messages[1] == ("could not fetch http://127.0.0.1:PORT/feed.xml: "
                                          "127.0.0.1 does not answer (no connection could be "
                                          "made)")


def test_a_feed_that_trickles_is_cut_off_by_the_total_time(policy, srv):
    policy("127.0.0.1", total_timeout=1.0)
    srv.files["/slow.xml"] = b"<rss/>" * 1000
    srv.dribble["/slow.xml"] = 0.2  # never idle for long: only the total time stops it
    with pytest.raises(FetchTimedOut, match="took longer than 1 s in total") as e:
        dl.fetch(srv.url("/slow.xml"))
    assert e.value.errno == 1030 and e.value.status == 400
    assert dl.fetch(srv.url("/feed.xml")) == b"<rss/>"  # a quick one still goes through


def test_credentials_do_not_follow_a_redirect_elsewhere(srv):
    with tiny_server() as other:
        other.files["/feed.xml"] = b"<rss/>"
        srv.redirects["/feed.xml"] = other.url("/feed.xml")
        assert dl.fetch(srv.url("/feed.xml", "alice:s3cret@")) == b"<rss/>"
        assert srv.requests[0]["authorization"]
        assert "authorization" not in other.requests[0]


def test_origin():
    assert dl.origin("http://Host.Example./a?b") == ("http", "host.example", 80)
    assert dl.origin("https://u:p@host/x") == ("https", "host", 443)
    assert dl.origin("http://host:8080/") != dl.origin("http://host/")
    assert dl.origin("http://[::1]:81/") == ("http", "::1", 81)


def test_secrets_in_the_query_are_redacted_in_httpx_log_line(srv, caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    assert dl.fetch(srv.url("/feed.xml?token=tok-S3CRET&page=2")) == b"<rss/>"
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("tok-S3CRET" not in line for line in lines)
    assert any("token=***" in line and "page=2" in line for line in lines)
    assert srv.requests[0]["path"] == "/feed.xml?token=tok-S3CRET&page=2"  # sent as given


def test_no_proxy_from_the_environment_bypasses_the_check(monkeypatch, inside_listener):
    """A proxy would connect on the fetch's behalf, past the address check: none is used."""
    proxy = socket.create_server(("127.0.0.1", 0))
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        port = inside_listener.getsockname()[1]
        with pytest.raises(AddressNotAllowed):
            dl.fetch(f"http://127.0.0.2:{port}/feed.xml")
        assert nobody_connected(proxy)
    finally:
        proxy.close()


def test_a_fetch_in_flight_does_not_hold_other_fetches(policy, srv):
    """The deadline is the fetch's own: one trickling feed does not cut another short."""
    policy("127.0.0.1", total_timeout=2.0)
    srv.files["/slow.xml"] = b"x" * 1000
    srv.dribble["/slow.xml"] = 0.2
    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(FetchTimedOut,
                                                                    dl.fetch,
                                                                    srv.url("/slow.xml"))))
    t.start()
    assert srv.reached.wait(30)
    assert dl.fetch(srv.url("/feed.xml")) == b"<rss/>"
    t.join(60)
    assert not t.is_alive() and errors


def test_the_server_does_not_start_with_a_bad_allow_list(tmp_path):
    """`enomalism serve` says which value is wrong, without a traceback, and starts nothing."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ENOMALISM_FETCH_ALLOW": "127.0.0.1, 10.0.0.1/8",
           "ENOMALISM_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "enomalism.cli.main", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ENOMALISM_FETCH_ALLOW: '10.0.0.1/8' is not an address or CIDR network" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_credentials_are_kept_from_an_upgrade_to_https_too():
    """httpx keeps the Authorization header on a redirect from http to https on the same host;
    a hop of every redirect chain goes through the client's hook, which keeps it to the feed's
    own origin (scheme, host and port)."""
    import httpx

    with dl._client(("alice", "s3cret"), 5.0, home="http://feeds.example/feed.xml") as client:
        hops = {url: httpx.Request("GET", url, headers={"Authorization": "Basic x"})
                for url in ("http://feeds.example/other.xml", "https://feeds.example/feed.xml",
                            "http://feeds.example:8080/feed.xml", "http://else.example/")}
        for request in hops.values():
            for hook in client.event_hooks["request"]:
                hook(request)
    assert [u for u, r in hops.items() if "authorization" in r.headers] == \
        ["http://feeds.example/other.xml"]


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch, srv, inside_listener):
    """DNS rebinding: a name that answers an allowed address first and an internal one after
    is looked up once, and the connection goes to the first answer."""
    answers = [("127.0.0.1", srv.port), ("127.0.0.2", inside_listener.getsockname()[1])]
    calls = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "feeds.rebind.test":
            return real(host, port, *args, **kwargs)
        addr = answers[min(len(calls), 1)]
        calls.append(addr)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", addr)]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert dl.fetch(f"http://feeds.rebind.test:{srv.port}/feed.xml") == b"<rss/>"
    assert len(calls) == 1
    assert srv.requests[0]["host"] == f"feeds.rebind.test:{srv.port}"  # the name, as given
    assert nobody_connected(inside_listener)
