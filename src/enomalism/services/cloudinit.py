"""cloud-init NoCloud seeds: the ISO (volume label `cidata`) a cloud image reads at first boot.

Three files: `meta-data` (instance-id, local-hostname, public-keys), `user-data` (the caller's
cloud-config as given, or an empty one) and `network-config` (version 2: each interface by its
MAC, with the address leased from its static network, the prefix, the gateway as the default
route and as the DNS server). meta-data and network-config are written as JSON, which is YAML:
nothing the caller sends can add a key to them. The SSH keys go in meta-data's `public-keys`
(NoCloud hands them to the default user), so the caller's user data stays byte for byte theirs.

Password policy: none is ever set. Access is by SSH key; cloud-init's default locks the
default user's password, and a caller who wants one writes it into their own cloud-config.

pycdlib (pure Python, maintained) writes the ISO 9660 image with Joliet and Rock Ridge names,
in memory: a seed is a few KiB.
"""

import base64
import binascii
import io
import json
import re
import struct
from dataclasses import dataclass

import pycdlib

from enomalism.errors import BadSSHKey, BadUserData, InvalidInput

USER_DATA_LIMIT = 64 << 10  # bytes; what cloud-init's EC2 and OpenStack user data allow too
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


@dataclass(frozen=True)
class Address:
    mac: str
    address: str
    prefix: int
    gateway: str | None


def check_user_data(user_data: str | None) -> str | None:
    if user_data is None or user_data == "":
        return None
    try:
        size = len(user_data.encode("utf-8"))
    except UnicodeEncodeError:
        size = -1
    if size < 0 or "\0" in user_data:
        raise BadUserData("user_data must be UTF-8 text (a cloud-config or a script)")
    if size > USER_DATA_LIMIT:
        raise BadUserData(f"user_data is {size} bytes; at most {USER_DATA_LIMIT} (64 KiB) are "
                          "taken: keep it shorter, or fetch the rest with a cloud-config "
                          "#include")
    return user_data


def check_ssh_key(key: str) -> str:
    """One OpenSSH public key line (`type base64 [comment]`), its blob naming its own type."""
    line = key.strip()
    if "\n" in line or "\r" in line or "\0" in line:
        raise BadSSHKey("an ssh_key is one line; pass several keys as several ssh_key values")
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise BadSSHKey(f"ssh_key '{line[:40]}' is not an OpenSSH public key line "
                        f"(`<type> <base64> [comment]`, type one of {', '.join(KEY_TYPES)})")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (n,) = struct.unpack(">I", blob[:4])
        named = blob[4:4 + n].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise BadSSHKey(f"the {parts[0]} key's base64 part is not a public key") from None
    if named != parts[0] or len(blob) <= 4 + n:
        raise BadSSHKey(f"the {parts[0]} key's data is of type '{named[:40]}', not "
                        f"{parts[0]}") from None
    return line


def check_hostname(hostname: str) -> str:
    """An RFC 1123 host name (dot-separated labels of letters, digits and '-')."""
    name = hostname.strip().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise InvalidInput(f"hostname '{hostname[:80]}' is not a host name: labels of letters, "
                           "digits and '-', at most 63 characters each, 253 in all")
    return name


def hostname_from(name: str) -> str | None:
    """The machine's name as its host name, when it is one."""
    try:
        return check_hostname(name)
    except InvalidInput:
        return None


def meta_data(*, instance_id: str, hostname: str | None, ssh_keys: list[str]) -> str:
    data: dict = {"instance-id": instance_id}
    if hostname:
        data["local-hostname"] = hostname
    if ssh_keys:
        data["public-keys"] = list(ssh_keys)
    return json.dumps(data, indent=1) + "\n"


def network_config(addresses: list[Address]) -> str:
    """Version 2: each interface matched by MAC, a static address, its gateway for the default
    route and as the name server; interfaces without a lease use DHCP."""
    ethernets = {}
    for i, a in enumerate(addresses):
        eth: dict = {"match": {"macaddress": a.mac}, "set-name": f"eth{i}",
                     "addresses": [f"{a.address}/{a.prefix}"]}
        if a.gateway:
            to = "::/0" if ":" in a.address else "0.0.0.0/0"
            eth["routes"] = [{"to": to, "via": a.gateway}]
            eth["nameservers"] = {"addresses": [a.gateway]}
        ethernets[f"eth{i}"] = eth
    return json.dumps({"version": 2, "ethernets": ethernets}, indent=1) + "\n"


def seed_iso(*, meta: str, user: str | None, network: str | None) -> bytes:
    """The NoCloud seed as ISO 9660 bytes, volume label `cidata`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    files = {"meta-data": meta, "user-data": user or "#cloud-config\n{}\n"}
    if network is not None:
        files["network-config"] = network
    for name, text in files.items():
        data = text.encode("utf-8")
        iso.add_fp(io.BytesIO(data), len(data), f"/{name.replace('-', '_').upper()}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def check(*, user_data: str | None, ssh_keys: list[str], hostname: str | None,
          name: str) -> dict | None:
    """The checked cloud-init input of a new machine `name`, as a job's parameters; None when
    there is none (no seed then)."""
    user_data = check_user_data(user_data)
    keys = [check_ssh_key(k) for k in ssh_keys]
    hostname = check_hostname(hostname) if hostname else None
    if not (user_data or keys or hostname):
        return None
    return {"user_data": user_data, "ssh_keys": keys, "hostname": hostname or hostname_from(name)}


def seed_for(machine_uuid: str, seed: dict, nics: list[dict]) -> bytes:
    """The seed ISO of a machine: `seed` as `check` made it, `nics` its leases (mac, address,
    prefix, gateway), as provision and create keep them in their parameters."""
    addresses = [Address(mac=n["mac"], address=n["address"], prefix=n["prefix"],
                         gateway=n["gateway"]) for n in nics]
    return seed_iso(
        meta=meta_data(instance_id=machine_uuid, hostname=seed["hostname"],
                       ssh_keys=seed["ssh_keys"]),
        user=seed["user_data"], network=network_config(addresses) if addresses else None)
