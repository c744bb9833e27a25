"""The base-image cache on the hypervisors: the `enomalism-base-<package>-<disk>.<format>`
volumes provisioning uploads once per storage pool and backs every new machine's disk onto.

Only this installation's base volumes are ever removed: those its provisions uploaded (the
`base_volumes` table) or whose package it knows; another installation sharing the hypervisor
keeps its own. One of ours is unused when its package is no longer cached here (uncached,
deleted) and nothing on its hypervisor backs onto it: no volume of any pool (a machine's overlay, a
snapshot) and no domain's disk. That is read from libvirt, never from the database alone. A
sweep (a `cache_prune` transaction, queued every `cache_sweep_interval` seconds, or by an
administrator) removes the unused ones. A base whose package is still cached is kept even
without machines: the next provision of the package uses it at once.

A stopped domain's qcow2 disk that lies in no storage pool has a backing chain libvirt does
not show: on this machine's own hypervisors qemu-img reads it; on another machine's, while
there is such a disk, nothing on that hypervisor is removed, and the sweep says why.
"""

import json
import logging
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from lxml import etree
from sqlalchemy import delete, select

from enomalism.errors import EnomalismError, NotFound
from enomalism.jobs.locks import named_lock
from enomalism.jobs.runner import JobContext
from enomalism.services import access, transactions
from enomalism.services.context import Context
from enomalism.services.lookup import parse_uuid
from enomalism.store.db import Database
from enomalism.store.models import BaseVolume, Hypervisor, Package, Transaction, utcnow
from enomalism.virt.hypervisor import HypervisorConnection
from enomalism.virt.uri import is_local

log = logging.getLogger(__name__)

PREFIX = "enomalism-base-"
UUID_LEN = 36
KIND = "cache_prune"
# Disk formats that may have a backing file: a disk of these outside every pool might back
# onto a base (for its domain's inactive XML libvirt does not say).
LAYERED = {"qcow2", "qed", "vmdk", "qcow"}


@dataclass
class Base:
    hypervisor: str
    pool: str
    name: str
    path: str
    capacity: int
    allocation: int
    package: str | None
    volumes: list[str] = field(default_factory=list)  # pool/name of volumes backing onto it
    domains: list[str] = field(default_factory=list)  # names of domains using it


@dataclass
class Scan:
    bases: list[Base]
    unknown: list[str]  # why nothing may be removed on this hypervisor (unseen chains)


def package_of(name: str) -> str | None:
    rest = name[len(PREFIX):]
    return rest[:UUID_LEN] if len(rest) > UUID_LEN and rest[UUID_LEN] == "-" else None


def _text(el: etree._Element, path: str) -> str | None:
    found = el.find(path)
    return found.text if found is not None and found.text else None


def _chain_on_this_machine(path: str) -> list[str] | None:
    """The backing chain of an image file on this machine, by qemu-img (which reads each
    image's header); None when it cannot be read."""
    try:
        out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output=json",
                              path], capture_output=True, text=True, timeout=30, check=True)
        images = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return [i["full-backing-filename"] for i in images if i.get("full-backing-filename")]


def _volumes(conn: HypervisorConnection, hv_uuid: str, refresh: bool
             ) -> tuple[list[Base], dict[str, str], dict[str, str]]:
    """The base volumes of the active pools, and of every volume: what it backs onto, and
    where it is (pool/name), by path."""
    backing: dict[str, str] = {}  # volume path -> the path it backs onto
    where: dict[str, str] = {}  # volume path -> pool/name
    bases: list[Base] = []
    for pool, name, path, text in conn.active_pool_volumes(refresh=refresh):
        xml = etree.fromstring(text)
        where[path] = f"{pool}/{name}"
        if back := _text(xml, "backingStore/path"):
            backing[path] = back
        if name.startswith(PREFIX):
            bases.append(Base(
                hypervisor=hv_uuid, pool=pool, name=name, path=path,
                capacity=int(_text(xml, "capacity") or 0),
                allocation=int(_text(xml, "allocation") or 0), package=package_of(name)))
    by_path = {b.path: b for b in bases}
    for path, back in backing.items():
        if back in by_path:
            by_path[back].volumes.append(where[path])
    return bases, backing, where


