"""GET /metrics and GET /rest/machine/<UUID>/stats/ on the test:/// driver (issue 17).

The test driver's bulk call reports only each domain's state (no CPU, memory or I/O
counters): these tests check the exposition, its labels, who sees what, the shared
collection and the sampler's bookkeeping; tests/integration/test_metrics.py checks the
counters and rates of real QEMU guests."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from enomalism.errors import HypervisorError
from enomalism.jobs.runner import JobContext
from enomalism.services import transactions
from enomalism.services.context import Context, Principal
from enomalism.services.stats import Sampler
from enomalism.store.models import User
from tests.api.accounts import grant, new_user
from tests.conftest import (
    ADMIN_PASSWORD,
    FAST_HASHES,
    Api,
    database_url,
    expect_error,
    job_kind,
    new_vm,
)
from tests.fakehost import FakeDomain, write_host
from tests.integration.conftest import wait_for

STATS_KEYS = {"t", "cpu", "mem_used", "mem_total", "disk_read", "disk_write", "net_rx", "net_tx"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A server sampling every 0.2 s on a fake host with a running, a paused and a stopped
    domain."""
    from fastapi.testclient import TestClient

    from enomalism.api.app import create_app
    from enomalism.config import Settings

    d = tmp_path_factory.mktemp("metrics")
    uri = write_host(d / "host1.xml", [FakeDomain("web", state="running"),
                                       FakeDomain("db", state="paused"),
                                       FakeDomain("idle", state="shutoff")], [])
    settings = Settings(data_dir=d / "data", hypervisors=[uri], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(Path(d / "data")), stats_interval=0.2,
                        **FAST_HASHES)
    with TestClient(create_app(settings)) as client:
        a = Api(client)
        a.settle()
        yield a


def refresh(api: Api) -> None:
    """Make the next scrape read libvirt again (scrapes share a collection for 5 s)."""
    for hv in api.app.state.collector.owned():
        api.app.state.collector.sample(hv, max_age=0)


