"""The tests' tiny real guest: build.sh's disk, built once into a cache folder keyed by the
builder's own hash (reused across runs and sessions; a changed builder builds anew), and its
serial console log read for the markers its init prints.

`image()` answers the qcow2's path, or raises `Unavailable` naming what is missing; the
integration tests' session fixture turns that into a skip.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

BUILD = Path(__file__).with_name("build.sh")
CACHE = Path(os.environ.get("ENOMALISM_GUEST_CACHE", "/var/tmp"))
TOOLS = ("apt-get", "apt-cache", "dpkg", "gzip", "qemu-img")


class Unavailable(Exception):
    """The guest cannot be built here; the message says what is missing."""


def image() -> Path:
    """The guest's disk (qcow2), built on first use."""
    key = hashlib.sha256(BUILD.read_bytes()).hexdigest()[:16]
    out = CACHE / f"enomalism-tiny-guest-{key}"
    disk = out / "tiny.qcow2"
    if disk.exists():
        return disk
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise Unavailable(f"building the tiny guest needs {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:  # one builder at a time; the others reuse its disk
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not disk.exists():
            r = subprocess.run(["sh", str(BUILD), str(out)], capture_output=True, text=True,
                               timeout=600)
            if r.returncode or not disk.exists():
                raise Unavailable("the tiny guest could not be built (its kernel, busybox, "
                                  "syslinux, mtools, dosfstools and cpio come from apt-get "
                                  f"download): {(r.stderr or r.stdout).strip()[-500:]}")
    return disk


class Serial:
    """A guest's serial console log (a file libvirt's virtlogd writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def markers(self, name: str) -> list[str]:
        """The values of every `name=` marker, in order."""
        return [line.split("=", 1)[1].strip() for line in self.lines()
                if line.startswith(f"{name}=")]

    def wait(self, marker: str, count: int = 1, timeout: float = 120.0) -> list[str]:
        """Wait until the log has `count` lines starting with `marker`; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if sum(line.startswith(marker) for line in lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"the guest never printed {marker} ({count}) in "
                                     f"{timeout:.0f} s; its console:\n" + "\n".join(lines))
            time.sleep(0.1)
