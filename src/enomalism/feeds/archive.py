"""The package archive: Enomalism 2's XVM2 format, with our manifest beside it.

A package is one uncompressed tar file (members in this order):

    description.xml    the libvirt domain XML; each packaged disk's <source> names its image
    MANIFEST           the other members' names, one per line, as XVM2 readers expect
    vda.qcow2.zst      one compressed image per disk (zstd, or gzip for XVM2 readers)
    enomalism.json     our manifest: name, version, class, arch, and each disk's format,
                       sizes and sha256; older readers ignore it

The tar is written by hand rather than by `tarfile`: a disk streams through the compressor
straight into the archive behind a placeholder header that is patched with the member's size
afterwards, so an image is read once and never held in memory or copied to a temp file.
`write_package_sha256` also hashes the archive as it is written: everything but a disk's data
is hashed as it goes out; a disk's compressed data can only follow its header into the hash
once that header is known, so it is hashed from the page cache right after the disk is done,
in a thread, while the next disk compresses or the archive is synced (no second pass over the
file afterwards).
Reading trusts nothing: links, devices, absolute paths, `..`, duplicates and members the
MANIFEST does not list are refused before any member is used.
"""

import gzip
import hashlib
import io
import json
import os
import queue
import re
import struct
import tarfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard
from lxml import etree

from enomalism.errors import InvalidInput, NotFound
from enomalism.feeds.download import HashThread, PartFile
from enomalism.feeds.feed import parse_xml_safely
from enomalism.writeback import Writeback

FORMAT = 1  # enomalism.json "format"; a reader refuses a newer one
DESCRIPTION = "description.xml"
MANIFEST_MEMBER = "MANIFEST"
JSON_MEMBER = "enomalism.json"
RESERVED = frozenset({DESCRIPTION, MANIFEST_MEMBER, JSON_MEMBER})
COMPRESSIONS = ("zstd", "gzip")
DISK_FORMATS = ("qcow2", "raw")
SUFFIXES = {"zstd": ".zst", "gzip": ".gz"}

