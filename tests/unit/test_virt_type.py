"""Provision's domain type: the caller's `virt_type` where the hypervisor offers it."""

from enomalism.services.provisioning import _domain_type


def test_the_callers_choice_else_the_hypervisors_class():
    assert _domain_type("kvm", "qemu") == "qemu"  # TCG on a KVM host (nested KVM)
    assert _domain_type("kvm", None) == "kvm"
    assert _domain_type("qemu", None) == "qemu"
    assert _domain_type("test", "kvm") == "test"
