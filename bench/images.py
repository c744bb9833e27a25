"""Uploading a 1 GiB image through `PUT /rest/images/` into a pool on qemu:///system, against
`dd` of the same amount into the same disk.

The figure: the upload's bytes per second (from the first byte sent until the answer, which
comes once the volume is whole and fdatasync'd, checksummed and checked by `qemu-img`) against
`dd if=<the same file> of=<file in the pool's directory> bs=4M conv=fdatasync` (the issue's
baseline), measured in the same run, interleaved, each upload beside a dd (target: at least
0.8, the median of each pair's ratio; the ratio of the medians too, and dd of /dev/zero as
before, for comparison with earlier runs). The image is 1 GiB of random bytes as a
raw file, so that every byte is really written (a sparse upload skips all-zero blocks). The
client streams the file a MiB at a time as the request body (what `enomalism image upload`
does), from a server process of its own (bench/common.py).

Everything lives in a transient dir pool `enomalism-bench-<random>-a` in a temporary
directory, removed with its volumes and the server whatever happens. Never asserts: a
benchmark, not a test. Takes about a minute.
"""

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exit_on_sigterm, load, median, timed  # noqa: E402
from provision import URI, Bench, MiB, dd_mib_s, random_image, shell, sync  # noqa: E402


def dd_file_mib_s(image: Path, path: Path) -> float:
    """dd of the image file itself into the pool's directory, fdatasync'd, in MiB/s."""
    sync()
    ms = timed(shell(["dd", f"if={image}", f"of={path}", "bs=4M", "conv=fdatasync"]))
    path.unlink()
    return image.stat().st_size / MiB / (ms / 1000.0)


def upload_mib_s(b: Bench, image: Path, pool: str, name: str) -> float:
    size = image.stat().st_size

    def chunks():  # noqa: ANN202
        with open(image, "rb") as f:
            while chunk := f.read(MiB):
                yield chunk
    sync()
    t0 = time.perf_counter()
    body = b.ok("PUT", "/rest/images/", content=chunks(),
                params={"name": name, "format": "raw", "hvmuuid": b.hv, "pool": pool},
                headers={"Content-Type": "application/octet-stream",
                         "Content-Length": str(size)})
    seconds = time.perf_counter() - t0
    b.ok("DELETE", f"/rest/images/{body['image']['uuid']}/")
    return size / MiB / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=3, help="uploads (default 3)")
    args = p.parse_args()
    exit_on_sigterm()
    started, load_before = time.monotonic(), load()
    b = Bench()
    try:
        image = random_image(b.tmp / "random.img")
        b.start_server()
        pool, target = b.pool("a")
        dd, zero, up = [], [], []
        for i in range(args.n):
            steps = [lambda: dd.append(dd_file_mib_s(image, target / "dd.bin")),
                     lambda i=i: up.append(upload_mib_s(b, image, pool, f"bench-{i}"))]
            for step in (steps if i % 2 == 0 else steps[::-1]):
                step()
            zero.append(dd_mib_s(target / "dd.bin"))
        pairs = [u / d for u, d in zip(up, dd, strict=True)]
        ratio = median(pairs)
        print(f"\nImage upload on {URI}, {date.today()}, {os.cpu_count()} CPUs, run took "
              f"{time.monotonic() - started:.0f} s, load average {load_before} before, "
              f"{load()} after")
        print(f"dd of the image into the pool's disk: {median(dd):.0f} MiB/s (runs: "
              f"{', '.join(f'{x:.0f}' for x in dd)}); of /dev/zero: {median(zero):.0f} MiB/s "
              f"(runs: {', '.join(f'{x:.0f}' for x in zero)})")
        print(f"PUT /rest/images/ of 1 GiB of random bytes: {median(up):.0f} MiB/s (runs: "
              f"{', '.join(f'{x:.0f}' for x in up)})")
        print(f"ratio {ratio:.2f} of dd of the same file, median of the pairs "
              f"({', '.join(f'{x:.2f}' for x in pairs)}; target 0.8: "
              f"{'met' if ratio >= 0.8 else 'MISSED'}); of the medians "
              f"{median(up) / median(dd):.2f}; against dd of /dev/zero "
              f"{median(up) / median(zero):.2f}")
    finally:
        b.close()


if __name__ == "__main__":
    main()
