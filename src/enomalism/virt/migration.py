"""Moving a domain between two hypervisors (docs/hosts.md, "Moving a machine").

- `live`: libvirt's *managed* migration (this process holds both connections and drives
  the Begin/Prepare/Perform/Finish steps; no libvirtd needs credentials for the other) with
  `VIR_MIGRATE_LIVE | PERSIST_DEST | UNDEFINE_SOURCE | NON_SHARED_DISK`: QEMU mirrors the
  listed disks over NBD into volumes made beforehand on the target, then memory, then
  switches over. It runs in a thread of its own while the caller's thread polls the job's
  statistics (bytes remaining) and, when asked to, aborts it (`virDomainAbortJob`): the
  domain then keeps running on the source, untouched.
- `copy_volume`: a stopped domain's volume, read on one hypervisor's storage stream and
  written on the other's, sparse where the pools take it; an overlay is flattened first
  (into a temporary volume next to it) so that the copy stands alone.
"""

import os
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt
from lxml import etree

from enomalism.errors import EnomalismError, HypervisorError
from enomalism.virt import storage
from enomalism.virt.domxml import DomainXML
from enomalism.virt.driver import _lookup
from enomalism.virt.errors import libvirt_errors, translate


class MigrationCancelled(Exception):
    """The migration was aborted on request; the domain is still on the source."""


@dataclass(frozen=True)
class MigrationProgress:
    """What libvirt's job statistics say of a running migration (bytes)."""

    total: int
    remaining: int
    disk_remaining: int
    memory_remaining: int


@dataclass(frozen=True)
class MigrationResult:
    """The finished migration as libvirt reports it on the target (None: not reported)."""

    downtime_ms: int | None
    total_ms: int | None
    transferred: int | None


LIVE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
              | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_DISK)


def _progress_of(stats: dict[str, Any]) -> MigrationProgress | None:
    if not stats or stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    disk_rem = int(stats.get("disk_remaining", 0))
    mem_rem = int(stats.get("memory_remaining", 0))
    total = int(stats.get("data_total", 0)) or int(stats.get("disk_total", 0)) + int(
        stats.get("memory_total", 0))
    remaining = int(stats.get("data_remaining", disk_rem + mem_rem))
    return MigrationProgress(total, remaining, disk_rem, mem_rem)


def live(src: libvirt.virConnect, dst: libvirt.virConnect, uuid: str, *, xml: str,
         persist_xml: str, disks: list[str], bandwidth_mib: int | None = None,
         uri: str | None = None, progress: Callable[[MigrationProgress], None],
         cancelled: Callable[[], bool], poll: float = 0.5) -> MigrationResult:
    """Migrate the running domain `uuid` from `src` to `dst` with the disks `disks` (targets,
    vda...) mirrored into the paths `xml` names on the target (made there already). `xml` is
    the live definition for the target, `persist_xml` its persistent one. `bandwidth_mib`
    limits it (MiB/s); `uri` is the target's migration address (tcp://host) when its
    hostname does not lead there. Raises MigrationCancelled when `cancelled()` turned true
    and the abort took; any failure leaves the domain running on the source."""
    dom = _lookup(src, uuid)
    params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,
                              libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persist_xml}
    if disks:
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(disks)
    if bandwidth_mib:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth_mib)
    if uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = uri
    failure: list[libvirt.libvirtError] = []

    def perform() -> None:
        try:
            dom.migrate3(dst, params, LIVE_FLAGS if disks else LIVE_FLAGS
                         & ~libvirt.VIR_MIGRATE_NON_SHARED_DISK)
        except libvirt.libvirtError as e:
            failure.append(e)

    worker = threading.Thread(target=perform, name=f"migrate-{uuid[:8]}", daemon=True)
    worker.start()
    aborted = False
    while True:
        worker.join(poll)
        if not worker.is_alive():
            break
        if not aborted and cancelled():
            try:
                dom.abortJob()
                aborted = True
            except libvirt.libvirtError:
                pass  # not started yet, or finishing: asked again at the next poll
        try:
            seen = _progress_of(dom.jobStats(0))
        except libvirt.libvirtError:
            continue
        if seen is not None:
            progress(seen)
    if failure:
        if aborted:
            raise MigrationCancelled(str(failure[0]))
        raise translate(failure[0])
    return _completed(dst, uuid)


