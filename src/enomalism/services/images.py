"""Images: qcow2, raw and ISO files a user uploads (or registers from a URL), each kept as a
volume in a hypervisor's storage pool, for create and provision to copy or attach.

An upload is three steps, so that nothing slow runs while a database write lock is held:
`begin_upload` checks the request and records the image (`uploading`, its volume's path
planned) in a short transaction; `write` streams the bytes into a new volume with no session
open; `finish` marks it `ready` with its size and checksum, or `abandon` removes the row (the
volume is already gone: `storage.upload` deletes a volume it could not fill).

The file is untrusted. Its head (the first MiB, taken before anything is written) is shown to
`qemu-img info` under CPU and memory limits, as OpenStack does: the format it detects must be
the one claimed (`raw` for an ISO, which must also carry ISO 9660's CD001 signature), and a
qcow2 may name neither a backing file nor an external data file (either would let a guest
read any file on the host)."""

import hashlib
import json
import shutil
import socket
import subprocess
import tempfile
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree
from sqlalchemy import select

from enomalism.errors import (
    BadImage,
    Conflict,
    ImageTooLarge,
    InvalidInput,
    InvalidState,
    MissingVariable,
    NotFound,
)
from enomalism.feeds import archive
from enomalism.feeds import download as dl
from enomalism.feeds.archive import Manifest
from enomalism.jobs.runner import JobCancelled, JobContext
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.services import access, audit, names, provisioning, transactions
from enomalism.services.context import Context
from enomalism.services.lookup import get_hypervisor, parse_uuid
from enomalism.store.models import Hypervisor, Image, Package, Transaction, new_uuid, utcnow
from enomalism.virt import storage
from enomalism.virt.hypervisor import HypervisorConnection
from enomalism.virt.pool import StoragePool

FORMATS = ("qcow2", "raw", "iso")
EXTENSION = {"qcow2": "qcow2", "raw": "img", "iso": "iso"}
HEAD = 1 << 20  # bytes of the file shown to qemu-img before anything is written
ISO_MAGIC_AT, ISO_MAGIC = 32769, b"CD001"
# qemu-img on untrusted data: the limits OpenStack's `qemu_img_info` sets (1 GiB of address
# space, a few seconds of CPU), and a wall-clock timeout on top.
QEMU_IMG = ["prlimit", "--as=1073741824", "--cpu=8", "qemu-img", "info", "--output=json"]
SHA256_HEX = set("0123456789abcdef")


@dataclass(frozen=True)
class Plan:
    """Where an upload goes: what `write` needs, with no session."""

    uuid: str
    hypervisor: str
    pool: str
    volume: str
    format: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Written:
    path: str
    size: int
    virtual_size: int
    sha256: str


# -- finding -----------------------------------------------------------------------------------

def find(ctx: Context, *, ref: str, permission: str = "read") -> Image:
    """The image named by UUID, name or a unique UUID prefix, among those the caller may read
    (404 for the others); 403 when they may read it but not do `permission`."""
    ref = (ref or "").strip()
    if not ref:
        raise MissingVariable("name an image by its UUID or name")
    q = select(Image)
    if (clause := access.readable(ctx, Image)) is not None:
        q = q.where(clause)
    found = ctx.db.get(Image, ref) if len(ref) == 36 else None
    if found is not None and not access.holds(ctx, found, "read"):
        found = None
    if found is None:
        named = list(ctx.db.scalars(q.where(Image.name == ref)))
        mine = [i for i in named if i.owner_uuid == ctx.user.uuid]
        named = mine or named
        if len(named) > 1:
            raise Conflict(f"{len(named)} images are named '{ref}'; name it by its UUID")
        if not named and len(ref) >= 4 and all(c in "0123456789abcdef-" for c in ref.lower()):
            named = list(ctx.db.scalars(q.where(Image.uuid.startswith(ref.lower())).limit(2)))
            if len(named) > 1:
                raise Conflict(f"more than one image's UUID starts with '{ref}'")
        found = named[0] if named else None
    if found is None:
        raise NotFound(f"no image '{ref}'")
    access.require(ctx, found, permission, "image")
    return found