def _disk_chain(disk: etree._Element, domain: str, backing: dict[str, str],
                where: dict[str, str], local: bool, unknown: list[str]) -> list[str]:
    """The paths a domain's disk reads: its own and its backing chain's, through pool volumes
    (whose backing libvirt knows) and, outside every pool, qemu-img on this machine. A chain
    that cannot be known is said in `unknown`."""
    src = disk.find("source")
    path = None if src is None else (src.get("file") or src.get("dev"))
    if path is None:
        return []
    chain = [path] + [s.get("file") or s.get("dev") for s in
                      disk.iterfind(".//backingStore/source")]
    hop = path
    while hop in backing and backing[hop] not in chain:
        hop = backing[hop]
        chain.append(hop)
    drv = disk.find("driver")
    fmt = drv.get("type") if drv is not None else None
    if path not in where and fmt in LAYERED and disk.find("backingStore/source") is None:
        # Outside every pool, and libvirt shows no chain (a stopped domain).
        more = _chain_on_this_machine(path) if local else None
        if more is None:
            unknown.append(f"domain {domain}'s disk {path} ({fmt}) is in no "
                           "storage pool: its backing file is not known")
        chain += more or []
    return chain


def scan(conn: HypervisorConnection, hv_uuid: str, *, refresh: bool = False) -> Scan:
    """Every base volume of the hypervisor's active pools and what backs onto it. Domains and
    volumes that vanish while they are read (others work on the same host) are passed over."""
    local = is_local(conn.uri())
    bases, backing, where = _volumes(conn, hv_uuid, refresh)
    by_path = {b.path: b for b in bases}
    unknown: list[str] = []
    for name, text in conn.domain_xmls():
        for disk in etree.fromstring(text).iterfind("devices/disk"):
            chain = _disk_chain(disk, name, backing, where, local, unknown)
            for p in {p for p in chain if p in by_path}:
                if name not in by_path[p].domains:
                    by_path[p].domains.append(name)
    return Scan(bases, unknown)


def _cached(db: Any) -> set[str]:
    return set(db.scalars(select(Package.uuid).where(Package.state == "cached")))


def _provisioning(db: Any) -> set[str]:
    """Packages a queued or running provision uses (it may not have its base yet)."""
    rows = db.scalars(select(Transaction.params).where(
        Transaction.kind == "provision", Transaction.state.in_(("queued", "running"))))
    return {p["package"] for p in rows if p and p.get("package")}


class Known:
    """What the database says about base volumes: ours, cached packages, provisions."""

    def __init__(self, db: Any) -> None:
        self.names = dict(db.execute(select(Package.uuid, Package.name)).tuples().all())
        self.cached = _cached(db)
        self.provisioning = _provisioning(db)
        self.recorded = set(db.execute(select(
            BaseVolume.hypervisor_uuid, BaseVolume.pool, BaseVolume.name)).tuples())

    def ours(self, b: Base) -> bool:
        return (b.hypervisor, b.pool, b.name) in self.recorded or b.package in self.names

    def why_kept(self, b: Base) -> str | None:
        if not self.ours(b):
            return "made by another installation"
        return _why_kept(b, self.cached, self.provisioning)


def _why_kept(b: Base, cached: set[str], provisioning: set[str]) -> str | None:
    if b.package in cached:
        return "its package is cached"
    if b.package in provisioning:
        return "a provision of its package is under way"
    if b.volumes or b.domains:
        return "in use"
    return None


# -- the API's answers --------------------------------------------------------------------

def list_cache(ctx: Context, *, hypervisor: str | None = None) -> dict[str, Any]:
    """The base volumes of every connected hypervisor (or one), with their users and whether
    a sweep would remove them. Administrators only: it shows every user's machines and the
    hypervisors' storage."""
    access.require_admin(ctx, "see the base-image cache")
    hvs = _hypervisors(ctx.db, hypervisor)
    known = Known(ctx.db)
    bases, problems = [], []
    for hv in hvs:
        try:
            found = scan(ctx.registry.connection(hv.uuid), hv.uuid)
        except EnomalismError as e:
            problems.append(f"{hv.virt_url}: {e.message}")
            continue
        problems += [f"{hv.virt_url}: {u}" for u in found.unknown]
        for b in found.bases:
            kept = known.why_kept(b) or ("kept while " + found.unknown[0]
                                         if found.unknown else None)
            bases.append({
                "hypervisor": b.hypervisor, "pool": b.pool, "name": b.name, "path": b.path,
                "capacity": b.capacity, "allocation": b.allocation, "package": b.package,
                "package_name": known.names.get(b.package), "cached": b.package in known.cached,
                "ours": known.ours(b), "domains": sorted(b.domains),
                "volumes": sorted(b.volumes), "unused": kept is None, "kept": kept})
    return {"bases": bases, "problems": problems}


