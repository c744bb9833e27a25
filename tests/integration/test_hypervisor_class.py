"""A qemu URI added without a virt_class becomes `kvm` when the (possibly remote) libvirt
offers KVM guests, as the local default does, so its guests are not emulated."""

import pytest

from enomalism.virt.connection import open_hypervisor
from enomalism.virt.hypervisor import HypervisorConnection

pytestmark = pytest.mark.integration


def test_kvm_is_read_from_the_hypervisors_capabilities(host):
    assert HypervisorConnection(host.conn).offers_kvm() is (host.domain_type() == "kvm")


def test_the_test_driver_offers_no_kvm():
    conn = open_hypervisor("test:///default")
    try:
        assert conn.offers_kvm() is False
    finally:
        conn.close()
