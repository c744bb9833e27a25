"""What the services ask of a hypervisor, as functions over one open libvirt connection.

Every function takes a `virConnect` handed out by a `HypervisorLink`, speaks in domain UUIDs and
plain dataclasses, and raises only `enomalism.errors` exceptions.
"""

import ipaddress
import os
import re
import subprocess
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from xml.etree import ElementTree

import libvirt
from lxml import etree

from enomalism.errors import HypervisorError, InvalidInput, InvalidState, NotFound
from enomalism.virt.domxml import Disk, DomainXML
from enomalism.virt.errors import libvirt_errors
from enomalism.virt.uri import is_local

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    driver: str
    libvirt_version: str
    cpus: int
    memory_kib: int
    arch: str


@dataclass(frozen=True)
class DomainSnapshot:
    uuid: str
    name: str
    state: str
    persistent: bool = True
    vcpus: int | None = None
    memory_kib: int | None = None
    max_memory_kib: int | None = None
    xml: str | None = None
    autostart: bool | None = None  # None: not read (it stays as stored)


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


def host_info(conn: libvirt.virConnect) -> HostInfo:
    with libvirt_errors():
        info = conn.getInfo()  # [model, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
        return HostInfo(
            hostname=conn.getHostname(),
            driver=conn.getType(),
            libvirt_version=_version(conn.getLibVersion()),
            cpus=info[2],
            memory_kib=info[1] * 1024,
            arch=info[0],
        )


def _lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    with libvirt_errors():
        try:
            return conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NotFound(f"domain {uuid} does not exist on its hypervisor") from None
            raise


def _xml(dom: libvirt.virDomain, *, secure: bool = False) -> str:
    """The persistent definition. Without `secure`, as every reader gets it: libvirt leaves
    out secrets (graphics passwords), which are then in no answer, inventory or package."""
    if secure:
        return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def snapshot(conn: libvirt.virConnect, uuid: str, *,
             with_xml: bool = True) -> DomainSnapshot | None:
    """The domain's current state and size, or None when it does not exist."""
    try:
        dom = _lookup(conn, uuid)
    except NotFound:
        return None
    return _snapshot_of(dom, with_xml=with_xml)


def _snapshot_of(dom: libvirt.virDomain, *, with_xml: bool) -> DomainSnapshot | None:
    with libvirt_errors():
        try:
            state, maxmem, mem, vcpus, _cpu = dom.info()
            return DomainSnapshot(
                uuid=dom.UUIDString(), name=dom.name(), state=STATES.get(state, "nostate"),
                persistent=bool(dom.isPersistent()), vcpus=vcpus, memory_kib=mem,
                max_memory_kib=maxmem, xml=_xml(dom) if with_xml else None,
                autostart=bool(dom.autostart()),
            )
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None  # undefined while we looked
            raise


def all_snapshots(conn: libvirt.virConnect) -> list[DomainSnapshot]:
    """Every domain's state in one bulk call (getAllDomainStats), without XML."""
    stats = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_BALLOON | \
        libvirt.VIR_DOMAIN_STATS_VCPU
    with libvirt_errors():
        records = conn.getAllDomainStats(stats, 0)
        transient = {
            d.UUIDString()
            for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        }
        autostart = {
            d.UUIDString()
            for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
        }
    out = []
    for dom, st in records:
        uuid = dom.UUIDString()
        mem, maxmem, vcpus = st.get("balloon.current"), st.get("balloon.maximum"), \
            st.get("vcpu.current")
        if mem is None or vcpus is None:  # drivers without those stats (the test driver)
            try:
                _s, maxmem, mem, vcpus, _c = dom.info()
            except libvirt.libvirtError:
                continue  # gone since the bulk call; the next event or sync sees it
        out.append(DomainSnapshot(
            uuid=uuid, name=dom.name(), state=STATES.get(st.get("state.state", 0), "nostate"),
            persistent=uuid not in transient, vcpus=vcpus, memory_kib=mem,
            max_memory_kib=maxmem, autostart=uuid in autostart,
        ))
    return out


