"""Disks on a hypervisor, through libvirt's storage API only (so a remote host works the same).

What provisioning and packaging need: pick a pool, stream an image into a new volume
(`upload`), a qcow2 copy-on-write `overlay` on a base volume, a full `clone`, stream a volume out
(`download`), and read a volume's format, size and backing store (`volume_info`). Deleting a
volume is `driver.delete_volume` (re-exported here as `delete`).

Every function raises only `enomalism.errors` exceptions, except `StorageCancelled` (a
cancellation is not an error) and whatever the caller's own `progress`/`cancelled` callbacks raise,
which passes through after the clean-up.

How an upload is made, and why. A new volume is created as a *raw* volume whose capacity is the
image file's size (sparse: allocation 0 in file pools), then the image's bytes are streamed into
it with virStorageVolUpload. For a qcow2 image that is all it takes: the file then holds the
qcow2 image byte for byte, its virtual size inside the header, and libvirt reports the volume as
qcow2 after the pool refresh it runs (and we ask for) when the upload ends. The other way,
creating the volume with format qcow2, works too on a dir pool (tested), but has libvirt run
`qemu-img create` for a header that the upload then overwrites, leaves that header's tail behind
if the image is shorter than it, and fails on pools that know no formats (logical). The qcow2
image itself is checked as it streams past: it must carry the qcow2 magic and must not name a
backing file or an external data file (either would let an image from a package open any path
on the host); such an image is refused and its volume removed.

Uploads and downloads use sparse streams where the pool supports them: all-zero blocks of the
image are sent as holes (nothing crosses the wire, nothing is written), and holes in a volume
come back as zeros written to the sink.

One shortcut: when libvirtd runs on this machine (a local URI) and the new volume is a file we
may write (the very file libvirt describes: same times to the nanosecond), the upload writes
the image into that file itself instead of through the stream.
The stream passes every byte through libvirtd and its I/O helper, two more processes, which
held a full copy to about a third of the disk's speed here; the volume is still created,
refreshed and deleted through the storage API, zero blocks are still left as holes, and the
file is fdatasync'd before the upload returns, as libvirt's helper does.
"""

import logging
import os
import queue
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import libvirt
from lxml import etree

from enomalism.errors import (
    Conflict,
    HypervisorError,
    InvalidInput,
    InvalidState,
    NotFound,
)
from enomalism.virt.driver import delete_volume, refresh_pools
from enomalism.virt.errors import translate
from enomalism.virt.uri import is_local
from enomalism.writeback import Writeback

log = logging.getLogger(__name__)

# Bytes read from the source and handed to libvirt per step. One virStreamSend is one RPC
# message that libvirtd takes in whole before passing it on to the volume, so moderate pieces
# keep both sides busy: here (2 cores, shared) 1 MiB sends did at least as well as 256 KiB and
# better than 4 or 8 MiB ones.
CHUNK = 1 << 20


class Readable(Protocol):
    """What an upload reads from: a file, or a reader that decompresses or hashes on the way."""

    def read(self, size: int = -1, /) -> bytes: ...
BLOCK = 64 << 10  # granularity of hole detection (a qcow2 cluster)
FORMATS = ("raw", "qcow2")
FILE_POOLS = ("dir", "fs", "netfs")  # pools whose volumes are files: qcow2, backing files
NEW_DISK_POOLS = ("dir", "fs", "logical", "netfs")  # pools pick_pool chooses on its own
DEFINE_POOL_HINT = ("define and start a storage pool, e.g. `virsh pool-define-as default dir "
                    "--target /var/lib/libvirt/images && virsh pool-build default && "
                    "virsh pool-start default && virsh pool-autostart default`")

_ZERO = bytes(CHUNK)
_ZERO_BLOCK = bytes(BLOCK)
_QCOW2_MAGIC = b"QFI\xfb"

Progress = Callable[[int], None]
Cancelled = Callable[[], bool]

delete = delete_volume  # delete(conn, path) -> bool: idempotent, False when nothing was there


class StorageCancelled(Exception):
    """The `cancelled` callback said stop; whatever the call had made is removed."""


