"""A machine's snapshots (issue 19): listed live from its hypervisor; created, reverted and
deleted as transactions (a snapshot with memory writes the guest's RAM, a revert or delete
rewrites the machine's qcow2 volumes: seconds to minutes), each holding the machine's lock.

The request checks what it can before it queues: the caller's permission (`read` to list,
`modify` to change), the machine's state and lock (`actions.refusal`, the one precondition
check), the name, and what libvirt holds (a name taken, a snapshot that is not there), so
that bad input answers at once with its errno and queues nothing. The snapshots live inside
the machine's own volumes (virt/snapshots.py): a non-administrator's machine must have only
disks of its own (as `package` requires), and `totaldelete` removes them with the volumes.
"""

from typing import Any

from enomalism.errors import (
    ForeignDisk,
    HypervisorUnreachable,
    InvalidState,
    NoSnapshot,
    SnapshotExists,
)
from enomalism.jobs.runner import JobContext
from enomalism.runtime import sync
from enomalism.services import access, transactions
from enomalism.services.actions import refusal
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import get_machine
from enomalism.services.provisioning import _check_own_disks
from enomalism.store.models import Machine, Transaction
from enomalism.virt.domxml import DomainXML
from enomalism.virt.snapshots import Snapshot, check_name

# job kinds (wiring/job_table.py)
CREATE, REVERT, DELETE = "snapshot", "snapshot_revert", "snapshot_delete"
LIST_WITHIN = 10.0  # seconds a list waits for the hypervisor (registry.ask)


def _vm(ctx: Context, uuid: str, permission: str) -> Machine:
    m = get_machine(ctx.db, uuid)
    access.require(ctx, m, permission, "machine")
    if m.kind != "vm":
        raise InvalidState(f"machine {m.name} is a host: only virtual machines have snapshots")
    return m


def listed(ctx: Context, *, uuid: str) -> list[Snapshot]:
    """The machine's snapshots as a tree (parents before children), asked of libvirt."""
    m = _vm(ctx, uuid, "read")
    if m.state in sync.NO_DOMAIN_YET:
        return []
    muuid = m.uuid
    found = ctx.registry.ask(m.vm_parent_uuid, lambda c: c.list_snapshots(muuid),
                             within=LIST_WITHIN)
    if found is None:
        raise HypervisorUnreachable(f"the hypervisor of machine {m.name} did not answer for "
                                    "its snapshots; try again")
    return found


def get(ctx: Context, *, uuid: str, name: str) -> Snapshot:
    found = {s.name: s for s in listed(ctx, uuid=uuid)}
    if check_name(name) not in found:
        raise NoSnapshot(f"the machine has no snapshot '{name}'")
    return found[name]


def _checked(ctx: Context, uuid: str, action: str, name: str | None) -> tuple[Machine, str]:
    """The machine, checked for a change of its snapshots (permission, lock, state), and the
    name, checked as a name."""
    m = _vm(ctx, uuid, "modify")
    if (refused := refusal(m, action)) is not None:
        raise refused
    return m, check_name((name or "").strip())


def _libvirt_names(ctx: Context, m: Machine) -> list[str]:
    """The snapshots libvirt holds, asked after a commit with nothing written (no write lock
    while libvirt answers); a non-administrator's machine has only disks of its own."""
    conn, muuid, xml = ctx.registry.connection(m.vm_parent_uuid), m.uuid, m.xmldesc
    commit_before_slow_work(ctx)
    if not ctx.user.is_admin and xml:
        with ctx.registry.db.session(write=False) as reader:
            try:
                _check_own_disks(reader, conn, muuid, DomainXML(xml))
            except ForeignDisk as e:  # the same check as package's, said for a snapshot
                raise ForeignDisk(e.message.partition(":")[0] + ": a snapshot is written "
                                  "into the machine's disks, and yours may change only its "
                                  "own volumes (attach_disk, detach_disk)") from None
    return conn.snapshot_names(muuid)


def _queue(ctx: Context, m: Machine, action: str, kind: str, params: dict[str, Any]
           ) -> Transaction:
    ctx.db.expire(m)  # locked, changed or deleted while libvirt answered?
    m = get_machine(ctx.db, m.uuid)
    if (refused := refusal(m, action)) is not None:
        raise refused
    return transactions.enqueue(ctx, kind, target=m.uuid, lock=[m.uuid], params={
        "machine": m.uuid, "hypervisor": m.parent_uuid, **params})


def queue_create(ctx: Context, *, uuid: str, name: str | None, description: str | None,
                 memory: bool) -> Transaction:
    """A snapshot: with `memory` of a running (or paused) machine, without of a stopped one."""
    m, name = _checked(ctx, uuid, CREATE, name)
    running = m.state in ("running", "blocked", "paused")
    if memory and not running:
        raise InvalidState(f"a snapshot with memory is of a running machine; {m.name} is "
                           f"{m.state} (leave memory out)")
    if running and not memory:
        raise InvalidState(f"{m.name} is {m.state}: its snapshot holds its memory too "
                           "(memory=true), or stop it first for a disk-only one")
    if name in _libvirt_names(ctx, m):
        raise SnapshotExists(f"machine {m.name} has a snapshot '{name}' already")
    return _queue(ctx, m, CREATE, CREATE, {"name": name,
                                           "description": (description or "")[:1000],
                                           "memory": bool(memory)})


def queue_change(ctx: Context, *, uuid: str, name: str | None, kind: str) -> Transaction:
    """Revert to the snapshot (`REVERT`) or delete it (`DELETE`)."""
    m, name = _checked(ctx, uuid, kind, name)
    if name not in _libvirt_names(ctx, m):
        raise NoSnapshot(f"machine {m.name} has no snapshot '{name}'")
    return _queue(ctx, m, kind, kind, {"name": name})


# -- the jobs ----------------------------------------------------------------------------

def create_job(job: JobContext) -> dict:
    p = job.params
    hv, uuid, name = p["hypervisor"], p["machine"], p["name"]
    conn = job.registry.connection(hv)
    job.progress(5, f"taking snapshot {name}" + (" with memory" if p["memory"] else ""))
    job.will_create("snapshot", hypervisor=hv, uuid=uuid, name=name)
    try:
        snap = conn.create_snapshot(uuid, name=name, description=p["description"],
                                    memory=p["memory"])
    except SnapshotExists:
        job.created_ok("snapshot", hypervisor=hv, uuid=uuid, name=name)  # not this job's
        raise
    job.created_ok("snapshot", hypervisor=hv, uuid=uuid, name=name)
    job.registry.resync_machine(hv, uuid)
    return {"machine": uuid, "snapshot": snap.name, "memory": snap.memory,
            "state": snap.state}


def revert_job(job: JobContext) -> dict:
    p = job.params
    hv, uuid = p["hypervisor"], p["machine"]
    job.progress(5, f"reverting to snapshot {p['name']}")
    job.registry.connection(hv).revert_snapshot(uuid, p["name"])
    job.registry.resync_machine(hv, uuid)  # a snapshot with memory runs again
    return {"machine": uuid, "snapshot": p["name"]}


def delete_job(job: JobContext) -> dict:
    p = job.params
    hv, uuid = p["hypervisor"], p["machine"]
    job.progress(5, f"deleting snapshot {p['name']}")
    job.registry.connection(hv).delete_snapshot(uuid, p["name"])
    return {"machine": uuid, "snapshot": p["name"]}