def domain_xml(conn: libvirt.virConnect, uuid: str, *, secure: bool = False) -> str:
    """The domain's persistent definition; with `secure`, its secrets too (only to define
    it again)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        return _xml(dom, secure=secure)


@dataclass(frozen=True)
class DomainState:
    """What a lifecycle action changes, as known right after it: the state and the size (None:
    as they were). Not the name, the persistence or the XML, which an action leaves alone."""
    state: str | None
    vcpus: int | None = None
    memory_kib: int | None = None
    max_memory_kib: int | None = None


UNCHANGED = DomainState(None)  # a request the guest acts on later (shutdown, reboot)


# Domain handles the lifecycle actions looked up, per connection. A handle is good for its
# connection's life (libvirt finds the domain by UUID on every call; its name may be stale,
# so nothing here reads it), which spares each action the lookup's round trip to libvirtd. A
# handle whose domain is gone is dropped and the domain looked up again, for the usual error.
_handles: "weakref.WeakKeyDictionary[libvirt.virConnect, dict[str, libvirt.virDomain]]" = \
    weakref.WeakKeyDictionary()


def _act(conn: libvirt.virConnect, uuid: str, action: Callable[[libvirt.virDomain], object],
         after: DomainState | None = None) -> DomainState | None:
    """Do `action` on the domain, then return its state: `after` where the call itself tells
    (libvirt returns from a suspend once the domain is paused; a shutdown request changes
    nothing until the guest acts, and its events say when), else read on the same handle,
    None when the domain is gone after the call (a transient domain powered off)."""
    handles = _handles.get(conn)
    if handles is None:
        handles = _handles.setdefault(conn, {})
    dom = handles.get(uuid)
    if dom is not None:
        try:
            with libvirt_errors():
                action(dom)
        except NotFound:
            handles.pop(uuid, None)
            dom = None
    if dom is None:
        dom = _lookup(conn, uuid)
        with libvirt_errors():
            action(dom)
        handles[uuid] = dom
    if after is not None:
        return after
    with libvirt_errors():
        try:
            state, maxmem, mem, vcpus, _cpu = dom.info()
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                handles.pop(uuid, None)
                return None
            raise
    return DomainState(state=STATES.get(state, "nostate"), vcpus=vcpus, memory_kib=mem,
                       max_memory_kib=maxmem)


def _start(dom: libvirt.virDomain) -> None:
    if dom.state()[0] == libvirt.VIR_DOMAIN_PMSUSPENDED:
        dom.pMWakeup(0)
    else:
        dom.create()


def start(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    return _act(conn, uuid, _start)


def suspend(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    return _act(conn, uuid, libvirt.virDomain.suspend, DomainState("paused"))


def resume(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    return _act(conn, uuid, libvirt.virDomain.resume, DomainState("running"))


def shutdown(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    """Ask the guest to power off (ACPI); returns before it has: UNCHANGED."""
    return _act(conn, uuid, libvirt.virDomain.shutdown, UNCHANGED)


def reboot(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    """Ask the guest to reboot; returns before it has: UNCHANGED."""
    return _act(conn, uuid, lambda dom: dom.reboot(0), UNCHANGED)


def poweroff(conn: libvirt.virConnect, uuid: str) -> DomainState | None:
    """Pull the plug. None: the domain was transient and is gone."""
    return _act(conn, uuid, libvirt.virDomain.destroy)


def define(conn: libvirt.virConnect, xml: str) -> DomainSnapshot:
    """Define (or redefine) a persistent domain, validated against libvirt's schema."""
    with libvirt_errors(xml=True):
        try:
            dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            dom = conn.defineXML(xml)  # drivers that cannot validate (older test driver)
    snap = snapshot(conn, dom.UUIDString())
    if snap is None:
        raise HypervisorError("the domain vanished right after it was defined")
    return snap


def set_autostart(conn: libvirt.virConnect, uuid: str, on: bool) -> None:
    """Start the domain when libvirtd starts (the host boots), or not."""
    with libvirt_errors():
        _lookup(conn, uuid).setAutostart(1 if on else 0)


def undefine(conn: libvirt.virConnect, uuid: str) -> None:
    """Stop the domain if it runs and remove its definition, with its snapshots' metadata."""
    try:
        dom = _lookup(conn, uuid)
    except NotFound:
        return
    with libvirt_errors():
        if dom.isActive():
            dom.destroy()
        if not dom.isPersistent():
            return
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        # a driver that knows fewer flags (the test driver: no NVRAM) is asked with fewer
        for f in (flags, libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA):
            try:
                dom.undefineFlags(f)
                return
            except libvirt.libvirtError as e:
                if e.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                              libvirt.VIR_ERR_INVALID_ARG):
                    raise
        dom.undefine()


