"""The package archive: round trips, XVM2 packages made elsewhere, and every bad archive."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from enomalism.errors import Conflict, InvalidInput, NotFound
from enomalism.feeds import archive
from enomalism.feeds.archive import (
    DiskInfo,
    Manifest,
    open_disk,
    read_package,
    verify_package,
    write_package,
)
from enomalism.feeds.download import PartFile

DOMAIN = """<domain type='kvm'>
  <name>web</name>
  <description>a web server</description>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web-root.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/web-data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/iso/install.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
  </devices>
</domain>"""

needs_qemu_img = pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img missing")


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A real qcow2 image with some data in it, and a raw one of random and zero bytes."""
    tmp_path = tmp_path_factory.mktemp("images")
    raw = tmp_path / "data.raw"
    raw.write_bytes(os.urandom(1 << 20) + bytes(2 << 20) + b"end" * 1000)
    qcow = tmp_path / "root.qcow2"
    if shutil.which("qemu-img"):
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow))
        qemu_img("resize", "-f", "qcow2", str(qcow), "64M")
    else:  # a minimal valid qcow2 header is all the archive looks at
        header = b"QFI\xfb" + (3).to_bytes(4, "big") + bytes(16) + (64 << 20).to_bytes(8, "big")
        qcow.write_bytes(header + bytes(4096))
    return {"vda": qcow, "vdb": raw}


def manifest(**kw: object) -> Manifest:
    base = dict(name="web", description="a web server", version="1.2", virt_class="kvm",
                arch="x86_64",
                disks=[DiskInfo("vda", format="qcow2"), DiskInfo("vdb", format="raw")])
    base.update(kw)
    return Manifest(**base)


def sources(images: dict[str, Path]) -> dict:
    return {t: (lambda p=p: open(p, "rb")) for t, p in images.items()}