def _completed(dst: libvirt.virConnect, uuid: str) -> MigrationResult:
    """The statistics of the migration that just finished, kept by the target's libvirt."""
    try:
        stats = dst.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        return MigrationResult(None, None, None)

    def num(key: str) -> int | None:
        return int(stats[key]) if key in stats else None
    return MigrationResult(num("downtime"), num("time_elapsed"), num("data_processed"))


def copy_volume(src: libvirt.virConnect, path: str, pool: libvirt.virStoragePool, name: str, *,
                progress: storage.Progress | None = None,
                cancelled: storage.Cancelled | None = None) -> str:
    """A copy of the volume at `path` on `src` as the new volume `name` in `pool` (another
    hypervisor's); returns its path. An overlay is flattened first into a temporary volume
    on `src` (removed afterwards). On failure or cancellation nothing new is left."""
    storage._refresh(_pool_of(src, path))  # the sizes libvirt has of it are a refresh's
    info = storage.volume_info(src, path)
    flat = None
    if info.backing:
        src_pool = _pool_of(src, path)
        flat_name = f"{info.name or 'disk'}.move-{uuidlib.uuid4().hex[:8]}"
        flat = storage.clone(src_pool, flat_name, path)
    try:
        read_from = flat or path
        size = _file_size(src, read_from)
        fmt = info.format if info.format in storage.FORMATS else "raw"
        return _stream(src, read_from, pool, name, size=size, fmt=fmt, progress=progress,
                       cancelled=cancelled)
    finally:
        if flat is not None:
            try:
                storage.delete(src, flat)
            except EnomalismError:
                pass  # a stray temporary volume; named after the disk, it says what it is


def _file_size(conn: libvirt.virConnect, path: str) -> int:
    """The bytes a download of the volume gives: its file's size (`<physical>`)."""
    with libvirt_errors():
        vol = conn.storageVolLookupByPath(path)
        found = etree.fromstring(vol.XMLDesc(0).encode()).findtext("physical")
        return int(found) if found else int(
            vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])


def _pool_of(conn: libvirt.virConnect, path: str) -> libvirt.virStoragePool:
    with libvirt_errors():
        return conn.storageVolLookupByPath(path).storagePoolLookupByVolume()


def _stream(src: libvirt.virConnect, path: str, pool: libvirt.virStoragePool, name: str, *,
            size: int, fmt: str, progress: storage.Progress | None,
            cancelled: storage.Cancelled | None) -> str:
    """Download from `src` into a pipe in one thread, upload from it in this one."""
    rfd, wfd = os.pipe()
    problem: list[BaseException] = []

    def reader() -> None:
        try:
            with os.fdopen(wfd, "wb", buffering=storage.CHUNK) as sink:
                storage.download(src, path, sink, cancelled=cancelled)
        except BaseException as e:  # noqa: BLE001 (the upload side reports it)
            problem.append(e)

    t = threading.Thread(target=reader, name="volume-copy", daemon=True)
    t.start()
    try:
        with os.fdopen(rfd, "rb", buffering=storage.CHUNK) as source:
            try:
                return storage.upload(pool, name, source, size=size, fmt=fmt,
                                      progress=progress, cancelled=cancelled)
            except BaseException:
                if problem:
                    if isinstance(problem[0], storage.StorageCancelled | EnomalismError):
                        raise problem[0] from None
                    raise HypervisorError(f"reading volume {path}: {problem[0]}") from None
                raise
    finally:
        t.join(60)



def migratable_xml(conn: libvirt.virConnect, uuid: str) -> str:
    """The running domain's definition as a migration's target takes it (secrets kept)."""
    dom = _lookup(conn, uuid)
    with libvirt_errors():
        return str(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE
                               | libvirt.VIR_DOMAIN_XML_SECURE))


def with_disks_at(xml: DomainXML, paths: dict[str, tuple[str, str]]) -> str:
    """`xml` with the disks of these targets (vda: (path, format)) on file volumes at the new
    paths: a `<disk type='volume'>` becomes a file disk, a backing chain goes (the copy
    stands alone)."""
    for disk in xml.root.iterfind("devices/disk"):
        target_el = disk.find("target")
        target = target_el.get("dev") if target_el is not None else None
        if target not in paths:
            continue
        path, fmt = paths[target]
        disk.set("type", "file")
        for tag in ("source", "backingStore"):
            for el in disk.findall(tag):
                disk.remove(el)
        driver_el = disk.find("driver")
        if driver_el is None:
            driver_el = etree.SubElement(disk, "driver", name="qemu")
        driver_el.set("type", fmt)
        driver_el.addnext(etree.Element("source", file=path))
    return xml.to_string()