def queue_prune(ctx: Context, *, hypervisor: str | None = None) -> Transaction:
    access.require_admin(ctx, "prune the base-image cache")
    params = {"hypervisor": _hypervisors(ctx.db, hypervisor)[0].uuid} if hypervisor else {}
    return transactions.enqueue(ctx, KIND, target=params.get("hypervisor"), params=params)


def _hypervisors(db: Any, ref: str | None) -> list[Hypervisor]:
    if ref is None:
        return list(db.scalars(select(Hypervisor).order_by(Hypervisor.virt_url)))
    hv = db.get(Hypervisor, parse_uuid(ref, "hypervisor"))
    if hv is None:
        raise NotFound(f"no hypervisor with UUID {ref}")
    return [hv]


# -- the sweep ----------------------------------------------------------------------------

def prune(job: JobContext) -> dict[str, Any]:
    """Remove the unused base volumes of one hypervisor (params.hypervisor) or of every one
    this node reaches. Each is checked again, under the lock provisioning takes for the same
    volume, right before it goes."""
    with job.db.session(write=False) as s:
        hvs = [(h.uuid, h.virt_url) for h in _hypervisors(s, job.params.get("hypervisor"))]
    removed, kept, skipped = [], 0, []
    for hv_uuid, uri in hvs:
        job.check_cancelled()
        if job.registry.status(hv_uuid)[0] == "elsewhere":
            skipped.append(f"{uri}: local to another machine (its node sweeps it)")
            continue
        try:
            conn = job.registry.connection(hv_uuid)
            candidates = scan(conn, hv_uuid, refresh=True)
        except EnomalismError as e:
            skipped.append(f"{uri}: {e.message}")
            continue
        if candidates.unknown:
            skipped.append(f"{uri}: nothing removed while {candidates.unknown[0]}")
            continue
        for base in candidates.bases:
            with named_lock(job.db, f"volume:{hv_uuid}:{base.pool}:{base.name}", job.txid,
                            wait=job.check_cancelled, still_mine=lambda: not job.taken_over()):
                now = next((b for b in scan(conn, hv_uuid).bases if b.path == base.path), None)
                if now is None:
                    continue
                with job.db.session(write=False) as s:
                    why = Known(s).why_kept(now)
                if why is not None:
                    kept += 1
                    continue
                conn.delete_pool_volume(now.pool, now.name)
                with job.db.session() as s:
                    s.execute(delete(BaseVolume).where(
                        BaseVolume.hypervisor_uuid == hv_uuid, BaseVolume.pool == now.pool,
                        BaseVolume.name == now.name))
                job.log(f"removed unused base volume {now.pool}/{now.name} of {uri} "
                        f"({now.allocation} bytes)")
                removed.append({"hypervisor": hv_uuid, "pool": now.pool, "name": now.name,
                                "allocation": now.allocation})
    for why in skipped:
        job.log(f"skipped {why}", "warning")
    return {"removed": removed, "kept": kept, "skipped": skipped}


class Sweeper:
    """Queues a `cache_prune` transaction every `interval` seconds (none when 0), unless one
    is queued or running, or one was queued less than `interval` ago (by any node)."""

    def __init__(self, db: Database, runner: Any, interval: float) -> None:
        self.db, self.runner, self.interval = db, runner, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="cache-sweep", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval, 600.0)):
            try:
                if self.due():
                    self.runner.notify()
            except Exception:
                log.exception("queueing the base-image cache sweep failed")

    def due(self) -> bool:
        """Queue a sweep if one is due; True when one was queued."""
        with self.db.session() as s:
            last = s.scalar(select(Transaction.created_at).where(Transaction.kind == KIND)
                            .order_by(Transaction.created_at.desc()).limit(1))
            if last is not None and last > utcnow() - timedelta(seconds=self.interval):
                return False
            if s.scalar(select(Transaction.uuid).where(
                    Transaction.kind == KIND, Transaction.state.in_(("queued", "running")))):
                return False
            s.add(Transaction(kind=KIND, params={}))
        return True
