"""Provisioning a 1 GiB package onto qemu:///system, against `cp` and `dd` of the same bytes.

Two figures, each a ratio against a baseline measured in the same run, interleaved with it:

1. **Provision from a cached package, base volume already in the pool**: the whole
   transaction (`POST /rest/machine/<host>/actions/provision/` until `GET /rest/transaction/
   <txid>/` says done, polled every 10 ms) against `cp` of the same 1 GiB image file on the
   same disk. The disk is a qcow2 overlay on the pool's base volume, so the transaction should
   not depend on the image's size (target: under 1 s).
2. **Where a full copy is needed**: (a) the same provision onto a pool that does not hold the
   base yet (the transaction then streams the image out of the package into a new base volume
   through libvirt's storage API, then makes the overlay), and (b) `storage.clone` of a base
   volume into another pool (libvirt's createXMLFrom); each as bytes per second against the
   disk's own sequential write speed, `dd if=/dev/zero of=<file on the same disk> bs=4M
   count=256 conv=fdatasync` (target: at least 80 percent); the provision of (a) is polled
   every 50 ms. Beside them, (c) the same image file uploaded by plain libvirt-python (no
   enomalism code: `newStream`, `vol.upload` with VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM, 1 MiB
   `send`s, `finish`) into the same pool: the ceiling of libvirt's stream path, which (a) goes
   through, with (a) reported against it too. (The sparse-stream flag, which (a) uses as well,
   made libvirtd's side about half as costly as a plain stream here, even for an image without
   holes.)

The images: figure 1 uses a sparse 1 GiB raw image holding 200 MiB of random blocks and 300 MiB
of the host's own binaries (the rest holes); figure 2 a 1 GiB raw image of random bytes, so that
every byte is really copied (a sparse upload sends holes as holes). Each is packaged once with
`archive.write_package`, served by `python -m http.server` in its own process, added as a feed
and retrieved through the server, and provisioned once before the timed runs.

The server is `enomalism serve --hypervisor qemu:///system` in its own process (bench/common.py).
Everything lives in two transient dir pools named `enomalism-bench-<random>-a/-b` whose target
directories are temporary directories: the machines made here are deleted (totaldelete through
the API, then by UUID through libvirt if anything is left), then every volume of those pools,
the pools, the temporary directories and the servers, whatever happens. Nothing else is touched.

Never asserts: a benchmark, not a test. Takes 2 to 4 minutes.
"""

import argparse
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ROOT,
    Server,
    client,
    enomalism_server,
    exit_on_sigterm,
    free_port,
    load,
    median,
    table,
    timed,
)

sys.path.insert(0, str(ROOT / "src"))
from enomalism.feeds import archive  # noqa: E402
from enomalism.feeds.feed import Feed, FeedItem, render_feed  # noqa: E402

URI = "qemu:///system"
MiB = 1 << 20
GiB = 1 << 30
PKG_TYPE = "application/enomalism2-xvm2"
FINAL = ("done", "failed", "cancelled")


# -- shared with transfer.py -----------------------------------------------------------------

def kvm_usable() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


def corpus(limit: int = 64 * MiB) -> bytes:
    """Real binaries of this host (compressible the way a root file system is)."""
    parts, have = [], 0
    for d in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib"):
        for p in sorted(Path(d).glob("*")):
            try:
                if not p.is_file() or p.is_symlink():
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            parts.append(data)
            have += len(data)
            if have >= limit:
                return b"".join(parts)[:limit]
    return b"".join(parts)