def build(tmp_path: Path, images: dict[str, Path], compression: str = "zstd",
          name: str = "web.xvm2") -> tuple[Path, Manifest]:
    dest = tmp_path / name
    m = write_package(dest, domain_xml=DOMAIN, manifest=manifest(),
                      disk_sources=sources(images), compression=compression)
    return dest, m


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {i.name: tar.extractfile(i).read() for i in tar.getmembers()}


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def regular(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def rebuild(src: Path, dest: Path, replace: dict[str, bytes | None] | None = None,
            extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """A copy of package `src` with members replaced (None removes one) and extra ones added."""
    replace = replace or {}
    entries = []
    for name, data in members(src).items():
        if name in replace and replace[name] is None:
            continue
        entries.append((regular(name), replace.get(name, data)))
    return write_tar(dest, entries + list(extra))


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_round_trip(tmp_path, images, compression):
    dest, m = build(tmp_path, images, compression)
    suffix = {"zstd": ".zst", "gzip": ".gz"}[compression]
    assert [d.member for d in m.disks] == [f"vda.qcow2{suffix}", f"vdb.raw{suffix}"]
    raw = images["vdb"].read_bytes()
    vdb = m.disks[1]
    assert (vdb.size, vdb.sha256, vdb.virtual_size, vdb.compression) == (
        len(raw), hashlib.sha256(raw).hexdigest(), len(raw), compression)
    assert m.disks[0].virtual_size == 64 << 20
    assert m.disks[0].sha256 == hashlib.sha256(images["vda"].read_bytes()).hexdigest()
    assert m.created_at.endswith("Z")

    got, xml = read_package(dest)
    assert got == m
    assert "/var/lib/libvirt" not in xml and "/dev/vg0" not in xml and "backingStore" not in xml
    assert "<source file=\"vda.qcow2\"/>" in xml and "<source file=\"vdb.raw\"/>" in xml
    assert "/srv/iso/install.iso" in xml  # the CD-ROM is not packaged and stays as it was
    assert verify_package(dest) == m
    for target, path in images.items():
        with open_disk(dest, target) as disk:
            assert disk.read() == path.read_bytes()
    with open_disk(dest, m.disks[1].member) as disk:  # by member name too
        assert disk.read(10) == raw[:10]


def test_layout_is_what_xvm2_readers_expect(tmp_path, images):
    dest, m = build(tmp_path, images, "gzip")
    content = members(dest)
    assert list(content) == ["description.xml", "MANIFEST", "vda.qcow2.gz", "vdb.raw.gz",
                             "enomalism.json"]
    assert content["MANIFEST"].decode().splitlines() == [
        "description.xml", "vda.qcow2.gz", "vdb.raw.gz", "enomalism.json"]
    doc = json.loads(content["enomalism.json"])
    assert doc["format"] == 1 and doc["name"] == "web" and doc["virt_class"] == "kvm"
    assert doc["disks"][1] == {"target": "vdb", "member": "vdb.raw.gz", "format": "raw",
                               "virtual_size": m.disks[1].size, "size": m.disks[1].size,
                               "sha256": m.disks[1].sha256, "compression": "gzip"}
    # what an XVM2 reader does: gunzip each image (several gzip members read as one stream)
    assert gzip.decompress(content["vdb.raw.gz"]) == images["vdb"].read_bytes()
    if shutil.which("tar") and shutil.which("gunzip"):
        out = tmp_path / "x"
        out.mkdir()
        subprocess.run(["tar", "-xf", str(dest), "-C", str(out)], check=True)
        subprocess.run(["gunzip", str(out / "vdb.raw.gz")], check=True)
        assert (out / "vdb.raw").read_bytes() == images["vdb"].read_bytes()


def test_large_member_header_fits_one_block():
    header = archive._tar_header("vda.qcow2.zst", 20 << 30, 0)
    assert len(header) == 512
    assert tarfile.TarInfo.frombuf(header, "utf-8", "strict").size == 20 << 30


def test_progress_counts_uncompressed_bytes(tmp_path, images):
    seen = []
    write_package(tmp_path / "p.xvm2", domain_xml=DOMAIN, manifest=manifest(),
                  disk_sources=sources(images), progress=seen.append)
    total = sum(p.stat().st_size for p in images.values())
    assert seen == sorted(seen) and seen[-1] == total
    seen.clear()
    verify_package(tmp_path / "p.xvm2", progress=seen.append)
    assert seen[-1] == total


def test_empty_image(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    xml = ("<domain type='kvm'><name>e</name><devices><disk type='file' device='disk'>"
           "<source file='/x/e.raw'/><target dev='vda'/></disk></devices></domain>")
    for compression in ("zstd", "gzip"):
        dest = tmp_path / f"e-{compression}.xvm2"
        m = write_package(dest, domain_xml=xml, manifest=Manifest("e", disks=[
            DiskInfo("vda", format="raw")]), disk_sources={"vda": lambda: open(empty, "rb")},
            compression=compression)
        assert m.disks[0].size == 0
        assert verify_package(dest) == m


# -- writing fails cleanly ------------------------------------------------------------------


def no_files_left(tmp_path: Path) -> bool:
    return not list(tmp_path.glob("*.xvm2*"))


def test_failing_source_leaves_no_file(tmp_path, images):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.n = 0

        def readable(self):
            return True

        def readinto(self, b):
            self.n += 1
            if self.n > 2:
                raise OSError("disk read error")
            b[:4096] = os.urandom(4096)
            return 4096

    for compression in ("zstd", "gzip"):
        with pytest.raises(OSError, match="disk read error"):
            write_package(tmp_path / "p.xvm2", domain_xml=DOMAIN, manifest=manifest(),
                          disk_sources={"vda": lambda: open(images["vda"], "rb"),
                                        "vdb": Broken}, compression=compression)
        assert no_files_left(tmp_path)


def test_progress_may_stop_the_export(tmp_path, images):
    class Stop(Exception):
        pass

    def progress(done):
        raise Stop

    with pytest.raises(Stop):
        write_package(tmp_path / "p.xvm2", domain_xml=DOMAIN, manifest=manifest(),
                      disk_sources=sources(images), progress=progress)
    assert no_files_left(tmp_path)


@pytest.mark.parametrize("change, message", [
    (dict(compression="xz"), "compression must be one of"),
    (dict(manifest=manifest(name=" ")), "needs a name"),
    (dict(manifest=manifest(disks=[DiskInfo("vda", format="qcow2")])), "images are given for"),
    (dict(manifest=manifest(disks=[DiskInfo("vda", format="vmdk"), DiskInfo("vdb")])),
     "format 'vmdk'"),
    (dict(manifest=manifest(disks=[DiskInfo("vda"), DiskInfo("vda")])), "appears twice"),
    (dict(domain_xml=DOMAIN.replace("dev='vdb'", "dev='vdc'")), "do not match"),
    (dict(domain_xml="<domain><name>x</name>"), "not well-formed"),
    (dict(domain_xml="<network/>"), "<domain> root"),
])
def test_bad_write_requests(tmp_path, images, change, message):
    kw = dict(domain_xml=DOMAIN, manifest=manifest(), disk_sources=sources(images))
    kw.update(change)
    with pytest.raises(InvalidInput, match=message):
        write_package(tmp_path / "p.xvm2", **kw)
    assert no_files_left(tmp_path)


def test_disk_declared_qcow2_must_be_qcow2(tmp_path, images):
    swapped = {"vda": images["vdb"], "vdb": images["vda"]}
    with pytest.raises(InvalidInput, match="declared qcow2 but its image is not qcow2"):
        write_package(tmp_path / "p.xvm2", domain_xml=DOMAIN, manifest=manifest(),
                      disk_sources=sources(swapped))
    assert no_files_left(tmp_path)


@needs_qemu_img
def test_qcow2_overlay_is_refused(tmp_path, images):
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(images["vda"]), "-F", "qcow2", str(overlay))
    with pytest.raises(InvalidInput, match="backing file"):
        write_package(tmp_path / "p.xvm2", domain_xml=DOMAIN, manifest=manifest(),
                      disk_sources=sources({"vda": overlay, "vdb": images["vdb"]}))
    assert no_files_left(tmp_path)


def test_second_writer_of_the_same_package_is_refused(tmp_path, images):
    dest = tmp_path / "p.xvm2"
    with PartFile(tmp_path / "p.xvm2.part", "busy"):
        with pytest.raises(Conflict, match="already being written"):
            write_package(dest, domain_xml=DOMAIN, manifest=manifest(),
                          disk_sources=sources(images))
    assert not dest.exists()


def test_concurrent_exports_to_different_files(tmp_path, images):
    results = {}

    def run(i):
        results[i] = build(tmp_path, images, name=f"p{i}.xvm2")[1]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.disks[1].sha256 for r in results.values()}) == 1


