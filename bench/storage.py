"""Volume transfers through `virt/storage.py`, as ratios against `dd conv=fdatasync` of the same
bytes to the same disk, measured in the same run, interleaved round by round.

Each round: `dd bs=4M conv=fdatasync` of a file of random bytes into the pool's directory (the
baseline), `storage.upload` of the same file into a new raw volume (an upload into a local
file volume writes the file in place and syncs it), the same followed by an fsync of the
volume's file (libvirt's stream does not sync; on a local pool it is a no-op's cost),
`storage.download` of the volume to /dev/null, `storage.clone` of it (libvirt's
createXMLFrom). Each figure is the best of its rounds: other work on the host only ever slows
a run down. Was a test of tests/virt/test_storage.py, printed and never asserted; the
correctness of these paths stays tested there.

Needs libvirtd with `qemu:///system` (scripts/start-libvirt.sh). Makes a transient dir pool
`enomalism-bench-<random>` beside the system's temporary directory, removed with its volumes
whatever happens. Options: `--size` MiB (default 256), `--rounds` (default 3). Never asserts.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import exit_on_sigterm, load, table  # noqa: E402

from enomalism.virt import storage  # noqa: E402

URI = "qemu:///system"
MiB = 1 << 20


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            f.write(os.urandom(8 * MiB))


def _round(conn: libvirt.virConnect, pool: libvirt.virStoragePool, src: Path, r: int,
           timed: Callable[[str, float], None]) -> None:
    target = Path(storage.planned_path(pool, "x")).parent
    out = target / f"dd-{r}.out"
    t = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={out}", "bs=4M", "status=none", "conv=fdatasync"],
                   check=True)
    timed("dd conv=fdatasync", t)
    out.unlink()
    pool.refresh(0)
    t = time.perf_counter()
    with open(src, "rb") as f:
        path = storage.upload(pool, f"up-{r}.raw", f, size=src.stat().st_size, fmt="raw")
    timed("upload", t)
    _fsync(path)
    timed("upload + fsync", t)
    with open(os.devnull, "wb") as sink:
        t = time.perf_counter()
        storage.download(conn, path, sink)
        timed("download to /dev/null", t)
    t = time.perf_counter()
    copy = storage.clone(pool, f"copy-{r}.raw", path)
    timed("clone (createXMLFrom)", t)
    storage.delete(conn, path)
    storage.delete(conn, copy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="MiB of random data (default 256)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    exit_on_sigterm()
    size = args.size * MiB
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    scratch = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    pool_dir = scratch / "pool"
    pool_dir.mkdir()
    os.chmod(scratch, 0o755)
    os.chmod(pool_dir, 0o755)
    name = f"enomalism-bench-{secrets.token_hex(4)}"
    pool = conn.storagePoolCreateXML(
        f"<pool type='dir'><name>{name}</name><target><path>{pool_dir}</path></target></pool>", 0)
    figures: dict[str, list[float]] = {}

    def timed(what: str, started: float) -> None:
        figures.setdefault(what, []).append(size / (time.perf_counter() - started) / 1e6)

    print(f"load before: {load()}")
    try:
        src = scratch / "src.raw"
        _random_file(src, size)
        for r in range(args.rounds):
            _round(conn, pool, src, r, timed)
    finally:
        try:
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                vol.delete(0)
            pool.destroy()  # transient: gone with it
        except libvirt.libvirtError as e:
            print(f"clean-up of pool {name}: {e.get_error_message()}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
        conn.close()
    print(f"load after: {load()}")
    best = {k: max(v) for k, v in figures.items()}
    base = best["dd conv=fdatasync"]
    print(f"\n{size // MiB} MiB of random data, same disk, best of {args.rounds} rounds:")
    print(table(["", "MB/s", "x dd conv=fdatasync", "rounds (MB/s)"],
                [[k, f"{v:.0f}", f"{v / base:.2f}", ", ".join(f"{x:.0f}" for x in figures[k])]
                 for k, v in best.items()]))


if __name__ == "__main__":
    main()
