"""`GET /rest/cache/` and `POST /rest/cache/prune/` on libvirt's test driver: who may use
them, bad input, what the list says about users; the sweep's schedule. The removal itself is
tested on the real libvirtd (tests/integration/test_cache.py)."""

import uuid

import pytest
from sqlalchemy import select

from enomalism.services.cache import KIND, Sweeper
from enomalism.store.models import Transaction
from tests.api.accounts import new_user
from tests.conftest import expect_error, unchanged
from tests.fakehost import FakeDomain
from tests.integration.provision_helpers import wait_tx

USED = f"enomalism-base-{uuid.uuid4()}-vda.qcow2"
IDLE = f"enomalism-base-{uuid.uuid4()}-vda.qcow2"


@pytest.fixture
def cache_api(make_api, make_host):
    uri = make_host("h1", [FakeDomain("web", state="shutoff", disks=[USED])],
                    volumes=[USED, IDLE, "other.img"])
    with make_api(uri) as api:
        yield api


def test_list_shows_bases_and_their_users(cache_api):
    body = cache_api.ok("GET", "/rest/cache/")
    bases = {b["name"]: b for b in body["bases"]}
    assert set(bases) == {USED, IDLE}  # other.img is no base volume
    assert bases[USED]["domains"] == ["web"] and bases[USED]["kept"] == "made by another " \
        "installation"  # no package of this server's, no provision of its own
    assert bases[USED]["package"] == USED.split("-base-")[1][:36]
    assert bases[USED]["capacity"] == 16 << 20 and bases[USED]["pool"] == "default-pool"
    assert bases[IDLE]["domains"] == [] and bases[IDLE]["ours"] is False
    assert not any(b["unused"] for b in bases.values())
    hv = cache_api.hypervisors()[0]["uuid"]
    assert cache_api.ok("GET", "/rest/cache/", params={"hypervisor": hv})["bases"] == \
        body["bases"]


def test_only_administrators(cache_api):
    alice = new_user(cache_api)
    with unchanged(cache_api):
        expect_error(cache_api.get("/rest/cache/", auth=alice.auth), 403, 1101)
        expect_error(cache_api.post("/rest/cache/prune/", auth=alice.auth), 403, 1101)
        expect_error(cache_api.get("/rest/cache/", auth=None), 401, 1100)
    db = cache_api.client.app.state.db
    with db.session(write=False) as s:
        assert s.scalar(select(Transaction.uuid).where(Transaction.kind == KIND)) is None


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("hypervisor,status,errno", [
    ("not-a-uuid", 400, 1002), (str(uuid.uuid4()), 404, 1200)])
def test_bad_hypervisor(cache_api, method, hypervisor, status, errno):
    path = "/rest/cache/" if method == "GET" else "/rest/cache/prune/"
    with unchanged(cache_api):
        kw = {"params": {"hypervisor": hypervisor}} if method == "GET" else \
            {"data": {"hypervisor": hypervisor}}
        body = expect_error(cache_api.request(method, path, **kw), status, errno)
        assert "hypervisor" in body["message"]


def test_sweeps_are_queued_once_per_interval(cache_api):
    db = cache_api.client.app.state.db
    sweeper = Sweeper(db, cache_api.client.app.state.runner, interval=3600)
    assert sweeper.due() is True
    assert sweeper.due() is False  # one queued (or run) within the interval
    with db.session(write=False) as s:
        [txid] = s.scalars(select(Transaction.uuid).where(Transaction.kind == KIND)).all()
    cache_api.client.app.state.runner.notify()
    done = wait_tx(cache_api, txid)["data"]
    assert done["state"] == "done", done
    assert done["result"]["removed"] == [] and done["result"]["kept"] == 2  # not this server's