# -- XVM2 packages made elsewhere -----------------------------------------------------------


def xvm2_elsewhere(tmp_path: Path, images: dict[str, Path], manifest_lines: list[str] | None,
                   prefix: str = "", extra: list[tuple[tarfile.TarInfo, bytes]] = ()) -> Path:
    """An XVM2 package as Enomalism 2 or Archipel made it: gzip images named after the disk
    files, description.xml with the original paths, maybe a MANIFEST, no enomalism.json."""
    xml = DOMAIN.replace("web-root.qcow2", "root.qcow2").replace("/dev/vg0/web-data", "/x/data.raw")
    entries = [(regular(prefix + "description.xml"), xml.encode())]
    # image members in the opposite order of the disks: pairing goes by name
    entries.append((regular(prefix + "data.raw.gz"), gzip.compress(images["vdb"].read_bytes())))
    entries.append((regular(prefix + "root.qcow2.gz"), gzip.compress(images["vda"].read_bytes())))
    if manifest_lines is not None:
        entries.append((regular(prefix + "MANIFEST"), "\n".join(manifest_lines).encode()))
    return write_tar(tmp_path / "old.xvm2", entries + list(extra))


def test_xvm2_package_made_elsewhere(tmp_path, images):
    path = xvm2_elsewhere(tmp_path, images,
                          ["description.xml", "data.raw.gz", "root.qcow2.gz", "MANIFEST"])
    m, xml = read_package(path)
    assert (m.name, m.description, m.virt_class, m.arch) == ("web", "a web server", "kvm",
                                                             "x86_64")
    vda, vdb = m.disks
    assert (vda.target, vda.member, vda.format, vda.compression) == (
        "vda", "root.qcow2.gz", "qcow2", "gzip")
    assert vda.virtual_size == 64 << 20 and vda.size is None and vda.sha256 is None
    assert (vdb.target, vdb.member, vdb.format, vdb.virtual_size) == (
        "vdb", "data.raw.gz", "raw", None)
    measured = verify_package(path)
    raw = images["vdb"].read_bytes()
    assert measured.disks[1].sha256 == hashlib.sha256(raw).hexdigest()
    assert measured.disks[1].size == measured.disks[1].virtual_size == len(raw)
    with open_disk(path, "vdb") as disk:
        assert disk.read() == raw