@dataclass(frozen=True)
class VolumeInfo:
    path: str
    format: str | None  # raw, qcow2, ... as libvirt sees it; None when it does not say
    capacity: int  # bytes the guest sees (a qcow2 image's virtual size)
    allocation: int  # bytes used on the host
    backing: str | None  # the backing store's path, for an overlay
    pool: str | None = None  # the pool's name
    name: str | None = None  # the volume's name in its pool


# -- errors ---------------------------------------------------------------------------------------

@contextmanager
def _errors(conn: libvirt.virConnect | None, what: str) -> Iterator[None]:
    """libvirt errors as the project's, with the storage codes `translate` does not know.

    A system error (ENOSPC, EACCES, ...) is a refused operation while the connection lives;
    `translate` alone would call it an unreachable hypervisor."""
    try:
        yield
    except libvirt.libvirtError as e:
        code, msg = e.get_error_code(), (e.get_error_message() or str(e))
        if code == libvirt.VIR_ERR_STORAGE_VOL_EXIST:
            raise Conflict(f"{what}: {msg}") from None
        if code in (libvirt.VIR_ERR_NO_STORAGE_VOL, libvirt.VIR_ERR_NO_STORAGE_POOL):
            raise NotFound(f"{what}: {msg}") from None
        if code == libvirt.VIR_ERR_SYSTEM_ERROR and conn is not None and _alive(conn):
            raise HypervisorError(f"{what}: {msg}") from None
        err = translate(e)
        err.message = f"{what}: {err.message}"
        err.args = (err.message,)
        raise err from None


pool_errors = _errors  # for the hypervisor object's own pool lookups


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


# -- pools ----------------------------------------------------------------------------------------

def _pool_xml(pool: libvirt.virStoragePool) -> etree._Element:
    return etree.fromstring(pool.XMLDesc(0).encode())


def pool_type(pool: libvirt.virStoragePool) -> str:
    """dir, fs, netfs, logical, disk, iscsi, rbd, ..."""
    with _errors(pool.connect(), f"reading storage pool {pool.name()}"):
        return _pool_xml(pool).get("type", "")


def supports_overlay(pool: libvirt.virStoragePool) -> bool:
    """Whether the pool can hold qcow2 volumes with a backing file (file-based pools)."""
    return pool_type(pool) in FILE_POOLS


def pick_pool(conn: libvirt.virConnect, preferred: str | None = None) -> libvirt.virStoragePool:
    """The pool new disks go in: `preferred` by name when given (NotFound when there is no such
    pool, InvalidState when it is not running), else the active pool named "default", else the
    first active pool (by name) of type dir, fs, logical or netfs. None: InvalidState telling
    the operator how to define one."""
    with _errors(conn, "choosing a storage pool"):
        if preferred:
            try:
                pool = conn.storagePoolLookupByName(preferred)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                raise NotFound(f"storage pool '{preferred}' does not exist on the hypervisor "
                               f"(`virsh pool-list --all` shows the pools there)") from None
            if not pool.isActive():
                raise InvalidState(f"storage pool '{preferred}' is not running "
                                   f"(`virsh pool-start {preferred}`)")
            return pool
        pools = conn.listAllStoragePools(0)
        inactive_default = False
        for pool in pools:
            if pool.name() == "default":
                if pool.isActive():
                    return pool
                inactive_default = True
        candidates = sorted((p for p in pools if p.isActive()), key=lambda p: p.name())
        for pool in candidates:
            if _pool_xml(pool).get("type") in NEW_DISK_POOLS:
                return pool
    if inactive_default:
        raise InvalidState("the hypervisor's storage pool 'default' is not running and no other "
                           "pool fits new disks: start it (`virsh pool-start default`)")
    raise InvalidState("the hypervisor has no active storage pool of type dir, fs, logical or "
                       f"netfs for new disks: {DEFINE_POOL_HINT}")


