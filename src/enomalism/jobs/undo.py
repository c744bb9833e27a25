"""Undoing what a job created. A job records each thing *before* creating it (so a crash in
between leaves a record, never an orphan); undoing removes them in reverse order and tolerates
things that were never made."""

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from enomalism.errors import EnomalismError, NotFound
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.store.db import Database
from enomalism.store.models import Image, Machine, Package

log = logging.getLogger(__name__)


def _file(_db: Database, _reg: HypervisorRegistry, path: str) -> None:
    Path(path).unlink(missing_ok=True)


def _dir(_db: Database, _reg: HypervisorRegistry, path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _paused(_db: Database, reg: HypervisorRegistry, hypervisor: str, uuid: str) -> None:
    """Resume a domain the job paused (to read its disks), if it is paused still."""
    conn = reg.connection(hypervisor)
    snap = conn.snapshot(uuid, with_xml=False)
    if snap is not None and snap.state == "paused":
        conn.resume(uuid)


def _volume(_db: Database, reg: HypervisorRegistry, hypervisor: str, path: str) -> None:
    reg.connection(hypervisor).delete_volume(path)


def _domain(_db: Database, reg: HypervisorRegistry, hypervisor: str, uuid: str) -> None:
    reg.connection(hypervisor).undefine(uuid)


def _pool_volume(_db: Database, reg: HypervisorRegistry, hypervisor: str, pool: str,
                 name: str) -> None:
    reg.connection(hypervisor).delete_pool_volume(pool, name)


def _snapshot(_db: Database, reg: HypervisorRegistry, hypervisor: str, uuid: str,
              name: str) -> None:
    """A snapshot a job was taking when it failed or its node died."""
    try:
        reg.connection(hypervisor).delete_snapshot(uuid, name)
    except NotFound:
        pass  # never made, or its machine is gone


def _dhcp_host(_db: Database, reg: HypervisorRegistry, hypervisor: str, network: str, mac: str,
               ip: str) -> None:
    reg.connection(hypervisor).dhcp_host(network, mac=mac, ip=ip, name="",
                                         command="delete")


def _machine(db: Database, _reg: HypervisorRegistry, uuid: str) -> None:
    with db.session() as s:
        m = s.get(Machine, uuid)
        if m is not None:
            s.delete(m)


def _package_state(db: Database, _reg: HypervisorRegistry, uuid: str, state: str) -> None:
    """Put a package back in the state it had before the job touched it."""
    with db.session() as s:
        p = s.get(Package, uuid)
        if p is not None:
            p.state = state


def _image(db: Database, _reg: HypervisorRegistry, uuid: str) -> None:
    """An image whose registration did not finish."""
    with db.session() as s:
        image = s.get(Image, uuid)
        if image is not None and image.state != "ready":
            s.delete(image)


UNDO: dict[str, Callable[..., None]] = {
    "file": _file, "image": _image, "dir": _dir, "paused": _paused, "volume": _volume,
    "pool_volume": _pool_volume, "domain": _domain, "machine": _machine,
    "package_state": _package_state, "dhcp_host": _dhcp_host, "snapshot": _snapshot}


def run(db: Database, registry: HypervisorRegistry, entries: list[dict]) -> list[str]:
    """Undo every entry, newest first; returns what could not be undone (for the job log)."""
    problems = []
    for entry in reversed(entries):
        args = {k: v for k, v in entry.items() if k != "kind"}
        try:
            UNDO[entry["kind"]](db, registry, **args)
        except (EnomalismError, OSError) as e:
            problems.append(f"could not remove {entry['kind']} {args}: {e}")
            log.warning("undo of %s failed: %s", entry, e)
    return problems
