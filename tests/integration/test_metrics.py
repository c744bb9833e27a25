"""GET /metrics and the machine stats on the real libvirtd (issue 17): a running QEMU guest
with no OS still burns CPU time (SeaBIOS, then a halted CPU polled by TCG), so its counters
move between two scrapes and its rates are not zero."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from enomalism.api.app import create_app
from enomalism.config import Settings
from tests.api.accounts import new_user
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, Api, database_url, expect_error
from tests.integration.conftest import URI, Host, Qemu, Scratch, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def qemu(scratch: Scratch, host: Host, tmp_path: Path) -> Iterator[Qemu]:
    """A server on qemu:///system sampling every half second."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, hypervisors=[URI], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data), stats_interval=0.5, **FAST_HASHES)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        api.settle()
        hv = next(h["uuid"] for h in api.hypervisors() if h["virt_url"] == URI)
        q = Qemu(api, hv, host, scratch)
        q.wait_hypervisor("connected")
        yield q


def machine_samples(api: Api, uuid: str, auth: object = "admin") -> dict:
    """(family, device) -> value of the machine's series in one scrape."""
    r = api.get("/metrics", auth=auth)
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.labels.get("uuid") == uuid:
                out[(s.name, s.labels.get("device") or s.labels.get("state"))] = s.value
    return out


def test_a_running_guests_counters_move_between_scrapes(qemu):
    uuid, name, _vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    first = wait_for(lambda: machine_samples(qemu.api, uuid),
                     lambda s: ("enomalism_machine_cpu_seconds_total", None) in s,
                     "the guest's CPU time in /metrics")
    assert first[("enomalism_machine_state", "running")] == 1
    assert first[("enomalism_machine_vcpus", None)] == 1
    assert first[("enomalism_machine_memory_max_bytes", None)] == 64 * 1024 * 1024
    assert first[("enomalism_machine_memory_balloon_bytes", None)] > 0
    assert first[("enomalism_machine_memory_rss_bytes", None)] > 0
    assert ("enomalism_machine_block_read_bytes_total", "vda") in first
    assert ("enomalism_machine_block_write_requests_total", "vda") in first
    info = [k for k in first if k[0] == "enomalism_machine_info"]
    assert info, first
    # a later scrape (after the 5 s the collection is shared) sees more CPU time
    later = wait_for(lambda: machine_samples(qemu.api, uuid),
                     lambda s: s[("enomalism_machine_cpu_seconds_total", None)]
                     > first[("enomalism_machine_cpu_seconds_total", None)],
                     "the guest's CPU time to grow", interval=1.0)
    assert later[("enomalism_machine_cpu_seconds_total", None)] > 0


def test_stats_give_rates_and_history_of_a_running_guest(qemu):
    uuid, _name, _vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    body = wait_for(lambda: qemu.api.ok("GET", f"/rest/machine/{uuid}/stats/"),
                    lambda b: len(b["history"]) >= 3 and b["stats"]["cpu"],
                    "three samples with a CPU rate")
    now = body["stats"]
    assert body["state"] == "running" and body["interval"] == 0.5
    assert 0 < now["cpu"] <= 100 * 1.5  # percent of its one vCPU (a little over: timing)
    assert now["mem_total"] == 64 * 1024 * 1024
    assert now["mem_used"] > 0  # no balloon driver in the guest: its process's RSS
    assert now["disk_read"] is not None and now["disk_read"] >= 0
    assert now["net_rx"] is None  # it has no network interface
    times = [p["t"] for p in body["history"]]
    assert times == sorted(times) and now["t"] == times[-1]
    # powered off, it has no current rates, and its history stays
    qemu.action(uuid, "poweroff")
    qemu.wait_api_state(uuid, "shutoff")
    off = wait_for(lambda: qemu.api.ok("GET", f"/rest/machine/{uuid}/stats/"),
                   lambda b: b["state"] == "shutoff", "the sampler to see it shut off")
    assert off["stats"]["cpu"] is None and len(off["history"]) >= 3


def test_a_user_without_read_sees_no_stats_and_no_series(qemu):
    uuid, _name, _vol = qemu.define()
    qemu.action(uuid, "create")
    qemu.wait_api_state(uuid, "running")
    bob = new_user(qemu.api)
    expect_error(qemu.api.get(f"/rest/machine/{uuid}/stats/", auth=bob.auth), 404, 1200)
    assert machine_samples(qemu.api, uuid, auth=bob.auth) == {}
    assert machine_samples(qemu.api, uuid)  # the administrator sees it


def test_machine_top_once_shows_a_running_guests_rates(scratch: Scratch, tmp_path: Path):
    """`enomalism machine top --once` against a real server on qemu:///system: the running
    guest is listed with a CPU rate; the stopped one is not."""
    import httpx

    from tests.cli.conftest import invoke, running_server

    data = tmp_path / "data"
    settings = Settings(data_dir=data, hypervisors=[URI], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data), stats_interval=0.5, **FAST_HASHES)
    with running_server(settings) as (url, app), \
            httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=60) as api:
        assert app.state.registry.wait_idle(30)
        host = next(h["uuid"] for h in api.get("/rest/hosts/").json()["hosts"] if h["is_local"])
        hv = next(h["uuid"] for h in api.get(f"/rest/machine/{host}/hypervisors/").json()[
            "hypervisors"] if h["virt_url"] == URI)
        made = {}
        for state in ("running", "shutoff"):
            name = scratch.domain_name()
            uuid = api.put("/rest/machines/", data={
                "xmldesc": scratch.domain_xml(name, scratch.volume().path()),
                "hvmuuid": hv}).json()["machine"]
            scratch.track(uuid)
            made[state] = (uuid, name)
        uuid, name = made["running"]
        assert api.post(f"/rest/machine/{uuid}/actions/create/").json()["errno"] == 0
        wait_for(lambda: api.get(f"/rest/machine/{uuid}/stats/").json(),
                 lambda b: b.get("stats", {}).get("cpu"), "a CPU rate for the guest")
        env = {"ENOMALISM_URL": url, "ENOMALISM_USER": "admin",
               "ENOMALISM_PASSWORD": ADMIN_PASSWORD,
               "ENOMALISM_CONFIG": str(tmp_path / "cli.toml")}
        r = invoke("machine", "top", "--once", "--json", env=env)
        assert r.code == 0, r
        rows = {row["name"]: row for row in r.json}
        assert rows[name]["cpu"] > 0 and rows[name]["mem_used"] > 0
        assert made["shutoff"][1] not in rows
        table = invoke("machine", "top", "--once", env=env)
        assert any(line.split()[0] == name for line in table.out.splitlines())