def rename(conn: libvirt.virConnect, uuid: str, name: str) -> None:
    with libvirt_errors():
        _lookup(conn, uuid).rename(name, 0)


def name_taken(conn: libvirt.virConnect, name: str, *, other_than: str | None = None) -> bool:
    """True when a domain other than `other_than` (a UUID) has this name."""
    with libvirt_errors():
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise
    return dom.UUIDString() != other_than


def uuid_taken(conn: libvirt.virConnect, uuid: str) -> bool:
    try:
        _lookup(conn, uuid)
    except NotFound:
        return False
    return True


def _volume(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol | None:
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return None


def _pool_volume(conn: libvirt.virConnect, pool: str, volume: str) -> libvirt.virStorageVol | None:
    try:
        return conn.storagePoolLookupByName(pool).storageVolLookupByName(volume)
    except libvirt.libvirtError:
        return None


def volume_path(conn: libvirt.virConnect, *, path: str | None = None, pool: str | None = None,
                volume: str | None = None) -> str | None:
    """The path of the storage volume a disk names (by path, or by pool and volume), as
    libvirt knows it; None when it names no volume."""
    with libvirt_errors():
        vol = _volume(conn, path) if path else \
            _pool_volume(conn, pool, volume) if pool and volume else None
        return vol.path() if vol is not None else None


def emulators(conn: libvirt.virConnect) -> set[str]:
    """The emulator binaries the hypervisor offers (its capabilities' <emulator>s)."""
    with libvirt_errors():
        root = ElementTree.fromstring(conn.getCapabilities())
    return {(e.text or "").strip() for e in root.iter("emulator")}


def firmware_images(conn: libvirt.virConnect) -> set[str]:
    """The firmware (loader) images the hypervisor offers; none where libvirt cannot say."""
    try:
        root = ElementTree.fromstring(conn.getDomainCapabilities())
    except libvirt.libvirtError:
        return set()  # the test driver, drivers without domain capabilities
    return {(v.text or "").strip() for v in root.iterfind("os/loader/value")}


def firmware_kinds(conn: libvirt.virConnect, virt_type: str) -> set[str] | None:
    """The firmware libvirt can pick on its own for `<os firmware=...>` (efi, bios) with this
    domain type; None where libvirt cannot say (the test driver)."""
    try:
        root = ElementTree.fromstring(conn.getDomainCapabilities(None, None, None, virt_type))
    except libvirt.libvirtError:
        return None
    return {(v.text or "").strip() for v in root.iterfind("os/enum[@name='firmware']/value")}


def refresh_pools(conn: libvirt.virConnect) -> None:
    """Let libvirt see volumes created behind its back before we look paths up."""
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        try:
            pool.refresh(0)
        except libvirt.libvirtError:
            pass  # a pool busy with another job; its volumes stay as libvirt last saw them


def check_disks(conn: libvirt.virConnect, uri: str, xml: DomainXML) -> None:
    """Every disk the XML names must exist on the hypervisor (as a volume, or a local file)."""
    with libvirt_errors():
        refresh_pools(conn)
    for disk in xml.disks():
        if _volume(conn, disk.path) is not None:
            continue
        if is_local(uri) and os.path.exists(disk.path):
            continue
        raise InvalidInput(f"disk {disk.target or ''} '{disk.path}' does not exist on the "
                           "hypervisor (create the volume first)".replace("  ", " "))
    for vdisk in xml.volume_disks():
        if _pool_volume(conn, vdisk.pool, vdisk.volume) is None:
            raise InvalidInput(f"disk {vdisk.target or ''} volume '{vdisk.volume}' of pool "
                               f"'{vdisk.pool}' does not exist on the hypervisor (create the "
                               "volume first)".replace("  ", " "))


def hard_disks(conn: libvirt.virConnect, xml: DomainXML) -> list[Disk]:
    """The domain's hard disks (device 'disk') by path: file and block disks as they are, then
    a pool's volumes (`<disk type='volume'>`) by their volume's path. A volume that is not
    there is InvalidState: a package without one of the machine's disks could not be
    provisioned."""
    disks = [d for d in xml.disks() if d.device == "disk"]
    with libvirt_errors():
        for v in xml.volume_disks():
            if v.device != "disk":
                continue
            vol = _pool_volume(conn, v.pool, v.volume)
            if vol is None:
                raise InvalidState(f"disk {v.target or ''} volume '{v.volume}' of pool "
                                   f"'{v.pool}' is not on the hypervisor".replace("  ", " "))
            disks.append(Disk(path=vol.path(), device=v.device, target=v.target,
                              readonly=v.readonly, shareable=v.shareable))
    return disks


def delete_volumes(conn: libvirt.virConnect, xml: DomainXML, *, keep: set[str],
                   only: set[str]) -> list[str]:
    """Delete the storage volumes behind the domain's writable disks that are in `only` (the
    machine's own), except paths in `keep` (disks other domains use), and its cloud-init seed
    (`DomainXML.mark_seed`), also one of its own. Returns the paths of the volumes deleted."""
    deleted = []
    seeds = xml.seed_paths() & only
    with libvirt_errors():
        refresh_pools(conn)
        for disk in xml.disks():
            seed = disk.device == "cdrom" and disk.path in seeds
            if not seed and (disk.device not in ("disk", "lun") or disk.readonly
                             or disk.shareable):
                continue
            if disk.path in keep:
                continue
            vol = _volume(conn, disk.path)
            if vol is None or vol.path() not in only or vol.path() in keep:
                continue
            vol.delete(0)
            deleted.append(disk.path)
        for vdisk in xml.volume_disks():
            if vdisk.device not in ("disk", "lun") or vdisk.readonly or vdisk.shareable:
                continue
            vol = _pool_volume(conn, vdisk.pool, vdisk.volume)
            if vol is None or vol.path() in keep or vol.path() not in only:
                continue
            path = vol.path()
            vol.delete(0)
            deleted.append(path)
    return deleted


def _disk_paths(conn: libvirt.virConnect) -> Iterator[tuple[libvirt.virDomain, set[str]]]:
    """Every domain of the hypervisor with the paths its disks (CD-ROMs too) name."""
    with libvirt_errors():
        for dom in conn.listAllDomains(0):
            try:
                xml = DomainXML(_xml(dom))
                paths = {d.path for d in xml.disks()}
                paths.update(v.path() for d in xml.volume_disks()
                             if (v := _pool_volume(conn, d.pool, d.volume)) is not None)
            except libvirt.libvirtError:
                continue  # gone meanwhile
            yield dom, paths


def disks_in_use(conn: libvirt.virConnect, *, except_uuid: str) -> set[str]:
    """Disk paths named by every other domain on the hypervisor."""
    paths: set[str] = set()
    for dom, named in _disk_paths(conn):
        if dom.UUIDString() != except_uuid:
            paths |= named
    return paths


def machines_using(conn: libvirt.virConnect, path: str) -> list[str]:
    """The names of the domains with a disk or CD-ROM on `path`."""
    return sorted(dom.name() for dom, named in _disk_paths(conn) if path in named)


def delete_volume(conn: libvirt.virConnect, path: str) -> bool:
    """Delete the storage volume at `path` if libvirt knows one there; False when none."""
    with libvirt_errors():
        vol = _volume(conn, path)
        if vol is None:
            refresh_pools(conn)
            vol = _volume(conn, path)
        if vol is None:
            return False
        vol.delete(0)
        return True


def delete_pool_volume(conn: libvirt.virConnect, pool: str, name: str) -> bool:
    """Delete the volume `name` of storage pool `pool`; False when there is none."""
    with libvirt_errors():
        try:
            vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_VOL,
                                      libvirt.VIR_ERR_NO_STORAGE_POOL):
                return False
            raise
        vol.delete(0)
        return True


