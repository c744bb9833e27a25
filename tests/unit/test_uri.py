"""virt/uri.py: which hypervisor class a libvirt URI names and whether it is local."""

import pytest

from enomalism.errors import ForbiddenURI, InvalidInput
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


# -- what a non-administrator may give (check_user_uri) -----------------------------------------

HOST = "node1.example.org"


@pytest.mark.parametrize("text, local", [
    ("qemu+ssh://node1.example.org/system", False),
    ("qemu+ssh://root@NODE1.example.org:22/system?no_tty=1", False),
    ("qemu+libssh2://node1.example.org/system?sshauth=agent,privkey", False),
    ("qemu+tls://node1.example.org/system?mode=direct&tls_priority=NORMAL", False),
    ("qemu+tcp://node1.example.org:16509/system", False),
    ("xen+ssh://node1.example.org/", False),
    ("lxc+libssh://node1.example.org/system", False),
    ("qemu:///system", True), ("qemu+unix:///system", True), ("lxc:///", True),
    ("qemu+tcp://127.0.0.1/system", True), ("qemu+ssh://localhost/system", True),
    ("qemu+tls://[::1]/system", True),
])
def test_allowed_for_users(text, local):
    uri.check_user_uri(text, host_address=HOST, host_is_local=local)


@pytest.mark.parametrize("text, local, named", [
    ("test:///default", True, "test:"),
    ("test:///etc/passwd", True, "test:"),
    ("qemu+ext:///system?command=/bin/sh", True, "'ext'"),
    ("qemu+ssh://node1.example.org/system?Command=/bin/sh", False, "'command'"),
    ("qemu+unix:///system?socket=/tmp/s", True, "'socket'"),
    ("qemu+ssh://node1.example.org/system?netcat=nc", False, "'netcat'"),
    ("qemu+ssh://node1.example.org/system?keyfile=/root/.ssh/id_rsa", False, "'keyfile'"),
    ("qemu+ssh://node1.example.org/system?known_hosts=/x", False, "'known_hosts'"),
    ("qemu+tls://node1.example.org/system?pkipath=/x", False, "'pkipath'"),
    ("qemu+tcp://node1.example.org/system?name=test:///x", False, "'name'"),
    ("qemu+unix:///system?%73ocket=/tmp/s", True, "without escapes"),
    ("qemu+unix:///system?mode=direct;socket=/tmp/s", True, "without escapes"),
    ("qemu:///system#frag", True, "without escapes"),
    ("qemu+ssh://-oProxyCommand=sh/system", True, "without escapes"),
    ("qemu+ssh://-oProxyCommand=sh@node1.example.org/system", False, "without escapes"),
    ("QEMU:///system", True, "without escapes"),
    ("qemu:///session", True, "'/session'"),
    ("qemu:///embed?root=/tmp/x", True, "'/embed'"),
    ("esx://node1.example.org/", False, "driver 'esx'"),
    ("qemu+ssh://other.example.org/system", False, "other.example.org"),
    ("qemu:///system", False, "own libvirt"),
    ("qemu+tcp://127.0.0.1/system", False, "own libvirt"),
    ("qemu://node1.example.org/system", False, "no remote transport"),
    ("qemu+ssh:///system", True, "needs a host name"),
])
def test_refused_for_users(text, local, named):
    with pytest.raises(ForbiddenURI) as e:
        uri.check_user_uri(text, host_address=HOST, host_is_local=local)
    assert named in e.value.message and e.value.errno == 1120


def test_one_daemon_under_several_spellings():
    same = {uri.daemon_key(u) for u in ("qemu:///system", "qemu+unix:///system?mode=direct",
                                        "qemu+tcp://127.0.0.1/system", "qemu+ssh://localhost/system/")}
    assert same == {("qemu", "", "/system")}
    assert uri.daemon_key("qemu+ssh://Node1/system") == ("qemu", "node1", "/system")
    assert uri.daemon_key("qemu:///session") != uri.daemon_key("qemu:///system")


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
