"""Storage pools and volumes as a resource (issue 16): listing, a volume made or deleted, and
a disk attached to, detached from or grown on a domain.

A stopped domain's disks change in its persistent definition (redefined from its XML: the
test driver has no device calls, and nothing runs to be told); a running one's through
libvirt's device calls, live and in the definition together (`virDomainAttachDeviceFlags`,
`virDomainDetachDeviceFlags`), and a disk grows through `virDomainBlockResize`, since QEMU
holds the image open. Sizes are bytes.
"""

import string
from dataclasses import dataclass

import libvirt
from lxml import etree

from enomalism.errors import Conflict, DiskTooLarge, InvalidInput, NotFound, PoolFull
from enomalism.virt import storage
from enomalism.virt.domxml import DomainXML
from enomalism.virt.driver import _lookup, define
from enomalism.virt.errors import libvirt_errors

MIB = 1 << 20
BLOCK_POOLS = ("logical", "disk", "iscsi", "iscsi-direct", "mpath", "scsi")


@dataclass(frozen=True)
class Pool:
    name: str
    uuid: str
    active: bool
    capacity: int
    allocation: int
    available: int


@dataclass(frozen=True)
class Vol:
    name: str
    path: str
    capacity: int
    allocation: int
    format: str | None


def pools(conn: libvirt.virConnect) -> list[Pool]:
    """Every pool of the hypervisor (inactive ones with sizes 0), by name."""
    out = []
    with libvirt_errors():
        for p in conn.listAllStoragePools(0):
            try:
                _state, capacity, allocation, available = p.info()
                out.append(Pool(p.name(), p.UUIDString(), bool(p.isActive()), capacity,
                                allocation, available))
            except libvirt.libvirtError:
                continue  # undefined while we looked
    return sorted(out, key=lambda p: p.name)


def pool(conn: libvirt.virConnect, uuid: str) -> libvirt.virStoragePool:
    with libvirt_errors():
        try:
            return conn.storagePoolLookupByUUIDString(uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise NotFound(f"storage pool {uuid} does not exist") from None
            raise


def volumes(p: libvirt.virStoragePool) -> list[Vol]:
    """The pool's volumes (an inactive pool has none to show)."""
    if not p.isActive():
        return []
    out = []
    with libvirt_errors():
        for v in p.listAllVolumes(0):
            try:
                root = etree.fromstring(v.XMLDesc(0).encode())
            except libvirt.libvirtError:
                continue
            fmt = root.find("target/format")
            out.append(Vol(v.name(), v.path(), int(root.findtext("capacity") or 0),
                           int(root.findtext("allocation") or 0),
                           fmt.get("type") if fmt is not None else None))
    return sorted(out, key=lambda v: v.name)


def check_space(p: libvirt.virStoragePool, size: int) -> None:
    """A new disk (or a disk's growth) must fit the pool's free space by its full size: no
    single disk may overcommit the pool (a guest filling it would pause every guest in it)."""
    _state, capacity, _allocation, available = p.info()
    if size > capacity:
        raise DiskTooLarge(f"{size // MIB} MiB is more than storage pool {p.name()} holds "
                           f"({capacity // MIB} MiB)")
    if size > available:
        raise PoolFull(f"storage pool {p.name()} has {available // MIB} MiB available, "
                       f"{size // MIB} MiB are needed")


def create_volume(p: libvirt.virStoragePool, name: str, size: int) -> str:
    """A blank volume (qcow2 in a file pool, raw elsewhere); its path."""
    check_space(p, size)
    return storage.blank(p, name, size)


# -- disks of a domain -----------------------------------------------------------------------

def _root(dom: libvirt.virDomain, *, inactive: bool) -> etree._Element:
    return etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)
                            .encode())


def _targets(root: etree._Element) -> set[str]:
    return {t.get("dev") for t in root.iterfind("devices/disk/target")}


def disk_element(path: str, fmt: str | None, target: str, *, block: bool) -> str:
    disk = etree.Element("disk", type="block" if block else "file", device="disk")
    etree.SubElement(disk, "driver", name="qemu", type=fmt or "raw")
    etree.SubElement(disk, "source", **{"dev" if block else "file": path})
    etree.SubElement(disk, "target", dev=target, bus="virtio")
    return etree.tostring(disk, encoding="unicode")


def attach(conn: libvirt.virConnect, uuid: str, path: str) -> str:
    """Attach the volume at `path` as the domain's next virtio disk; its target (vdb...)."""
    info = storage.volume_info(conn, path)
    block = storage.pool_type(conn.storagePoolLookupByName(info.pool)) in BLOCK_POOLS \
        if info.pool else False
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        active = bool(dom.isActive())
        taken = _targets(_root(dom, inactive=True)) | (
            _targets(_root(dom, inactive=False)) if active else set())
        target = next((f"vd{c}" for c in string.ascii_lowercase if f"vd{c}" not in taken), None)
        if target is None:
            raise Conflict("the machine has no free virtio disk name left (vda to vdz)")
        element = disk_element(path, info.format, target, block=block)
        if active:
            dom.attachDeviceFlags(element, libvirt.VIR_DOMAIN_AFFECT_LIVE
                                  | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            return target
        root = _root(dom, inactive=True)
    root.find("devices").append(etree.fromstring(element))
    define(conn, etree.tostring(root, encoding="unicode"))
    return target


def disk_path(conn: libvirt.virConnect, uuid: str, target: str) -> tuple[str, str]:
    """The path and device (disk, cdrom...) of the domain's disk `target` (NotFound)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        xml = DomainXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    for d in xml.disks():
        if d.target == target:
            return d.path, d.device
    for v in xml.volume_disks():
        if v.target == target:
            with libvirt_errors():
                return (conn.storagePoolLookupByName(v.pool).storageVolLookupByName(v.volume)
                        .path(), v.device)
    raise NotFound(f"the machine has no disk '{target}'")


def detach(conn: libvirt.virConnect, uuid: str, target: str) -> None:
    """Take the disk `target` off the domain (the volume stays)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        root = _root(dom, inactive=True)
        disk = next((d for d in root.iterfind("devices/disk")
                     if d.find("target") is not None and d.find("target").get("dev") == target),
                    None)
        if disk is None:
            raise NotFound(f"the machine has no disk '{target}'")
        if dom.isActive():
            dom.detachDeviceFlags(etree.tostring(disk, encoding="unicode"),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE
                                  | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            return
    disk.getparent().remove(disk)
    define(conn, etree.tostring(root, encoding="unicode"))


def grow(conn: libvirt.virConnect, uuid: str, target: str, path: str, size: int) -> bool:
    """Grow the disk `target` (the volume at `path`) to `size` bytes: the volume itself when
    the domain is stopped, QEMU's block resize when it runs. True when done live."""
    info = storage.volume_info(conn, path)
    if size <= info.capacity:
        raise InvalidInput(f"disk {target} has {info.capacity // MIB} MiB already; a disk "
                           "only grows")
    p = conn.storagePoolLookupByName(info.pool) if info.pool else None
    if p is not None:
        check_space(p, size - info.capacity)
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        if dom.isActive():
            dom.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return True
        conn.storageVolLookupByPath(path).resize(size, 0)
    return False
