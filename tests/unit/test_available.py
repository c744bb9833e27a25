"""services/actions.available: the actions valid for a machine in its current state."""

import pytest

from enomalism.services.actions import ACTION_NAMES, available
from enomalism.store.models import Hypervisor, Machine
from enomalism.virt.driver import STATES

ALWAYS = ["xmldesc", "store_xml", "set_parent", "totaldelete"]
DEVICES = ["set", "attach_disk", "detach_disk", "grow_disk"]  # size and disks


def vm(state: str = "running", *, managed: bool = True, lock: str | None = None) -> Machine:
    return Machine(kind="vm", name="v", state=state, managed=managed, lock_txid=lock)


@pytest.mark.parametrize("state, expected", [
    ("running", ["suspend", "shutdown", "reboot", "poweroff", "package", *DEVICES, *ALWAYS]),
    ("blocked", ["suspend", "shutdown", "reboot", "poweroff", *DEVICES, *ALWAYS]),
    ("paused", ["resume", "poweroff", "package", *DEVICES, *ALWAYS]),
    ("shutdown", ["poweroff", *DEVICES, *ALWAYS]),
    ("shutoff", ["create", "rename", "package", *DEVICES, *ALWAYS]),
    ("crashed", ["poweroff", *DEVICES, *ALWAYS]),
    ("pmsuspended", ["create", "poweroff", *DEVICES, *ALWAYS]),
    ("nostate", ["poweroff", *DEVICES, *ALWAYS]),
    ("missing", ALWAYS),
    ("unknown", ALWAYS),
    ("no-such-state", ALWAYS),
])
def test_managed_vm(state, expected):
    assert available(vm(state)) == expected


@pytest.mark.parametrize("state", [*STATES.values(), "missing", "unknown"])
def test_every_state_offers_only_real_actions_once(state):
    actions = available(vm(state))
    assert len(actions) == len(set(actions))
    assert set(actions) <= set(ACTION_NAMES)
    assert ("create" in actions) == (state in ("shutoff", "pmsuspended"))
    assert not {"manage", "unlock", "provision"} & set(actions)
    assert ("package" in actions) == (state in ("running", "paused", "shutoff"))


@pytest.mark.parametrize("state", ["running", "shutoff", "missing"])
def test_unmanaged_vm_can_only_be_managed(state):
    assert available(vm(state, managed=False)) == ["manage"]


@pytest.mark.parametrize("managed", [True, False])
def test_locked_vm_can_only_be_unlocked(managed):
    assert available(vm("running", managed=managed, lock="tx-1")) == ["unlock"]


def test_hosts():
    """Hosts are renamed; one with a hypervisor provisions; a bare remote one can go."""
    local = Machine(kind="host", name="h", is_local=True)
    with_hv = Machine(kind="host", name="h2", is_local=False,
                      hypervisors=[Hypervisor(virt_class="test", virt_url="test:///default")])
    bare = Machine(kind="host", name="h3", is_local=False)
    assert available(local) == ["rename"]
    assert available(with_hv) == ["evacuate", "provision", "rename"]
    assert available(bare) == ["rename", "totaldelete"]
