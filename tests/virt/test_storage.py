"""enomalism.virt.storage against the real libvirtd (qemu:///system).

Every test works in storage pools of its own: type dir, named `enomalism-test-<random>`, in a
fresh temporary directory. The `make_pool` finalizer deletes every volume in those pools (all of
them made by the test), destroys and undefines the pools and removes the directories, whatever
happened; nothing else on the host is looked at. pick_pool's choices among many pools, and pool
types this host does not have (logical), are tested on libvirt's test driver with a host file of
the test's own.

The throughput test prints figures (upload and download against `dd ... conv=fdatasync` to the
same disk); it asserts nothing about speed.
"""

import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from enomalism.errors import Conflict, HypervisorError, InvalidInput, InvalidState, NotFound
from enomalism.virt import storage
from enomalism.virt.domxml import DomainXML

pytestmark = pytest.mark.integration

URI = "qemu:///system"
PREFIX = "enomalism-test-"
MiB = 1 << 20
START_LIBVIRT = Path(__file__).resolve().parents[2] / "scripts" / "start-libvirt.sh"


def unique(kind: str) -> str:
    return f"{PREFIX}{kind}-{secrets.token_hex(4)}"


# -- fixtures -------------------------------------------------------------------------------------

class Host:
    """The test's connection to qemu:///system, reopened if libvirtd restarted meanwhile (other
    test suites on this host stop and start it): waits for it up to a minute, starting it with
    the project's script when it is not running."""

    def __init__(self) -> None:
        self._conn = libvirt.open(URI)

    @property
    def conn(self) -> libvirt.virConnect:
        try:
            if self._conn.isAlive():
                return self._conn
        except libvirt.libvirtError:
            pass
        deadline = time.monotonic() + 60
        while True:
            try:
                self._conn = libvirt.open(URI)
                return self._conn
            except libvirt.libvirtError:
                if time.monotonic() > deadline:
                    raise
            subprocess.run([str(START_LIBVIRT)], check=False, timeout=120,
                           capture_output=True)
            time.sleep(0.5)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come as exceptions
    try:
        h = Host()
    except libvirt.libvirtError as e:
        what = ("libvirtd is not installed" if not shutil.which("libvirtd")
                else "libvirtd is not running or has no QEMU driver")
        pytest.skip(f"{URI} cannot be opened: {what} ({e.get_error_message()}); "
                    "scripts/start-libvirt.sh starts it")
    yield h
    try:
        h.conn.close()
    except libvirt.libvirtError:
        pass


@pytest.fixture
def conn(host: Host) -> libvirt.virConnect:
    return host.conn


@pytest.fixture
def make_pool(host: Host) -> Iterator[Callable[..., libvirt.virStoragePool]]:
    """make_pool() -> a new running dir pool of the test's own, transient (nothing of it is
    written to libvirt's configuration); make_pool(start=False) -> a defined, stopped one."""
    made: list[tuple[str, str]] = []

    def make(start: bool = True) -> libvirt.virStoragePool:
        d = tempfile.mkdtemp(prefix=PREFIX)
        os.chmod(d, 0o755)
        name = unique("pool")
        made.append((name, d))
        xml = f"<pool type='dir'><name>{name}</name><target><path>{d}</path></target></pool>"
        if start:
            return host.conn.storagePoolCreateXML(xml, 0)
        return host.conn.storagePoolDefineXML(xml, 0)

    yield make
    problems = []
    for name, d in made:
        try:
            try:
                pool = host.conn.storagePoolLookupByName(name)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                pool = None
            if pool is not None:
                assert pool.name().startswith(PREFIX)
                persistent = pool.isPersistent()  # a transient pool is gone once destroyed
                if pool.isActive():
                    pool.refresh(0)
                    for vol in pool.listAllVolumes(0):
                        vol.delete(0)
                    pool.destroy()
                if persistent:
                    pool.undefine()
        except Exception as e:  # every pool gets its chance
            problems.append(f"pool {name}: {e}")
        shutil.rmtree(d, ignore_errors=True)
    assert not problems, f"clean-up left things behind: {problems}"


@pytest.fixture
def pool(make_pool: Callable[..., libvirt.virStoragePool]) -> libvirt.virStoragePool:
    return make_pool()