ZSTD_LEVEL = 3  # zstd's own default; with threads=-1 it outruns `tar -I 'zstd -T0'`
GZIP_LEVEL = 1  # XVM2 readers do not care about the level; -1 runs twice as fast as -6
GZIP_CHUNK = 16 << 20  # gzip is compressed in parallel, one gzip member per chunk
CHUNK = 4 << 20
BLOCK = 512
RECORD = 20 * BLOCK
MAX_MEMBERS = 256
SMALL_LIMITS = {DESCRIPTION: 1 << 20, MANIFEST_MEMBER: 64 << 10, JSON_MEMBER: 1 << 20}

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
QCOW2_MAGIC = b"QFI\xfb"
_TARGET = re.compile(r"^[a-z][a-z0-9]{1,31}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class DiskInfo:
    """One disk of a package. `size` and `sha256` are of the uncompressed image; both are None
    for an XVM2 package made elsewhere until `verify_package` has measured them."""

    target: str  # the domain's <target dev>, e.g. "vda"
    member: str = ""  # archive member, e.g. "vda.qcow2.zst"; set by the writer
    format: str = "qcow2"  # "qcow2" or "raw"
    virtual_size: int | None = None  # bytes the guest sees
    size: int | None = None
    sha256: str | None = None
    compression: str = "zstd"  # "zstd" or "gzip", as found by magic bytes when reading

    @classmethod
    def from_json(cls, data: Any, index: int = 0) -> "DiskInfo":
        if not isinstance(data, Mapping):
            raise InvalidInput(f"enomalism.json: disk {index} is not an object")
        where = f"enomalism.json: disk {index}"
        disk = cls(
            target=_get(data, "target", str, where),
            member=_get(data, "member", str, where),
            format=_get(data, "format", str, where),
            virtual_size=_get(data, "virtual_size", int, where, optional=True),
            size=_get(data, "size", int, where, optional=True),
            sha256=_get(data, "sha256", str, where, optional=True),
            compression=_get(data, "compression", str, where),
        )
        _check_disk(disk, where)
        return disk

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Manifest:
    """What a package is: enomalism.json, or what could be derived from an XVM2 package."""

    name: str
    description: str = ""
    version: str = ""
    virt_class: str | None = None  # the domain's type: kvm, qemu, xen, ...
    arch: str | None = None  # the domain's <os><type arch>: x86_64, aarch64, ...
    created_at: str = ""  # ISO 8601 UTC, e.g. 2024-05-01T12:00:00Z
    disks: list[DiskInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The enomalism.json object (a dict ready for `json.dumps`)."""
        return {"format": FORMAT, **asdict(self), "disks": [d.to_json() for d in self.disks]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str | bytes) -> "Manifest":
        """Read and check an enomalism.json object; InvalidInput names what is wrong."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as e:
                raise InvalidInput(f"enomalism.json is not valid JSON: {e}") from None
        if not isinstance(data, Mapping):
            raise InvalidInput("enomalism.json is not a JSON object")
        fmt = data.get("format")
        if type(fmt) is not int:
            raise InvalidInput("enomalism.json has no integer \"format\"")
        if fmt > FORMAT:
            raise InvalidInput(f"the package's format {fmt} is newer than this server "
                               f"understands ({FORMAT}); upgrade the server to import it")
        disks = data.get("disks")
        if not isinstance(disks, list):
            raise InvalidInput("enomalism.json: \"disks\" is not a list")
        where = "enomalism.json"
        name = _get(data, "name", str, where)
        if not name.strip():
            raise InvalidInput("enomalism.json: \"name\" is empty")
        return cls(
            name=name,
            description=_get(data, "description", str, where, optional=True) or "",
            version=_get(data, "version", str, where, optional=True) or "",
            virt_class=_get(data, "virt_class", str, where, optional=True),
            arch=_get(data, "arch", str, where, optional=True),
            created_at=_get(data, "created_at", str, where, optional=True) or "",
            disks=[DiskInfo.from_json(d, i) for i, d in enumerate(disks)],
        )


def _get(data: Mapping[str, Any], key: str, typ: type, where: str, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    # bool is an int to Python, but not a size
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise InvalidInput(f"{where}: \"{key}\" must be {'an integer' if typ is int else 'text'}")
    if isinstance(value, int) and value < 0:
        raise InvalidInput(f"{where}: \"{key}\" must not be negative")
    return value


def _check_disk(disk: DiskInfo, where: str) -> None:
    if not _TARGET.match(disk.target):
        raise InvalidInput(f"{where}: target {disk.target!r} is not a disk target like vda")
    if disk.format not in DISK_FORMATS:
        raise InvalidInput(f"{where}: format {disk.format!r} is not one of "
                           f"{', '.join(DISK_FORMATS)}")
    if disk.compression not in COMPRESSIONS:
        raise InvalidInput(f"{where}: compression {disk.compression!r} is not one of "
                           f"{', '.join(COMPRESSIONS)}")
    if disk.sha256 is not None and not _SHA256.match(disk.sha256):
        raise InvalidInput(f"{where}: sha256 is not 64 lowercase hexadecimal digits")


# -- domain XML -----------------------------------------------------------------------------


def _parse_domain(data: bytes) -> etree._Element:
    root = parse_xml_safely(data, DESCRIPTION)
    if root.getroottree().docinfo.doctype:
        raise InvalidInput(f"{DESCRIPTION} must not carry a DOCTYPE")
    if root.tag != "domain":
        raise InvalidInput(f"{DESCRIPTION} must have a <domain> root element")
    return root


def _xml_disks(root: etree._Element) -> list[tuple[str, str | None, etree._Element]]:
    """(target, basename of the source, element) of each `device="disk"` disk with a source:
    the disks a package carries images for. CD-ROMs and floppies are not packaged."""
    out = []
    for el in root.iterfind("devices/disk"):
        if el.get("device", "disk") != "disk" or el.find("source") is None:
            continue
        target = el.find("target")
        dev = target.get("dev") if target is not None else None
        if not dev:
            raise InvalidInput(f"{DESCRIPTION}: a disk has no <target dev=...>")
        src = el.find("source")
        path = src.get("file") or src.get("dev") or src.get("volume") or src.get("name")
        out.append((dev, path.rsplit("/", 1)[-1] if path else None, el))
    return out


def image_name(disk: DiskInfo) -> str:
    """The image's file name without the compression suffix: what description.xml names."""
    for suffix in (".zst", ".zstd", ".gz"):
        if disk.member.endswith(suffix):
            return disk.member[: -len(suffix)]
    return disk.member


def _point_sources_at_images(root: etree._Element, disks: list[DiskInfo]) -> bytes:
    """description.xml as stored: each packaged disk becomes a file disk whose source is its
    image's name (no host paths leak into a package, and XVM2 readers find the image by it)."""
    by_target = {d.target: d for d in disks}
    for target, _, el in _xml_disks(root):
        disk = by_target[target]
        el.set("type", "file")
        src = el.find("source")
        for attr in list(src.attrib):
            del src.attrib[attr]
        for child in list(src):
            src.remove(child)
        src.set("file", image_name(disk))
        for backing in el.findall("backingStore"):
            el.remove(backing)
        driver = el.find("driver")
        if driver is not None:
            driver.set("type", disk.format)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


# -- qcow2 header ---------------------------------------------------------------------------


def _qcow2_virtual_size(head: bytes, label: str) -> int:
    """The virtual size from a qcow2 header, refusing what would make qemu open other files:
    a backing file or an external data file (a package must stand alone)."""
    if len(head) < 72 or head[:4] != QCOW2_MAGIC:
        raise InvalidInput(f"{label} is declared qcow2 but its image is not qcow2")
    version, backing_offset = struct.unpack(">IQ", head[4:16])
    if backing_offset:
        raise InvalidInput(f"{label} is a qcow2 overlay with a backing file; a package needs a "
                           "standalone image (qemu-img convert)")
    if version >= 3 and len(head) >= 80 and struct.unpack(">Q", head[72:80])[0] & 0b100:
        raise InvalidInput(f"{label} is a qcow2 image with an external data file")
    return struct.unpack(">Q", head[24:32])[0]


# -- writing --------------------------------------------------------------------------------


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    # GNU format keeps a size over 8 GiB inside the one 512-byte block (base-256), which is
    # what lets the placeholder be patched in place.
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    if len(header) != BLOCK:
        raise InvalidInput(f"member name {name!r} is too long for a package")
    return header


def _pad(n: int) -> bytes:
    return b"\0" * (-n % BLOCK)


def _add_bytes(f: "_WriteAll", name: str, data: bytes, mtime: int) -> None:
    block = _tar_header(name, len(data), mtime) + data + _pad(len(data))
    f.write(block)
    f.hashed(block)


class _ArchiveHash:
    """The sha256 of the archive, fed in file order: bytes as they are written, and ranges of
    the file already written (a disk's data, once its header is known), read back with pread
    from the page cache. A thread of its own does the reading and hashing (hashlib releases
    the GIL), so the writer goes on meanwhile."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._sha = hashlib.sha256()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="archive-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                if isinstance(item, bytes):
                    self._sha.update(item)
                    continue
                offset, end = item
                while offset < end:
                    data = os.pread(self.fd, min(CHUNK, end - offset), offset)
                    if not data:
                        raise OSError(f"the archive ends at {offset}, before {end}")
                    self._sha.update(data)
                    offset += len(data)
            except BaseException as e:  # noqa: BLE001 - raised by hexdigest, in the writer
                self._error = e

    def add(self, data: bytes) -> None:
        self._queue.put(bytes(data))

    def add_range(self, offset: int, end: int) -> None:
        self._queue.put((offset, end))

    def close(self, abandon: bool = False) -> None:
        """Stop the thread once it has hashed what it was given (`abandon`: at once)."""
        if abandon and self._error is None:
            self._error = InvalidInput("abandoned")
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._sha.hexdigest()


class _WriteAll:
    """A raw file whose `write` writes everything: a raw write may take less than it is given,
    and the compressors do not look at what it returns. Starts the disk writing behind the
    writer (`Writeback`), so that the final fsync has little left to wait for; feeds the
    archive's hash when there is one (`hashed`, `hashed_range`)."""

    def __init__(self, raw: io.FileIO, sha: _ArchiveHash | None = None,
                 fsync: bool = True) -> None:
        self.raw = raw
        self.tell, self.fileno = raw.tell, raw.fileno
        self.sha = sha
        self.writeback = Writeback(raw.fileno(), raw.tell(), fsync)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = self.raw.write(view)
        while done < len(view):
            done += self.raw.write(view[done:])
        self.writeback.wrote(self.raw.tell())
        return done

    def hashed(self, data: bytes) -> None:
        """`data`, just written, goes into the archive's hash next."""
        if self.sha is not None:
            self.sha.add(data)

    def hashed_range(self, offset: int, end: int) -> None:
        """The file's bytes [offset, end), already written, go into the archive's hash next."""
        if self.sha is not None:
            self.sha.add_range(offset, end)


def _gather(src: BinaryIO, size: int) -> Iterator[bytes]:
    """Whole chunks of `size` bytes (pipes return short reads), each a new object."""
    pending: list[bytes] = []
    have = 0
    while data := src.read(size - have):
        pending.append(data)
        have += len(data)
        if have >= size:
            yield b"".join(pending)
            pending, have = [], 0
    if pending:
        yield b"".join(pending)


class _Tally:
    """Hashes and counts the uncompressed image, keeps its head, reports progress. The hash
    runs in its own thread, beside the compressor's."""

    def __init__(self, done: int, progress: Callable[[int], None] | None) -> None:
        self.sha = HashThread()
        self.size = 0
        self.head = b""
        self.done = done
        self.progress = progress

    def add(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        if len(self.head) < BLOCK:
            self.head += bytes(chunk[: BLOCK - len(self.head)])
        self.size += len(chunk)
        if self.progress is not None:
            self.progress(self.done + self.size)


def _compress_zstd(src: BinaryIO, out: BinaryIO, tally: _Tally) -> None:
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
    writer = cctx.stream_writer(out, write_size=1 << 20, closefd=False)
    while chunk := src.read(CHUNK):
        tally.add(chunk)
        writer.write(chunk)
    writer.flush(zstandard.FLUSH_FRAME)


def _compress_gzip(src: BinaryIO, out: BinaryIO, tally: _Tally) -> None:
    """Parallel gzip: each chunk becomes its own gzip member (RFC 1952 allows a series of
    them; gunzip and Python's gzip read them as one stream). zlib releases the GIL."""
    workers = os.cpu_count() or 1
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gzip") as pool:
        for chunk in _gather(src, GZIP_CHUNK):
            tally.add(chunk)
            pending.append(pool.submit(zlib.compress, chunk, GZIP_LEVEL, 31))
            while len(pending) > 2 * workers:
                out.write(pending.popleft().result())
        while pending:
            out.write(pending.popleft().result())
    if tally.size == 0:
        out.write(zlib.compress(b"", GZIP_LEVEL, 31))


def _write_disk(f: _WriteAll, disk: DiskInfo, opener: Callable[[], BinaryIO], mtime: int,
                tally: _Tally) -> DiskInfo:
    header_at = f.tell()
    f.write(b"\0" * BLOCK)  # placeholder, patched once the compressed size is known
    try:
        with opener() as src:
            out = cast(BinaryIO, f)  # _WriteAll writes as a file does, all of it
            if disk.compression == "zstd":
                _compress_zstd(src, out, tally)
            else:
                _compress_gzip(src, out, tally)
    finally:
        digest = tally.sha.hexdigest()
    stored = f.tell() - header_at - BLOCK
    f.write(_pad(stored))
    header = _tar_header(disk.member, stored, mtime)
    os.pwrite(f.fileno(), header, header_at)
    f.hashed(header)
    f.hashed_range(header_at + BLOCK, header_at + BLOCK + stored)
    f.hashed(_pad(stored))
    label = f"disk {disk.target}"
    virtual_size = disk.virtual_size
    if disk.format == "qcow2":
        virtual_size = _qcow2_virtual_size(tally.head, label)
    elif not virtual_size:
        virtual_size = tally.size
    return replace(disk, size=tally.size, sha256=digest,
                   virtual_size=virtual_size)


def _check_for_writing(manifest: Manifest, root: etree._Element,
                       disk_sources: Mapping[str, Callable[[], BinaryIO]],
                       compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise InvalidInput(f"compression must be one of {', '.join(COMPRESSIONS)}")
    if not manifest.name or not manifest.name.strip():
        raise InvalidInput("a package needs a name")
    targets = [d.target for d in manifest.disks]
    if len(set(targets)) != len(targets):
        raise InvalidInput("a disk target appears twice in the manifest")
    for d in manifest.disks:
        _check_disk(replace(d, compression=compression, sha256=None), f"disk {d.target}")
    if set(disk_sources) != set(targets):
        raise InvalidInput(f"images are given for {sorted(disk_sources)} but the manifest "
                           f"lists {sorted(targets)}")
    xml_targets = [t for t, _, _ in _xml_disks(root)]
    if sorted(xml_targets) != sorted(targets):
        raise InvalidInput(f"the domain's disks {xml_targets} do not match the manifest's "
                           f"{targets}")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_package(dest: Path, *, domain_xml: str, manifest: Manifest,
                  disk_sources: Mapping[str, Callable[[], BinaryIO]],
                  compression: str = "zstd",
                  progress: Callable[[int], None] | None = None,
                  fsync: bool = True) -> Manifest:
    """Write a package to `dest` and return its manifest, with each disk's member, size,
    sha256, compression and (when not given) virtual size filled in.

    `disk_sources` maps each disk target to a function opening its uncompressed image.
    `compression="gzip"` makes a package plain XVM2 readers (Enomalism 2, Archipel) can
    unpack. `progress` gets the uncompressed bytes read so far; it may raise to stop the
    export. The archive is written to `dest.part`, synced, and renamed: on any error no file
    is left, and `dest` never holds a partial package.
    """
    return _write_package(dest, domain_xml, manifest, disk_sources, compression, progress,
                          fsync, False)[0]


def write_package_sha256(dest: Path, *, domain_xml: str, manifest: Manifest,
                         disk_sources: Mapping[str, Callable[[], BinaryIO]],
                         compression: str = "zstd",
                         progress: Callable[[int], None] | None = None,
                         fsync: bool = True) -> tuple[Manifest, str]:
    """`write_package`, and the sha256 of the archive file it wrote (what a feed announces
    as `eno:sha256`, equal to `file_sha256(dest)`), computed while writing it."""
    made, sha256 = _write_package(dest, domain_xml, manifest, disk_sources, compression,
                                  progress, fsync, True)
    assert sha256 is not None  # asked for
    return made, sha256


def _write_package(dest: Path, domain_xml: str, manifest: Manifest,
                   disk_sources: Mapping[str, Callable[[], BinaryIO]], compression: str,
                   progress: Callable[[int], None] | None, fsync: bool,
                   want_sha256: bool) -> tuple[Manifest, str | None]:
    dest = Path(dest)
    root = _parse_domain(domain_xml.encode())
    _check_for_writing(manifest, root, disk_sources, compression)
    disks = [replace(d, member=f"{d.target}.{d.format}{SUFFIXES[compression]}",
                     compression=compression) for d in manifest.disks]
    description = _point_sources_at_images(root, disks)
    names = [DESCRIPTION, *(d.member for d in disks), JSON_MEMBER]
    mtime = int(time.time())
    part = dest.with_name(dest.name + ".part")
    with PartFile(part, f"{dest.name} is already being written") as pf:
        sha = _ArchiveHash(pf.file.fileno()) if want_sha256 else None
        try:
            f = _WriteAll(pf.file, sha, fsync)
            _add_bytes(f, DESCRIPTION, description, mtime)
            _add_bytes(f, MANIFEST_MEMBER, ("\n".join(names) + "\n").encode(), mtime)
            written, done = [], 0
            for disk in disks:
                tally = _Tally(done, progress)
                written.append(_write_disk(f, disk, disk_sources[disk.target], mtime, tally))
                done += tally.size
            result = replace(manifest, created_at=manifest.created_at or _now(), disks=written)
            body = json.dumps(result.to_json(), indent=2, sort_keys=True).encode() + b"\n"
            _add_bytes(f, JSON_MEMBER, body, mtime)
            end = b"\0" * (2 * BLOCK)
            end += b"\0" * (-(f.tell() + len(end)) % RECORD)
            f.write(end)
            f.hashed(end)
            # the fsync waits for the disk while the hash thread finishes the last data
            pf.commit(dest, fsync)
            digest = sha.hexdigest() if sha is not None else None
        except BaseException:
            if sha is not None:
                sha.close(abandon=True)
            if pf.committed:  # renamed, but its hash failed: no package without its checksum
                Path(dest).unlink(missing_ok=True)
            raise
    return result, digest


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    name: str
    offset: int  # of the data
    size: int
    mtime: int


def _check_member(info: tarfile.TarInfo) -> str | None:
    """The member's name once proven harmless, None for the archive's own "./" entry."""
    raw = info.name
    label = repr(raw[:100])
    if raw.startswith("/"):
        raise InvalidInput(f"the package member {label} has an absolute path")
    if ".." in raw.split("/"):
        raise InvalidInput(f"the package member {label} has '..' in its path")
    if any(ord(c) < 32 or c in "\\\x7f" for c in raw):
        raise InvalidInput(f"the package member {label} has control characters or "
                           "backslashes in its name")
    if info.issym():
        raise InvalidInput(f"the package member {label} is a symbolic link")
    if info.islnk():
        raise InvalidInput(f"the package member {label} is a hard link")
    if info.ischr() or info.isblk():
        raise InvalidInput(f"the package member {label} is a device file")
    if info.isfifo():
        raise InvalidInput(f"the package member {label} is a FIFO")
    name = raw
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/") if info.isdir() else name
    if info.isdir() and name in ("", "."):
        return None
    if info.isdir():
        raise InvalidInput(f"the package member {label} is a directory; packages are flat")
    if info.issparse() or not info.isreg():
        raise InvalidInput(f"the package member {label} is not a regular file")
    if not name or "/" in name:
        raise InvalidInput(f"the package member {label} is not at the top of the archive")
    return name


class _Archive:
    """A package file opened for reading, its members checked and indexed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.file = open(self.path, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound(f"package file {self.path.name} does not exist") from None
        try:
            self.members: dict[str, _Member] = {}
            self.order: list[str] = []
            self._scan()
        except BaseException:
            self.file.close()
            raise

    def __enter__(self) -> "_Archive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def _scan(self) -> None:
        head = self.file.read(6)
        if head.startswith((GZIP_MAGIC, ZSTD_MAGIC, b"BZh", b"\xfd7zXZ")):
            raise InvalidInput("the package is a compressed tar; a package is an uncompressed "
                               "tar holding compressed images")
        self.file.seek(0)
        length = os.fstat(self.file.fileno()).st_size
        try:
            tar = tarfile.TarFile(fileobj=self.file, mode="r")
            while (info := tar.next()) is not None:
                if len(self.members) >= MAX_MEMBERS:
                    raise InvalidInput(f"the package has more than {MAX_MEMBERS} members")
                name = _check_member(info)
                if name is None:
                    continue
                if name in self.members:
                    raise InvalidInput(f"the package member {name!r} appears twice")
                if info.offset_data + info.size > length:
                    raise InvalidInput(f"the package is truncated: member {name!r} ends past "
                                       "the end of the file")
                self.members[name] = _Member(name, info.offset_data, info.size, int(info.mtime))
                self.order.append(name)
        except tarfile.TarError as e:
            raise InvalidInput(f"the package is not a valid tar archive: {e}") from None

    def read_small(self, name: str) -> bytes:
        member = self.members[name]
        limit = SMALL_LIMITS.get(name, 1 << 20)
        if member.size > limit:
            raise InvalidInput(f"the package member {name!r} is larger than {limit} bytes")
        return os.pread(self.file.fileno(), member.size, member.offset)

    def magic(self, name: str) -> bytes:
        member = self.members[name]
        return os.pread(self.file.fileno(), min(4, member.size), member.offset)

    def compression(self, name: str) -> str | None:
        magic = self.magic(name)
        if magic.startswith(GZIP_MAGIC):
            return "gzip"
        if magic == ZSTD_MAGIC:
            return "zstd"
        return None


def _manifest_names(text: bytes) -> list[str]:
    """MANIFEST lines: one member name each. Lines in `sha1sum` style ("digest  name") are
    read for their name; blank lines and comments are skipped."""
    names = []
    for line in text.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line in (".", "./"):
            continue
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{32,128}", parts[0]):
            line = parts[1].lstrip("*")
        names.append(line[2:] if line.startswith("./") else line)
    return names


@dataclass
class _Package:
    manifest: Manifest
    domain_xml: str
    members: dict[str, _Member]
    legacy: bool  # no enomalism.json: an XVM2 package made elsewhere


def _inspect(path: Path) -> _Package:
    with _Archive(path) as ar:
        if DESCRIPTION not in ar.members:
            raise InvalidInput(f"the package has no {DESCRIPTION}")
        order = [n for n in ar.order if n != MANIFEST_MEMBER]
        if MANIFEST_MEMBER in ar.members:
            listed = [n for n in _manifest_names(ar.read_small(MANIFEST_MEMBER))
                      if n != MANIFEST_MEMBER]
            for name in listed:
                if name not in ar.members:
                    raise InvalidInput(f"the MANIFEST lists {name[:100]!r}, which the "
                                       "package does not hold")
            for name in order:
                if name not in listed:
                    raise InvalidInput(f"the package member {name!r} is not listed in its "
                                       "MANIFEST")
            order = list(dict.fromkeys(listed))
        root = _parse_domain(ar.read_small(DESCRIPTION))
        xml_disks = _xml_disks(root)
        legacy = JSON_MEMBER not in ar.members
        if legacy:
            manifest = _derive_manifest(ar, root, order, xml_disks)
        else:
            manifest = Manifest.from_json(ar.read_small(JSON_MEMBER))
            _match_disks(ar, manifest, xml_disks)
        manifest = _check_images(ar, manifest, legacy)
        domain_xml = etree.tostring(root, encoding="unicode")
        return _Package(manifest, domain_xml, dict(ar.members), legacy)


def _match_disks(ar: _Archive, manifest: Manifest, xml_disks: list) -> None:
    xml_targets = {t for t, _, _ in xml_disks}
    if len(manifest.disks) != len(xml_disks):
        raise InvalidInput(f"enomalism.json lists {len(manifest.disks)} disks but "
                           f"{DESCRIPTION} has {len(xml_disks)}")
    seen_targets, seen_members = set(), set()
    for d in manifest.disks:
        if d.target not in xml_targets:
            raise InvalidInput(f"disk {d.target} of enomalism.json is not a disk of "
                               f"{DESCRIPTION}")
        if d.member in RESERVED or d.member not in ar.members:
            raise InvalidInput(f"disk {d.target}: its image {d.member!r} is missing from "
                               "the package")
        if d.target in seen_targets or d.member in seen_members:
            raise InvalidInput(f"disk {d.target} appears twice in enomalism.json")
        seen_targets.add(d.target)
        seen_members.add(d.member)


def _derive_manifest(ar: _Archive, root: etree._Element, order: list[str],
                     xml_disks: list) -> Manifest:
    """The manifest of an XVM2 package made elsewhere: disks from description.xml in order,
    images from the members that are gzip or zstd (by magic), paired by name where the
    <source> names the image, else in order. Sizes and checksums stay unknown."""
    images = [n for n in order if n not in RESERVED and ar.compression(n)]
    if len(images) != len(xml_disks):
        raise InvalidInput(f"{DESCRIPTION} has {len(xml_disks)} disks but the package holds "
                           f"{len(images)} compressed images")
    by_name = {}
    for target, base, _ in xml_disks:
        found = [n for n in images
                 if base and (n == base or image_name(DiskInfo(target, member=n)) == base)]
        if len(found) == 1:
            by_name[target] = found[0]
    if len(set(by_name.values())) != len(xml_disks):
        by_name = {t: n for (t, _, _), n in zip(xml_disks, images, strict=True)}
    created = datetime.fromtimestamp(ar.members[DESCRIPTION].mtime, UTC)
    os_type = root.find("os/type")
    return Manifest(
        name=(root.findtext("name") or "").strip() or ar.path.stem,
        description=(root.findtext("description") or "").strip(),
        version="",
        virt_class=root.get("type"),
        arch=os_type.get("arch") if os_type is not None else None,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        disks=[DiskInfo(target=t, member=by_name[t], format="raw",
                        compression=ar.compression(by_name[t]) or "gzip")
               for t, _, _ in xml_disks],
    )


def _check_images(ar: _Archive, manifest: Manifest, legacy: bool) -> Manifest:
    """Each image's compression by magic, and its first bytes: a qcow2 image must be one and
    stand alone. Derived manifests learn the format and virtual size here."""
    disks = []
    for d in manifest.disks:
        label = f"disk {d.target} ({d.member})"
        compression = ar.compression(d.member)
        if compression is None:
            raise InvalidInput(f"{label} is neither gzip nor zstd compressed")
        d = replace(d, compression=compression)
        with DiskReader(ar.path, ar.members[d.member], compression, None, label) as r:
            head = r.read(BLOCK)
        if legacy:
            is_qcow2 = head[:4] == QCOW2_MAGIC
            d = replace(d, format="qcow2" if is_qcow2 else "raw",
                        virtual_size=_qcow2_virtual_size(head, label) if is_qcow2 else None)
        elif d.format == "qcow2":
            _qcow2_virtual_size(head, label)
        disks.append(d)
    return replace(manifest, disks=disks)


class _Slice(io.RawIOBase):
    """`size` bytes of a file from `offset`: one member's data."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.pos, self.end = fd, offset, offset + size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.end - self.pos
        data = os.pread(self.fd, min(n, self.end - self.pos), self.pos)
        self.pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class DiskReader(io.RawIOBase):
    """The decompressed image of one disk, as a stream. A corrupt image, or one that ends
    before or after its recorded size, raises InvalidInput where it is noticed."""

    def __init__(self, path: Path, member: _Member, compression: str,
                 expected_size: int | None, label: str) -> None:
        self._file = open(path, "rb", buffering=0)
        self._label = label
        self._expected = expected_size
        self.count = 0
        source = _Slice(self._file.fileno(), member.offset, member.size)
        self._inner: IO[bytes] | gzip.GzipFile
        if compression == "zstd":
            self._inner = zstandard.ZstdDecompressor().stream_reader(
                cast(IO[bytes], source), read_size=1 << 20, read_across_frames=True, closefd=False)
        else:  # gzip reads in small pieces: buffer them into few system calls
            buffered = io.BufferedReader(source, buffer_size=1 << 20)
            self._inner = gzip.GzipFile(fileobj=buffered, mode="rb")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        try:
            data = self._inner.read(size)
        except (zstandard.ZstdError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise InvalidInput(f"{self._label} is corrupt: {e}") from None
        self.count += len(data)
        expected = self._expected
        if expected is not None and self.count > expected:
            raise InvalidInput(f"{self._label} is longer than the {expected} bytes its "
                               "manifest records")
        if expected is not None and not data and size and self.count < expected:
            raise InvalidInput(f"{self._label} ends after {self.count} bytes, short of the "
                               f"{expected} its manifest records: the package is truncated "
                               "or corrupt")
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self._inner.close()
            self._file.close()
        super().close()


def file_sha256(path: Path) -> str:
    """The sha256 of a whole package file: what a feed announces as `eno:sha256`."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_package(path: Path) -> tuple[Manifest, str]:
    """The manifest and domain XML of a package, after checking the whole archive.

    Works for XVM2 packages made elsewhere (no enomalism.json): their manifest is derived,
    with each disk's size and sha256 None until `verify_package` measures them.
    """
    pkg = _inspect(path)
    return pkg.manifest, pkg.domain_xml


def _find_disk(manifest: Manifest, member: str) -> DiskInfo:
    for d in manifest.disks:
        if member in (d.member, d.target):
            return d
    raise NotFound(f"the package has no disk {member!r}")


def open_disk(path: Path, member: str) -> DiskReader:
    """A stream of one disk's uncompressed image; `member` is its member name or its target.

    The archive is checked first, as by `read_package`. Where the manifest records the
    image's size, reading past or stopping short of it raises InvalidInput.
    """
    pkg = _inspect(path)
    disk = _find_disk(pkg.manifest, member)
    return DiskReader(Path(path), pkg.members[disk.member], disk.compression, disk.size,
                      f"disk {disk.target} ({disk.member})")


def verify_package(path: Path, progress: Callable[[int], None] | None = None) -> Manifest:
    """Decompress every disk and check its size and sha256 against the manifest.

    Returns the manifest with sizes and checksums filled in (measured, for a package made
    elsewhere). `progress` gets the uncompressed bytes read so far and may raise to stop.
    """
    pkg = _inspect(path)
    disks, done = [], 0
    for d in pkg.manifest.disks:
        label = f"disk {d.target} ({d.member})"
        sha = HashThread()  # hashes while the next chunk decompresses
        try:
            with DiskReader(Path(path), pkg.members[d.member], d.compression, d.size,
                            label) as r:
                while data := r.read(CHUNK):
                    sha.update(data)
                    if progress is not None:
                        progress(done + r.count)
                size = r.count
        finally:
            digest = sha.hexdigest()
        if d.sha256 is not None and digest != d.sha256:
            raise InvalidInput(f"{label} does not match its sha256: the package is corrupt")
        done += size
        virtual_size = d.virtual_size if d.virtual_size is not None or d.format != "raw" else size
        disks.append(replace(d, size=size, sha256=digest, virtual_size=virtual_size))
    return replace(pkg.manifest, disks=disks)
