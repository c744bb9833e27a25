"""`enomalism serve` warns when /dev/kvm is not usable by libvirt's QEMU user (a machine where
no udev rule ran): libvirt then probes QEMU again on every call. Judged on a file of the
test's own standing for /dev/kvm, with the user and group qemu.conf names."""

import grp
import os
import pwd

import pytest

from enomalism.services.health import kvm_problem


@pytest.fixture
def device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("giving the device file another owner needs root")
    path = tmp_path / "kvm"
    path.write_bytes(b"")
    return path


def conf(tmp_path, text: str):
    path = tmp_path / "qemu.conf"
    path.write_text(text)
    return path


NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid).gr_name


def test_root_only_device_is_reported_with_what_to_do(tmp_path, device):
    os.chown(device, 0, 0)
    device.chmod(0o600)
    said = kvm_problem(conf(tmp_path, '#user = "root"\nuser = "nobody"\n'), device)
    assert said is not None
    assert f"{device} is root:root 0600" in said and "QEMU user nobody" in said
    assert "root:kvm 0660" in said and "scripts/kvm-device.sh" in said


@pytest.mark.parametrize("owner,mode,qemu_conf", [
    ("group", 0o660, 'user = "nobody"\n'),  # the user's own group may read and write it
    ("root", 0o666, 'user = "nobody"\n'),  # everyone may
    ("user", 0o600, 'user = "nobody"\n'),  # the user owns it
    ("group", 0o660, f'user = "+0"\ngroup = "{NOGROUP}"\n'),  # QEMU runs as root
    ("root", 0o600, 'user = "no-such-user-here"\n'),  # no such user: nothing to judge
], ids=["group", "everyone", "owner", "root", "unknown-user"])
def test_usable_devices_are_not_reported(tmp_path, device, owner, mode, qemu_conf):
    uid = NOBODY.pw_uid if owner == "user" else 0
    gid = NOBODY.pw_gid if owner == "group" else 0
    os.chown(device, uid, gid)
    device.chmod(mode)
    assert kvm_problem(conf(tmp_path, qemu_conf), device) is None


def test_the_group_qemu_conf_names_counts(tmp_path, device):
    os.chown(device, 0, NOBODY.pw_gid)
    device.chmod(0o660)
    other = next(g for g in grp.getgrall() if g.gr_gid not in (0, NOBODY.pw_gid)
                 and "nobody" not in g.gr_mem)
    os.chown(device, 0, other.gr_gid)
    assert kvm_problem(conf(tmp_path, 'user = "nobody"\n'), device) is not None
    assert kvm_problem(conf(tmp_path, f'user = "nobody"\ngroup = "{other.gr_name}"\n'),
                       device) is None


def test_no_device_no_warning(tmp_path):
    assert kvm_problem(conf(tmp_path, ""), tmp_path / "absent") is None
