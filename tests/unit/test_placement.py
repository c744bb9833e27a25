"""The placement rule (services/placement.choose) over hypervisor rows and host loads, and the
size of a machine read from its domain XML."""

import pytest

from enomalism.errors import HypervisorUnreachable, InvalidXML, NoPlacement
from enomalism.services.placement import ACTIVE, Load, Need, choose, incompatibility
from enomalism.store.models import Hypervisor
from enomalism.virt.domxml import DomainXML

GiB = 1 << 20  # in KiB


def hv(n: int, *, memory_gib: int = 16, cpus: int = 4, status: str = "connected",
       virt_class: str = "kvm", arch: str = "x86_64", host: int | None = None) -> Hypervisor:
    return Hypervisor(uuid=f"00000000-0000-4000-8000-00000000000{n}",
                      machine_uuid=f"host-{n if host is None else host}", virt_class=virt_class,
                      virt_url=f"qemu+ssh://h{n}/system", status=status, cpus=cpus,
                      memory_kib=memory_gib * GiB, arch=arch)


KVM_2G = Need(virt_class="kvm", arch="x86_64", memory_kib=2 * GiB, vcpus=2, label="package web")


def test_the_most_free_memory_wins():
    hvs = [hv(1, memory_gib=16), hv(2, memory_gib=32), hv(3, memory_gib=8)]
    assert choose(hvs, {}, KVM_2G).hypervisor.uuid == hvs[1].uuid
    # with 20 GiB in use on h2, h1 has the most free
    got = choose(hvs, {"host-2": Load(20 * GiB, 4)}, KVM_2G)
    assert got.hypervisor.uuid == hvs[0].uuid and got.free_memory_kib == 16 * GiB


def test_ties_go_to_the_lowest_vcpu_commitment_then_the_lowest_uuid():
    hvs = [hv(1, cpus=4), hv(2, cpus=16), hv(3, cpus=16)]
    loads = {"host-1": Load(0, 0), "host-2": Load(0, 8), "host-3": Load(0, 4)}
    got = choose(hvs, loads, KVM_2G)
    assert got.hypervisor.uuid == hvs[2].uuid and got.vcpu_commitment == pytest.approx(6 / 16)
    # the new machine's own vCPUs count: 0+2 of 4 CPUs is more than 4+2 of 16
    assert choose(hvs[:1] + hvs[2:], loads, KVM_2G).hypervisor.uuid == hvs[2].uuid
    assert choose([hv(3), hv(2), hv(1)], {}, KVM_2G).hypervisor.uuid == hvs[0].uuid


def test_filling_up_spreads():
    """Placing machine after machine, each counted, goes round the hosts by free memory."""
    hvs = [hv(1, memory_gib=8), hv(2, memory_gib=6)]
    loads: dict[str, Load] = {}
    picked = []
    for _ in range(7):
        h = choose(hvs, loads, KVM_2G).hypervisor
        picked.append(h.virt_url[-9:-7])
        old = loads.get(h.machine_uuid, Load())
        loads[h.machine_uuid] = Load(old.memory_kib + 2 * GiB, old.vcpus + 2)
    assert picked == ["h1", "h2", "h1", "h2", "h1", "h2", "h1"]  # ties: fewer vCPUs
    with pytest.raises(NoPlacement, match="the most free is 0 MiB on .* \\(2048 MiB short\\)"):
        choose(hvs, loads, KVM_2G)


def test_only_connected_hypervisors():
    hvs = [hv(1, memory_gib=64, status="disconnected"), hv(2, memory_gib=4),
           hv(3, memory_gib=64, status="connecting")]
    assert choose(hvs, {}, KVM_2G).hypervisor.uuid == hvs[1].uuid
    hvs[0].last_error = "connection refused"
    with pytest.raises(HypervisorUnreachable) as e:
        choose([hvs[0], hvs[2]], {}, KVM_2G, where="in cluster web")
    assert e.value.status == 503
    assert "in cluster web" in e.value.message and "connection refused" in e.value.message
    assert "h3/system is connecting" in e.value.message


def test_hypervisors_this_node_cannot_reach_count_as_not_connected():
    hvs = [hv(1, memory_gib=64), hv(2, memory_gib=4)]
    far = {hvs[0].uuid: "hypervisor qemu:///system is local to the machine m2"}
    assert choose(hvs, {}, KVM_2G, unreachable=far).hypervisor is hvs[1]
    with pytest.raises(HypervisorUnreachable, match="local to the machine m2"):
        choose(hvs[:1], {}, KVM_2G, unreachable=far)