def list_images(ctx: Context) -> list[Image]:
    """Every image the caller may read, oldest first."""
    q = select(Image).order_by(Image.created_at, Image.uuid)
    if (clause := access.readable(ctx, Image)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def show(ctx: Context, *, ref: str) -> Image:
    """The image, if the caller may read it."""
    return find(ctx, ref=ref)


def overlays(conn: HypervisorConnection, image: Image) -> list[str]:
    """The volumes of the image's pool whose backing file it is (disks made from it)."""
    found = []
    for name, path in conn.pool_volumes(image.pool):
        with suppress(NotFound):  # deleted meanwhile
            if conn.volume_info(path).backing == image.path:
                found.append(name)
    return found


def delete(ctx: Context, *, ref: str) -> str:
    """Delete the image and its volume; refused while disks made from it (copy-on-write
    overlays) or machines with it as their CD-ROM still need it."""
    image = find(ctx, ref=ref, permission="delete")
    if image.path:
        conn = ctx.registry.connection(image.hypervisor_uuid)
        if image.format != "iso" and (users := overlays(conn, image)):
            raise Conflict(f"image {image.name} is the base of {len(users)} disk(s) "
                           f"({', '.join(users[:5])}); delete the machines using it first")
        if image.format == "iso" and (users := conn.machines_using(image.path)):
            raise Conflict(f"image {image.name} is the CD-ROM of {len(users)} machine(s) "
                           f"({', '.join(users[:5])}); detach it or delete them first")
        conn.delete_volume(image.path)
    audit.record(ctx, "image.delete", image.uuid, name=image.name)
    ctx.db.delete(image)
    return f"image {image.name} deleted"


# -- uploading ---------------------------------------------------------------------------------

def _check_request(ctx: Context, name: str | None, fmt: str | None) -> tuple[str, str]:
    name = names.check(names.IMAGE, name, why=" (the image's name)")
    if not fmt:
        raise MissingVariable(f"the variable 'format' is required: {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise InvalidInput(f"image format '{fmt}' is not one of {', '.join(FORMATS)}")
    taken = ctx.db.scalar(select(Image.uuid).where(Image.owner_uuid == ctx.user.uuid,
                                                   Image.name == name))
    if taken:
        raise Conflict(f"you already have an image named '{name}' ({taken})")
    return name, fmt


def _hypervisor(ctx: Context, hvmuuid: str | None) -> Hypervisor:
    """The hypervisor named (the caller needs `control` on it, as for provision), else the
    first connected one on this machine, else the first connected one."""
    if hvmuuid and hvmuuid.strip():
        hv = ctx.db.get(Hypervisor, parse_uuid(hvmuuid, "hypervisor"))
        if hv is None:
            raise NotFound(f"no hypervisor with UUID {hvmuuid}")
        access.require(ctx, hv, "control", "hypervisor")
        return hv
    here = socket.gethostname()
    hvs = ctx.db.scalars(select(Hypervisor).where(Hypervisor.status == "connected")
                         .order_by(Hypervisor.created_at))
    ranked = sorted(hvs, key=lambda h: h.local_to != here)
    if not ranked:
        raise InvalidState("no hypervisor is connected; name one with 'hvmuuid'")
    return ranked[0]


def _sha256(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip().lower()
    if len(value) != 64 or not set(value) <= SHA256_HEX:
        raise InvalidInput("'sha256' must be 64 hexadecimal digits")
    return value


def begin_upload(ctx: Context, *, name: str | None, fmt: str | None, size: int | None,
                 hvmuuid: str | None = None, pool: str | None = None,
                 sha256: str | None = None, url: str | None = None) -> Plan:
    """Check an upload (or registration: `size` None) and record its image as `uploading`."""
    name, fmt = _check_request(ctx, name, fmt)
    want = _sha256(sha256)
    if size is not None and size <= 0:
        raise BadImage("the image is empty")
    hv = _hypervisor(ctx, hvmuuid)
    target = ctx.registry.connection(hv.uuid).pick_pool(pool)
    if size is not None:
        available = storage_available(target)
        if size > available:
            raise ImageTooLarge(f"the image ({size} bytes) is larger than the space left in "
                                f"pool {target.name()} ({available} bytes); choose another "
                                "'pool' or free some space")
    image = Image(name=name, format=fmt, owner_uuid=ctx.user.uuid, hypervisor_uuid=hv.uuid,
                  pool=target.name(), state="uploading", sha256=want,
                  url=dl.redact(url) if url else None,
                  node_id=ctx.registry.ownership.node_id if url is None else None)
    ctx.db.add(image)
    ctx.db.flush()
    volume = f"image-{image.uuid}.{EXTENSION[fmt]}"
    image.path = target.planned_path(volume)
    audit.record(ctx, "image.upload" if url is None else "image.register", image.uuid,
                 name=name, format=fmt)
    return Plan(image.uuid, hv.uuid, target.name(), volume, fmt, size or 0, want)


def storage_available(pool: StoragePool) -> int:
    """The pool's free bytes, as libvirt counts them."""
    return pool.info()[3]


class _Hashed:
    """The source, its head given back first, hashed (in a thread of its own, beside the
    writing) and counted as it is read."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest, self.sha, self.count = head, rest, dl.HashThread(), 0

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = (self.head, b"") if n < 0 or n >= len(self.head) \
                else (self.head[:n], self.head[n:])
        else:
            data = self.rest.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data


def _read_head(source: BinaryIO, size: int) -> bytes:
    parts, got = [], 0
    want = min(HEAD, size)
    while got < want:
        data = source.read(want - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def inspect(head: bytes, *, fmt: str, size: int) -> int:
    """The image's virtual size, when `qemu-img info` on its head agrees with `fmt` and it
    stands alone; BadImage otherwise."""
    with tempfile.NamedTemporaryFile(prefix="enomalism-image-head-") as f:
        f.write(head)
        f.flush()
        try:
            out = subprocess.run([*QEMU_IMG, f.name], capture_output=True, timeout=30,
                                 check=True).stdout
            info = json.loads(out)
        except subprocess.TimeoutExpired:
            raise BadImage("qemu-img took too long to read the image's header") from None
        except (subprocess.CalledProcessError, ValueError) as e:
            detail = getattr(e, "stderr", b"") or b""
            raise BadImage("qemu-img cannot read the image: "
                           f"{detail.decode(errors='replace').strip()[:200]}") from None
    detected = info.get("format")
    expected = "raw" if fmt == "iso" else fmt
    if detected != expected:
        raise BadImage(f"the file is a {detected} image, not {fmt} (qemu-img info)")
    if fmt == "qcow2":
        data = (info.get("format-specific") or {}).get("data") or {}
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise BadImage("the qcow2 image names a backing file; upload a standalone image "
                           "(`qemu-img convert -O qcow2` flattens it)")
        if data.get("data-file"):
            raise BadImage("the qcow2 image keeps its data in an external file; upload a "
                           "standalone image")
        return int(info.get("virtual-size") or 0)
    if fmt == "iso" and head[ISO_MAGIC_AT:ISO_MAGIC_AT + len(ISO_MAGIC)] != ISO_MAGIC:
        raise BadImage("the file is not an ISO 9660 image (no CD001 signature at byte 32769)")
    return size


def write(*, registry: HypervisorRegistry, plan: Plan, source: BinaryIO, size: int,
          progress: storage.Progress | None = None,
          cancelled: storage.Cancelled | None = None) -> Written:
    """Check the head of `source`, then stream its `size` bytes into the planned volume,
    hashing them; a failure of any kind leaves no volume behind."""
    head = _read_head(source, size)
    virtual = inspect(head, fmt=plan.format, size=size)
    conn = registry.connection(plan.hypervisor)
    pool = conn.pick_pool(plan.pool)
    hashed = _Hashed(head, source)
    try:
        path = pool.upload(plan.volume, hashed, size=size,
                           fmt="qcow2" if plan.format == "qcow2" else "raw",
                           progress=progress, cancelled=cancelled)
    finally:
        digest = hashed.sha.hexdigest()  # (stops its thread)
    if plan.sha256 and digest != plan.sha256:
        conn.delete_volume(path)
        raise BadImage(f"the image's sha256 is {digest}, not the {plan.sha256} given; "
                       "nothing was kept")
    return Written(path, size, virtual, digest)


def finish(ctx: Context, *, plan: Plan, written: Written) -> Image:
    """The upload is whole: the image is ready."""
    image = ctx.db.get(Image, plan.uuid)
    if image is None:  # deleted while it was uploading: its volume is ours to remove
        ctx.registry.connection(plan.hypervisor).delete_volume(written.path)
        raise NotFound("the image was deleted while it was uploading")
    image.path, image.size, image.virtual_size = written.path, written.size, \
        written.virtual_size
    image.sha256, image.state = written.sha256, "ready"
    ctx.db.flush()
    return image


def abandon(ctx: Context, *, uuid: str) -> None:
    """The upload failed: its image goes (the volume went with the failure)."""
    image = ctx.db.get(Image, uuid)
    if image is not None:
        ctx.db.delete(image)


# -- registering from a URL --------------------------------------------------------------------

def register(ctx: Context, *, url: str | None, name: str | None, fmt: str | None,
             hvmuuid: str | None = None, pool: str | None = None,
             sha256: str | None = None) -> tuple[Image, Transaction]:
    """Record the image and queue its download (a transaction with progress)."""
    if not url:
        raise MissingVariable("the variable 'url' is required")
    dl.check_url(url)
    plan = begin_upload(ctx, name=name, fmt=fmt, size=None, hvmuuid=hvmuuid, pool=pool,
                        sha256=sha256, url=url)
    tx = transactions.enqueue(ctx, "image_register", target=plan.uuid, params={
        "image": plan.uuid, "url": url, "hypervisor": plan.hypervisor, "pool": plan.pool,
        "volume": plan.volume, "format": plan.format, "sha256": plan.sha256})
    tx.undo = [{"kind": "image", "uuid": plan.uuid}]
    return ctx.db.get_one(Image, plan.uuid), tx  # begin_upload added it


def register_job(job: JobContext) -> dict[str, Any]:
    """Download the URL to a file of the server's, then upload it as the image's volume."""
    prm = job.params
    work = Path(job.runner.packages_dir) / "images"
    work.mkdir(parents=True, exist_ok=True)
    dest = work / f"{prm['image']}.download"
    job.will_create("file", path=str(dest))
    job.will_create("file", path=f"{dest}.part")
    job.log(f"downloading {dl.redact(prm['url'])}")
    try:
        dl.download(prm["url"], dest, expected_sha256=prm.get("sha256"),
                    progress=lambda done, total: job.progress(60.0 * done / total
                                                              if total else 0.0),
                    cancelled=job.cancel_requested, fsync=False)
    except dl.DownloadCancelled:
        raise JobCancelled() from None
    size = dest.stat().st_size
    conn = job.registry.connection(prm["hypervisor"])
    pool = conn.pick_pool(prm["pool"])
    if size > storage_available(pool):
        raise ImageTooLarge(f"the image ({size} bytes) is larger than the space left in pool "
                            f"{pool.name()}")
    plan = Plan(prm["image"], prm["hypervisor"], prm["pool"], prm["volume"], prm["format"],
                size, prm.get("sha256"))
    job.will_create("pool_volume", hypervisor=plan.hypervisor, pool=plan.pool, name=plan.volume)
    job.progress(60, "writing the image into its volume")
    try:
        with dest.open("rb") as f:
            written = write(registry=job.registry, plan=plan, source=f, size=size,
                            progress=lambda done: job.progress(60 + 40.0 * done / size),
                            cancelled=job.cancel_requested)
    except storage.StorageCancelled:
        raise JobCancelled() from None
    finally:
        dest.unlink(missing_ok=True)
    with job.db.session() as s:
        image = s.get(Image, plan.uuid)
        if image is None:
            raise InvalidState("the image was deleted while it was being registered")
        image.path, image.size, image.virtual_size = written.path, written.size, \
            written.virtual_size
        image.sha256, image.state = written.sha256, "ready"
    job.created_ok("pool_volume", hypervisor=plan.hypervisor, pool=plan.pool, name=plan.volume)
    job.created_ok("image", uuid=plan.uuid)
    return {"image": plan.uuid, "size": size, "sha256": written.sha256}


def image_obj(i: Image) -> dict[str, Any]:
    return {"uuid": i.uuid, "name": i.name, "format": i.format, "size": i.size,
            "virtual_size": i.virtual_size, "sha256": i.sha256, "owner": i.owner_uuid,
            "hypervisor": i.hypervisor_uuid, "pool": i.pool, "path": i.path, "state": i.state,
            "url": i.url, "created_at": i.created_at}


# -- packages uploaded as files ----------------------------------------------------------------

def receive_package(packages_dir: Path, source: BinaryIO, *, size: int,
                    uuid: str) -> tuple[Path, str, Manifest]:
    """Stream an uploaded `.xvm2` file into the package cache and check it as a feed's package
    is checked (archive structure, manifest, every disk's size and sha256): its path, sha256
    and manifest. Nothing stays behind on failure. No session is open meanwhile."""
    packages_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(packages_dir).free
    if size > free:
        raise ImageTooLarge(f"the package ({size} bytes) is larger than the space left for "
                            f"the package cache ({free} bytes)")
    dest = packages_dir / f"{uuid}.xvm2"
    sha, done = hashlib.sha256(), 0
    with dl.PartFile(dest.with_name(dest.name + ".part"), "the package is being uploaded") \
            as part:
        while done < size:
            data = source.read(min(storage.CHUNK, size - done))
            if not data:
                raise InvalidInput(f"the upload ended after {done} of {size} bytes")
            part.file.write(data)
            sha.update(data)
            done += len(data)
        try:
            archive.read_package(part.path)  # the archive's structure, before decompressing
            manifest = archive.verify_package(part.path)
        except InvalidInput as e:
            raise BadImage(f"not a usable package: {e.message}") from None
        part.commit(dest)
    return dest, sha.hexdigest(), manifest


def add_package(ctx: Context, *, uuid: str, path: Path, sha256: str, manifest: Manifest,
                name: str | None = None) -> Package:
    """Record a received package file as a cached package of the caller's."""
    p = Package(uuid=uuid, name=name or manifest.name, description=manifest.description,
                version=manifest.version, virt_class=manifest.virt_class, arch=manifest.arch,
                state="cached", path=str(path), size=path.stat().st_size,
                length=path.stat().st_size, manifest=manifest.to_json(),
                owner_uuid=ctx.user.uuid, sha256=sha256)
    ctx.db.add(p)
    ctx.db.flush()
    audit.record(ctx, "package.upload", uuid, name=p.name)
    return p


# -- an image turned into a package ------------------------------------------------------------

def queue_package(ctx: Context, *, ref: str, name: str | None = None,
                  description: str | None = None, version: str | None = None) -> Transaction:
    """Queue `package import`: the image (qcow2 or raw) as the one disk of a new package."""
    image = find(ctx, ref=ref, permission="export")
    if image.format == "iso":
        raise InvalidInput("an ISO image is no disk to boot from; package a qcow2 or raw image")
    if image.state != "ready":
        raise InvalidState(f"image {image.name} is {image.state}, not ready")
    name = names.ensure(names.PACKAGE, name or image.name)
    return transactions.enqueue(ctx, "image_package", target=image.uuid, params={
        "image": image.uuid, "name": name, "description": description or "",
        "version": version or "1"})


def package_xml(*, name: str, virt_class: str, arch: str, fmt: str) -> str:
    """A plain guest for an imported image: 1 vCPU, 1 GiB, its disk virtio, a serial console
    (provision and create set what the caller asks for)."""
    dom = etree.Element("domain", type=virt_class)
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "1024"
    etree.SubElement(dom, "vcpu").text = "1"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch=arch).text = "hvm"
    features = etree.SubElement(dom, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(features, "apic")
    devices = etree.SubElement(dom, "devices")
    disk = etree.SubElement(devices, "disk", type="file", device="disk")
    etree.SubElement(disk, "driver", name="qemu", type=fmt)
    etree.SubElement(disk, "source", file="/nowhere/image")
    etree.SubElement(disk, "target", dev="vda", bus="virtio")
    etree.SubElement(etree.SubElement(devices, "serial", type="pty"), "target", port="0")
    etree.SubElement(etree.SubElement(devices, "console", type="pty"), "target", type="serial",
                     port="0")
    return etree.tostring(dom, encoding="unicode")


def package_job(job: JobContext) -> dict[str, Any]:
    """Write the image's volume into a new package in the cache."""
    prm = job.params
    with job.db.session(write=False) as s:
        image = s.get(Image, prm["image"])
        if image is None:
            raise InvalidState("the image was deleted")
        if image.path is None:
            raise InvalidState(f"image {image.name} has no volume yet")
        hv = get_hypervisor(s, image.hypervisor_uuid)
        path, fmt, hv_uuid, uri = image.path, image.format, hv.uuid, hv.virt_url
        virt_class, arch = hv.virt_class, hv.arch or "x86_64"
    virt_class = virt_class if virt_class in ("kvm", "qemu") else "kvm"
    conn = job.registry.connection(hv_uuid)
    pkg_uuid = new_uuid()
    cache = Path(job.runner.packages_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"{pkg_uuid}.xvm2"
    with ExitStack() as stack:
        tmp = cache / f".export-{job.txid}"
        job.will_create("dir", path=str(tmp))
        tmp.mkdir(exist_ok=True)
        stack.callback(shutil.rmtree, tmp, True)
        # read in the format the image was checked to be at its upload, never a probe's
        opener, disk_fmt, vsize = provisioning.disk_source(job, conn, hv_uuid, uri, path, fmt,
                                                           stack, tmp)
        manifest = Manifest(name=prm["name"], description=prm["description"],
                            version=prm["version"], virt_class=virt_class, arch=arch,
                            created_at=utcnow().isoformat(),
                            disks=[archive.DiskInfo(target="vda", format=disk_fmt,
                                                    virtual_size=vsize)])
        job.will_create("file", path=str(dest))
        job.will_create("file", path=f"{dest}.part")
        job.progress(5, f"writing package {prm['name']}")
        total = conn.volume_info(path).allocation or 1
        manifest, digest = archive.write_package_sha256(
            dest, domain_xml=package_xml(name=prm["name"], virt_class=virt_class, arch=arch,
                                         fmt=fmt),
            manifest=manifest, disk_sources={"vda": opener},
            progress=lambda done: job.progress(5 + 90 * min(done / total, 1.0)))
    with job.db.session() as s:
        s.add(Package(uuid=pkg_uuid, name=prm["name"], description=prm["description"],
                      version=prm["version"], virt_class=virt_class, arch=arch,
                      state="cached", path=str(dest), size=dest.stat().st_size,
                      length=dest.stat().st_size, manifest=manifest.to_json(),
                      owner_uuid=job.owner_uuid, sha256=digest))
    job.created_ok("file", path=str(dest))
    return {"package": pkg_uuid, "size": dest.stat().st_size}