def test_archipel_style_package_without_manifest(tmp_path, images):
    """Archipel's writer adds no MANIFEST, prefixes members with ./ and adds snapshot XML."""
    snapshot = (regular("./snapshot-0.xml"), b"<domainsnapshot/>")
    path = xvm2_elsewhere(tmp_path, images, None, prefix="./", extra=[snapshot])
    m, _ = read_package(path)
    assert [(d.target, d.member) for d in m.disks] == [("vda", "root.qcow2.gz"),
                                                       ("vdb", "data.raw.gz")]


def test_sha1sum_style_manifest_lines(tmp_path, images):
    lines = [f"{'ab' * 20}  {n}" for n in ("description.xml", "data.raw.gz", "root.qcow2.gz")]
    m, _ = read_package(xvm2_elsewhere(tmp_path, images, lines))
    assert len(m.disks) == 2


def test_disks_pair_in_order_when_names_do_not_match(tmp_path, images):
    xml = DOMAIN.replace("web-root.qcow2", "zzz").replace("/dev/vg0/web-data", "/x/yyy")
    path = write_tar(tmp_path / "o.xvm2", [
        (regular("description.xml"), xml.encode()),
        (regular("a.gz"), gzip.compress(images["vda"].read_bytes())),
        (regular("b.gz"), gzip.compress(images["vdb"].read_bytes())),
    ])
    m, _ = read_package(path)
    assert [(d.target, d.member, d.format) for d in m.disks] == [
        ("vda", "a.gz", "qcow2"), ("vdb", "b.gz", "raw")]


def test_xvm2_with_fewer_images_than_disks(tmp_path, images):
    path = write_tar(tmp_path / "o.xvm2", [
        (regular("description.xml"), DOMAIN.encode()),
        (regular("root.qcow2.gz"), gzip.compress(images["vda"].read_bytes())),
        (regular("README"), b"not an image"),
    ])
    with pytest.raises(InvalidInput, match="has 2 disks but the package holds 1 compressed"):
        read_package(path)


# -- bad archives ---------------------------------------------------------------------------


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize("entry, message", [
    ((regular("/etc/cron.d/evil"), b"x"), "absolute path"),
    ((regular("../../evil"), b"x"), "'..'"),
    ((regular("./a/../../evil"), b"x"), "'..'"),
    ((special("evil", tarfile.SYMTYPE, "/etc/passwd"), b""), "symbolic link"),
    ((special("evil", tarfile.LNKTYPE, "description.xml"), b""), "hard link"),
    ((special("evil", tarfile.CHRTYPE), b""), "device file"),
    ((special("evil", tarfile.BLKTYPE), b""), "device file"),
    ((special("evil", tarfile.FIFOTYPE), b""), "FIFO"),
    ((special("sub", tarfile.DIRTYPE), b""), "directory"),
    ((regular("sub/x"), b"x"), "not at the top"),
    ((regular("evil\\x"), b"x"), "backslashes"),
    ((regular("vdb.raw.zst"), b"again"), "appears twice"),
    ((regular("extra.txt"), b"x"), "not listed in its MANIFEST"),
])
def test_unsafe_members_are_refused(tmp_path, images, entry, message):
    dest, _ = build(tmp_path, images)
    bad = rebuild(dest, tmp_path / "bad.tar", extra=[entry])
    with pytest.raises(InvalidInput, match=message):
        read_package(bad)
    with pytest.raises(InvalidInput, match=message):
        open_disk(bad, "vda")


def test_manifest_listing_a_missing_member(tmp_path, images):
    dest, _ = build(tmp_path, images)
    content = members(dest)
    listing = content["MANIFEST"] + b"vdc.raw.zst\n"
    with pytest.raises(InvalidInput, match="MANIFEST lists 'vdc.raw.zst', which the package"):
        read_package(rebuild(dest, tmp_path / "bad.tar", {"MANIFEST": listing}))