class Way:
    """How an upload reaches the volume: "file" (libvirtd is local, so the volume's file is
    written in place; `opened` records that it was) or "stream" (libvirt's upload stream, what
    a remote host or a file we may not write gets; forced here by refusing the file, unless
    `force` is false)."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch, force: bool = True) -> None:
        self.name, self.opened = name, []
        real = storage._open_volume_file

        def open_volume_file(*args):
            target = real(*args) if name == "file" or not force else None
            self.opened.append(target)
            return target

        monkeypatch.setattr(storage, "_open_volume_file", open_volume_file)

    def check(self) -> None:
        """The upload went the way it was meant to."""
        assert self.opened
        assert all((t is not None) == (self.name == "file") for t in self.opened)


@pytest.fixture(params=["file", "stream"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Way:
    return Way(request.param, monkeypatch)


# -- helpers --------------------------------------------------------------------------------------

def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def img_info(path: str, chain: bool = False) -> dict | list:
    args = ["qemu-img", "info", "--output=json", "-U"]
    if chain:
        args.append("--backing-chain")
    return json.loads(run(*args, path))


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def make_raw(path: Path, size: int) -> Path:
    """Random data with zero stretches in between (so holes are exercised)."""
    with open(path, "wb") as f:
        left, i = size, 0
        while left:
            n = min(left, 3 * MiB + 12345)
            f.write(os.urandom(n) if i % 3 != 1 else bytes(n))
            left -= n
            i += 1
    return path


def make_qcow2(path: Path, virtual: int = 64 * MiB) -> Path:
    run("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(virtual))
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0xab 0 4M", "-c", "write -P 0xcd 16M 1M",
        str(path))
    return path


def upload_file(pool: libvirt.virStoragePool, name: str, path: Path, fmt: str, **kw) -> str:
    with open(path, "rb") as f:
        return storage.upload(pool, name, f, size=path.stat().st_size, fmt=fmt, **kw)


def names(pool: libvirt.virStoragePool) -> list[str]:
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0))


# -- upload ---------------------------------------------------------------------------------------

def test_upload_raw(pool, tmp_path, way):
    src = make_raw(tmp_path / "disk.raw", 10 * MiB + 4096)
    seen = []
    path = upload_file(pool, "disk.raw", src, "raw", progress=seen.append)
    way.check()
    assert path == storage.planned_path(pool, "disk.raw")
    assert sha256(path) == sha256(src)
    info = img_info(path)
    assert info["format"] == "raw" and info["virtual-size"] == src.stat().st_size
    assert seen and seen[-1] == src.stat().st_size and seen == sorted(seen)
    vi = storage.volume_info(pool.connect(), path)
    assert (vi.format, vi.capacity, vi.backing, vi.pool, vi.name) == \
        ("raw", src.stat().st_size, None, pool.name(), "disk.raw")
    assert vi.allocation < vi.capacity  # the zero stretches became holes


def test_upload_qcow2_is_usable(pool, tmp_path, way):
    src = make_qcow2(tmp_path / "disk.qcow2", 64 * MiB)
    path = upload_file(pool, "disk.qcow2", src, "qcow2")
    way.check()
    assert sha256(path) == sha256(src)
    info = img_info(path)
    assert info["format"] == "qcow2" and info["virtual-size"] == 64 * MiB
    assert "backing-filename" not in info
    run("qemu-img", "check", "-q", path)
    run("qemu-img", "compare", "-q", str(src), path)
    out = run("qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0xcd 16M 1M", path)
    assert "read 1048576/1048576" in out
    vi = storage.volume_info(pool.connect(), path)
    assert (vi.format, vi.capacity) == ("qcow2", 64 * MiB)  # libvirt sees the header


def test_upload_name_taken_is_a_conflict_and_keeps_the_volume(pool, tmp_path):
    src = make_raw(tmp_path / "a.raw", MiB)
    path = upload_file(pool, "taken.img", src, "raw")
    with pytest.raises(Conflict):
        upload_file(pool, "taken.img", make_raw(tmp_path / "b.raw", MiB), "raw")
    assert names(pool) == ["taken.img"] and sha256(path) == sha256(src)


@pytest.mark.parametrize("case", ["short", "long", "not-qcow2", "backing", "bad-name", "format",
                                  "size"])
def test_bad_uploads_leave_no_volume(pool, tmp_path, case, way):
    raw = make_raw(tmp_path / "d.raw", 3 * MiB)
    size, fmt, name, data = raw.stat().st_size, "raw", "bad.img", raw.read_bytes()
    if case == "short":
        size += 1
    elif case == "long":
        size -= 1
    elif case == "not-qcow2":
        fmt = "qcow2"
    elif case == "backing":
        base = make_qcow2(tmp_path / "base.qcow2")
        run("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
            str(tmp_path / "top.qcow2"))
        data, fmt = (tmp_path / "top.qcow2").read_bytes(), "qcow2"
        size = len(data)
    elif case == "bad-name":
        name = "../escape.img"
    elif case == "format":
        fmt = "vmdk"
    elif case == "size":
        size = 0
    with pytest.raises(InvalidInput) as e:
        storage.upload(pool, name, io.BytesIO(data), size=size, fmt=fmt)
    print(e.value.message)
    assert names(pool) == []


def test_cancelled_upload_leaves_no_volume(pool, tmp_path, way):
    src = make_raw(tmp_path / "big.raw", 40 * MiB)
    seen: list[int] = []
    with pytest.raises(storage.StorageCancelled):
        upload_file(pool, "cancelled.img", src, "raw", progress=seen.append,
                    cancelled=lambda: len(seen) >= 2)
    assert seen == [storage.CHUNK, 2 * storage.CHUNK]  # stopped mid-way
    assert names(pool) == []


def test_a_callback_raising_cleans_up_and_passes_its_exception_through(pool, tmp_path, way):
    class JobStop(Exception):
        pass

    def progress(n: int) -> None:
        if n >= 2 * storage.CHUNK:
            raise JobStop()

    src = make_raw(tmp_path / "big.raw", 20 * MiB)
    with pytest.raises(JobStop):
        upload_file(pool, "stopped.img", src, "raw", progress=progress)
    assert names(pool) == []


def test_the_file_written_in_place_must_be_the_volume_libvirt_describes(pool):
    """A local URI does not prove libvirtd sees our files (a container may hold the host's
    libvirt socket): the file opened must carry the times libvirt reports for the volume,
    else the upload streams. Another filesystem behind the same path is played by a view of
    the volume whose description carries other times."""
    size = MiB
    vol = pool.createXML(f"<volume><name>same.raw</name><capacity>{size}</capacity>"
                         "<allocation>0</allocation><target><format type='raw'/></target>"
                         "</volume>", 0)

    class ElsewhereView:
        def XMLDesc(self, flags: int) -> str:  # noqa: N802
            return re.sub(r"<mtime>[0-9.]+</mtime>", "<mtime>1.000000001</mtime>",
                          vol.XMLDesc(flags))

    target = storage._open_volume_file(pool.connect(), vol, size, "test")
    try:
        assert target is not None  # the very file: written in place
    finally:
        if target is not None:
            os.close(target.fd)
    assert storage._open_volume_file(pool.connect(), ElsewhereView(), size, "test") is None
    assert storage._open_volume_file(pool.connect(), vol, size + 1, "test") is None
    assert storage._ns("1795818611.16435") == 1795818611164350000


class Failing(io.RawIOBase):
    """A source that breaks after `after` bytes, like a disk that fails mid-read."""

    def __init__(self, after: int) -> None:
        self.left = after

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        n = min(len(b), self.left)
        b[:n] = os.urandom(n)
        self.left -= n
        return n


def test_a_source_that_fails_mid_way_leaves_no_volume_and_no_reader(pool, way):
    import threading

    with pytest.raises(InvalidInput) as e:
        storage.upload(pool, "broken.img", io.BufferedReader(Failing(5 * MiB)),
                       size=20 * MiB, fmt="raw")
    way.check()
    assert "reading the image failed" in e.value.message and "Input/output" in e.value.message
    assert names(pool) == []
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]


def test_a_cancelled_upload_stops_its_reader(pool, tmp_path):
    import threading

    src = make_raw(tmp_path / "big.raw", 40 * MiB)
    with pytest.raises(storage.StorageCancelled):
        upload_file(pool, "cancelled.img", src, "raw", cancelled=lambda: True)
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
    assert names(pool) == []


@pytest.fixture
def small_pool(host: Host, tmp_path: Path) -> Iterator[libvirt.virStoragePool]:
    """A pool on a 4 MiB tmpfs of its own, to fill up."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mnt)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"a full disk needs a small tmpfs, and mounting one failed (not root?): {e}")
    name = unique("small")
    pool = host.conn.storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{mnt}</path></target></pool>", 0)
    try:
        yield pool
    finally:
        try:
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_fails_the_upload_and_leaves_no_volume(small_pool, tmp_path, way):
    src = tmp_path / "big.raw"
    src.write_bytes(os.urandom(10 * MiB))
    with pytest.raises(HypervisorError) as e:
        upload_file(small_pool, "toobig.img", src, "raw")
    way.check()
    print(e.value.message)
    assert "toobig.img" in e.value.message
    assert names(small_pool) == []


