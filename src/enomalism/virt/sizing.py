"""Resizing a domain (vCPUs, memory) through libvirt's own calls, never by rewriting its XML:
libvirt knows which changes a running guest takes (hot-plugged vCPUs, the balloon) and which
only its next boot.

A stopped domain takes any size: the new size is also its new maximum. A running (or paused)
domain changes live and in its definition together, up to the maximum it was started with;
beyond that `AboveMaximum`, and whatever the hypervisor refuses (a vCPU unplug QEMU cannot
do) is its error, with nothing changed.
"""

from dataclasses import dataclass
from xml.etree import ElementTree

import libvirt

from enomalism.errors import AboveMaximum, BadSize
from enomalism.virt.driver import _lookup
from enomalism.virt.errors import libvirt_errors

_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


@dataclass(frozen=True)
class Limits:
    """What a domain may be resized to now: online, its maximums; offline, the hypervisor's."""
    active: bool
    max_vcpus: int
    max_memory_kib: int


def limits(conn: libvirt.virConnect, uuid: str) -> Limits:
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        if dom.isActive():
            return Limits(True, dom.vcpusFlags(_LIVE | libvirt.VIR_DOMAIN_VCPU_MAXIMUM),
                          dom.maxMemory())
        domain_type = ElementTree.fromstring(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).get("type")
        try:
            hv_max = conn.getMaxVcpus(domain_type)
        except libvirt.libvirtError:
            hv_max = 0  # drivers that cannot say: libvirt judges the change
        return Limits(False, hv_max, conn.getInfo()[1] * 1024)


def resize(conn: libvirt.virConnect, uuid: str, *, vcpus: int | None,
           memory_kib: int | None) -> bool:
    """Give the domain `vcpus` and/or `memory_kib`; True when it was changed live."""
    lim = limits(conn, uuid)
    dom = _lookup(conn, uuid)
    if lim.active:
        if vcpus is not None and vcpus > lim.max_vcpus:
            raise AboveMaximum(f"the running machine has at most {lim.max_vcpus} vCPUs; stop "
                               f"it to give it {vcpus}")
        if memory_kib is not None and memory_kib > lim.max_memory_kib:
            raise AboveMaximum(f"the running machine has at most {lim.max_memory_kib // 1024} "
                               f"MiB; stop it to give it {memory_kib // 1024} MiB")
        with libvirt_errors():
            if vcpus is not None:
                dom.setVcpusFlags(vcpus, _LIVE | _CONFIG)
            if memory_kib is not None:
                # two calls: some drivers (the test driver) take one of LIVE and CONFIG only
                dom.setMemoryFlags(memory_kib, _LIVE)
                dom.setMemoryFlags(memory_kib, _CONFIG)
        return True
    if vcpus is not None and lim.max_vcpus and vcpus > lim.max_vcpus:
        raise BadSize(f"vcpus: the hypervisor gives a machine at most {lim.max_vcpus}")
    if memory_kib is not None and memory_kib > lim.max_memory_kib:
        raise BadSize(f"memory: the hypervisor has {lim.max_memory_kib // 1024} MiB in all, "
                      f"less than {memory_kib // 1024} MiB")
    with libvirt_errors():
        if vcpus is not None:
            current = dom.vcpusFlags(_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
            # the maximum never below the current count: raise it first, or lower it last
            order = [libvirt.VIR_DOMAIN_VCPU_MAXIMUM, 0] if vcpus > current else \
                [0, libvirt.VIR_DOMAIN_VCPU_MAXIMUM]
            for flag in order:
                dom.setVcpusFlags(vcpus, _CONFIG | flag)
        if memory_kib is not None:
            current = dom.maxMemory()
            order = [libvirt.VIR_DOMAIN_MEM_MAXIMUM, 0] if memory_kib > current else \
                [0, libvirt.VIR_DOMAIN_MEM_MAXIMUM]
            for flag in order:
                dom.setMemoryFlags(memory_kib, _CONFIG | flag)
    return False