def planned_path(pool: libvirt.virStoragePool, name: str) -> str:
    """The path a volume called `name` will have in this pool (`<pool target>/<name>` for dir,
    fs, netfs and logical pools), known before it exists: what a job records in its undo log
    before creating the volume."""
    _check_name(name)
    with _errors(pool.connect(), f"reading storage pool {pool.name()}"):
        target = _pool_xml(pool).findtext("target/path")
    if not target:
        raise HypervisorError(f"storage pool {pool.name()} has no target path")
    return f"{target.rstrip('/')}/{name}"


# -- volumes --------------------------------------------------------------------------------------

def _check_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name in (".", "..") or name.startswith("."):
        raise InvalidInput(f"'{name}' is not a usable volume name (no '/', not hidden)")


def _ensure_free(pool: libvirt.virStoragePool, name: str) -> None:
    """Conflict when the pool has a volume of that name (createXMLFrom reports it only as an
    internal error)."""
    try:
        pool.storageVolLookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return
        with _errors(pool.connect(), f"looking up volume {name} in pool {pool.name()}"):
            raise
    raise Conflict(f"storage pool {pool.name()} already has a volume named '{name}'")


def _volume_xml(name: str, capacity: int, *, allocation: int | None, fmt: str | None,
                backing: tuple[str, str] | None = None) -> str:
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    if allocation is not None:
        etree.SubElement(vol, "allocation", unit="bytes").text = str(allocation)
    if fmt:
        etree.SubElement(etree.SubElement(vol, "target"), "format", type=fmt)
    if backing:
        bs = etree.SubElement(vol, "backingStore")
        etree.SubElement(bs, "path").text = backing[0]
        etree.SubElement(bs, "format", type=backing[1])
    return etree.tostring(vol, encoding="unicode")


def _lookup(conn: libvirt.virConnect, path: str) -> libvirt.virStorageVol:
    """The volume at `path`; refreshes the pools once when libvirt does not know it yet."""
    with _errors(conn, f"looking up volume {path}"):
        for attempt in (0, 1):
            try:
                return conn.storageVolLookupByPath(path)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
            if attempt == 0:
                refresh_pools(conn)
    raise NotFound(f"no storage volume at {path} on the hypervisor")


def _info(vol: libvirt.virStorageVol) -> VolumeInfo:
    root = etree.fromstring(vol.XMLDesc(0).encode())
    fmt = root.find("target/format")
    try:
        pool = vol.storagePoolLookupByVolume().name()
    except libvirt.libvirtError:
        pool = None
    return VolumeInfo(
        path=root.findtext("target/path") or vol.path(),
        format=fmt.get("type") if fmt is not None else None,
        capacity=int(root.findtext("capacity") or 0),
        allocation=int(root.findtext("allocation") or 0),
        backing=(root.findtext("backingStore/path") or None),
        pool=pool,
        name=root.findtext("name"),
    )


def volume_info(conn: libvirt.virConnect, path: str) -> VolumeInfo:
    """Format, capacity, allocation and backing store of the volume at `path` (NotFound when
    there is none). Capacity and allocation are in bytes."""
    vol = _lookup(conn, path)
    with _errors(conn, f"reading volume {path}"):
        return _info(vol)


def physical_size(conn: libvirt.virConnect, path: str) -> int:
    """The bytes the volume at `path` holds on the host (for a raw disk, what the guest sees;
    a pool's capacity is a probed header's claim when the guest wrote one)."""
    vol = _lookup(conn, path)
    with _errors(conn, f"reading volume {path}"):
        return vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[1]


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Best effort: a pool busy with another job refuses; libvirt refreshes it after uploads
    on its own anyway."""
    for _ in range(5):
        try:
            pool.refresh(0)
            return
        except libvirt.libvirtError:
            time.sleep(0.1)


def _discard(conn: libvirt.virConnect, vol: libvirt.virStorageVol, name: str) -> None:
    """Delete a volume this module made, after a failure; retried briefly (libvirt may still be
    closing the aborted stream). Never raises: the caller's error is the one worth seeing."""
    for attempt in range(20):
        try:
            vol.delete(0)
            return
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return
            if attempt == 19 or not _alive(conn):
                log.warning("could not remove the partial volume %s: %s", name, e)
                return
            time.sleep(0.1)


