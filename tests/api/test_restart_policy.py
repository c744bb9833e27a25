"""`restart_policy` and `autostart` with `action=set` (issue 19) on libvirt's test driver:
stored and shown on the machine, autostart set on the domain itself; bad values refused with
errno 1033 and nothing changed; the permission is `modify`. A guest that fails and comes back
is tested on the real libvirtd (tests/integration/test_restart_policy.py)."""

import pytest

from tests.api.accounts import grant, new_user
from tests.conftest import Api, expect_error, manage, unchanged


def dom(api: Api, uuid: str):  # noqa: ANN201
    hv = api.machine(uuid)["machine_obj"]["parent"]
    return api.registry.connection(hv).virconnect.lookupByUUIDString(uuid)


def test_the_policy_and_autostart_are_set_and_shown(api):
    uuid = manage(api, "idle")
    obj = api.machine(uuid)["machine_obj"]
    assert (obj["restart_policy"], obj["autostart"]) == ("never", False)
    body = api.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "set", "restart_policy": "on-failure", "autostart": "true"})
    assert body["machine_obj"]["restart_policy"] == "on-failure"
    assert body["machine_obj"]["autostart"] is True
    assert dom(api, uuid).autostart() == 1
    api.ok("POST", f"/rest/machine/{uuid}/actions/set/", data={"autostart": "false"})
    assert dom(api, uuid).autostart() == 0
    obj = api.machine(uuid)["machine_obj"]
    assert (obj["restart_policy"], obj["autostart"]) == ("on-failure", False)
    api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "set", "restart_policy": "never"})
    assert api.machine(uuid)["machine_obj"]["restart_policy"] == "never"
    # with a size in the same request
    body = api.ok("POST", f"/rest/machine/{uuid}/", data={
        "action": "set", "restart_policy": "on-failure", "vcpus": "2"})
    assert body["info"]["vcpus"] == 2 and body["machine_obj"]["restart_policy"] == "on-failure"


@pytest.mark.parametrize("values", [
    {"restart_policy": "always"}, {"restart_policy": "on failure"}, {"autostart": "maybe"},
    {"restart_policy": "on-failure", "autostart": "2"},
    {"restart_policy": "on-failure", "vcpus": "0"},
])
def test_bad_values_are_refused_and_change_nothing(api, values):
    uuid = manage(api, "idle")
    with unchanged(api):
        r = api.post(f"/rest/machine/{uuid}/", data={"action": "set", **values})
        expect_error(r, 400, 1031 if "vcpus" in values else 1033)


def test_set_needs_modify(api):
    uuid = manage(api, "idle")
    bob = new_user(api)
    data = {"action": "set", "restart_policy": "on-failure"}
    expect_error(api.post(f"/rest/machine/{uuid}/", data=data, auth=bob.auth), 404, 1200)
    grant(api, uuid, "control", user=bob.uuid)
    expect_error(api.post(f"/rest/machine/{uuid}/", data=data, auth=bob.auth), 403, 1101)
    grant(api, uuid, "modify", user=bob.uuid)
    api.ok("POST", f"/rest/machine/{uuid}/", data=data, auth=bob.auth)
    assert api.machine(uuid)["machine_obj"]["restart_policy"] == "on-failure"


def test_autostart_set_behind_the_servers_back_is_read_back(api):
    """`virsh autostart` sends no event: the flag is read at each resync, the one a machine's
    `trigger_status_updates` asks for and the bulk one of the whole hypervisor."""
    uuid = manage(api, "idle")
    hv = api.machine(uuid)["machine_obj"]["parent"]
    dom(api, uuid).setAutostart(1)
    assert api.machine(uuid)["machine_obj"]["autostart"] is False  # not seen yet
    api.ok("POST", f"/rest/machine/{uuid}/trigger_status_updates/")
    assert api.machine(uuid)["machine_obj"]["autostart"] is True
    dom(api, uuid).setAutostart(0)
    api.registry.resync_hypervisor(hv)
    assert api.machine(uuid)["machine_obj"]["autostart"] is False