def has_network(conn: libvirt.virConnect, name: str) -> bool:
    """True when `name` is a libvirt network of the hypervisor, False when libvirt says there
    is no such network (a plain host bridge). Any other error (a dropped connection) is raised:
    taken for "no network", provisioning would write a bridge interface instead."""
    with libvirt_errors():
        try:
            conn.networkLookupByName(name)
            return True
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return False
            raise


def list_networks(conn: libvirt.virConnect) -> list[tuple[str, bool, str | None]]:
    """The hypervisor's libvirt networks as (name, active, bridge), sorted by name: what a
    new machine's interface may join (a network gone between the list and its read is left
    out)."""
    out = []
    with libvirt_errors():
        for net in conn.listAllNetworks(0):
            try:
                name, active = net.name(), bool(net.isActive())
                try:
                    bridge = net.bridgeName()
                except libvirt.libvirtError:
                    bridge = None  # a network without a bridge (macvtap, hostdev)
            except libvirt.libvirtError as e:
                if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                    continue
                raise
            out.append((name, active, bridge))
    return sorted(out)


def default_network(conn: libvirt.virConnect) -> str | None:
    """The libvirt network an interface goes on when nothing else is said: the one named
    'default' (what libvirt installs) while it runs; None otherwise. Not "the only running
    network": which network that is changes as others are started, and a guest must not land
    on one by chance."""
    with libvirt_errors():
        try:
            net = conn.networkLookupByName("default")
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return None
            raise
        return "default" if net.isActive() else None


