"""Moving machines between hypervisors as transactions (docs/hosts.md, "Moving a machine").

`set_parent` of a running machine (or of a stopped one whose disks the target does not see)
queues a `migrate` transaction: live migration with the disks copied for a running one, the
volumes copied over storage streams and then the definition for a stopped one. `evacuate` of
a host queues one `evacuate` transaction whose children (jobs/runner.py `run_child`) are one
`migrate` per machine, each placed by the placer. The request only checks and queues; the job
does the libvirt work with no database transaction open, and writes the result at the end.
"""

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm.attributes import flag_modified

from enomalism.errors import (
    CannotRunThere,
    Conflict,
    EnomalismError,
    HypervisorError,
    InvalidInput,
    InvalidState,
    Locked,
    NotFound,
    SameHypervisor,
)
from enomalism.jobs.runner import JobCancelled, JobContext, JobTakenOver
from enomalism.runtime import sync
from enomalism.services import access, dhcp_entries, placement, transactions, volumes
from enomalism.services.context import Context, Principal
from enomalism.services.lookup import get_machine
from enomalism.store.models import Hypervisor, Machine, Transaction, User, Volume
from enomalism.virt import migration, storage
from enomalism.virt.domxml import DomainXML
from enomalism.virt.hypervisor import HypervisorConnection

KIND, EVACUATE = "migrate", "evacuate"
# States a machine moves in live; shutoff moves with a copy; others are refused.
LIVE_STATES = frozenset({"running", "blocked", "paused"})
LOG_EVERY = 2.0  # seconds between the log lines that say how many bytes remain


class Queued(str):
    """An action's answer message that also names the transaction doing the work."""

    txid: str

    def __new__(cls, message: str, txid: str) -> "Queued":
        obj = super().__new__(cls, message)
        obj.txid = txid
        return obj


def check_target(m: Machine, target: Hypervisor) -> None:
    """Refuse a move to where the machine is, or to a hypervisor that cannot run it."""
    if target.uuid == m.parent_uuid:
        raise SameHypervisor(f"machine {m.name} is on hypervisor {target.virt_url} already")
    source = m.vm_parent
    why = placement.incompatibility(source.virt_class, source.arch, target)
    if why:
        raise CannotRunThere(f"hypervisor {target.virt_url} cannot run machine {m.name}, "
                             f"which is {source.virt_class} on {source.virt_url}: it is "
                             f"{target.virt_class}" + ("" if target.virt_class != source.virt_class
                                                       else f" ({why})"))


