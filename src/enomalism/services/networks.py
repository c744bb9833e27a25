"""Static networks and IP address management (spec section 7).

All address arithmetic is Python's `ipaddress`; IPv4 and IPv6 both work, and `netmask` is a
dotted mask or a prefix length. The rules, each refused with a clear error and nothing changed:
a range lies inside its network, starts before it ends, and overlaps no range of any network
on the same bridge; the network address, an IPv4 broadcast address and the gateway are never in
a range; a range cannot shrink past an address in use; a network with leases cannot be deleted.

An address is leased by inserting a row that a unique constraint guards, so no address is ever
leased twice, even by provisions running at the same moment on several servers.
"""

import ipaddress
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from enomalism.errors import (
    Conflict,
    EnomalismError,
    InvalidInput,
    InvalidState,
    NetworksClash,
    NoSuchBridge,
    NotFound,
    SubnetMismatch,
)
from enomalism.services import access, names
from enomalism.services.context import Context
from enomalism.services.lookup import get_cluster, parse_uuid, require
from enomalism.store.models import ClusterMember, Hypervisor, IPRange, Lease, Machine, Network
from enomalism.virt.domxml import new_mac

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(value: str | None, variable: str) -> IP:
    text = require(value, variable)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(f"{variable} '{text}' is not an IPv4 or IPv6 address") from None


def _network(ip: str | None, netmask: str | None) -> Net:
    addr = _address(ip, "ip")
    mask = require(netmask, "netmask", " (a dotted mask such as 255.255.255.0, or a prefix "
                   "length such as 24)").lstrip("/")
    bad = InvalidInput(f"netmask '{mask}' does not fit the address {addr} (give a dotted "
                       "mask such as 255.255.255.0 or a prefix length)")
    if "." in mask or ":" in mask:  # a mask written as an address: its one bits lead
        mask = _mask_prefix(addr, mask, bad)
    try:
        net = ipaddress.ip_network(f"{addr}/{mask}", strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            fixed = ipaddress.ip_network(f"{addr}/{mask}", strict=False)
            raise InvalidInput(f"{addr}/{mask} has host bits set; the network address is "
                               f"{fixed.network_address}") from None
        raise bad from None
    return net


def _mask_prefix(addr: IP, mask: str, bad: InvalidInput) -> str:
    """The prefix length of a mask written as an address (255.255.255.0, or for IPv6 the
    ffff:ffff:ffff:ffff:: a network's answer shows). `ipaddress` alone would take an IPv4 host
    mask (0.0.0.255) for a netmask, and no IPv6 mask at all."""
    try:
        m = ipaddress.ip_address(mask)
    except ValueError:
        raise bad from None
    bits = m.max_prefixlen
    prefix = bits - (int(m) ^ ((1 << bits) - 1)).bit_length()
    if m.version != addr.version or int(m) != ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1):
        raise bad
    return str(prefix)


def network_of(n: Network) -> Net:
    return ipaddress.ip_network(f"{n.address}/{n.prefix}")


def _unusable(net: Net, gateway: IP | None) -> set[IP]:
    """Addresses no range may hold: the network address, IPv4's broadcast, the gateway."""
    out: set[IP] = {net.network_address}
    if net.version == 4 and net.prefixlen < 31:
        out.add(net.broadcast_address)
    if gateway is not None:
        out.add(gateway)
    return out


def _check_gateway(net: Net, gateway: str | None) -> IP | None:
    if not gateway:
        return None
    gw = _address(gateway, "gateway")
    if gw not in net:
        raise InvalidInput(f"the gateway {gw} is not inside {net}")
    if gw == net.network_address or (net.version == 4 and net.prefixlen < 31
                                     and gw == net.broadcast_address):
        raise InvalidInput(f"the gateway {gw} is the network's own or broadcast address")
    return gw


# -- networks ------------------------------------------------------------------------------

def get(ctx: Context, uuid: str, permission: str = "read") -> Network:
    n = ctx.db.get(Network, parse_uuid(uuid, "network"))
    if n is None:
        raise NotFound(f"no network with UUID {uuid}")
    access.require(ctx, n, permission, "network")
    return n


