"""`action=set` (issue 16): a machine's vCPUs and memory on libvirt's test driver. A stopped
machine takes any size the hypervisor gives (it becomes its maximum too); a running one
changes live up to the maximums it has; bad values and sizes past them are refused with their
errno and change nothing; the permission is `modify`."""

import pytest

from tests.api.accounts import grant, new_user
from tests.conftest import Api, expect_error, manage, unchanged

GROWABLE = ("<domain type='test'><name>{name}</name><memory unit='MiB'>1024</memory>"
            "<currentMemory unit='MiB'>512</currentMemory><vcpu current='1'>4</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><devices/></domain>")


def set_size(api: Api, uuid: str, auth: object = "admin", **size: object):  # noqa: ANN201
    return api.post(f"/rest/machine/{uuid}/", data={"action": "set", **size}, auth=auth)


def domain(api: Api, uuid: str):  # noqa: ANN201
    m = api.machine(uuid)
    return api.registry.connection(m["machine_obj"]["parent"]).virconnect.lookupByUUIDString(uuid)


def test_a_stopped_machine_takes_any_size_which_becomes_its_maximum(api):
    uuid = manage(api, "idle")
    assert "set" in api.ok("GET", f"/rest/machine/{uuid}/actions/")["result"]
    body = api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "3",
                                                           "memory": "2048"})
    assert "3 vCPUs and 2048 MiB" in body["message"]
    assert body["info"]["vcpus"] == 3 and body["info"]["memory_kib"] == 2048 * 1024
    assert body["info"]["max_memory_kib"] == 2048 * 1024
    dom = domain(api, uuid)
    assert dom.info()[1:4] == [2048 * 1024, 2048 * 1024, 3]
    assert "<vcpu placement='static'>3</vcpu>" in body["machine_obj"]["xmldesc"]
    # and down again, one at a time
    api.ok("POST", f"/rest/machine/{uuid}/actions/set/", data={"vcpus": "1"})
    api.ok("POST", f"/rest/machine/{uuid}/actions/set/", data={"memory": "256"})
    assert domain(api, uuid).info()[1:4] == [256 * 1024, 256 * 1024, 1]
    assert api.machine(uuid)["info"]["vcpus"] == 1


def test_a_running_machine_grows_live_up_to_its_maximums(api):
    host_hv = api.hypervisors()[0]["uuid"]
    uuid = api.ok("PUT", "/rest/machines/", data={
        "hvmuuid": host_hv, "xmldesc": GROWABLE.format(name="grow")})["machine"]
    api.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    body = api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "4",
                                                           "memory": "1024"})
    assert body["message"].endswith("(live)")
    assert domain(api, uuid).info()[2:4] == [1024 * 1024, 4]
    assert body["info"]["vcpus"] == 4
    with unchanged(api):
        body = expect_error(set_size(api, uuid, vcpus=5), 409, 1311)
        assert "at most 4 vCPUs" in body["message"]
        expect_error(set_size(api, uuid, memory=2048), 409, 1311)


@pytest.mark.parametrize("size", [
    {"vcpus": "0"}, {"vcpus": "two"}, {"vcpus": "-1"}, {"memory": "8"}, {"memory": "1.5"},
    {"vcpus": "100"},  # more than the test driver gives a domain
    {"memory": str(64 << 10)},  # more than the fake host's 16 GiB
])
def test_bad_sizes_are_refused_and_change_nothing(api, size):
    uuid = manage(api, "idle")
    with unchanged(api):
        expect_error(set_size(api, uuid, **size), 400, 1031)


def test_set_without_a_size_names_what_is_missing(api):
    uuid = manage(api, "idle")
    with unchanged(api):
        body = expect_error(set_size(api, uuid), 400, 1001)
        assert "vcpus" in body["message"]


def test_set_needs_modify_on_the_machine(api):
    uuid = manage(api, "idle")
    bob = new_user(api)
    expect_error(set_size(api, uuid, auth=bob.auth, vcpus=2), 404, 1200)
    grant(api, uuid, "control", user=bob.uuid)
    with unchanged(api):
        body = expect_error(set_size(api, uuid, auth=bob.auth, vcpus=2), 403, 1101)
        assert "modify" in body["message"]
    grant(api, uuid, "modify", user=bob.uuid)
    api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "vcpus": "2"},
           auth=bob.auth)
    assert domain(api, uuid).info()[3] == 2
