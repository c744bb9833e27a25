"""Starting the disk on a file's data while more of it is written (downloads, archives, volumes).

A file that will be fsync'd at the end is written back every `EVERY` bytes as it grows, so that
the fsync waits for the last few MiB only instead of a whole GiB left dirty in memory (the
kernel would start on its own only after 30 s).
"""

import ctypes
from collections.abc import Callable

EVERY = 32 << 20  # bytes written between two write-back requests


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return lambda fd, offset, nbytes: fn(fd, offset, nbytes, 2)  # 2: SYNC_FILE_RANGE_WRITE


_START_WRITEBACK = _sync_file_range()


class Writeback:
    """Asks the kernel to write out what was written since the last request, every `EVERY`
    bytes. Asynchronous: never waits. Off when nothing will fsync the file (`enabled=False`):
    then the kernel writes it when it likes."""

    def __init__(self, fd: int, start: int = 0, enabled: bool = True) -> None:
        self.fd, self.flushed = fd, start
        self.enabled = enabled and _START_WRITEBACK is not None

    def wrote(self, end: int) -> None:
        start = _START_WRITEBACK
        if self.enabled and start is not None and end - self.flushed >= EVERY:
            start(self.fd, self.flushed, end - self.flushed)
            self.flushed = end