def network_subnets(conn: libvirt.virConnect, name: str) -> list[ipaddress.IPv4Network
                                                                 | ipaddress.IPv6Network]:
    """The subnets of a libvirt network's <ip> elements (none for a network that only
    forwards to a bridge of the host)."""
    with libvirt_errors():
        root = ElementTree.fromstring(conn.networkLookupByName(name).XMLDesc(0))
    out = []
    for el in root.findall("ip"):
        mask = el.get("netmask") or el.get("prefix") or ("64" if ":" in el.get("address", "")
                                                         else "24")
        try:
            out.append(ipaddress.ip_network(f"{el.get('address')}/{mask}", strict=False))
        except ValueError:
            continue
    return out


def has_interface(conn: libvirt.virConnect, name: str) -> bool | None:
    """True when the hypervisor's host has an interface (a bridge) of that name, None when
    its libvirt cannot say (no interface driver)."""
    try:
        conn.interfaceLookupByName(name)
        return True
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_INTERFACE:
            return False
        return None


def dhcp_leased(conn: libvirt.virConnect, network: str) -> set[str]:
    """The addresses the libvirt network's dnsmasq holds leases on now (none when it is no
    running libvirt network): a freed address stays in dnsmasq's lease for the old MAC, and
    dnsmasq hands another to a new MAC meanwhile."""
    try:
        net = conn.networkLookupByName(network)
        return {x["ipaddr"] for x in net.DHCPLeases()} if net.isActive() else set()
    except libvirt.libvirtError:
        return set()