def mixed_image(path: Path, size: int = GiB) -> Path:
    """A sparse raw image of `size` bytes: in each 5 MiB slot, 1 MiB of random bytes and
    1.5 MiB of binaries, the rest a hole (200 MiB random, 300 MiB binaries for 1 GiB)."""
    text = corpus()
    slot, pos = 5 * MiB, 0
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size - slot + 1, slot):
            f.seek(off)
            f.write(os.urandom(MiB))
            piece = text[pos:pos + 3 * MiB // 2]
            if len(piece) < 3 * MiB // 2:
                pos, piece = 0, text[:3 * MiB // 2]
            pos += len(piece)
            f.write(piece)
    return path


def random_image(path: Path, size: int = GiB) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    return path


def domain_template(virt_type: str) -> str:
    return (f"<domain type='{virt_type}'><name>template</name>"
            "<uuid>11111111-2222-3333-4444-555555555555</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            f"<os><type arch='{platform.machine()}'>hvm</type></os>"
            "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            "<source file='/nowhere/template.img'/><target dev='vda' bus='virtio'/></disk>"
            "<video><model type='none'/></video><memballoon model='none'/></devices></domain>")


def build_package(dest: Path, image: Path, name: str, virt_type: str) -> float:
    """The package, written by the project's own writer; returns the seconds it took."""
    m = archive.Manifest(name=name, description="bench package", version="1",
                         virt_class=virt_type, arch=platform.machine(),
                         disks=[archive.DiskInfo(target="vda", format="raw")])
    t0 = time.perf_counter()
    archive.write_package(dest, domain_xml=domain_template(virt_type), manifest=m,
                          disk_sources={"vda": lambda: open(image, "rb")}, fsync=False)
    return time.perf_counter() - t0


def publish(served: Path, packages: dict[str, Path], port: int) -> str:
    """Write feed.xml for `packages` (name -> file under `served`); returns its URL."""
    items = []
    for name, path in packages.items():
        items.append(FeedItem(guid=f"bench-{name}", title=name, description="bench package",
                              url=f"http://127.0.0.1:{port}/{path.name}",
                              length=path.stat().st_size, type=PKG_TYPE,
                              sha256=archive.file_sha256(path), version="1"))
    (served / "feed.xml").write_bytes(render_feed(Feed(
        title="bench", link=f"http://127.0.0.1:{port}/", description="bench packages",
        items=items)))
    return f"http://127.0.0.1:{port}/feed.xml"


def http_server(served: Path, log: Path) -> Server:
    """`python -m http.server` on a free loopback port, in its own process."""
    port = free_port()
    srv = Server([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                  "--directory", str(served), str(port)], port, log)
    srv.wait_ready("/")
    return srv


def sync() -> None:
    """Write back what earlier steps left dirty, so it is not billed to the next one."""
    os.sync()


class Bench:
    """What a run makes, and its removal: the server, the feed server, transient pools,
    machines (by UUID), temporary directories."""

    def __init__(self) -> None:
        self.tag = f"enomalism-bench-{secrets.token_hex(4)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/var/tmp"))
        self.tmp.chmod(0o755)
        self.servers: list[Server] = []
        self.pools: list[str] = []
        self.machines: list[str] = []
        libvirt.registerErrorHandler(lambda *_: None, None)  # errors are exceptions already
        self.conn = libvirt.open(URI)
        self.virt_type = "kvm" if kvm_usable() else "qemu"
        self.api = None
        self.host = self.hv = ""

    # set-up
    def start_server(self) -> None:
        server = enomalism_server(self.tmp / "data", [URI])
        self.servers.append(server)
        server.wait_ready()
        self.api = client(server.url)
        self.api.timeout = 300.0
        self.host, self.hv = self._wait_hypervisor()

    def _wait_hypervisor(self, timeout: float = 30.0) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hosts = self.api.get("/rest/hosts/").json()["hosts"]
            host = next(h["uuid"] for h in hosts if h["is_local"])
            hvs = self.api.get(f"/rest/machine/{host}/hypervisors/").json()["hypervisors"]
            for hv in hvs:
                if hv["virt_url"] == URI and hv["status"] == "connected":
                    return host, hv["uuid"]
            time.sleep(0.2)
        raise RuntimeError(f"the server did not connect to {URI} within {timeout:.0f} s")

    def pool(self, suffix: str) -> tuple[str, Path]:
        """A transient dir pool of this run's own, in a temporary directory."""
        name = f"{self.tag}-{suffix}"
        target = self.tmp / f"pool-{suffix}"
        target.mkdir()
        self.pools.append(name)
        self.conn.storagePoolCreateXML(
            f"<pool type='dir'><name>{name}</name><target><path>{target}</path></target>"
            "</pool>", 0)
        return name, target

    def feed(self, packages: dict[str, Path]) -> dict[str, str]:
        """Serve the packages (files in tmp/served), add the feed; name -> package UUID."""
        served = packages[next(iter(packages))].parent
        port = free_port()
        url = publish(served, packages, port)
        srv = Server([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                      "--directory", str(served), str(port)], port, self.tmp / "http.log")
        self.servers.append(srv)
        srv.wait_ready("/")
        self.feed_url = srv.url
        body = self.ok("PUT", "/rest/vmfeed/", json={"url": url})
        return {p["name"]: p["uuid"] for p in body["packages"]}

    # API
    def ok(self, method: str, path: str, **kw: object) -> dict:
        r = self.api.request(method, path, **kw)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
            else {}
        if r.status_code != 200 or body.get("errno"):
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return body

    def wait(self, txid: str, timeout: float = 600.0, poll: float = 0.01) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.api.get(f"/rest/transaction/{txid}/").json()
            state = body["data"]["state"]
            if state in FINAL:
                if state != "done":
                    raise RuntimeError(f"transaction {txid} {state}: {body['data']}")
                return body["data"]
            if time.monotonic() > deadline:
                raise RuntimeError(f"transaction {txid} not done after {timeout:.0f} s")
            time.sleep(poll)

    def retrieve(self, pkg: str) -> None:
        body = self.ok("POST", f"/rest/vmfeed/repo/package/{pkg}/")
        if body["tx"]:
            self.wait(body["tx"], poll=0.05)

    def provision(self, pkg: str, name: str, pool: str,
                  poll: float = 0.01) -> tuple[float, str]:
        """Milliseconds from the request until the transaction is done; the new machine."""
        t0 = time.perf_counter()
        body = self.ok("POST", f"/rest/machine/{self.host}/actions/provision/",
                       data={"pkguuid": pkg, "hvmuuid": self.hv, "name": name, "pool": pool})
        self.machines.append(body["newuuid"])
        self.wait(body["txid"], poll=poll)
        return (time.perf_counter() - t0) * 1000.0, body["newuuid"]

    def delete_machine(self, uuid: str) -> None:
        self.ok("POST", f"/rest/machine/{uuid}/actions/totaldelete/")

    # clean-up
    def close(self) -> None:
        for uuid in self.machines:
            try:
                self.delete_machine(uuid)
            except Exception:  # noqa: BLE001 (removed through libvirt below)
                pass
        if self.api is not None:
            self.api.close()
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001
                print(f"warning: stopping {s.url}: {e}", file=sys.stderr)
        for uuid in self.machines:
            try:
                dom = self.conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError:
                continue
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError as e:
                print(f"warning: could not remove domain {uuid}: {e}", file=sys.stderr)
        for name in self.pools:
            try:
                pool = self.conn.storagePoolLookupByName(name)
            except libvirt.libvirtError:
                continue
            try:
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    vol.delete(0)
                pool.destroy()  # transient: gone with it
            except libvirt.libvirtError as e:
                print(f"warning: pool {name}: {e}", file=sys.stderr)
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def shell(argv: list[str]) -> Callable[[], None]:
    return lambda: subprocess.run(argv, check=True, capture_output=True)