def test_an_upload_over_tcp_streams_into_the_same_volume(pool, tmp_path, monkeypatch):
    """The remote path for real: libvirtd reached over qemu+tcp is not local, so the upload
    goes through its stream even though the file is on this machine."""
    tcp = "qemu+tcp://127.0.0.1/system"
    try:
        remote = libvirt.open(tcp)
    except libvirt.libvirtError as e:
        pytest.skip(f"libvirtd does not listen on 127.0.0.1:16509 ({e.get_error_message()}); "
                    "ENOMALISM_LIBVIRT_TCP=1 scripts/start-libvirt.sh starts it so (make test "
                    "does)")
    try:
        way = Way("stream", monkeypatch, force=False)
        src = make_raw(tmp_path / "disk.raw", 5 * MiB + 512)
        path = upload_file(remote.storagePoolLookupByName(pool.name()), "tcp.raw", src, "raw")
        way.check()
        assert sha256(path) == sha256(src)
    finally:
        remote.close()


# -- overlay and clone ----------------------------------------------------------------------------

@pytest.mark.parametrize("base_fmt", ["qcow2", "raw"])
def test_overlay_backing_chain_and_base_untouched(pool, tmp_path, capsys, base_fmt):
    src = (make_qcow2(tmp_path / "base.qcow2", 256 * MiB) if base_fmt == "qcow2"
           else make_raw(tmp_path / "base.raw", 32 * MiB))
    base = upload_file(pool, f"base.{base_fmt}", src, base_fmt)
    before = sha256(base)
    virtual = storage.volume_info(pool.connect(), base).capacity
    t = time.perf_counter()
    top = storage.overlay(pool, "vm1.qcow2", base, base_fmt, virtual)
    took = time.perf_counter() - t
    with capsys.disabled():
        print(f"\noverlay on a {virtual // MiB} MiB {base_fmt} base made in {took * 1000:.1f} ms")
    chain = img_info(top, chain=True)
    assert [c["format"] for c in chain] == ["qcow2", base_fmt]
    assert chain[0]["filename"] == top and chain[1]["filename"] == base
    assert chain[0]["full-backing-filename"] == base
    assert chain[0]["virtual-size"] == virtual
    vi = storage.volume_info(pool.connect(), top)
    assert (vi.format, vi.backing, vi.capacity) == ("qcow2", base, virtual)
    assert vi.allocation < MiB  # nothing copied
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 2M", top)
    assert sha256(base) == before
    assert "read 2097152/2097152" in run("qemu-io", "-r", "-f", "qcow2", "-c",
                                         "read -P 0x5a 0 2M", top)
    # and a second overlay on the same base sees the base, not the first overlay's write
    other = storage.overlay(pool, "vm2.qcow2", base, base_fmt)
    run("qemu-img", "compare", "-q", "-f", base_fmt, "-F", "qcow2", base, other)


