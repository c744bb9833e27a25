"""Metrics and stats with two nodes on the real libvirtd (issue 17): each node reports the
machines of the hypervisors it owns plus its own server families, and a machine's stats are
answered by the node that samples them; the other says which node to ask."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import NEEDS_POSTGRES
from tests.multinode.conftest import Cluster, Node, wait_for
from tests.multinode.test_ownership import start_pair

pytestmark = [NEEDS_POSTGRES, pytest.mark.integration]


def scrape(node: Node) -> dict:
    r = node.request("GET", "/metrics")
    assert r.status_code == 200, r.text
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def machines_in(fams: dict) -> set[str]:
    return {s.labels["uuid"] for s in fams["enomalism_machine_info"].samples}


def test_each_node_reports_what_it_owns_and_the_owner_keeps_the_stats(
        qemu_nodes: Cluster, scratch):
    owner, other, hv = start_pair(qemu_nodes, stats_interval=0.5)
    vol = scratch.volume()
    body = owner.ok("PUT", "/rest/machines/", data={
        "xmldesc": scratch.domain_xml(scratch.domain_name(), vol.path()), "hvmuuid": hv})
    uuid = body["machine"]
    scratch.track(uuid)
    other.ok("POST", f"/rest/machine/{uuid}/actions/create/")

    wait_for(lambda: machines_in(scrape(owner)), lambda m: uuid in m,
             "the owner's /metrics to list the machine", interval=1.0)
    theirs = scrape(other)
    assert uuid not in machines_in(theirs)
    assert theirs["enomalism_hypervisor_up"].samples == []  # it owns no hypervisor
    assert any(s.labels["route"] == "/rest/machine/{uuid}/actions/create/"
               for s in theirs["enomalism_http_requests"].samples)  # its own requests

    stats = wait_for(lambda: owner.ok("GET", f"/rest/machine/{uuid}/stats/"),
                     lambda b: b["history"], "the owner to sample the machine")
    assert stats["state"] == "running"
    r = other.request("GET", f"/rest/machine/{uuid}/stats/")
    assert r.status_code == 503 and r.json()["errno"] == 1556, r.text
    assert hv in r.json()["message"]