def _abort(stream: libvirt.virStream) -> None:
    try:
        stream.abort()
    except libvirt.libvirtError:
        pass


def _read_some(source: Readable, n: int) -> bytes:
    """Up to n bytes from `source`, at least a BLOCK of them (or up to its end): a short read
    of that much (an upload's body gives the pieces the server received) is used as it is,
    not copied into a CHUNK; smaller ones are gathered, so that no write or send is tiny."""
    least = min(n, BLOCK)
    first = source.read(n)
    if not first or len(first) >= least:
        return bytes(first)
    parts, got = [first], len(first)
    while got < least:
        more = source.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _send_all(stream: libvirt.virStream, data: bytes) -> None:
    while data:
        sent = stream.send(data)
        if sent < 0:
            raise HypervisorError("the upload stream refused data")
        data = data[sent:]


def _runs(buf: bytes) -> Iterator[tuple[int, int, bool]]:
    """`buf` as (start, end, all_zero) runs of whole BLOCKs (the last one may be short)."""
    n = len(buf)
    if n <= CHUNK and _ZERO.startswith(buf):  # (a slice of _ZERO would be a copy)
        yield 0, n, True
        return
    start, zero_run = 0, None  # start of the current run; whether it is all zeros
    for i in range(0, n, BLOCK):
        end = min(i + BLOCK, n)
        # compared in place (a slice would copy the block first: 0.2 s of CPU per GiB)
        is_zero = buf.startswith(_ZERO_BLOCK if end - i == BLOCK else _ZERO_BLOCK[:end - i], i)
        if zero_run is None:
            zero_run = is_zero
        elif is_zero != zero_run:
            yield start, i, zero_run
            start, zero_run = i, is_zero
    yield start, n, bool(zero_run)


def _send_sparse(stream: libvirt.virStream, buf: bytes) -> None:
    """Send `buf`, all-zero BLOCKs as holes."""
    for start, end, hole in _runs(buf):
        if hole:
            stream.sendHole(end - start, 0)
        else:
            _send_all(stream, buf if start == 0 and end == len(buf) else buf[start:end])