def edit_json(dest: Path, tmp_path: Path, edit) -> Path:
    doc = json.loads(members(dest)["enomalism.json"])
    edit(doc)
    return rebuild(dest, tmp_path / "bad.tar", {"enomalism.json": json.dumps(doc).encode()})


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["disks"].pop(), "lists 1 disks but description.xml has 2"),
    (lambda d: d["disks"][1].update(target="vdc"), "disk vdc of enomalism.json is not a disk"),
    (lambda d: d["disks"][1].update(member="vdz.raw.zst"), "'vdz.raw.zst' is missing"),
    (lambda d: d["disks"][1].update(member="MANIFEST"), "'MANIFEST' is missing"),
    (lambda d: d["disks"][1].update(target="vda"), "vda appears twice"),
    (lambda d: d["disks"][0].update(format="vmdk"), "format 'vmdk'"),
    (lambda d: d["disks"][0].update(size=-1), "must not be negative"),
    (lambda d: d["disks"][0].update(size="12"), "must be an integer"),
    (lambda d: d["disks"][0].update(sha256="abc"), "sha256 is not 64"),
    (lambda d: d.update(format=2), "format 2 is newer"),
    (lambda d: d.pop("format"), "no integer \"format\""),
    (lambda d: d.update(name=""), "\"name\" is empty"),
    (lambda d: d.update(disks={}), "not a list"),
])
def test_manifest_that_does_not_match(tmp_path, images, edit, message):
    dest, _ = build(tmp_path, images)
    with pytest.raises(InvalidInput, match=message):
        read_package(edit_json(dest, tmp_path, edit))


def test_manifest_that_is_not_json(tmp_path, images):
    dest, _ = build(tmp_path, images)
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_package(rebuild(dest, tmp_path / "bad.tar", {"enomalism.json": b"{nope"}))


def test_wrong_sha256_is_found_by_verify(tmp_path, images):
    dest, _ = build(tmp_path, images)
    bad = edit_json(dest, tmp_path, lambda d: d["disks"][1].update(sha256="0" * 64))
    read_package(bad)  # the archive itself is sound
    with pytest.raises(InvalidInput, match="vdb .* does not match its sha256"):
        verify_package(bad)


def test_wrong_size_is_found_while_streaming(tmp_path, images):
    dest, m = build(tmp_path, images)
    bad = edit_json(dest, tmp_path, lambda d: d["disks"][1].update(size=m.disks[1].size + 1))
    with open_disk(bad, "vdb") as disk, pytest.raises(InvalidInput, match="short of the"):
        while disk.read(1 << 20):
            pass
    bad = edit_json(dest, tmp_path, lambda d: d["disks"][1].update(size=10))
    with open_disk(bad, "vdb") as disk, pytest.raises(InvalidInput, match="longer than"):
        disk.read(1 << 20)