def test_overlay_refusals(pool, tmp_path):
    base = upload_file(pool, "base.raw", make_raw(tmp_path / "b.raw", 4 * MiB), "raw")
    with pytest.raises(InvalidInput):
        storage.overlay(pool, "small.qcow2", base, "raw", MiB)
    with pytest.raises(InvalidInput):
        storage.overlay(pool, "x.qcow2", base, "vmdk", 4 * MiB)
    with pytest.raises(NotFound):
        storage.overlay(pool, "x.qcow2", base + ".missing", "raw", 4 * MiB)
    assert names(pool) == ["base.raw"]


def test_clone_copies_and_flattens_across_pools(make_pool, tmp_path):
    a, b = make_pool(), make_pool()
    raw = upload_file(a, "base.raw", make_raw(tmp_path / "b.raw", 8 * MiB), "raw")
    copy = storage.clone(a, "copy.raw", raw)
    assert sha256(copy) == sha256(raw) and img_info(copy)["format"] == "raw"
    base = upload_file(a, "base.qcow2", make_qcow2(tmp_path / "b.qcow2"), "qcow2")
    top = storage.overlay(a, "top.qcow2", base, "qcow2")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 1M 1M", top)
    flat = storage.clone(b, "flat.qcow2", top)
    assert Path(flat).parent == Path(storage.planned_path(b, "flat.qcow2")).parent
    info = img_info(flat)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    run("qemu-img", "compare", "-q", top, flat)
    as_raw = storage.clone(b, "flat.raw", top, fmt="raw")
    assert img_info(as_raw)["format"] == "raw"
    run("qemu-img", "compare", "-q", "-F", "raw", top, as_raw)
    with pytest.raises(Conflict):
        storage.clone(b, "flat.raw", top)