class _VolumeFile:
    """The new volume's file, written in place (see the module's docstring). It was created
    sparse at its full size, so all-zero blocks are simply skipped."""

    def __init__(self, fd: int, where: str) -> None:
        self.fd, self.where, self.pos = fd, where, 0
        self.writeback = Writeback(fd)

    def send(self, buf: bytes) -> None:
        view = memoryview(buf)
        try:
            for start, end, zero in _runs(buf):
                while not zero and start < end:
                    start += os.pwrite(self.fd, view[start:end], self.pos + start)
            self.pos += len(buf)
            self.writeback.wrote(self.pos)
        except OSError as e:
            raise self._failed(e) from None

    def finish(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise self._failed(e) from None

    def _failed(self, e: OSError) -> HypervisorError:
        return HypervisorError(f"{self.where}: writing the volume's file failed: {e.strerror}")


def _open_volume_file(conn: libvirt.virConnect, vol: libvirt.virStorageVol, size: int,
                      where: str) -> _VolumeFile | None:
    """The volume's file, open for writing, when libvirtd runs on this machine and the file is
    the empty one it just made and ours to write; None to go through the stream instead.

    A local URI does not prove that libvirtd sees this process's files (a container may hold
    the host's libvirt socket), so the file opened must be the volume libvirt describes: the
    same modification and change times to the nanosecond."""
    with _errors(conn, where):
        local = is_local(conn.getURI())
        desc = vol.XMLDesc(0) if local else ""
    if not local:
        return None
    try:
        target = etree.fromstring(desc.encode()).find("target")
        path = target.findtext("path") or ""
        times = target.find("timestamps")
        stamped = (_ns(times.findtext("mtime")), _ns(times.findtext("ctime")))
    except (AttributeError, ValueError, etree.XMLSyntaxError):
        return None
    if not path.startswith("/"):
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # not ours to write (another user), or not on this machine's filesystem
        return None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_size == size and st.st_blocks == 0 \
            and stamped == (st.st_mtime_ns, st.st_ctime_ns):
        return _VolumeFile(fd, where)
    os.close(fd)
    return None


def _ns(stamp: str | None) -> int:
    """libvirt's `<mtime>1795818611.164359795</mtime>` in nanoseconds."""
    seconds, _, fraction = (stamp or "").partition(".")
    return int(seconds) * 1_000_000_000 + int((fraction or "0").ljust(9, "0")[:9])


def _check_qcow2_header(head: bytes) -> None:
    """A standalone qcow2 image: the magic, no backing file, no external data file."""
    if len(head) < 72 or head[:4] != _QCOW2_MAGIC:
        raise InvalidInput("the image is not in qcow2 format (no qcow2 header)")
    version, backing_offset = struct.unpack(">IQ", head[4:16])
    if backing_offset:
        raise InvalidInput("the qcow2 image names a backing file; a package's disk must stand "
                           "alone (`qemu-img convert -O qcow2` flattens it)")
    if version >= 3 and len(head) >= 80:
        (incompatible,) = struct.unpack(">Q", head[72:80])
        if incompatible & 0x4:  # external data file
            raise InvalidInput("the qcow2 image keeps its data in an external file; a package's "
                               "disk must stand alone")


def upload(pool: libvirt.virStoragePool, name: str, source: Readable, *, size: int, fmt: str,
           progress: Progress | None = None, cancelled: Cancelled | None = None) -> str:
    """A new volume `name` in `pool` holding exactly the `size` bytes read from `source` (an
    image file of format `fmt`, raw or qcow2); returns its path.

    `progress(bytes_sent)` is called after each chunk; `cancelled()` is asked before each chunk
    and, when true, the upload stops and StorageCancelled is raised. On any failure or
    cancellation (also an exception raised by either callback) the new volume is deleted before
    the exception propagates. A source shorter or longer than `size`, or a qcow2 image that is
    not standalone, is InvalidInput. A volume of that name already in the pool is Conflict (and
    is left alone)."""
    _check_name(name)
    if fmt not in FORMATS:
        raise InvalidInput(f"image format '{fmt}' is not one of {', '.join(FORMATS)}")
    if not isinstance(size, int) or size <= 0:
        raise InvalidInput(f"image size must be a positive number of bytes, not {size!r}")
    conn = pool.connect()
    where = f"uploading volume {name} to storage pool {pool.name()}"
    file_pool = pool_type(pool) in FILE_POOLS
    _ensure_free(pool, name)
    # sparse raw file (nothing written twice); an LV the full size (allocation < capacity would
    # ask for a thin snapshot LV)
    xml = _volume_xml(name, size, allocation=0 if file_pool else size,
                      fmt="raw" if file_pool else None)
    with _errors(conn, where):
        vol = pool.createXML(xml, 0)
    try:
        target = _open_volume_file(conn, vol, size, where) if file_pool else None
        if target is not None:
            try:
                _copy_in(target.send, source, size, fmt, progress, cancelled, where)
                target.finish()
            finally:
                os.close(target.fd)
        else:
            _upload_stream(conn, vol, source, size, fmt, progress, cancelled, where)
        with _errors(conn, where):
            path = vol.path()
        _refresh(pool)
        return path
    except BaseException:
        _discard(conn, vol, name)
        raise


def _upload_stream(conn: libvirt.virConnect, vol: libvirt.virStorageVol, source: Readable,
                   size: int, fmt: str, progress: Progress | None, cancelled: Cancelled | None,
                   where: str) -> None:
    with _errors(conn, where):
        stream, sparse = _open_upload(conn, vol, size)

    def send(buf: bytes) -> None:
        with _errors(conn, where):
            if sparse:
                _send_sparse(stream, buf)
            else:
                _send_all(stream, buf)

    try:
        _copy_in(send, source, size, fmt, progress, cancelled, where)
    except BaseException:
        _abort(stream)
        raise
    with _errors(conn, where):
        stream.finish()


def _open_upload(conn: libvirt.virConnect, vol: libvirt.virStorageVol,
                 size: int) -> tuple[libvirt.virStream, bool]:
    """A stream into the volume, sparse when the pool's driver takes that."""
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        return stream, True
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    return stream, False


def _copy_in(send: Callable[[bytes], None], source: Readable, size: int, fmt: str,
             progress: Progress | None, cancelled: Cancelled | None, where: str) -> None:
    """Read the `size` bytes of the image from `source` and `send` them on, chunk by chunk."""
    done = 0
    with _ReadAhead(source, size) as chunks:
        while done < size:
            if cancelled is not None and cancelled():
                raise StorageCancelled(f"{where}: cancelled after {done} of {size} bytes")
            try:
                buf = chunks.next()
            except OSError as e:
                raise InvalidInput(f"{where}: reading the image failed: {e}") from None
            if done == 0 and fmt == "qcow2":
                try:
                    _check_qcow2_header(buf)
                except InvalidInput as e:
                    raise InvalidInput(f"{where}: {e.message}") from None
            if not buf:
                raise InvalidInput(f"{where}: the image ended after {done} bytes; {size} were "
                                   "announced")
            send(buf)
            done += len(buf)
            if progress is not None:
                progress(done)
        if chunks.longer():
            raise InvalidInput(f"{where}: the image is longer than the {size} bytes announced")


class _ReadAhead:
    """The image's CHUNKs read in a thread of its own, a few ahead: a package's image comes
    out of zstd or gzip, which let go of the GIL, so the next chunk is decompressed while this
    one is written. `next()` gives b"" at the end of the source, or raises what reading raised;
    `longer()` tells whether the source holds more than `size` bytes."""

    AHEAD = 4

    def __init__(self, source: Readable, size: int) -> None:
        self._source, self._size = source, size
        self._queue: queue.Queue = queue.Queue(maxsize=self.AHEAD)
        self._stop = threading.Event()
        self._longer = False
        self._thread = threading.Thread(target=self._read, name="read-ahead", daemon=True)

    def __enter__(self) -> "_ReadAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # let a reader blocked on a full queue see the stop
            with suppress(queue.Empty):
                self._queue.get_nowait()
            self._thread.join(0.01)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            with suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return

    def _read(self) -> None:
        try:
            left = self._size
            while left > 0 and not self._stop.is_set():
                buf = _read_some(self._source, min(CHUNK, left))
                self._put(buf)
                if not buf:
                    return
                left -= len(buf)
            if self._stop.is_set():
                return
            self._longer = bool(self._source.read(1))
            self._put(None)
        except BaseException as e:  # handed to the consumer, raised there
            self._put(e)

    def next(self) -> bytes:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item if item is not None else b""

    def longer(self) -> bool:
        """After the last chunk: whether the source went on."""
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return self._longer


def overlay(pool: libvirt.virStoragePool, name: str, backing_path: str, backing_format: str,
            virtual_size: int | None = None) -> str:
    """A new qcow2 volume `name` whose backing store is the volume at `backing_path` (format
    raw or qcow2): a copy-on-write disk made in milliseconds whatever the base's size. Returns
    its path. `virtual_size` defaults to the base's capacity and may not be smaller.

    Only file-based pools (dir, fs, netfs) hold such overlays; any other pool is InvalidState
    (check `supports_overlay(pool)` first, and `clone` instead). The base must stay where it is,
    unchanged, for as long as the overlay exists."""
    _check_name(name)
    if backing_format not in FORMATS:
        raise InvalidInput(f"backing format '{backing_format}' is not one of {', '.join(FORMATS)}")
    ptype = pool_type(pool)
    if ptype not in FILE_POOLS:
        raise InvalidState(f"storage pool {pool.name()} is of type {ptype}, which cannot hold "
                           "qcow2 overlays on a backing file; copy the image instead")
    conn = pool.connect()
    _ensure_free(pool, name)
    base = volume_info(conn, backing_path)
    if virtual_size is None:
        virtual_size = base.capacity
    if virtual_size <= 0 or virtual_size < base.capacity:
        raise InvalidInput(f"an overlay of {virtual_size} bytes cannot hold its base "
                           f"{backing_path} of {base.capacity} bytes")
    xml = _volume_xml(name, virtual_size, allocation=0, fmt="qcow2",
                      backing=(base.path, backing_format))
    with _errors(conn, f"creating overlay {name} on {backing_path} in pool {pool.name()}"):
        return pool.createXML(xml, 0).path()


def blank(pool: libvirt.virStoragePool, name: str, capacity: int) -> str:
    """A new empty disk of `capacity` bytes (qcow2 in a file pool, else raw); its path."""
    _check_name(name)
    file_pool = pool_type(pool) in FILE_POOLS
    _ensure_free(pool, name)
    xml = _volume_xml(name, capacity, allocation=0 if file_pool else capacity,
                      fmt="qcow2" if file_pool else None)
    with _errors(pool.connect(), f"creating volume {name} in pool {pool.name()}"):
        return pool.createXML(xml, 0).path()


def clone(pool: libvirt.virStoragePool, name: str, source_path: str, *,
          fmt: str | None = None) -> str:
    """A full, standalone copy of the volume at `source_path` as a new volume `name` in `pool`
    (any pool on the same hypervisor); returns its path. A qcow2 overlay is flattened (libvirt
    copies with `qemu-img convert`). `fmt` converts (raw/qcow2) in a file-based pool; the
    default keeps the source's format there. Blocks until the copy is made."""
    _check_name(name)
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"image format '{fmt}' is not one of {', '.join(FORMATS)}")
    conn = pool.connect()
    _ensure_free(pool, name)
    src = _lookup(conn, source_path)
    where = f"copying {source_path} to volume {name} in pool {pool.name()}"
    with _errors(conn, where):
        info = _info(src)
    file_pool = pool_type(pool) in FILE_POOLS
    target_fmt = (fmt or info.format or "raw") if file_pool else None
    xml = _volume_xml(name, info.capacity, allocation=0 if file_pool else info.capacity,
                      fmt=target_fmt)
    with _errors(conn, where):
        return pool.createXMLFrom(xml, src, 0).path()


