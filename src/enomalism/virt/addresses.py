"""A running guest's addresses as libvirt knows them (`virDomainInterfaceAddresses`), from
each of its sources: the libvirt network's DHCP leases (`dhcp`), the QEMU guest agent
(`agent`) and the host's ARP table (`arp`).

The agent is asked only when its channel is connected (the live XML says so): a guest whose
agent is not running would hold the caller for libvirt's agent time-out. A source that fails
(no agent, a driver without it) gives nothing; the others still answer.
"""

from dataclasses import dataclass
from xml.etree import ElementTree

import libvirt

from enomalism.errors import NotFound
from enomalism.virt.driver import _lookup

_SOURCES = (("dhcp", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE),
            ("agent", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT),
            ("arp", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP))
AGENT_CHANNEL = "org.qemu.guest_agent.0"


@dataclass(frozen=True)
class GuestAddress:
    address: str
    prefix: int | None
    mac: str | None
    source: str  # dhcp, agent or arp


def _agent_connected(dom: libvirt.virDomain) -> bool:
    root = ElementTree.fromstring(dom.XMLDesc(0))
    return any(t.get("name") == AGENT_CHANNEL and t.get("state") == "connected"
               for t in root.iterfind("devices/channel/target"))


def guest_addresses(conn: libvirt.virConnect, uuid: str) -> list[GuestAddress]:
    """Every address libvirt's sources report for the domain; none when it is not running
    (or gone). Loopback addresses the agent reports are left out."""
    try:
        dom = _lookup(conn, uuid)
        if not dom.isActive():
            return []
        agent = _agent_connected(dom)
    except (NotFound, libvirt.libvirtError):
        return []
    out: list[GuestAddress] = []
    for name, source in _SOURCES:
        if name == "agent" and not agent:
            continue
        try:
            found = dom.interfaceAddresses(source, 0)
        except libvirt.libvirtError:
            continue  # not offered by this driver or source, or the guest went away
        for ifname, nic in sorted((found or {}).items()):
            if ifname == "lo":
                continue
            for a in nic.get("addrs") or []:
                out.append(GuestAddress(a["addr"], a.get("prefix"), nic.get("hwaddr"), name))
    return out