@pytest.fixture
def domains(host: Host) -> Iterator[list[str]]:
    """UUIDs of domains the test defined; destroyed and undefined afterwards."""
    uuids: list[str] = []
    yield uuids
    for uuid in uuids:
        try:
            dom = host.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError:
            continue
        assert dom.name().startswith(PREFIX)
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def test_a_provisioned_overlay_boots_in_qemu(pool, domains, tmp_path):
    """The pieces together, as provisioning uses them: a base image uploaded, an overlay on it,
    a template's XML rewritten onto the overlay, defined and started by the real QEMU."""
    conn = pool.connect()
    base = upload_file(pool, "base.qcow2", make_qcow2(tmp_path / "b.qcow2", 32 * MiB), "qcow2")
    top = storage.overlay(pool, "vm.qcow2", base, "qcow2")
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    template = DomainXML(
        "<domain type='kvm'><name>template</name>"
        "<uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
        "<emulator>/nonexistent/qemu-kvm</emulator>"
        "<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
        "<source dev='/dev/old/disk'/><target dev='vda' bus='virtio'/></disk>"
        "<interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
        "<graphics type='vnc' port='5999' autoport='no'/></devices></domain>")
    name, uuid = unique("vm"), str(uuidlib.uuid4())
    template.rewrite_for_provision(name=name, uuid=uuid, disk_paths={"vda": top},
                                   disk_formats={"vda": "qcow2"},
                                   domain_type="kvm" if kvm else "qemu")
    dom = conn.defineXMLFlags(template.to_string(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    domains.append(dom.UUIDString())
    dom.create()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    live = DomainXML(dom.XMLDesc(0))
    assert [d.path for d in live.disks()] == [top]
    chain = live.root.find("devices/disk/backingStore/source")
    assert chain is not None and chain.get("file") == base  # QEMU opened the chain
    dom.destroy()


# -- download -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_download_round_trip(pool, tmp_path, fmt):
    src = (make_raw(tmp_path / "d.raw", 13 * MiB + 512) if fmt == "raw"
           else make_qcow2(tmp_path / "d.qcow2"))
    path = upload_file(pool, f"d.{fmt}", src, fmt)
    sink = io.BytesIO()
    seen: list[int] = []
    n = storage.download(pool.connect(), path, sink, progress=seen.append)
    assert n == src.stat().st_size == len(sink.getvalue())
    assert hashlib.sha256(sink.getvalue()).hexdigest() == sha256(src)
    assert seen[-1] == n and seen == sorted(seen)


def test_download_cancelled_and_unknown_path(pool, tmp_path):
    path = upload_file(pool, "d.raw", make_raw(tmp_path / "d.raw", 20 * MiB), "raw")
    seen: list[int] = []
    with pytest.raises(storage.StorageCancelled):
        storage.download(pool.connect(), path, io.BytesIO(), progress=seen.append,
                         cancelled=lambda: bool(seen))
    with pytest.raises(NotFound):
        storage.download(pool.connect(), path + ".nope", io.BytesIO())
    with pytest.raises(NotFound):
        storage.volume_info(pool.connect(), path + ".nope")
    # the volume is still whole and usable after the aborted download
    assert storage.download(pool.connect(), path, io.BytesIO()) == 20 * MiB


def test_delete_is_idempotent(pool, tmp_path):
    path = upload_file(pool, "d.raw", make_raw(tmp_path / "d.raw", MiB), "raw")
    assert storage.delete(pool.connect(), path) is True
    assert storage.delete(pool.connect(), path) is False
    assert names(pool) == []


# -- pick_pool ------------------------------------------------------------------------------------

def test_pick_pool_on_the_real_host(conn, make_pool):
    mine = make_pool()
    assert storage.pick_pool(conn, mine.name()).name() == mine.name()
    stopped = make_pool(start=False)
    with pytest.raises(InvalidState, match="pool-start"):
        storage.pick_pool(conn, stopped.name())
    with pytest.raises(NotFound):
        storage.pick_pool(conn, unique("missing"))


def fake_host(tmp_path: Path, pools: str) -> libvirt.virConnect:
    f = tmp_path / f"host-{secrets.token_hex(3)}.xml"
    f.write_text("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>1</cores>"
                 "<threads>1</threads><active>1</active><mhz>2000</mhz><model>x86_64</model>"
                 f"</cpu><memory>1048576</memory>{pools}</node>")
    return libvirt.open(f"test://{f}")


def dir_pool(name: str) -> str:
    return f"<pool type='dir'><name>{name}</name><target><path>/p/{name}</path></target></pool>"


def test_pick_pool_without_any_pool_tells_how_to_define_one(tmp_path):
    conn = fake_host(tmp_path, "")
    with pytest.raises(InvalidState, match="virsh pool-define-as default dir"):
        storage.pick_pool(conn)
    disk = ("<pool type='disk'><name>sdz</name><source><device path='/dev/sdz'/></source>"
            "<target><path>/dev</path></target></pool>")
    with pytest.raises(InvalidState, match="pool-define-as"):  # a disk pool does not count
        storage.pick_pool(fake_host(tmp_path, disk))


def test_pick_pool_prefers_default_then_the_first_fitting_active_pool(tmp_path):
    lvm = ("<pool type='logical'><name>b-vg</name><source><name>vg</name></source>"
           "<target><path>/dev/vg</path></target></pool>")
    disk = ("<pool type='disk'><name>a-disk</name><source><device path='/dev/sdz'/></source>"
            "<target><path>/dev</path></target></pool>")
    conn = fake_host(tmp_path, disk + dir_pool("c-dir") + lvm)
    assert storage.pick_pool(conn).name() == "b-vg"
    conn.storagePoolDefineXML(dir_pool("a-stopped"), 0)  # inactive: skipped
    assert storage.pick_pool(conn).name() == "b-vg"
    assert storage.pick_pool(conn, "c-dir").name() == "c-dir"
    conn = fake_host(tmp_path, dir_pool("a-dir") + dir_pool("default"))
    assert storage.pick_pool(conn).name() == "default"
    conn.storagePoolLookupByName("default").destroy()
    assert storage.pick_pool(conn).name() == "a-dir"  # a stopped default is passed over
    conn.storagePoolLookupByName("a-dir").destroy()
    with pytest.raises(InvalidState, match="virsh pool-start default"):
        storage.pick_pool(conn)


def test_overlay_is_refused_where_the_pool_cannot_hold_backing_files(tmp_path):
    lvm = ("<pool type='logical'><name>vg</name><source><name>vg</name></source>"
           "<target><path>/dev/vg</path></target></pool>")
    conn = fake_host(tmp_path, lvm + dir_pool("files"))
    vg = conn.storagePoolLookupByName("vg")
    assert not storage.supports_overlay(vg)
    assert storage.supports_overlay(conn.storagePoolLookupByName("files"))
    assert storage.planned_path(vg, "disk1") == "/dev/vg/disk1"
    with pytest.raises(InvalidState, match="copy the image instead"):
        storage.overlay(vg, "top", "/dev/vg/base", "raw", MiB)


# -- sparse sending, without libvirt --------------------------------------------------------------

class RecordingStream:
    def __init__(self, limit: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.data = bytearray()
        self.limit = limit  # send() takes at most this many bytes per call, like a real one may

    def send(self, data: bytes) -> int:
        n = len(data) if self.limit is None else min(self.limit, len(data))
        self.calls.append(("data", n))
        self.data += data[:n]
        return n

    def sendHole(self, length: int, flags: int = 0) -> int:  # noqa: N802 (libvirt's name)
        self.calls.append(("hole", length))
        self.data += bytes(length)
        return 0


def test_sparse_send_splits_zero_blocks_into_holes():
    B = storage.BLOCK
    buf = os.urandom(B) + bytes(3 * B) + os.urandom(10) + bytes(B - 10) + os.urandom(5)
    s = RecordingStream()
    storage._send_sparse(s, buf)
    assert bytes(s.data) == buf
    assert s.calls == [("data", B), ("hole", 3 * B), ("data", B + 5)]
    s = RecordingStream()
    storage._send_sparse(s, bytes(2 * B + 7))
    assert s.calls == [("hole", 2 * B + 7)]
    s = RecordingStream(limit=1000)  # partial sends are continued
    storage._send_sparse(s, os.urandom(2500))
    assert s.calls == [("data", 1000), ("data", 1000), ("data", 500)]
