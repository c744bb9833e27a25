"""Package retrieval and `package` export through the server, against httpx and tar+zstd.

Two figures, each a ratio against a baseline measured in the same run, interleaved with it:

3. **Retrieval over loopback**: the server's `retrieve` transaction for a 1 GiB package
   (`POST /rest/vmfeed/repo/package/<UUID>/` until the transaction is done: the download with
   its running sha256 checked against the feed's, then the archive's structure read; the file
   is synced to the disk after the transaction, in the background, as docs/provisioning.md
   says) against a plain httpx streaming download of the same file from the same server
   (`python -m http.server` in its own process) to the same disk, which does not sync either;
   beside it, the same followed by fdatasync. The package holds a 1 GiB image of random bytes
   (so it is 1 GiB too). Between runs the package is uncached (`DELETE
   /rest/vmfeed/repo/package/<UUID>/`), and every step starts with `sync`, so that nothing one
   step left to write is billed to the next. Target: at least 80 percent of the baseline's
   speed.
4. **`package` export through the server**: `POST /rest/machine/<UUID>/actions/package/` of a
   shut-off machine whose disk is a 1 GiB raw file (200 MiB random, 300 MiB of the host's
   binaries, the rest holes), until the transaction is done (zstd of the image into the archive,
   its fsync, the archive's sha256, the package recorded), against `tar -I 'zstd -T0' -cf` of
   the same disk file to the same disk. The package made is deleted after each run.
   Target: at least 80 percent of the baseline's speed.

Both poll `GET /rest/transaction/<txid>/` every `--poll` seconds (default 0.05) until the
transaction is done. At 10 ms (about 70 requests a second once each answer's time is added)
answering the polls took about a fifth of one of the 2 CPUs in the server, and held its GIL,
beside the transfer being measured; a client watching a transfer of seconds does not ask that
often, and 50 ms adds at most that much to a figure of seconds. (One run each way at a load of
about 4.5: retrieval 0.57 of httpx polled at 10 ms, 0.63 at 50 ms; export 0.68 and 0.79.)

Machines, pool, files and servers are this run's own and removed whatever happens (see
bench/provision.py, whose helpers this uses). Never asserts. Takes 1 to 3 minutes.
"""

import argparse
import os
import sys
import time
import uuid as uuidlib
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exit_on_sigterm, load, median, table, timed  # noqa: E402
from provision import (  # noqa: E402
    URI,
    Bench,
    MiB,
    build_package,
    fsync_ms,
    mixed_image,
    random_image,
    shell,
    sync,
    verdict,
)


def machine_xml(name: str, uuid: str, virt_type: str, disk: Path) -> str:
    import platform
    return (f"<domain type='{virt_type}'><name>{name}</name><uuid>{uuid}</uuid>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu>"
            f"<os><type arch='{platform.machine()}'>hvm</type></os>"
            "<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
            "<video><model type='none'/></video><memballoon model='none'/></devices></domain>")


