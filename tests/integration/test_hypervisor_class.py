"""A qemu URI added without a virt_class becomes `kvm` when the (possibly remote) libvirt
offers KVM guests, as the local default does, so its guests are not emulated."""

import pytest

from enomalism.services.hypervisors import _offers_kvm
from enomalism.virt.connection import open_connection

pytestmark = pytest.mark.integration


def test_kvm_is_read_from_the_hypervisors_capabilities(host):
    assert _offers_kvm(host.conn) is (host.domain_type() == "kvm")


def test_the_test_driver_offers_no_kvm():
    conn = open_connection("test:///default")
    try:
        assert _offers_kvm(conn) is False
    finally:
        conn.close()