def parse_bandwidth(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        n = int(str(value))
    except ValueError:
        n = 0
    if n < 1 or n > 1_000_000:
        raise InvalidInput(f"bandwidth must be a whole number of MiB/s from 1, not {value!r}")
    return n


def queue_move(ctx: Context, m: Machine, target: Hypervisor, *, pool: str | None,
               bandwidth: int | None) -> Queued:
    """Queue the `migrate` transaction of `m` (checked, unlocked) to `target`."""
    if m.state not in LIVE_STATES and m.state != "shutoff":
        raise InvalidState(f"machine {m.name} is {m.state}: a machine moves running, paused "
                           "or shut off")
    live = m.state in LIVE_STATES
    tx = transactions.enqueue(ctx, KIND, target=m.uuid, lock=[m.uuid], params={
        "machine": m.uuid, "hypervisor": m.parent_uuid, "target": target.uuid,
        "pool": pool, "bandwidth": bandwidth, "live": live})
    how = "live migration" if live else "move with its disks"
    return Queued(f"{how} of {m.name} to {target.virt_url} queued", tx.uuid)


# -- the job ----------------------------------------------------------------------------


@dataclass
class DiskMove:
    target: str  # vda
    path: str  # on the source
    name: str  # the volume's name, kept on the target
    capacity: int
    fmt: str
    pool: str = ""  # the target's pool
    planned: str = ""  # its path there as the undo log has it, before it is made
    new_path: str = ""


def _target_pool(dst: HypervisorConnection, asked: str | None, source_pool: str | None) -> str:
    """The pool asked for; else the target's pool of the source's pool's name; else its
    default (pick_pool)."""
    if asked:
        return dst.pick_pool(asked).name()
    if source_pool:
        try:
            return dst.pool(source_pool).name()
        except NotFound:
            pass
    return dst.pick_pool().name()


def _plan(src: HypervisorConnection, dst: HypervisorConnection, xml: DomainXML,
          pool: str | None) -> list[DiskMove]:
    """The writable hard disks to copy: those the target does not see at the same path
    (a pool both hosts share is not copied)."""
    plan = []
    for disk in src.hard_disks(xml):
        if disk.readonly or disk.shareable or not disk.target:
            continue
        if dst.volume_path(path=disk.path) is not None:
            continue  # shared storage: the same volume on both
        info = src.volume_info(disk.path)
        name = info.name or disk.path.rsplit("/", 1)[-1]
        move = DiskMove(disk.target, disk.path, name, info.capacity, info.format or "raw")
        move.pool = _target_pool(dst, pool, info.pool)
        if dst.pool(move.pool).volume_path(name) is not None:
            raise Conflict(f"storage pool {move.pool} of the target already has a volume "
                           f"named '{name}'")
        plan.append(move)
    return plan


class _Watch:
    """The progress and cancel callbacks a copy or a migration calls from its polling loop:
    they must not raise, so a cancel (or a take-over) is noted and answered there."""

    def __init__(self, job: JobContext, start: float, span: float) -> None:
        self.job, self.start, self.span = job, start, span
        self.stop, self.taken = False, False
        self.logged = 0.0

    def cancelled(self) -> bool:
        try:
            self.stop = self.stop or self.job.cancel_requested()
        except JobTakenOver:
            self.stop = self.taken = True
        return self.stop

    def report(self, done: float, message: str | None = None) -> None:
        now = time.monotonic()
        if message and now - self.logged < LOG_EVERY:
            message = None
        elif message:
            self.logged = now
        try:
            self.job.progress(self.start + self.span * max(0.0, min(done, 1.0)), message)
        except JobCancelled:
            self.stop = True
        except JobTakenOver:
            self.stop = self.taken = True

    def migration(self, p: migration.MigrationProgress) -> None:
        done = (p.total - p.remaining) / p.total if p.total else 0.0
        self.report(done, f"{_mib(p.remaining)} of {_mib(p.total)} remaining (disks "
                          f"{_mib(p.disk_remaining)}, memory {_mib(p.memory_remaining)})")

    def raise_if_stopped(self) -> None:
        if self.taken:
            raise JobTakenOver()
        if self.stop:
            raise JobCancelled()


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def migrate(job: JobContext) -> dict[str, Any]:
    """The `migrate` transaction: see the module's docstring and docs/hosts.md."""
    p = job.params
    uuid, source_uuid, target_uuid = p["machine"], p["hypervisor"], p["target"]
    with job.db.session(write=False) as s:
        m = s.get(Machine, uuid)
        if m is None:
            raise NotFound(f"machine {uuid} is gone")
        if m.parent_uuid != source_uuid:
            raise InvalidState(f"machine {m.name} was moved meanwhile")
        owned = volumes.owned(s, uuid)
        target_url = s.get_one(Hypervisor, target_uuid).virt_url
    src = job.registry.connection(source_uuid)
    dst = job.registry.connection(target_uuid)
    snap = src.snapshot(uuid, with_xml=False)
    if snap is None:
        raise NotFound(f"domain {uuid} is not on its hypervisor")
    live = snap.state in LIVE_STATES
    if not live and snap.state != "shutoff":
        raise InvalidState(f"the domain is {snap.state}; it moves running or shut off")
    if dst.uuid_taken(uuid):
        raise Conflict(f"hypervisor {target_url} has a domain with UUID {uuid} already")
    inactive = DomainXML(src.domain_xml(uuid, secure=True))
    if dst.name_taken(inactive.name or "", other_than=uuid):
        raise Conflict(f"hypervisor {target_url} already has a domain named '{inactive.name}'")
    plan = _plan(src, dst, inactive, p.get("pool"))
    job.progress(2, f"{'live migration' if live else 'move'} to {target_url}: "
                    f"{len(plan)} disk(s) to copy")
    if live:
        result = _live(job, src, dst, uuid, inactive, plan, p.get("bandwidth"))
    else:
        result = _stopped(job, src, dst, uuid, inactive, plan, target_uuid)
    # The machine is on the target now: the record follows at once (a console opened again
    # finds it there), then its old disks go (its own only).
    moved = {d.path: d.new_path for d in plan}
    message = _record(job, uuid, source_uuid, target_uuid, dst, moved, owned,
                      f"machine moved to hypervisor {target_url}")
    for d in plan:
        if d.path in owned:
            try:
                src.delete_volume(d.path)
            except EnomalismError as e:
                job.log(f"the old disk {d.path} stays on the source: {e.message}", "warning")
    job.log(message)
    return {"machine": uuid, "hypervisor": target_uuid, "live": live, "disks": moved,
            "message": message, **result}


def _live(job: JobContext, src: HypervisorConnection, dst: HypervisorConnection, uuid: str,
          inactive: DomainXML, plan: list[DiskMove], bandwidth: int | None) -> dict[str, Any]:
    """Empty volumes on the target, then libvirt's migration mirrors the disks into them."""
    target_uuid = job.params["target"]
    for d in plan:
        pool = dst.pool(d.pool)
        d.fmt = "qcow2" if pool.supports_overlay() else "raw"
        d.planned = pool.planned_path(d.name)
        job.will_create("volume", hypervisor=target_uuid, path=d.planned)
        d.new_path = pool.blank(d.name, d.capacity)
    paths = {d.target: (d.new_path, d.fmt) for d in plan}
    live_xml = migration.with_disks_at(DomainXML(src.migratable_xml(uuid)), paths)
    persist_xml = migration.with_disks_at(inactive, paths)
    watch = _Watch(job, 5, 90)
    try:
        done = src.migrate_live(dst, uuid, xml=live_xml, persist_xml=persist_xml,
                                disks=[d.target for d in plan], bandwidth_mib=bandwidth,
                                progress=watch.migration, cancelled=watch.cancelled)
    except migration.MigrationCancelled:
        job.log("migration aborted; the machine runs on the source as before")
        watch.raise_if_stopped()
        raise JobCancelled() from None
    # On the target and gone from the source: nothing of this is to be undone any more.
    for d in plan:
        job.created_ok("volume", hypervisor=target_uuid, path=d.planned)
    _point_at(job, uuid, target_uuid)
    job.log(f"migrated; downtime {done.downtime_ms} ms, {done.total_ms} ms in all")
    return {"downtime_ms": done.downtime_ms, "total_ms": done.total_ms,
            "transferred": done.transferred}


def _stopped(job: JobContext, src: HypervisorConnection, dst: HypervisorConnection, uuid: str,
             inactive: DomainXML, plan: list[DiskMove], target_uuid: str) -> dict[str, Any]:
    """Each volume copied over storage streams, then the definition; then the source's
    definition goes."""
    total = sum(max(d.capacity, 1) for d in plan) or 1
    done_before = 0
    for d in plan:
        pool = dst.pool(d.pool)
        d.planned = pool.planned_path(d.name)
        job.will_create("volume", hypervisor=target_uuid, path=d.planned)
        watch = _Watch(job, 5 + 85 * done_before / total, 85 * max(d.capacity, 1) / total)

        def copied(n: int, d: DiskMove = d, watch: _Watch = watch) -> None:
            watch.report(n / max(d.capacity, 1), f"{d.target}: {_mib(n)} copied")
        try:
            d.new_path = src.copy_volume_to(dst, d.path, pool=d.pool, name=d.name,
                                            progress=copied, cancelled=watch.cancelled)
        except storage.StorageCancelled:
            watch.raise_if_stopped()
            raise JobCancelled() from None
        watch.raise_if_stopped()
        d.fmt = dst.volume_info(d.new_path).format or d.fmt
        done_before += max(d.capacity, 1)
    xml = migration.with_disks_at(inactive, {d.target: (d.new_path, d.fmt) for d in plan})
    job.will_create("domain", hypervisor=target_uuid, uuid=uuid)
    dst.define(xml)
    job.check_cancelled()
    src.undefine(uuid)
    _point_at(job, uuid, target_uuid)
    for d in plan:
        job.created_ok("volume", hypervisor=target_uuid, path=d.planned)
    job.created_ok("domain", hypervisor=target_uuid, uuid=uuid)
    return {}


def _point_at(job: JobContext, uuid: str, target_uuid: str) -> None:
    """The record names its new hypervisor at once, before anything slower: a console
    opened again, an event of either host, find the machine where it is. `_record` writes
    the rest."""
    with job.db.session() as s:  # through the ORM: the `machine.moved` event goes out
        s.get_one(Machine, uuid).parent_uuid = target_uuid


def _principal(s: Any, owner_uuid: str | None) -> Principal:
    user = s.get(User, owner_uuid) if owner_uuid else None
    return Principal(user.uuid, user.username, user.is_admin) if user else \
        Principal("", "", False)


def _record(job: JobContext, uuid: str, source_uuid: str, target_uuid: str,
            dst: HypervisorConnection, moved: dict[str, str], owned: set[str],
            message: str) -> str:
    """The machine's record follows it: parent, state and definition from the target, its
    own volumes' rows, and its DHCP host entries and leases (as the definition-only move)."""
    snap = dst.snapshot(uuid)
    with job.db.session() as s:
        ctx = Context(db=s, registry=job.registry, user=_principal(s, job.owner_uuid))
        m = s.get_one(Machine, uuid)
        s.refresh(m)
        m.parent_uuid = target_uuid
        m.xml_pending = False
        sync.store(s, target_uuid, uuid, snap)
        flag_modified(m, "state")
        for old in moved:
            row = s.get(Volume, (source_uuid, old))
            if row is not None:
                s.delete(row)
        s.flush()
        volumes.record(s, target_uuid, uuid, [new for old, new in moved.items() if old in owned])
        return dhcp_entries.follow_move(ctx, m, source_uuid, dst, message)


# -- evacuating a host ------------------------------------------------------------------


def queue_evacuation(ctx: Context, host_uuid: str) -> Transaction:
    """Plan where each machine of the host goes (the placer, each choice counted in the
    next) and queue one `evacuate` transaction holding their locks. Administrators only:
    it moves every user's machines."""
    access.require_admin(ctx, "evacuate a host")
    host = get_machine(ctx.db, host_uuid)
    if host.kind != "host":
        raise InvalidInput(f"machine {host.name} is not a host: evacuate empties a host")
    own = [hv.uuid for hv in host.hypervisors]
    vms = list(ctx.db.scalars(select(Machine).where(
        Machine.kind == "vm", Machine.parent_uuid.in_(own), Machine.managed.is_(True),
        Machine.state != "missing").order_by(Machine.name)))
    for m in vms:
        if m.lock_txid:
            raise Locked(f"machine {m.name} is locked by transaction {m.lock_txid}",
                         txid=m.lock_txid)
        if m.state not in LIVE_STATES and m.state != "shutoff":
            raise InvalidState(f"machine {m.name} is {m.state}: stop or start it first")
    others = [hv for hv in ctx.db.scalars(select(Hypervisor).order_by(Hypervisor.uuid))
              if hv.machine_uuid != host.uuid]
    if not others:
        raise SameHypervisor(f"there is no other host to move the machines of {host.name} to")
    loads = placement.loads(ctx, {hv.machine_uuid for hv in others})
    moves = []
    # the running ones (memory that must fit) first, the largest first
    for m in sorted(vms, key=lambda m: (m.state not in LIVE_STATES, -(m.memory_kib or 0))):
        active = m.state in LIVE_STATES
        need = placement.Need(virt_class=m.vm_parent.virt_class, arch=m.vm_parent.arch,
                              memory_kib=(m.memory_kib or 0) if active else 0,
                              vcpus=m.vcpus or 0, label=f"machine {m.name}")
        choice = placement.choose(others, loads, need, where="on another host")
        hv = choice.hypervisor
        if active:
            was = loads.get(hv.machine_uuid, placement.Load())
            loads[hv.machine_uuid] = placement.Load(was.memory_kib + (m.memory_kib or 0),
                                                    was.vcpus + (m.vcpus or 0))
        moves.append({"machine": m.uuid, "name": m.name, "hypervisor": m.parent_uuid,
                      "target": hv.uuid, "live": active})
    return transactions.enqueue(ctx, EVACUATE, target=host.uuid, lock=[m.uuid for m in vms],
                                params={"host": host.uuid, "moves": moves})


def evacuate(job: JobContext) -> dict[str, Any]:
    """The `evacuate` transaction: one `migrate` child per machine, one after the other."""
    moves = job.params.get("moves") or []
    children, failed = [], []
    for i, mv in enumerate(moves):
        job.check_cancelled()
        with job.db.session(write=False) as s:
            where = s.scalar(select(Machine.parent_uuid).where(Machine.uuid == mv["machine"]))
        if where != mv["hypervisor"]:  # deleted, or moved already (a retried evacuation)
            job.log(f"{mv['name']}: no longer on the host; left as it is")
            children.append({"machine": mv["machine"], "target": where, "state": "skipped"})
            continue
        state, out = job.run_child(KIND, target=mv["machine"], lock=mv["machine"], params={
            "machine": mv["machine"], "hypervisor": mv["hypervisor"], "target": mv["target"],
            "pool": None, "bandwidth": None, "live": mv["live"]})
        children.append({"machine": mv["machine"], "target": mv["target"], "state": state})
        if state == "cancelled":
            raise JobCancelled()
        if state != "done":
            failed.append(f"{mv['name']}: {out.get('error')}")
        job.progress(100 * (i + 1) / max(len(moves), 1),
                     f"{mv['name']}: {state}")
    if failed:
        raise HypervisorError(f"{len(failed)} of {len(moves)} machine(s) not moved: "
                             + "; ".join(failed))
    return {"host": job.params.get("host"), "moved": len(moves), "children": children}