def httpx_download(url: str, dest: Path) -> None:
    with httpx.Client(timeout=60.0) as c, c.stream("GET", url) as r, open(dest, "wb") as f:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            f.write(chunk)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=3, help="runs of each (default 3)")
    p.add_argument("--poll", type=float, default=0.05,
                   help="seconds between transaction polls (default 0.05)")
    args = p.parse_args()
    exit_on_sigterm()
    started, load_before = time.monotonic(), load()
    b = Bench()
    try:
        served = b.tmp / "served"
        served.mkdir()
        rand = random_image(b.tmp / "random.img")
        build_package(served / "random.xvm2", rand, "bench-random", b.virt_type)
        rand.unlink()
        pkg_size = (served / "random.xvm2").stat().st_size
        b.start_server()
        pkg = b.feed({"bench-random": served / "random.xvm2"})["bench-random"]
        pool, pool_dir = b.pool("a")
        disk = mixed_image(pool_dir / "export-disk.img")
        b.conn.storagePoolLookupByName(pool).refresh(0)
        disk_size = disk.stat().st_size
        name, muuid = f"{b.tag}-export", str(uuidlib.uuid4())
        b.machines.append(muuid)
        b.ok("PUT", "/rest/machines/",
             data={"xmldesc": machine_xml(name, muuid, b.virt_type, disk), "hvmuuid": b.hv})

        # 3. retrieval against httpx
        url = f"{b.feed_url}/random.xvm2"
        dl = b.tmp / "httpx.bin"
        retr, plain, plain_d = [], [], []
        for i in range(args.n + 1):  # the first of each warms up, not counted
            def api(i: int = i) -> None:
                sync()
                t0 = time.perf_counter()
                body = b.ok("POST", f"/rest/vmfeed/repo/package/{pkg}/")
                b.wait(body["tx"], poll=args.poll)
                ms = (time.perf_counter() - t0) * 1000.0
                if i:
                    retr.append(ms)
                b.ok("DELETE", f"/rest/vmfeed/repo/package/{pkg}/")

            def base(i: int = i) -> None:
                sync()
                ms = timed(lambda: httpx_download(url, dl))
                ms_d = ms + fsync_ms(dl)
                if i:
                    plain.append(ms)
                    plain_d.append(ms_d)
                dl.unlink()
            for step in ((api, base) if i % 2 == 0 else (base, api)):
                step()

        # 4. export against tar -I 'zstd -T0'
        out = b.tmp / "tar.tar.zst"
        export, tar, export_size, tar_size = [], [], [], []
        for i in range(args.n):
            def api() -> None:
                sync()
                t0 = time.perf_counter()
                body = b.ok("POST", f"/rest/machine/{muuid}/actions/package/",
                            data={"name": f"{b.tag}-pkg"})
                data = b.wait(body["txid"], poll=args.poll)
                export.append((time.perf_counter() - t0) * 1000.0)
                made = data["result"]["package"]
                export_size.append(data["result"]["size"])
                b.ok("DELETE", f"/rest/vmfeed/{made}/")

            def base() -> None:
                sync()
                tar.append(timed(shell(["tar", "-I", "zstd -T0", "-cf", str(out), "-C",
                                        str(disk.parent), disk.name])))
                tar_size.append(out.stat().st_size)
                out.unlink()
            for step in ((api, base) if i % 2 == 0 else (base, api)):
                step()
        report(b, pkg_size, disk_size, retr, plain, plain_d, export, tar, export_size,
               tar_size, time.monotonic() - started, load_before)
    finally:
        b.close()


def report(b: Bench, pkg_size: int, disk_size: int, retr: list, plain: list, plain_d: list,
           export: list, tar: list, export_size: list, tar_size: list, seconds: float,
           load_before: str) -> None:
    print(f"\nTransfers through the server ({URI}, {b.virt_type}), {date.today()}, "
          f"{os.cpu_count()} CPUs, run took {seconds:.0f} s, load average {load_before} "
          f"before, {load()} after")
    mib = pkg_size / MiB
    r, h, hd = median(retr), median(plain), median(plain_d)
    print(f"\n3. Retrieval of a {mib:.0f} MiB package over loopback (python -m http.server)")
    print(table(["what", "n", "median ms", "MiB/s", "ratio"], [
        ["retrieve transaction", str(len(retr)), f"{r:.0f}", f"{mib / r * 1000:.0f}",
         f"{h / r:.2f}"],
        ["httpx streaming download", str(len(plain)), f"{h:.0f}", f"{mib / h * 1000:.0f}",
         "1.00"],
        ["httpx download + fdatasync", str(len(plain_d)), f"{hd:.0f}",
         f"{mib / hd * 1000:.0f}", f"{hd / r:.2f}"]]))
    print("rounds, ms: retrieve " + " ".join(f"{x:.0f}" for x in retr)
          + "; httpx " + " ".join(f"{x:.0f}" for x in plain))
    print(f"ratio (httpx time / retrieve time) {h / r:.2f}; target 0.80: "
          f"{verdict(h / r >= 0.8)}")
    e, t = median(export), median(tar)
    dmib = disk_size / MiB
    print(f"\n4. package export of a machine with a {dmib:.0f} MiB raw disk, through the server")
    print(table(["what", "n", "median ms", "MiB/s", "output MiB", "ratio"], [
        ["package transaction (zstd)", str(len(export)), f"{e:.0f}",
         f"{dmib / e * 1000:.0f}", f"{median(export_size) / MiB:.0f}", f"{t / e:.2f}"],
        ["tar -I 'zstd -T0' -cf", str(len(tar)), f"{t:.0f}", f"{dmib / t * 1000:.0f}",
         f"{median(tar_size) / MiB:.0f}", "1.00"]]))
    print("rounds, ms: export " + " ".join(f"{x:.0f}" for x in export)
          + "; tar " + " ".join(f"{x:.0f}" for x in tar))
    print(f"ratio (tar time / export time) {t / e:.2f}; target 0.80: {verdict(t / e >= 0.8)}")


if __name__ == "__main__":
    main()
