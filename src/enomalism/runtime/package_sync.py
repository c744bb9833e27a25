"""A retrieved package reaches the disk just after it is recorded, not before.

A retrieval checks the package's size and sha256 as it arrives. Waiting for a GiB to be
written out before the package may be used added a quarter or more to the transaction here: the
disk, not the network, then set the pace. So the retrieval renames the verified file into place
and records the package as cached, marked `unsynced` = "<node> <boot id> <txid>", and this
node's sync thread fdatasyncs it moments later and clears the mark.

Until then the data may be in this machine's memory only: a crash of the process keeps it (the
kernel still has it), a crash of the machine may lose it. So, when a node starts:

- its marks with the current boot id are synced now;
- its marks with another boot id (the machine restarted) are taken back: the file becomes a
  partial download again (`<file>.part`) and the package `remote`, so nothing that may have
  lost data passes for whole. The next retrieval hashes what is there, fetches the rest with a
  Range request and checks the sha256 (starting over if it does not match).

Another node's marks are left to it, unless it has been silent for longer than the ownership
lease: then they are taken back the same way. A clean stop syncs everything first.
"""

import logging
import os
import queue
import threading
import uuid as uuidlib
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from enomalism.store.db import Database, changed
from enomalism.store.models import Node, Package, utcnow

log = logging.getLogger(__name__)

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot of the machine. Where the kernel does not say, one of this process's own:
    every start then counts as after a machine crash, which is the safe side."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return f"process-{uuidlib.uuid4()}"


def fdatasync(path: Path) -> None:
    """Put the file's data, and its name in its directory, on the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


class PackageSync:
    """This node's sync thread for retrieved packages, and its share of the recovery."""

    def __init__(self, db: Database, node_id: str, lease: float) -> None:
        self.db, self.node_id, self.lease = db, node_id, lease
        self.boot = boot_id()
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def mark(self, txid: str) -> str:
        return f"{self.node_id} {self.boot} {txid}"

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._run, name="package-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Sync what is waiting, then end: a clean stop leaves nothing unsynced."""
        if self._thread is not None:
            if pending := self._queue.qsize():
                log.info("writing %d retrieved package(s) to the disk before stopping", pending)
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def later(self, pkg_uuid: str, path: Path, mark: str) -> None:
        """Sync the package's file soon, then clear its mark (if it still has this one)."""
        self._queue.put((pkg_uuid, str(path), mark))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._sync(*item)
            except Exception:  # the database: the mark stays, the next start syncs again
                log.exception("recording package %s as written to disk failed", item[0])

    def _sync(self, pkg_uuid: str, path: str, mark: str) -> None:
        try:
            fdatasync(Path(path))
        except FileNotFoundError:
            return  # removed meanwhile (uncached, deleted): nothing to keep
        except OSError as e:
            log.error("package %s could not be written to the disk (%s); it will be "
                      "retrieved again", pkg_uuid, e)
            self._take_back(pkg_uuid, path, mark)
            return
        with self.db.session() as s:
            s.execute(update(Package).where(Package.uuid == pkg_uuid, Package.unsynced == mark)
                      .values(unsynced=None))

    def _marked(self) -> list[tuple[str, str | None, str, str, str]]:
        """Every marked package: uuid, path, mark, and the mark's node and boot id."""
        with self.db.session(write=False) as s:
            rows = s.execute(select(Package.uuid, Package.path, Package.unsynced)
                             .where(Package.unsynced.is_not(None))).tuples()
            marked = []
            for u, p, m in rows:
                node, boot = (m.split(" ") + ["", ""])[:2] if m else ("", "")
                marked.append((u, p, m or "", node, boot))
            return marked

    def recover(self) -> None:
        """At start: sync this node's marked packages of this boot; take back those of an
        earlier boot."""
        for pkg_uuid, path, mark, node, boot in self._marked():
            if node != self.node_id:
                continue
            if boot == self.boot and path:
                self.later(pkg_uuid, Path(path), mark)
            else:
                log.warning("package %s was retrieved before the machine restarted and may "
                            "not all be on the disk; it will be checked when next retrieved",
                            pkg_uuid)
                self._take_back(pkg_uuid, path, mark)

    def take_over(self) -> None:
        """Take back the marked packages of nodes silent for longer than the lease (their
        machine may have crashed)."""
        marked = [row for row in self._marked() if row[3] != self.node_id]
        if not marked:
            return
        cutoff = utcnow() - timedelta(seconds=self.lease)
        with self.db.session(write=False) as s:
            alive = set(s.scalars(select(Node.id).where(
                Node.id.in_({row[3] for row in marked}), Node.seen_at >= cutoff,
                Node.stopped_at.is_(None))))
        for pkg_uuid, path, mark, node, _boot in marked:
            if node not in alive:
                log.warning("package %s was retrieved by node %s, which went silent before "
                            "it was on the disk; it will be checked when next retrieved",
                            pkg_uuid, node)
                self._take_back(pkg_uuid, path, mark)

    def _take_back(self, pkg_uuid: str, path: str | None, mark: str) -> None:
        """The package is no longer cached; its file becomes a partial download. The row
        first, with a compare-and-swap on the mark, so that of several nodes only one moves
        the file (and a node that synced it meanwhile keeps it)."""
        with self.db.session() as s:
            took = changed(s, update(Package).where(
                Package.uuid == pkg_uuid, Package.unsynced == mark).values(
                state="remote", path=None, size=None, unsynced=None))
        if took == 1 and path:
            try:
                os.replace(path, path + ".part")
            except FileNotFoundError:
                pass
            except OSError as e:  # left under its name: the next retrieval replaces it
                log.error("could not rename %s to %s.part: %s", path, path, e)
