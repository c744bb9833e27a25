"""virt/uri.py: which hypervisor class a libvirt URI names and whether it is local."""

import pytest

from enomalism.errors import InvalidInput
from enomalism.virt import uri


@pytest.mark.parametrize("text, driver", [
    ("qemu:///system", "qemu"),
    ("qemu:///session", "qemu"),
    ("QEMU:///system", "qemu"),
    ("qemu+ssh://root@node1/system", "qemu"),
    ("qemu+tcp://10.0.0.2:16509/system", "qemu"),
    ("qemu+tls://node1/system?no_verify=1", "qemu"),
    ("xen+ssh://node/", "xen"),
    ("lxc:///system", "lxc"),
    ("test:///default", "test"),
    ("test:///tmp/host.xml", "test"),
])
def test_driver_and_class(text, driver):
    assert uri.driver_of(text) == driver
    assert uri.class_of(text) == driver


@pytest.mark.parametrize("text", ["", "qemu", "hello world", "qemu:/system", "/var/run/x.sock",
                                  "qemu+ssh://[::1/system"])
def test_not_a_uri(text):
    with pytest.raises(InvalidInput, match="not a libvirt URI"):
        uri.driver_of(text)


@pytest.mark.parametrize("text", ["vmware:///x", "vbox:///session", "esx://host/"])
def test_unsupported_driver(text):
    with pytest.raises(InvalidInput, match="supported"):
        uri.class_of(text)


@pytest.mark.parametrize("virt_class, text", [
    ("kvm", "qemu:///system"), ("qemu", "qemu+ssh://h/system"), ("xen", "xen:///"),
    ("lxc", "lxc:///system"), ("test", "test:///default"),
])
def test_matching_class(virt_class, text):
    uri.check_class(virt_class, text)  # no error


@pytest.mark.parametrize("virt_class, text, words", [
    ("kvm", "test:///default", "does not match"),
    ("test", "qemu:///system", "does not match"),
    ("lxc", "qemu+ssh://h/system", "does not match"),
    ("vmware", "qemu:///system", "unknown virt_class"),
    ("KVM", "qemu:///system", "unknown virt_class"),
    ("", "qemu:///system", "unknown virt_class"),
])
def test_mismatched_class(virt_class, text, words):
    with pytest.raises(InvalidInput, match=words):
        uri.check_class(virt_class, text)


@pytest.mark.parametrize("text, local", [
    ("qemu:///system", True),
    ("test:///default", True),
    ("test:///tmp/host.xml", True),
    ("qemu+unix:///system", True),   # the local socket, spelled out
    ("qemu+ssh://node/system", False),
    ("qemu+tcp://127.0.0.1/system", False),
    ("qemu://node/system", False),
    ("qemu+ext:///system?command=/bin/x", False),
])
def test_is_local(text, local):
    assert uri.is_local(text) is local


@pytest.mark.parametrize("text, shown", [
    ("qemu:///system", "qemu:///system"),
    ("test:///tmp/host.xml", "test:///tmp/host.xml"),
    ("qemu+ssh://root@node1/system?keyfile=/root/.ssh/k", "qemu+ssh://node1/system"),
    ("qemu+tcp://op:s3cret@10.0.0.2:16509/system", "qemu+tcp://10.0.0.2:16509/system"),
    ("qemu+tls://node1/system?pkipath=/etc/pki#x", "qemu+tls://node1/system"),
    ("qemu+tcp://[::1/system", "(not a URI)"),
])
def test_redact_drops_credentials_and_parameters(text, shown):
    assert uri.redact(text) == shown
