"""Custom hosts for libvirt's test driver (`test:///path/to/host.xml`): each file is a separate
fake host with its own domains and storage pool, created fresh on every connection."""

import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
from sqlalchemy import select

from enomalism.store.models import Hypervisor

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
STATE_CODES = {"running": 1, "paused": 3, "shutoff": 5}


@dataclass
class FakeDomain:
    name: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    state: str = "running"
    disks: list[str] = field(default_factory=list)  # volume names in the host's pool
    memory_kib: int = 524288
    vcpus: int = 1


def domain_xml(name: str, uuid: str | None = None, disks: list[str] = (),
               memory_kib: int = 524288, pool_path: str = "/default-pool", extra: str = "",
               vcpus: int = 1) -> str:
    """A minimal domain definition for the test driver."""
    disk_xml = "".join(
        f"<disk type='file' device='disk'><source file='{pool_path}/{d}'/>"
        f"<target dev='vd{chr(97 + i)}' bus='virtio'/></disk>"
        for i, d in enumerate(disks))
    uuid_xml = f"<uuid>{uuid}</uuid>" if uuid else ""
    return (f"<domain type='test'><name>{name}</name>{uuid_xml}"
            f"<memory unit='KiB'>{memory_kib}</memory><vcpu>{vcpus}</vcpu>"
            f"<os><type arch='x86_64'>hvm</type></os><devices>{disk_xml}</devices>{extra}"
            f"</domain>")


def write_host(path: Path, domains: list[FakeDomain], volumes: list[str] = (),
               pool_path: str = "/default-pool", *, cpus: int = 4,
               memory_kib: int = 16777216, networks: list[str] = ()) -> str:
    """Write a fake host file (`cpus` cores, `memory_kib` of memory, libvirt networks given
    as their XML); returns its test:/// URI."""
    doms = []
    for d in domains:
        runstate = f"<test:runstate>{STATE_CODES[d.state]}</test:runstate>"
        xml = domain_xml(d.name, d.uuid, d.disks, d.memory_kib, pool_path, extra=runstate,
                         vcpus=d.vcpus)
        doms.append(xml.replace("<domain type='test'>",
                                f"<domain type='test' xmlns:test='{TEST_NS}'>", 1))
    vols = "".join(
        f"<volume><name>{v}</name><capacity unit='MiB'>16</capacity>"
        f"<allocation unit='MiB'>16</allocation></volume>" for v in volumes)
    pool = (f"<pool type='dir'><name>default-pool</name><uuid>{uuidlib.uuid4()}</uuid>"
            f"<capacity unit='GiB'>100</capacity><allocation unit='GiB'>0</allocation>"
            f"<available unit='GiB'>100</available>"
            f"<target><path>{pool_path}</path></target>{vols}</pool>")
    path.write_text(
        f"<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores>"
        f"<threads>1</threads><active>{cpus}</active><mhz>2000</mhz><model>x86_64</model></cpu>"
        f"<memory>{memory_kib}</memory>{''.join(doms)}{''.join(networks)}{pool}</node>")
    return f"test://{path}"


def add_bridge(api: Any, name: str) -> None:
    """Give every fake host of the server a host bridge `name` (a libvirt interface of the
    test driver), so a static network on it passes the bridge check."""
    with api.app.state.db.session(write=False) as s:
        uuids = list(s.scalars(select(Hypervisor.uuid)))
    for hv in uuids:
        conn = api.registry.connection(hv).virconnect
        try:
            conn.interfaceLookupByName(name)
        except libvirt.libvirtError:
            conn.interfaceDefineXML(f"<interface type='bridge' name='{name}'><bridge/>"
                                    "</interface>", 0)