def scrape(api: Api, auth: object = "admin") -> dict:
    """name -> family of one scrape, parsed by prometheus_client's own parser."""
    r = api.get("/metrics", auth=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def samples(families: dict, name: str) -> list:
    return families[name].samples if name in families else []


def uuids_in(families: dict) -> set[str]:
    return {s.labels["uuid"] for s in samples(families, "enomalism_machine_info")}


def test_metrics_has_every_machine_and_its_hypervisor(api):
    fams = scrape(api)
    vms = {m["name"]: m["uuid"] for m in api.ok(
        "GET", "/rest/machines/", params={"kind": "vm", "detail": "true"})["machine_objs"]}
    states = {s.labels["name"]: s.labels["state"]
              for s in samples(fams, "enomalism_machine_state")}
    assert {k: states[k] for k in ("web", "db", "idle")} == \
        {"web": "running", "db": "paused", "idle": "shutoff"}
    assert {vms[n] for n in ("web", "db", "idle")} <= uuids_in(fams)
    hv = api.hypervisors()[0]
    up = samples(fams, "enomalism_hypervisor_up")
    assert [(s.labels["hypervisor"], s.labels["uri"], s.value) for s in up] == \
        [(hv["uuid"], hv["virt_url"], 1.0)]
    pools = {s.labels["pool"] for s in samples(fams, "enomalism_storage_pool_capacity_bytes")}
    assert "default-pool" in pools
    by_state = {s.labels["state"]: s.value for s in samples(fams, "enomalism_hypervisor_machines")}
    assert by_state["running"] >= 1 and by_state["shutoff"] >= 1
    assert samples(fams, "enomalism_hypervisor_cpus")[0].value > 0
    # the test driver reports no counters: their families are there, empty, not made up
    assert samples(fams, "enomalism_machine_cpu_seconds") == []


def test_requests_are_counted_by_route_template_never_by_raw_path(api):
    uuid = api.ok("GET", "/rest/machines/", params={"kind": "vm"})["machines"][0]
    api.ok("GET", f"/rest/machine/{uuid}/")
    api.get("/rest/no/such/path/")
    fams = scrape(api)
    routes = {(s.labels["method"], s.labels["route"], s.labels["status"])
              for s in samples(fams, "enomalism_http_requests") if s.name.endswith("_total")}
    assert ("GET", "/rest/machine/{uuid}/", "200") in routes
    assert ("GET", "unmatched", "404") in routes
    assert not any(uuid in r for _m, r, _s in routes)
    durations = [s for s in samples(fams, "enomalism_http_request_duration_seconds")
                 if s.name.endswith("_count") and s.labels["route"] == "/rest/machine/{uuid}/"]
    assert durations and durations[0].value >= 1


def test_an_action_answered_by_the_shortcut_is_counted_under_its_route(api, own):
    uuid = new_vm(api, own, "running")
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")
    api.ok("POST", f"/rest/machine/{uuid}/actions/resume/")
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")  # cached credentials: shortcut
    routes = {s.labels["route"]: s.value for s in samples(scrape(api), "enomalism_http_requests")
              if s.name.endswith("_total") and s.labels["status"] == "200"}
    assert routes["/rest/machine/{uuid}/actions/suspend/"] >= 2


@job_kind("test.metrics")
def _job(job: JobContext) -> dict:
    if job.params["fail"]:
        raise HypervisorError("the test job fails as asked")
    return {}


def jobs_counted(api: Api) -> dict:
    return {(s.labels["kind"], s.labels["outcome"]): s.value
            for s in samples(scrape(api), "enomalism_jobs") if s.name.endswith("_total")}


@pytest.mark.parametrize("fail, outcome", [(False, "done"), (True, "failed")])
def test_a_finished_job_is_counted_by_kind_and_outcome(api, fail, outcome):
    key = ("test.metrics", outcome)
    before = jobs_counted(api).get(key, 0)
    with api.app.state.db.session() as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        ctx = Context(db=s, registry=api.registry, jobs=api.app.state.runner,
                      user=Principal(uuid=admin.uuid, username="admin", is_admin=True))
        transactions.enqueue(ctx, "test.metrics", target=None, params={"fail": fail})
    api.app.state.runner.notify()
    wait_for(lambda: jobs_counted(api).get(key, 0), lambda n: n == before + 1,
             f"a {outcome} test job to be counted")
    durations = [s for s in samples(scrape(api), "enomalism_job_duration_seconds")
                 if s.name.endswith("_count") and s.labels == {"kind": "test.metrics",
                                                                  "outcome": outcome}]
    assert durations[0].value == before + 1


def test_server_families_are_for_administrators(api):
    fams = scrape(api)
    for name in ("enomalism_http_requests", "enomalism_db_pool_connections",
                 "enomalism_event_lag_seconds", "process_cpu_seconds"):
        assert name in fams, name
    pool = {s.labels["state"]: s.value for s in samples(fams, "enomalism_db_pool_connections")}
    assert set(pool) == {"in_use", "idle", "overflow"} and pool["in_use"] >= 1


def test_event_lag_is_measured_for_an_event_behind_the_servers_back(api, own):
    uuid = new_vm(api, own, "running")
    count = "enomalism_event_lag_seconds"

    def observed() -> float:
        return next(s.value for s in samples(scrape(api), count) if s.name.endswith("_count"))
    before = observed()
    api.registry.connection(api.hypervisors()[0]["uuid"]).virconnect.lookupByUUIDString(uuid).suspend()
    api.settle()
    assert observed() > before
    assert api.machine(uuid)["info"]["state"] == "paused"


def test_metrics_needs_credentials(api):
    expect_error(api.get("/metrics", auth=None), 401, 1100)
    expect_error(api.get("/metrics", auth=("admin", "wrong")), 401, 1100)


def test_a_user_scrapes_only_the_machines_they_may_read(api, own):
    alice = new_user(api)
    mine = new_vm(api, own + "-alice", "running")
    theirs = new_vm(api, own + "-other", "running")
    grant(api, mine, "read", user=alice.uuid)
    refresh(api)
    fams = scrape(api, auth=alice.auth)
    assert uuids_in(fams) == {mine}
    assert {s.labels["uuid"] for s in samples(fams, "enomalism_machine_state")} == {mine}
    for name in ("enomalism_http_requests", "enomalism_db_pool_connections",
                 "process_cpu_seconds", "enomalism_hypervisor_up"):
        assert name not in fams or not fams[name].samples, name
    assert theirs in uuids_in(scrape(api))
    # and the same by a bearer token of hers (a scrape token)
    secret = api.ok("PUT", "/rest/tokens/", data={"name": own}, auth=alice.auth)["secret"]
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200
    assert {f.name for f in text_string_to_metric_families(r.text)} >= {"enomalism_machine_info"}
    assert theirs not in r.text and mine in r.text


def test_scrapes_within_the_cache_age_share_one_collection(api):
    collector = api.app.state.collector
    hv = api.hypervisors()[0]["uuid"]
    first = collector.sample(hv, max_age=60)
    assert collector.sample(hv, max_age=60) is first
    fresh = collector.sample(hv, max_age=0)
    assert fresh is not first and fresh.at > first.at


def test_stats_answer_rates_and_a_growing_history(api, own):
    uuid = new_vm(api, own, "running")

    def body() -> dict:
        return api.ok("GET", f"/rest/machine/{uuid}/stats/")
    first = body()
    assert set(first) == {"errno", "message", "machine", "state", "interval", "stats",
                          "history"}
    assert first["machine"] == uuid and first["interval"] == 0.2
    assert set(first["stats"]) == STATS_KEYS
    later = wait_for(body, lambda b: len(b["history"]) >= len(first["history"]) + 3,
                     "the sampler (every 0.2 s) to add three points")
    times = [p["t"] for p in later["history"]]
    assert times == sorted(times) and all(set(p) == STATS_KEYS for p in later["history"])
    assert later["state"] == "running" and later["stats"]["t"] == times[-1]
    # the test driver has no counters: rates are unknown (null), never invented
    assert {later["stats"][k] for k in STATS_KEYS - {"t"}} == {None}


def test_stats_of_a_stopped_machine_have_no_current_rates(api):
    uuid = next(m["uuid"] for m in api.ok("GET", "/rest/machines/", params={
        "kind": "vm", "detail": "true"})["machine_objs"] if m["name"] == "idle")
    body = api.ok("GET", f"/rest/machine/{uuid}/stats/")
    assert body["state"] == "shutoff" and body["history"] == []
    assert set(body["stats"].values()) == {None}


def test_stats_refuse_what_is_not_a_readable_vm(api, own):
    alice = new_user(api)
    theirs = new_vm(api, own, "running")
    expect_error(api.get(f"/rest/machine/{theirs}/stats/", auth=alice.auth), 404, 1200)
    expect_error(api.get("/rest/machine/00000000-0000-4000-8000-000000000000/stats/"), 404,
                 1200)
    expect_error(api.get("/rest/machine/not-a-uuid/stats/"), 400, 1002)
    expect_error(api.get(f"/rest/machine/{api.local_host()}/stats/"), 409, 1300)
    expect_error(api.get(f"/rest/machine/{theirs}/stats/", auth=None), 401, 1100)
    grant(api, theirs, "read", user=alice.uuid)
    assert api.ok("GET", f"/rest/machine/{theirs}/stats/", auth=alice.auth)["machine"] == theirs


def test_stats_of_several_machines_answer_what_the_caller_reads(api, own):
    """GET /rest/stats/?machines=...: the latest point of each running machine, null for a
    stopped one, nothing at all for one the caller may not read (extension)."""
    alice = new_user(api)
    running, theirs = new_vm(api, own, "running"), new_vm(api, f"{own}b", "running")
    idle = next(m["uuid"] for m in api.ok("GET", "/rest/machines/", params={
        "kind": "vm", "detail": "true"})["machine_objs"] if m["name"] == "idle")
    grant(api, running, "read", user=alice.uuid)
    grant(api, idle, "read", user=alice.uuid)
    ask = {"machines": f"{running},{idle},{theirs}"}
    body = wait_for(lambda: api.ok("GET", "/rest/stats/", params=ask, auth=alice.auth),
                    lambda b: b["stats"].get(running), "a point of the running machine")
    assert set(body["stats"]) == {running, idle}  # not theirs: alice may not read it
    assert set(body["stats"][running]) == STATS_KEYS and body["stats"][idle] is None
    assert set(api.ok("GET", "/rest/stats/", params=ask)["stats"]) == {running, idle, theirs}
    assert api.ok("GET", "/rest/stats/")["stats"] == {}
    expect_error(api.get("/rest/stats/", params={"machines": "not-a-uuid"}), 400, 1002)
    expect_error(api.get("/rest/stats/", params={"machines": ",".join([running] * 101)}),
                 400, 1000)


def test_the_sampler_keeps_a_bounded_history_and_drops_machines_gone(api, own):
    uuid = new_vm(api, own, "running")
    small = Sampler(api.app.state.collector, interval=0, keep=3)  # every read a fresh one
    for _ in range(6):
        small.sample_now()
    state, points = small.history(uuid)
    assert state == "running" and len(points) == 3
    dom = api.registry.connection(api.hypervisors()[0]["uuid"]).virconnect.lookupByUUIDString(uuid)
    dom.destroy()
    dom.undefine()
    small.sample_now()
    assert small.history(uuid) is None


def test_label_values_are_escaped_as_the_text_format_wants(api, own):
    """Names are the users': a quote or a backslash in one cannot break the text
    or forge a series (prometheus_client's parser reads the very name back)."""
    name = own + '-q"x\\y'
    uuid = new_vm(api, name, "running", managed=False)
    refresh(api)
    fams = scrape(api)
    assert {s.labels["name"] for s in samples(fams, "enomalism_machine_info")
            if s.labels["uuid"] == uuid} == {name}


def test_a_stale_last_point_is_history_not_current(api, own):
    """When the hypervisor stops answering, the last point stays in the history but is no
    longer given as current (older than three intervals; with an interval of 0, at once)."""
    from enomalism.services import stats

    uuid = new_vm(api, own, "running")
    sampler = Sampler(api.app.state.collector, interval=0, keep=5)
    for _ in range(3):
        sampler.sample_now()
    with api.app.state.db.session(write=False) as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        ctx = Context(db=s, registry=api.registry,
                      user=Principal(uuid=admin.uuid, username="admin", is_admin=True))
        body = stats.machine_stats(ctx, uuid, sampler=sampler)
    assert len(body["history"]) == 2 and body["state"] == "running"
    assert set(body["stats"].values()) == {None}