def test_corrupt_zstd_image(tmp_path, images):
    dest, _ = build(tmp_path, images)
    data = bytearray(members(dest)["vdb.raw.zst"])
    data[len(data) // 2: len(data) // 2 + 64] = os.urandom(64)
    bad = rebuild(dest, tmp_path / "bad.tar", {"vdb.raw.zst": bytes(data)})
    with pytest.raises(InvalidInput, match="vdb .* corrupt"):
        verify_package(bad)


def test_truncated_zstd_image(tmp_path, images):
    dest, _ = build(tmp_path, images)
    data = members(dest)["vdb.raw.zst"]
    bad = rebuild(dest, tmp_path / "bad.tar", {"vdb.raw.zst": data[: len(data) // 2]})
    with pytest.raises(InvalidInput, match="vdb"):
        verify_package(bad)


def test_corrupt_gzip_image(tmp_path, images):
    dest, _ = build(tmp_path, images, "gzip")
    data = bytearray(members(dest)["vdb.raw.gz"])
    data[-8:] = bytes(8)  # CRC and length
    bad = rebuild(dest, tmp_path / "bad.tar", {"vdb.raw.gz": bytes(data)})
    with pytest.raises(InvalidInput, match="vdb .* corrupt"):
        verify_package(bad)


def test_compression_is_read_from_magic_bytes_not_names(tmp_path, images):
    """A zstd image named .gz is read as zstd; an image in neither format is refused."""
    dest, m = build(tmp_path, images)
    zst = members(dest)["vdb.raw.zst"]
    ok = edit_json(dest, tmp_path, lambda d: d["disks"][1].update(compression="gzip"))
    got, _ = read_package(ok)
    assert got.disks[1].compression == "zstd"
    plain = rebuild(dest, tmp_path / "plain.tar", {"vdb.raw.zst": images["vdb"].read_bytes()})
    with pytest.raises(InvalidInput, match="neither gzip nor zstd"):
        read_package(plain)
    assert zst[:4] == archive.ZSTD_MAGIC


def test_description_with_entities_is_refused(tmp_path, images):
    dest, _ = build(tmp_path, images)
    evil = (b'<?xml version="1.0"?><!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<domain><name>&x;</name></domain>")
    with pytest.raises(InvalidInput, match="DTD"):
        read_package(rebuild(dest, tmp_path / "bad.tar", {"description.xml": evil}))


def test_qcow2_image_with_backing_file_in_a_package(tmp_path, images):
    """An image made elsewhere that would make qemu open a host file is refused on import."""
    header = bytearray(b"QFI\xfb" + (3).to_bytes(4, "big") + (512).to_bytes(8, "big")
                       + bytes(200))
    path = write_tar(tmp_path / "o.xvm2", [
        (regular("description.xml"), DOMAIN.replace("type='block' device='disk'",
                                                    "type='block' device='lun'").encode()),
        (regular("root.qcow2.gz"), gzip.compress(bytes(header) + b"/etc/shadow")),
    ])
    with pytest.raises(InvalidInput, match="backing file"):
        read_package(path)


@pytest.mark.parametrize("content, message", [
    (b"", "not a valid tar"),
    (b"hello, this is not a tar file at all" * 40, "not a valid tar"),
    (gzip.compress(b"x" * 1000), "compressed tar"),
    (zstandard.ZstdCompressor().compress(b"x" * 1000), "compressed tar"),
])
def test_not_a_package(tmp_path, content, message):
    path = tmp_path / "x.xvm2"
    path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        read_package(path)


def test_truncated_archive(tmp_path, images):
    dest, _ = build(tmp_path, images)
    data = dest.read_bytes()
    cut = tmp_path / "cut.xvm2"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput):
        read_package(cut)


def test_package_without_description(tmp_path, images):
    dest, _ = build(tmp_path, images)
    listing = b"vda.qcow2.zst\nvdb.raw.zst\nenomalism.json\n"
    bad = rebuild(dest, tmp_path / "bad.tar", {"description.xml": None, "MANIFEST": listing})
    with pytest.raises(InvalidInput, match="no description.xml"):
        read_package(bad)


def test_missing_package_and_unknown_disk(tmp_path, images):
    with pytest.raises(NotFound):
        read_package(tmp_path / "nope.xvm2")
    dest, _ = build(tmp_path, images)
    with pytest.raises(NotFound, match="no disk 'vdz'"):
        open_disk(dest, "vdz")


def test_too_many_members(tmp_path):
    entries = [(regular("description.xml"), DOMAIN.encode())]
    entries += [(regular(f"f{i}"), b"") for i in range(archive.MAX_MEMBERS + 1)]
    with pytest.raises(InvalidInput, match="more than"):
        read_package(write_tar(tmp_path / "many.tar", entries))


def test_file_sha256(tmp_path, images):
    dest, _ = build(tmp_path, images)
    assert archive.file_sha256(dest) == hashlib.sha256(dest.read_bytes()).hexdigest()


def test_manifest_json_round_trip():
    m = manifest()
    assert Manifest.from_json(json.dumps(m.to_json())) == m
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_write_package_sha256_is_the_file_sha256(tmp_path, images, compression, monkeypatch):
    """The checksum computed while writing (disk data hashed back from the page cache once
    its header is known) is the file's: every member, the patched headers, the end blocks."""
    monkeypatch.setattr(archive, "CHUNK", 64 << 10)  # ranges read back in many pieces
    dest = tmp_path / "p.xvm2"
    m, digest = archive.write_package_sha256(dest, domain_xml=DOMAIN, manifest=manifest(),
                                             disk_sources=sources(images),
                                             compression=compression)
    assert digest == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert read_package(dest)[0].disks == m.disks
    assert dest.stat().st_size % archive.RECORD == 0


def test_write_package_sha256_failure_leaves_nothing(tmp_path, images):
    def broken() -> io.BytesIO:
        raise OSError("disk went away")

    srcs = {**sources(images), "vdb": broken}
    with pytest.raises(OSError, match="went away"):
        archive.write_package_sha256(tmp_path / "p.xvm2", domain_xml=DOMAIN,
                                     manifest=manifest(), disk_sources=srcs)
    assert list(tmp_path.glob("p.xvm2*")) == []