def dd_mib_s(path: Path) -> float:
    """The disk's sequential write speed: 1 GiB of zeros, fdatasync'd, in MiB/s."""
    sync()
    ms = timed(shell(["dd", "if=/dev/zero", f"of={path}", "bs=4M", "count=256",
                      "conv=fdatasync"]))
    path.unlink()
    return 1024.0 / (ms / 1000.0)


def fsync_ms(path: str | Path) -> float:
    """Milliseconds until the file's data is on the disk (what dd's conv=fdatasync waits for)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return timed(lambda: os.fdatasync(fd))
    finally:
        os.close(fd)


def raw_upload(pool: "libvirt.virStoragePool", name: str, image: Path) -> str:
    """The image into a new raw volume through libvirt's stream on plain libvirt-python
    (sparse stream, data only, 1 MiB sends); returns the volume's path."""
    size = image.stat().st_size
    vol = pool.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
                         "<allocation unit='bytes'>0</allocation>"
                         "<target><format type='raw'/></target></volume>", 0)
    stream = pool.connect().newStream(0)
    vol.upload(stream, 0, size, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
    with open(image, "rb", buffering=0) as f:
        while data := f.read(MiB):
            while data:
                data = data[stream.send(data):]
    stream.finish()
    return vol.path()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- the figures ---------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=5, help="cached provisions (default 5)")
    p.add_argument("--copies", type=int, default=3, help="full copies of each kind (default 3)")
    args = p.parse_args()
    exit_on_sigterm()
    started, load_before = time.monotonic(), load()
    b = Bench()
    try:
        served = b.tmp / "served"
        served.mkdir()
        mixed = mixed_image(b.tmp / "mixed.img")
        rand = random_image(b.tmp / "random.img")
        build_s = {
            "mixed": build_package(served / "mixed.xvm2", mixed, "bench-mixed", b.virt_type),
            "random": build_package(served / "random.xvm2", rand, "bench-random", b.virt_type),
        }
        sizes = {k: (served / f"{k}.xvm2").stat().st_size for k in build_s}
        b.start_server()
        pkgs = b.feed({"bench-mixed": served / "mixed.xvm2",
                       "bench-random": served / "random.xvm2"})
        mixed_pkg, random_pkg = pkgs["bench-mixed"], pkgs["bench-random"]
        pool_a, dir_a = b.pool("a")
        pool_b, _dir_b = b.pool("b")
        for pkg in (mixed_pkg, random_pkg):
            b.retrieve(pkg)
        # first provisions: the base volumes go into pool a (not timed)
        first = {}
        for key, pkg in (("mixed", mixed_pkg), ("random", random_pkg)):
            ms, uuid = b.provision(pkg, f"{b.tag}-first-{key}", pool_a)
            first[key] = ms
            b.delete_machine(uuid)
            b.machines.remove(uuid)
        base_random = next(v.path() for v in
                           b.conn.storagePoolLookupByName(pool_a).listAllVolumes(0)
                           if v.name().startswith(f"enomalism-base-{random_pkg}"))

        # 1. cached provision against cp of the image
        prov, cp = [], []
        copy = dir_a.parent / "cp-copy.img"
        for i in range(args.n):
            def api(i: int = i) -> None:
                sync()
                ms, uuid = b.provision(mixed_pkg, f"{b.tag}-{i}", pool_a)
                prov.append(ms)
                b.delete_machine(uuid)
                b.machines.remove(uuid)

            def base() -> None:
                sync()
                cp.append(timed(shell(["cp", str(mixed), str(copy)])))
                copy.unlink()
            for step in ((api, base) if i % 2 == 0 else (base, api)):
                step()

        # 2. full copies against dd
        dd, upload, clone, upload_d, clone_d, raw, raw_d = [], [], [], [], [], [], []
        size_mib = rand.stat().st_size / MiB
        pool_b_obj = b.conn.storagePoolLookupByName(pool_b)
        sys.path.insert(0, str(ROOT / "src"))
        from enomalism.virt import storage
        for i in range(args.copies):
            dd.append(dd_mib_s(dir_a.parent / "dd.bin"))
            sync()
            # polled every 50 ms: a copy takes seconds, and 10 ms polls cost the server a
            # fifth of a CPU and its GIL beside it (see bench/transfer.py)
            ms, uuid = b.provision(random_pkg, f"{b.tag}-full-{i}", pool_b, poll=0.05)
            pool_b_obj.refresh(0)
            base_b = next(v.path() for v in pool_b_obj.listAllVolumes(0)
                          if v.name().startswith("enomalism-base-"))
            upload.append(size_mib / (ms / 1000.0))
            upload_d.append(size_mib / ((ms + fsync_ms(base_b)) / 1000.0))
            b.delete_machine(uuid)
            b.machines.remove(uuid)
            for v in pool_b_obj.listAllVolumes(0):  # the base volume the provision uploaded
                v.delete(0)
            sync()
            name = f"{b.tag}-clone-{i}.raw"
            path = ""

            def do_clone(name: str = name) -> None:
                nonlocal path
                path = storage.clone(pool_b_obj, name, base_random)
            ms = timed(do_clone)
            clone.append(size_mib / (ms / 1000.0))
            clone_d.append(size_mib / ((ms + fsync_ms(path)) / 1000.0))
            pool_b_obj.storageVolLookupByName(name).delete(0)
            sync()
            name = f"{b.tag}-raw-{i}.raw"

            def do_raw(name: str = name) -> None:
                nonlocal path
                path = raw_upload(pool_b_obj, name, rand)
            ms = timed(do_raw)
            raw.append(size_mib / (ms / 1000.0))
            raw_d.append(size_mib / ((ms + fsync_ms(path)) / 1000.0))
            pool_b_obj.storageVolLookupByName(name).delete(0)
        report(b, build_s, sizes, first, prov, cp, dd, upload, clone, upload_d, clone_d,
               raw, raw_d, time.monotonic() - started, load_before)
    finally:
        b.close()


