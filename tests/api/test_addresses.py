"""A machine's `addresses` (issue 16): the leases of its static networks (`lease`) in every
machine object, read from the database for a whole list at once; one machine's GET also asks
libvirt (the test driver answers `virDomainInterfaceAddresses` for a running domain's
interfaces, whichever source is asked), each address saying where it came from."""

import threading
import time

import pytest

from tests.api.accounts import grant, new_user
from tests.api.test_create import create, host_of, server, static_network  # noqa: F401
from tests.conftest import expect_error


def test_a_machine_reports_its_lease_and_what_libvirt_sees(server):  # noqa: F811
    api = server
    net = static_network(api, "addr1", host_of(api))
    uuid = create(api, name="seen", disk=1, network=net)["machine"]
    lease = next(le for le in api.ok("GET", f"/rest/networks/{net}/leases/")["leases"]
                 if le["machine"] == uuid)
    mine = {"address": lease["address"], "prefix": 24, "mac": lease["mac"], "source": "lease"}
    # stopped: the lease only, in the list and in the machine's own answer
    listed = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
    assert next(o for o in listed["machine_objs"] if o["uuid"] == uuid)["addresses"] == [mine]
    assert all(o["addresses"] == [] for o in listed["machine_objs"] if o["uuid"] != uuid)
    assert api.machine(uuid)["machine_obj"]["addresses"] == [mine]
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    found = api.machine(uuid)["machine_obj"]["addresses"]
    assert found[0] == mine
    sources = {a["source"] for a in found[1:]}
    assert sources == {"dhcp", "arp"}  # no agent channel: the agent is not asked
    assert all(a["mac"] == lease["mac"] and a["address"] for a in found[1:])
    # the list never asks libvirt: still the lease alone
    listed = api.ok("GET", "/rest/machines/", params={"detail": "true", "kind": "vm"})
    assert next(o for o in listed["machine_objs"] if o["uuid"] == uuid)["addresses"] == [mine]
    # POST without variables answers as GET does
    assert api.ok("POST", f"/rest/machine/{uuid}/")["machine_obj"]["addresses"] == found
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")


def test_addresses_are_shown_only_to_those_who_may_read_the_machine(server):  # noqa: F811
    api = server
    net = static_network(api, "addr2", host_of(api))
    uuid = create(api, name="private", disk=1, network=net)["machine"]
    eve = new_user(api)
    expect_error(api.get(f"/rest/machine/{uuid}/", auth=eve.auth), 404, 1200)
    listed = api.ok("GET", "/rest/machines/", params={"detail": "true"}, auth=eve.auth)
    assert uuid not in {o["uuid"] for o in listed["machine_objs"]}
    grant(api, uuid, "read", user=eve.uuid)
    seen = api.ok("GET", f"/rest/machine/{uuid}/", auth=eve.auth)["machine_obj"]["addresses"]
    assert [a["source"] for a in seen] == ["lease"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")


def test_a_paused_machine_says_why(server):  # noqa: F811
    api = server
    uuid = create(api, name="pausing", disk=1)["machine"]
    assert api.machine(uuid)["info"]["paused_reason"] is None
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    api.ok("POST", f"/rest/machine/{uuid}/actions/suspend/")
    assert api.machine(uuid)["info"]["paused_reason"] == "user"
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")


def test_a_hypervisor_that_does_not_answer_leaves_the_stored_addresses(server, monkeypatch):  # noqa: F811
    """The guest's addresses are asked of libvirt for a bounded time: a hung host's machine
    answers from the database, and one unanswered question is all it is sent until it answers
    (tests/integration/test_remote.py hangs a real link)."""
    from enomalism.runtime import registry
    from enomalism.virt.hypervisor import HypervisorConnection

    api = server
    net = static_network(api, "addr3", host_of(api))
    uuid = create(api, name="hung", disk=1, network=net)["machine"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    answers = api.machine(uuid)["machine_obj"]["addresses"]
    assert {a["source"] for a in answers} == {"lease", "dhcp", "arp"}
    release, asked = threading.Event(), []
    real = HypervisorConnection.guest_addresses

    def hung(self, uuid):
        asked.append(uuid)
        release.wait(30)
        return real(self, uuid)

    monkeypatch.setattr(HypervisorConnection, "guest_addresses", hung)
    monkeypatch.setattr(registry, "ASK_WITHIN", 0.2)
    try:
        for _ in range(3):
            assert api.machine(uuid)["machine_obj"]["addresses"] == answers[:1]
        assert asked == [uuid]  # the later GETs did not pile up behind the first
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while api.machine(uuid)["machine_obj"]["addresses"] != answers:
        assert time.monotonic() < deadline, "the hypervisor's answers never came back"
        time.sleep(0.1)
    api.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")


def test_what_the_hypervisor_raises_reaches_the_asker(server):  # noqa: F811
    """A question that fails is the request's error, not a silent empty answer; a hypervisor
    that is not connected answers nothing."""
    reg = server.app.state.registry
    hv = next(u for u, _uri, status, _e in reg.links() if status == "connected")
    assert reg.ask(hv, lambda c: c.uri) == reg.connection(hv).uri

    def fails(_c):
        raise ValueError("the question failed")

    with pytest.raises(ValueError, match="the question failed"):
        reg.ask(hv, fails)
    assert reg.ask(hv, lambda c: c.uri)  # a failed question does not leave it marked busy
    assert reg.ask("00000000-0000-0000-0000-000000000000", lambda c: c.uri) is None