def test_only_compatible_hypervisors():
    hvs = [hv(1, memory_gib=64, virt_class="xen"), hv(2, memory_gib=64, arch="aarch64"),
           hv(3, memory_gib=2, virt_class="qemu")]
    assert choose(hvs, {}, KVM_2G).hypervisor.uuid == hvs[2].uuid  # kvm packages run on qemu
    with pytest.raises(NoPlacement) as e:
        choose(hvs[:2], {}, KVM_2G)
    assert e.value.status == 409 and e.value.errno == 1302
    assert "can run package web" in e.value.message
    assert "hypervisor qemu+ssh://h1/system is xen" in e.value.message
    assert "h2/system runs aarch64" in e.value.message


def test_compatibility_is_the_explicit_hypervisors_rule():
    assert incompatibility("qemu", "x86_64", hv(1)) is None
    assert incompatibility(None, None, hv(1, virt_class="xen")) is None
    assert "is xen" in incompatibility("kvm", None, hv(1, virt_class="xen"))
    assert incompatibility("test", "aarch64", hv(1, virt_class="test")) is None


def test_not_enough_memory_names_the_smallest_shortfall():
    hvs = [hv(1, memory_gib=4), hv(2, memory_gib=8)]
    loads = {"host-1": Load(3 * GiB, 1), "host-2": Load(7 * GiB + 512 * 1024, 1)}
    with pytest.raises(NoPlacement) as e:
        choose(hvs, loads, KVM_2G, where="in cluster small")
    assert e.value.message == (
        "not enough free memory on any hypervisor in cluster small: package web needs 2048 MiB; "
        "the most free is 1024 MiB on qemu+ssh://h1/system (1024 MiB short)")
    # exactly enough fits
    assert choose(hvs, {"host-1": Load(2 * GiB, 0)}, Need(memory_kib=2 * GiB)).hypervisor
    # overcommitted hosts (negative free memory) report 0 free
    with pytest.raises(NoPlacement, match="most free is 0 MiB"):
        choose(hvs[:1], {"host-1": Load(5 * GiB)}, KVM_2G)


def test_an_unknown_size_refuses_no_hypervisor_for_memory():
    full = [hv(1, memory_gib=1), hv(2, memory_gib=2)]
    loads = {"host-1": Load(1 * GiB), "host-2": Load(3 * GiB)}
    assert choose(full, loads, Need()).hypervisor.uuid == full[0].uuid  # 0 free beats -1 GiB


def test_memory_and_cpus_are_the_hosts():
    """Two hypervisors of one host share its load (the loads are by host)."""
    a, b, other = hv(1, host=9), hv(2, host=9), hv(3, memory_gib=12)
    assert choose([a, b, other], {"host-9": Load(6 * GiB)}, KVM_2G).hypervisor is other


def test_no_hypervisor_at_all():
    with pytest.raises(NoPlacement, match="no hypervisor in cluster x"):
        choose([], {}, KVM_2G, where="in cluster x")


def test_active_states_hold_memory():
    assert {"running", "paused", "provisioning"} <= ACTIVE
    assert not {"shutoff", "missing", "crashed", "unknown"} & ACTIVE


@pytest.mark.parametrize("xml, memory, vcpus", [
    ("<memory unit='KiB'>524288</memory><vcpu>2</vcpu>", 524288, 2),
    ("<memory>1024</memory>", 1024, None),
    ("<memory unit='GiB'>4</memory><currentMemory unit='MiB'>1024</currentMemory>"
     "<vcpu current='2'>8</vcpu>", 1 << 20, 2),
    ("<memory unit='MB'>1</memory><vcpu placement='static'>3</vcpu>", 977, 3),
    ("<memory unit='bytes'>1</memory>", 1, None),
    ("<memory unit='parsecs'>1</memory><vcpu>many</vcpu>", None, None),
    ("", None, None),
])
def test_the_size_a_domain_starts_with(xml, memory, vcpus):
    dom = DomainXML(f"<domain type='kvm'><name>x</name>{xml}</domain>")
    assert (dom.memory_kib, dom.vcpus) == (memory, vcpus)


def test_a_bad_domain_is_still_refused():
    with pytest.raises(InvalidXML):
        DomainXML("<nodomain/>")