def release_dhcp_lease(conn: libvirt.virConnect, uri: str, network: str, *, mac: str,
                       ip: str) -> bool:
    """Make the libvirt network's dnsmasq forget the lease of `mac` on `ip`, so the address
    can go to a new machine at once. libvirt has no API for it: dnsmasq-utils' dhcp_release
    sends the DHCPRELEASE from this host, so only a local hypervisor's network is reached.
    True when no lease is left (there was none, or it was released)."""
    def held() -> bool:
        try:
            net = conn.networkLookupByName(network)
            return net.isActive() and any(x["mac"] == mac and x["ipaddr"] == ip
                                          for x in net.DHCPLeases())
        except libvirt.libvirtError:
            return False

    if not held():
        return True
    if not is_local(uri):
        return False
    with libvirt_errors():
        bridge = conn.networkLookupByName(network).bridgeName()
    try:
        subprocess.run(["dhcp_release", bridge, ip, mac], capture_output=True, timeout=10,
                       check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    for _ in range(40):  # libvirt's lease file follows dnsmasq's a moment later
        if not held():
            return True
        time.sleep(0.025)
    return not held()


_HOSTNAME = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _ip_index(net: libvirt.virNetwork, ip: str) -> int:
    """The index of the network's <ip> element whose subnet holds `ip`; -1 (libvirt's own
    pick: the first <ip> with DHCP, which may be an IPv6 one) when none does."""
    a = ipaddress.ip_address(ip)
    root = ElementTree.fromstring(net.XMLDesc(0))
    for i, el in enumerate(root.findall("ip")):
        mask = el.get("netmask") or el.get("prefix")
        try:
            if mask and a in ipaddress.ip_network(f"{el.get('address')}/{mask}", strict=False):
                return i
        except ValueError:
            continue
    return -1


_DHCP_COMMANDS = {"add": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                  "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
                  "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY}


def dhcp_host(conn: libvirt.virConnect, network: str, *, mac: str, ip: str, name: str,
              command: str) -> None:
    """Add, remove or rename (`command`: add, delete, modify) a fixed MAC-to-IP DHCP entry in
    a libvirt network, live and in its persistent config (whichever the network has: one made
    with net-create has no persistent config), so the guest's DHCP client gets its leased
    address. The machine's name goes along only when it is a usable host name (libvirt and
    dnsmasq refuse others). A modify finds the entry by its MAC and replaces it in one
    step; with no entry to find, it adds one. IPv6 addresses are skipped: libvirt keys DHCPv6
    hosts by DUID, never by MAC (the guest has its address from the SMBIOS OEM strings)."""
    if ipaddress.ip_address(ip).version != 4:
        return
    host = etree.Element("host", mac=mac, ip=ip)
    if command != "delete" and _HOSTNAME.fullmatch(name) and len(name) <= 253:
        host.set("name", name)
    xml = etree.tostring(host, encoding="unicode")
    with libvirt_errors():
        net = conn.networkLookupByName(network)
        # what the network has: a transient one (net-create) has no persistent config
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CURRENT
        if net.isPersistent():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        section, index = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, _ip_index(net, ip)
        try:
            net.update(_DHCP_COMMANDS[command], section, index, xml, flags)
        except libvirt.libvirtError as e:
            if command == "add" or e.get_error_code() not in (
                    libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_INVALID_ARG):
                raise
            if command == "modify":  # no entry for this MAC: one is made
                net.update(_DHCP_COMMANDS["add"], section, index, xml, flags)
            # a delete: already gone


@dataclass(frozen=True)
class DeviceIO:
    """A disk's or an interface's I/O counters since the domain started (bytes and requests
    or packets read/received and written/sent); None where the driver does not say."""
    name: str
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_ops: int | None = None
    write_ops: int | None = None


@dataclass(frozen=True)
class DomainStats:
    """One domain's counters as one bulk call reads them. Counters run since the domain
    started; what the driver does not report (the test driver reports only the state, a
    guest without a balloon driver no available memory) is None."""
    uuid: str
    name: str
    state: str
    cpu_ns: int | None = None
    vcpus: int | None = None
    balloon_kib: int | None = None
    max_memory_kib: int | None = None
    rss_kib: int | None = None
    available_kib: int | None = None
    unused_kib: int | None = None
    disks: tuple[DeviceIO, ...] = ()
    nics: tuple[DeviceIO, ...] = ()


_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
          | libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_VCPU
          | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)


def _devices(st: dict, kind: str, fields: tuple[str, str, str, str]) -> tuple[DeviceIO, ...]:
    out = []
    for i in range(st.get(f"{kind}.count", 0)):
        p = f"{kind}.{i}."
        name = st.get(p + "name")
        if name is None:
            continue
        out.append(DeviceIO(name, *(st.get(p + f) for f in fields)))
    return tuple(out)


def domain_stats(conn: libvirt.virConnect) -> list[DomainStats]:
    """Every domain's counters (CPU time, memory, block and network I/O, state) in one bulk
    call (getAllDomainStats), never one call per domain; names and UUIDs are local reads."""
    with libvirt_errors():
        records = conn.getAllDomainStats(_STATS, 0)
    out = []
    for dom, st in records:
        out.append(DomainStats(
            uuid=dom.UUIDString(), name=dom.name(),
            state=STATES.get(st.get("state.state", 0), "nostate"),
            cpu_ns=st.get("cpu.time"), vcpus=st.get("vcpu.current"),
            balloon_kib=st.get("balloon.current"), max_memory_kib=st.get("balloon.maximum"),
            rss_kib=st.get("balloon.rss"), available_kib=st.get("balloon.available"),
            unused_kib=st.get("balloon.unused"),
            disks=_devices(st, "block", ("rd.bytes", "wr.bytes", "rd.reqs", "wr.reqs")),
            nics=_devices(st, "net", ("rx.bytes", "tx.bytes", "rx.pkts", "tx.pkts")),
        ))
    return out


@dataclass(frozen=True)
class PoolUsage:
    name: str
    capacity: int  # bytes
    allocation: int
    available: int


def host_usage(conn: libvirt.virConnect) -> tuple[int, list[PoolUsage]]:
    """The host's free memory (bytes) and its active storage pools' sizes: one call for the
    memory, one for the pool list, one per pool."""
    with libvirt_errors():
        free = conn.getFreeMemory()
        pools = []
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            try:
                _state, capacity, allocation, available = pool.info()
            except libvirt.libvirtError:
                continue  # undefined while we looked
            pools.append(PoolUsage(pool.name(), capacity, allocation, available))
    return free, pools