def download(conn: libvirt.virConnect, path: str, sink: BinaryIO, *,
             progress: Progress | None = None, cancelled: Cancelled | None = None) -> int:
    """Write the whole content of the volume at `path` (its file's bytes: a qcow2 volume comes
    out as a qcow2 image, an overlay without its base) to `sink`; returns the number of bytes.
    Holes arrive as zeros written to the sink. `progress(bytes_written)` is called at least
    every CHUNK bytes; when `cancelled()` turns true StorageCancelled is raised (what was
    written to the sink stays; the sink is the caller's)."""
    vol = _lookup(conn, path)
    where = f"downloading volume {path}"
    with _errors(conn, where):
        stream = conn.newStream(0)
        try:
            vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
            sparse = True
        except libvirt.libvirtError as e:
            if e.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG,
                                          libvirt.VIR_ERR_NO_SUPPORT):
                raise
            stream = conn.newStream(0)
            vol.download(stream, 0, 0, 0)
            sparse = False
    done = reported = 0
    try:
        while True:
            if cancelled is not None and cancelled():
                raise StorageCancelled(f"{where}: cancelled after {done} bytes")
            with _errors(conn, where):
                got = (stream.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE) if sparse
                       else stream.recv(CHUNK))
                if got == -3:  # a hole next
                    hole = stream.recvHole(0)
                    while hole:
                        n = min(hole, CHUNK)
                        sink.write(memoryview(_ZERO)[:n])
                        hole -= n
                        done += n
                elif isinstance(got, int):
                    raise HypervisorError(f"{where}: unexpected stream answer {got}")
                elif not got:
                    break
                else:
                    sink.write(got)
                    done += len(got)
            if progress is not None and done - reported >= CHUNK:
                reported = done
                progress(done)
        with _errors(conn, where):
            stream.finish()
    except BaseException:
        _abort(stream)
        raise
    if progress is not None and reported != done:
        progress(done)
    return done


__all__ = [
    "CHUNK", "FILE_POOLS", "StorageCancelled", "VolumeInfo", "blank", "clone", "delete",
    "download",
    "overlay", "pick_pool", "planned_path", "pool_type", "supports_overlay", "upload",
    "volume_info",
]