def list_networks(ctx: Context) -> list[Network]:
    q = select(Network).order_by(Network.name)
    if (clause := access.readable(ctx, Network)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def _check_name(ctx: Context, name: str | None, other_than: str | None = None) -> str:
    name = names.check(names.NETWORK, name, why=" (the network's name)")
    clash = ctx.db.scalar(select(Network.uuid).where(Network.name == name))
    if clash and clash != other_than:
        raise Conflict(f"a network named '{name}' already exists")
    return name


def _check_bridge(bridge: str | None) -> str:
    bridge = require(bridge, "bridge", " (the host bridge or libvirt network guests join)")
    if len(bridge) > 255 or any(c in bridge for c in "/ \t\n'\"<>&"):
        raise InvalidInput(f"'{bridge}' is not a usable bridge or libvirt network name")
    return bridge


def create(ctx: Context, *, name: str | None, description: str | None, bridge: str | None,
           cluster: str | None, ip: str | None, netmask: str | None,
           gateway: str | None) -> tuple[Network, list[str]]:
    """Administrators only: a network hands out addresses on a physical segment. Returns it
    and what could not be checked (see `check_use`)."""
    access.require_admin(ctx, "create networks")
    name = _check_name(ctx, name)
    bridge = _check_bridge(bridge)
    net = _network(ip, netmask)
    gw = _check_gateway(net, gateway)
    c = _cluster(ctx, cluster)
    warnings = check_use(ctx, bridge=bridge, net=net, cluster_uuid=c.uuid if c else None)
    n = Network(name=name, description=description or None, bridge=bridge,
                cluster_uuid=c.uuid if c else None, address=str(net.network_address),
                prefix=net.prefixlen, gateway=str(gw) if gw else None, owner_uuid=ctx.user.uuid)
    ctx.db.add(n)
    ctx.db.flush()
    return n, warnings


def _cluster(ctx: Context, ref: str | None) -> Any:
    if not ref:
        return None
    c = get_cluster(ctx.db, ref)
    access.require(ctx, c, "read", "cluster")
    return c


def update(ctx: Context, uuid: str, *, name: str | None, description: str | None,
           bridge: str | None, cluster: str | None) -> tuple[Network, list[str]]:
    """Returns the network and what could not be checked (see `check_use`)."""
    n = get(ctx, uuid, "modify")
    if all(v is None for v in (name, description, bridge, cluster)):
        raise InvalidInput("give name, description, bridge or cluster to change")
    warnings: list[str] = []
    if bridge is not None or cluster is not None:  # checked before anything changes
        c = _cluster(ctx, cluster) if cluster else None
        warnings = check_use(ctx, bridge=_check_bridge(bridge) if bridge is not None
                             else n.bridge, net=network_of(n), other_than=n.uuid,
                             cluster_uuid=n.cluster_uuid if cluster is None
                             else (c.uuid if c else None))
    if name is not None:
        n.name = _check_name(ctx, name, other_than=n.uuid)
    if description is not None:
        n.description = description or None
    if bridge is not None and bridge != n.bridge:
        bridge = _check_bridge(bridge)
        for r in n.ranges:
            _check_overlap(ctx, bridge, _bounds(r), other_than=r.uuid)
        if _has_leases(ctx, n):
            raise InvalidState(f"network {n.name} has leases; its machines are on {n.bridge}")
        n.bridge = bridge
    if cluster is not None:
        c = _cluster(ctx, cluster)
        n.cluster_uuid = c.uuid if c else None
    return n, warnings


def set_cluster(ctx: Context, n: Network, cluster: str | None) -> list[str]:
    """Assign the network to a cluster (an empty value: to none); returns what could not be
    checked (see `check_use`)."""
    access.require(ctx, n, "modify", "network")
    c = _cluster(ctx, cluster)
    warnings = check_use(ctx, bridge=n.bridge, net=network_of(n), other_than=n.uuid,
                         cluster_uuid=c.uuid if c else None)
    n.cluster_uuid = c.uuid if c else None
    return warnings


# -- what the hypervisors say --------------------------------------------------------------

def check_use(ctx: Context, *, bridge: str, net: Net, cluster_uuid: str | None,
              other_than: str | None = None) -> list[str]:
    """Check a network as it would be: no other network on the bridge puts an overlapping
    subnet before a host it serves too, and on each hypervisor of its cluster the bridge is a
    libvirt network serving this subnet or a host bridge. Refuses what is wrong; returns what
    could not be checked (an unreachable hypervisor, no cluster), for the answer's message.
    libvirt is asked before the caller writes anything."""
    if cluster_uuid is None:
        return ["the network serves no cluster: provisioning leases no address on it until "
                "it is assigned one"]
    _check_clash(ctx, bridge, net, cluster_uuid, other_than)
    hvs = list(ctx.db.scalars(
        select(Hypervisor).join(ClusterMember, ClusterMember.machine_uuid
                                == Hypervisor.machine_uuid)
        .where(ClusterMember.cluster_uuid == cluster_uuid).order_by(Hypervisor.virt_url)))
    if not hvs:
        return ["its cluster has no hypervisor yet: the bridge is checked when a machine is "
                "provisioned"]
    warnings = []
    for hv in hvs:
        try:
            problem = segment_problem(ctx.registry.connection(hv.uuid), hv.virt_url, bridge,
                                      net)
        except EnomalismError as e:
            warnings.append(f"{bridge} not checked on {hv.virt_url} ({e.message})")
            continue
        if isinstance(problem, EnomalismError):
            raise problem
        if problem:
            warnings.append(problem)
    return warnings


def segment_problem(conn: Any, where: str, bridge: str, net: Net) -> EnomalismError | str | None:
    """What is wrong with `net` on `bridge` of one hypervisor: an error to raise, a warning
    (it cannot tell), or None."""
    if conn.has_network(bridge):
        served = conn.network_subnets(bridge)
        same = [str(s) for s in served if s.version == net.version]
        if same and net not in served:
            return SubnetMismatch(
                f"libvirt network {bridge} on {where} serves {', '.join(same)}, not {net}: its "
                f"DHCP would hand out addresses the network never leased; give {net} the "
                "libvirt network's own subnet, or put the network on another bridge")
        return None
    found = conn.has_interface(bridge)
    if found is False:
        return NoSuchBridge(f"{bridge} is neither a libvirt network nor a host bridge on "
                            f"{where}: a machine there could not start on it")
    return None if found else f"{where} cannot list its host bridges: {bridge} not checked"


def _check_clash(ctx: Context, bridge: str, net: Net, cluster_uuid: str,
                 other_than: str | None) -> None:
    hosts = set(ctx.db.scalars(select(ClusterMember.machine_uuid)
                               .where(ClusterMember.cluster_uuid == cluster_uuid)))
    for o in ctx.db.scalars(select(Network).where(Network.bridge == bridge,
                                                  Network.cluster_uuid.is_not(None))):
        other = network_of(o)
        if o.uuid == other_than or other.version != net.version or not other.overlaps(net):
            continue
        shared = hosts & set(ctx.db.scalars(select(ClusterMember.machine_uuid).where(
            ClusterMember.cluster_uuid == o.cluster_uuid)))
        if o.cluster_uuid == cluster_uuid or shared:
            raise NetworksClash(_clash(o.name, other, bridge))


def _clash(other: str, subnet: Net, bridge: str) -> str:
    return (f"network {other} already puts {subnet} on {bridge} for the same hosts: a "
            "machine would get two interfaces on one segment and subnet (on a libvirt "
            "network, two DHCP host entries with its name); add ranges to "
            f"{other} instead, or serve clusters that share no host")


def check_for_host(conn: Any, where: str, nets: list[Network]) -> None:
    """Before a provision leases anything: the host's networks do not clash (a host may have
    joined a second cluster since) and their bridges are there on its hypervisor."""
    for i, n in enumerate(nets):
        for o in nets[:i]:
            if o.bridge == n.bridge and network_of(o).version == network_of(n).version \
                    and network_of(o).overlaps(network_of(n)):
                raise NetworksClash(f"network {n.name}: " + _clash(o.name, network_of(o),
                                                                   n.bridge))
        problem = segment_problem(conn, where, n.bridge, network_of(n))
        if isinstance(problem, EnomalismError):
            raise type(problem)(f"network {n.name}: {problem.message}")


def _has_leases(ctx: Context, n: Network) -> bool:
    return ctx.db.scalar(select(Lease.uuid).where(Lease.network_uuid == n.uuid).limit(1)) \
        is not None


def delete(ctx: Context, uuid: str) -> str:
    n = get(ctx, uuid, "delete")
    count = len(leases(ctx, n))
    if count:
        raise InvalidState(f"network {n.name} has {count} lease(s); release them first")
    ctx.db.delete(n)
    return f"network {n.name} deleted"


# -- ranges --------------------------------------------------------------------------------

def _bounds(r: IPRange) -> tuple[IP, IP]:
    return ipaddress.ip_address(r.start_ip), ipaddress.ip_address(r.end_ip)


def _within(a: IP, start: IP, end: IP) -> bool:
    """start <= a <= end; an address of the other IP version is outside (not a TypeError)."""
    return a.version == start.version == end.version and int(start) <= int(a) <= int(end)


def _check_overlap(ctx: Context, bridge: str, span: tuple[IP, IP], *,
                   other_than: str | None = None) -> None:
    start, end = span
    q = select(IPRange, Network).join(Network).where(Network.bridge == bridge)
    for r, n in ctx.db.execute(q):
        if r.uuid == other_than:
            continue
        s, e = _bounds(r)
        if s.version == start.version and int(s) <= int(end) and int(start) <= int(e):
            raise Conflict(f"{start}-{end} overlaps the range {s}-{e} of network {n.name} "
                           f"on bridge {bridge}")


def _check_range(ctx: Context, n: Network, start_ip: str | None, end_ip: str | None, *,
                 other_than: str | None = None) -> tuple[IP, IP]:
    net = network_of(n)
    start, end = _address(start_ip, "start_ip"), _address(end_ip, "end_ip")
    for a in (start, end):
        if a.version != net.version or a not in net:
            raise InvalidInput(f"{a} is not inside the network {net}")
    if int(start) > int(end):
        raise InvalidInput(f"the range starts at {start}, after its end {end}")
    gw = ipaddress.ip_address(n.gateway) if n.gateway else None
    for a in sorted(_unusable(net, gw)):
        if _within(a, start, end):
            what = "gateway" if a == gw else "network or broadcast address"
            raise InvalidInput(f"the range {start}-{end} holds the {what} {a}")
    _check_overlap(ctx, n.bridge, (start, end), other_than=other_than)
    return start, end


def add_range(ctx: Context, uuid: str, *, start_ip: str | None, end_ip: str | None) -> IPRange:
    n = get(ctx, uuid, "modify")
    start, end = _check_range(ctx, n, start_ip, end_ip)
    r = IPRange(network_uuid=n.uuid, start_ip=str(start), end_ip=str(end))
    ctx.db.add(r)
    ctx.db.flush()
    ctx.db.refresh(n)
    return r


def get_range(ctx: Context, uuid: str, range_uuid: str) -> tuple[Network, IPRange]:
    n = get(ctx, uuid)
    r = ctx.db.get(IPRange, parse_uuid(range_uuid, "IP range"))
    if r is None or r.network_uuid != n.uuid:
        raise NotFound(f"network {n.name} has no IP range {range_uuid}")
    return n, r


def change_range(ctx: Context, uuid: str, range_uuid: str, *, start_ip: str | None,
                 end_ip: str | None) -> IPRange:
    n, r = get_range(ctx, uuid, range_uuid)
    access.require(ctx, n, "modify", "network")
    start, end = _check_range(ctx, n, start_ip or r.start_ip, end_ip or r.end_ip,
                              other_than=r.uuid)
    old_start, old_end = _bounds(r)
    for lease in leases(ctx, n):
        a = ipaddress.ip_address(lease.address)
        if _within(a, old_start, old_end) and not _within(a, start, end) \
                and not _in_other_range(n, r, a):
            raise InvalidState(f"{a} is in use ({_holder(lease)}); the range must keep it")
    r.start_ip, r.end_ip = str(start), str(end)
    return r


def delete_range(ctx: Context, uuid: str, range_uuid: str) -> str:
    n, r = get_range(ctx, uuid, range_uuid)
    access.require(ctx, n, "modify", "network")
    s, e = _bounds(r)
    for lease in leases(ctx, n):
        a = ipaddress.ip_address(lease.address)
        if _within(a, s, e) and not _in_other_range(n, r, a):
            raise InvalidState(f"{a} is in use ({_holder(lease)}); release it first")
    ctx.db.delete(r)
    return f"range {s}-{e} deleted"


def _in_other_range(n: Network, r: IPRange, a: IP) -> bool:
    return any(o.uuid != r.uuid and _within(a, *_bounds(o)) for o in n.ranges)


def _holder(lease: Lease) -> str:
    return f"leased to machine {lease.machine_uuid}" if lease.machine_uuid else "reserved"


# -- leases --------------------------------------------------------------------------------

def leases(ctx: Context, n: Network) -> list[Lease]:
    found = ctx.db.scalars(select(Lease).where(Lease.network_uuid == n.uuid))
    return sorted(found, key=lambda lease: ipaddress.ip_address(lease.address))


def _free(ctx: Context, n: Network, held: AbstractSet[str]) -> Iterator[IP]:
    taken = {ipaddress.ip_address(a) for a in
             ctx.db.scalars(select(Lease.address).where(Lease.network_uuid == n.uuid))}
    taken |= {ipaddress.ip_address(a) for a in held}
    gw = ipaddress.ip_address(n.gateway) if n.gateway else None
    for r in sorted(n.ranges, key=lambda r: _bounds(r)[0]):
        start, end = _bounds(r)
        a = start
        while _within(a, start, end):
            if a not in taken and a != gw:
                yield a
            a += 1


def lease(ctx: Context, n: Network, *, machine_uuid: str | None, address: str | None = None,
          mac: str | None = None, note: str | None = None, held: AbstractSet[str] = frozenset()
          ) -> Lease:
    """Lease an address (the next free one when none is named, passing over `held`: what the
    libvirt network's DHCP server still leases to another MAC). The row insert is checked
    by the database's unique constraint; on a clash with a concurrent lease, the next free
    address is tried."""
    if address:
        a = _address(address, "address")
        if a.version != network_of(n).version \
                or not any(_within(a, *_bounds(r)) for r in n.ranges):
            raise InvalidInput(f"{a} is not in any IP range of network {n.name}")
        got = _insert(ctx, n, a, machine_uuid, mac, note, exhausted_ok=False)
        assert got is not None  # exhausted_ok=False: a clash raises instead
        return got
    # Each free address in turn: one taken meanwhile by a concurrent lease fails its insert
    # and the next is tried, so this ends with an address or with the range really full.
    for a in _free(ctx, n, held):
        got = _insert(ctx, n, a, machine_uuid, mac, note, exhausted_ok=True)
        if got is not None:
            return got
    leased = set(ctx.db.scalars(select(Lease.address).where(Lease.network_uuid == n.uuid)))
    kept = [a for a in map(ipaddress.ip_address, held - leased)
            if a.version == network_of(n).version
            and any(_within(a, *_bounds(r)) for r in n.ranges)]
    waiting = f" ({len(kept)} held by its DHCP server's leases until they end)" if kept else ""
    raise InvalidState(f"network {n.name} has no free address left in its ranges{waiting}")


def _insert(ctx: Context, n: Network, a: IP, machine_uuid: str | None, mac: str | None,
            note: str | None, *, exhausted_ok: bool) -> Lease | None:
    row = Lease(network_uuid=n.uuid, address=str(a), machine_uuid=machine_uuid,
                mac=mac or new_mac(), note=note, created_by=ctx.user.uuid)
    try:
        with ctx.db.begin_nested():
            ctx.db.add(row)
            ctx.db.flush()
    except IntegrityError:
        if exhausted_ok:
            return None
        raise Conflict(f"{a} is already leased on network {n.name}") from None
    return row


def reserve(ctx: Context, uuid: str, *, address: str | None, machine: str | None,
            mac: str | None, note: str | None) -> Lease:
    """Reserve an address by hand (for a machine, or for something outside enomalism)."""
    n = get(ctx, uuid, "modify")
    machine_uuid = None
    if machine:
        m = ctx.db.get(Machine, parse_uuid(machine, "machine"))
        if m is None or not access.holds(ctx, m, "read"):
            raise NotFound(f"no machine with UUID {machine}")
        machine_uuid = m.uuid
    if mac:
        mac = mac.lower()
        if len(mac.split(":")) != 6 or not all(len(p) == 2 and
                                                all(c in "0123456789abcdef" for c in p)
                                                for p in mac.split(":")):
            raise InvalidInput(f"'{mac}' is not a MAC address (like 52:54:00:12:34:56)")
    return lease(ctx, n, machine_uuid=machine_uuid, address=address, mac=mac,
                 note=note or "reserved by hand")


def release(ctx: Context, uuid: str, address: str) -> Lease:
    n = get(ctx, uuid, "modify")
    a = _address(address, "address")
    row = ctx.db.scalar(select(Lease).where(Lease.network_uuid == n.uuid,
                                            Lease.address == str(a)))
    if row is None:
        raise NotFound(f"{a} is not leased on network {n.name}")
    if row.machine_uuid:  # its guest may be on it, a libvirt network's DHCP entry names it
        raise InvalidState(f"{a} is held by machine {row.machine_uuid}; it is released when "
                           "the machine is deleted (totaldelete)")
    ctx.db.delete(row)
    return row


def networks_for_host(ctx: Context, host_uuid: str) -> list[Network]:
    """The networks assigned to clusters the host belongs to, in name order."""
    clusters = select(ClusterMember.cluster_uuid).where(ClusterMember.machine_uuid == host_uuid)
    return list(ctx.db.scalars(select(Network).where(Network.cluster_uuid.in_(clusters))
                               .order_by(Network.name)))


def machine_leases(db: Any, machine_uuid: str) -> list[tuple[Lease, Network]]:
    return list(db.execute(select(Lease, Network).join(Network)
                           .where(Lease.machine_uuid == machine_uuid)
                           .order_by(Network.name)).all())
