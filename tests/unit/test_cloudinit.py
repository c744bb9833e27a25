"""services/cloudinit.py: what a NoCloud seed carries, read back from the ISO with pycdlib,
and the checks on user data, SSH keys and host names."""

import base64
import io
import json
import struct

import pycdlib
import pytest

from enomalism.errors import BadSSHKey, BadUserData, InvalidInput
from enomalism.services import cloudinit

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmqk0F1mM5NUKv8X4wt2lkVnvNUCGTKCk2hKUeNWlqM "
           "alice@laptop")


def blob(kind: str, rest: bytes = b"\x00\x00\x00\x01x") -> str:
    return base64.b64encode(struct.pack(">I", len(kind)) + kind.encode() + rest).decode()


def read_iso(data: bytes) -> tuple[str, dict[str, str]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    files = {}
    for name in ("meta-data", "user-data", "network-config"):
        out = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        except pycdlib.pycdlibexception.PyCdlibInvalidInput:
            continue
        files[name] = out.getvalue().decode()
    label = iso.pvd.volume_identifier.decode().strip()
    iso.close()
    return label, files


def test_a_seed_carries_meta_data_user_data_and_network_config():
    meta = cloudinit.meta_data(instance_id="i-1", hostname="web", ssh_keys=[ED25519])
    net = cloudinit.network_config([cloudinit.Address("52:54:00:aa:bb:cc", "10.1.2.5", 24,
                                                      "10.1.2.1")])
    label, files = read_iso(cloudinit.seed_iso(meta=meta, user="#cloud-config\nruncmd: [x]\n",
                                               network=net))
    assert label == "cidata"
    assert json.loads(files["meta-data"]) == {
        "instance-id": "i-1", "local-hostname": "web", "public-keys": [ED25519]}
    assert files["user-data"] == "#cloud-config\nruncmd: [x]\n"
    assert json.loads(files["network-config"]) == {"version": 2, "ethernets": {"eth0": {
        "match": {"macaddress": "52:54:00:aa:bb:cc"}, "set-name": "eth0",
        "addresses": ["10.1.2.5/24"], "routes": [{"to": "0.0.0.0/0", "via": "10.1.2.1"}],
        "nameservers": {"addresses": ["10.1.2.1"]}}}}


def test_without_user_data_or_networks_an_empty_cloud_config_and_no_network_file():
    _label, files = read_iso(cloudinit.seed_iso(
        meta=cloudinit.meta_data(instance_id="i-2", hostname=None, ssh_keys=[]), user=None,
        network=None))
    assert files["user-data"].startswith("#cloud-config")
    assert "network-config" not in files
    assert json.loads(files["meta-data"]) == {"instance-id": "i-2"}


def test_a_hostile_host_name_or_key_cannot_add_keys_to_meta_data():
    meta = cloudinit.meta_data(instance_id="i\nnetwork: x", hostname="h", ssh_keys=[])
    assert set(json.loads(meta)) == {"instance-id", "local-hostname"}


def test_user_data_limit_and_text():
    assert cloudinit.check_user_data("x" * cloudinit.USER_DATA_LIMIT)
    assert cloudinit.check_user_data("") is None
    with pytest.raises(BadUserData, match="65537 bytes"):
        cloudinit.check_user_data("x" * (cloudinit.USER_DATA_LIMIT + 1))
    with pytest.raises(BadUserData, match="65538 bytes"):  # counted in bytes, not characters
        cloudinit.check_user_data("é" * (cloudinit.USER_DATA_LIMIT // 2 + 1))
    with pytest.raises(BadUserData):
        cloudinit.check_user_data("a\0b")


def test_ssh_keys():
    assert cloudinit.check_ssh_key(f"  {ED25519}\n") == ED25519
    assert cloudinit.check_ssh_key(f"ssh-rsa {blob('ssh-rsa')}") == f"ssh-rsa {blob('ssh-rsa')}"


@pytest.mark.parametrize("key, words", [
    ("", "not an OpenSSH public key"),
    ("ssh-ed25519", "not an OpenSSH public key"),
    ("ssh-dss " + blob("ssh-dss"), "not an OpenSSH public key"),
    ("ssh-ed25519 !!!notbase64", "base64"),
    ("ssh-ed25519 " + blob("ssh-rsa"), "of type 'ssh-rsa'"),
    ("ssh-ed25519 " + blob("ssh-ed25519", b""), "of type"),
    (ED25519 + "\nssh-ed25519 AAAA", "one line"),
    ('command="rm -rf /" ' + ED25519, "not an OpenSSH public key"),
])
def test_bad_ssh_keys(key, words):
    with pytest.raises(BadSSHKey, match=words):
        cloudinit.check_ssh_key(key)


@pytest.mark.parametrize("name", ["web", "web-1.example.org", "a" * 63])
def test_host_names(name):
    assert cloudinit.check_hostname(name) == name


@pytest.mark.parametrize("name", ["-web", "web_1", "a" * 64, "web..x", "x y", "é"])
def test_bad_host_names(name):
    with pytest.raises(InvalidInput):
        cloudinit.check_hostname(name)
    assert cloudinit.hostname_from(name) is None
