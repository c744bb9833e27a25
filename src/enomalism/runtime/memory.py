"""The server's malloc settings: big buffers reused, not mapped afresh each time.

An upload's body arrives in pieces of about 256 KiB, and every step after (the HTTP parser,
the copies into MiB chunks, compression) makes buffers of that size. glibc hands out blocks
above its mmap threshold (128 KiB to start with) as fresh mappings and unmaps them when freed,
and gives the freed top of the heap back to the kernel beyond its trim threshold: each such
buffer then costs its page faults and the kernel's zeroing of its pages. Measured here (2
cores), uvicorn alone took 2 s of CPU per GiB received, most of it in the kernel, and about
0.4 s with the thresholds below: an upload went from under a half of `dd`'s speed to its
disk's. The price: up to `TRIM` bytes of freed memory stay with the process.

Set only where glibc's mallopt exists, and not over the administrator's own choice
(`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` in the environment)."""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP = 32 << 20  # blocks from this size on are mapped of their own (glibc's own maximum)
TRIM = 128 << 20  # freed memory at the top of the heap kept for reuse, up to this much


def tune_malloc() -> bool:
    """Apply the thresholds; True when glibc took them."""
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its own allocator's ways
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM))