def report(b: Bench, build_s: dict, sizes: dict, first: dict, prov: list, cp: list,
           dd: list, upload: list, clone: list, upload_d: list, clone_d: list, raw: list,
           raw_d: list, seconds: float, load_before: str) -> None:
    print(f"\nProvisioning on {URI} ({b.virt_type}), {date.today()}, {os.cpu_count()} CPUs, "
          f"run took {seconds:.0f} s, load average {load_before} before, {load()} after")
    print(f"packages: mixed 1 GiB image -> {sizes['mixed'] / MiB:.0f} MiB "
          f"(written in {build_s['mixed']:.1f} s), random 1 GiB image -> "
          f"{sizes['random'] / MiB:.0f} MiB ({build_s['random']:.1f} s); first provisions "
          f"(base upload): mixed {first['mixed'] / 1000:.1f} s, random "
          f"{first['random'] / 1000:.1f} s")
    pm, cm = median(prov), median(cp)
    print("\n1. Provision from a cached package, base volume in the pool (whole transaction)")
    print(table(["what", "n", "median ms", "min ms", "max ms"], [
        ["provision transaction", str(len(prov)), f"{pm:.0f}", f"{min(prov):.0f}",
         f"{max(prov):.0f}"],
        ["cp of the 1 GiB image", str(len(cp)), f"{cm:.0f}", f"{min(cp):.0f}",
         f"{max(cp):.0f}"]]))
    print(f"ratio provision / cp: {pm / cm:.2f}; target: under 1000 ms: "
          f"{verdict(pm < 1000.0)} ({pm:.0f} ms)")
    dm = median(dd)
    print("\n2. Full copies of the 1 GiB random image, MiB/s, against dd conv=fdatasync")
    rows = [["dd bs=4M count=256 conv=fdatasync", str(len(dd)), f"{dm:.0f}", "1.00", "",
             "", ""]]
    for label, xs, ds in (("provision onto a pool without the base", upload, upload_d),
                          ("storage.clone to another pool", clone, clone_d),
                          ("plain libvirt-python upload of the image", raw, raw_d)):
        m, d = median(xs), median(ds)
        rows.append([label, str(len(xs)), f"{m:.0f}", f"{m / dm:.2f}", f"{d:.0f}",
                     f"{d / dm:.2f}", verdict(d >= 0.8 * dm)])
    print(table(["what", "n", "MiB/s", "ratio", "MiB/s +fdatasync", "ratio +fdatasync",
                 "target 0.80"], rows))
    rm, rdm = median(raw), median(raw_d)
    print(f"provision onto a pool without the base against the plain libvirt-python upload: "
          f"{median(upload) / rm:.2f} ({median(upload_d) / rdm:.2f} with fdatasync)")
    print("MiB/s: 1 GiB over the median time the call or transaction took (libvirt leaves "
          "the data in the page cache); +fdatasync: until the new volume's data is on the "
          "disk, as dd's conv=fdatasync waits; the target is judged on that one.")


if __name__ == "__main__":
    main()
