"""Placement: which hypervisor takes a new machine when a provision names none, or names a
cluster.

The rule (`choose`, a pure function over database rows; docs/provisioning.md, "Placement"):

1. Candidates are the hypervisors in scope (every hypervisor, or those of the cluster's host
   members) on which the requester holds `control`, the permission an explicit `hvmuuid` needs.
2. A candidate must be `connected` (and reachable from this API node, when several share the
   database), and compatible with the package (virt class and architecture, as for an
   explicit hypervisor).
3. Its host must have free memory for the package: the host's memory minus the memory of the
   machines on any of its hypervisors that hold memory (running, blocked, paused, shutting
   down, PM-suspended) or are being provisioned. A provision records the new machine's size
   when it is queued, so ten provisions queued at once see each other and spread out.
4. Of those, the most free memory wins (memory is what cannot be overcommitted safely; CPU
   time can, so vCPUs only break ties), then the lowest vCPU commitment after placing (vCPUs
   of those machines plus the new one's, per host CPU), then the lowest UUID, so the same
   inventory always gives the same answer.

Everything comes from the inventory the registry keeps (status, CPUs, memory of hypervisors;
state and size of machines): placement never waits on libvirt. Memory and CPUs are counted per
host, since the hypervisors of one host share them.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from enomalism.errors import (
    Conflict,
    Forbidden,
    HypervisorUnreachable,
    NoPlacement,
)
from enomalism.services import access
from enomalism.services.context import Context
from enomalism.store import unit
from enomalism.store.db import MIGRATION_LOCK
from enomalism.store.models import Cluster, ClusterMember, Hypervisor, Machine

# Package virt classes each hypervisor class runs (others: only its own).
COMPATIBLE = {"kvm": {"kvm", "qemu"}, "qemu": {"kvm", "qemu"}}
# PostgreSQL advisory lock key for placements (store/db.py has MIGRATION_LOCK and SETUP_LOCK).
PLACEMENT_LOCK = MIGRATION_LOCK + 2
# Machine states that hold a host's memory: the domain exists in memory, or is being made.
ACTIVE = frozenset({"running", "blocked", "paused", "shutdown", "pmsuspended", "provisioning"})


@dataclass(frozen=True)
class Need:
    """What the new machine asks of a hypervisor. `memory_kib` None: not known (a package not
    retrieved yet), so no hypervisor is refused for memory."""

    virt_class: str | None = None
    arch: str | None = None
    memory_kib: int | None = None
    vcpus: int | None = None
    label: str = "the package"


@dataclass(frozen=True)
class Load:
    """What the active machines of one host take."""

    memory_kib: int = 0
    vcpus: int = 0


@dataclass(frozen=True)
class Choice:
    hypervisor: Hypervisor
    free_memory_kib: int  # before placing the new machine
    vcpu_commitment: float  # after placing it: vCPUs per host CPU


def mib(kib: int) -> str:
    return f"{kib // 1024} MiB" if kib % 1024 == 0 else f"{kib / 1024:.1f} MiB"


def incompatibility(virt_class: str | None, arch: str | None, hv: Hypervisor) -> str | None:
    """Why a package of this class and architecture cannot run on `hv` ("for xen; hypervisor
    qemu:///system is kvm"), or None when it can."""
    if virt_class and virt_class not in COMPATIBLE.get(hv.virt_class, {hv.virt_class}):
        return f"for {virt_class}; hypervisor {hv.virt_url} is {hv.virt_class}"
    if arch and hv.arch and arch != hv.arch and hv.virt_class != "test":
        return f"for {arch}; hypervisor {hv.virt_url} runs {hv.arch}"
    return None


def free_memory(hv: Hypervisor, loads: Mapping[str, Load]) -> int:
    return (hv.memory_kib or 0) - loads.get(hv.machine_uuid, Load()).memory_kib


def vcpu_commitment(hv: Hypervisor, loads: Mapping[str, Load], need: Need) -> float:
    return (loads.get(hv.machine_uuid, Load()).vcpus + (need.vcpus or 0)) / max(hv.cpus or 1, 1)


def _some(items: Iterable[str], limit: int = 3) -> str:
    items = list(dict.fromkeys(items))
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def choose(hypervisors: Sequence[Hypervisor], loads: Mapping[str, Load], need: Need, *,
           where: str = "", unreachable: Mapping[str, str] | None = None) -> Choice:
    """The hypervisor the rule picks among `hypervisors` (those the requester may use), given
    the `loads` of their hosts (by host UUID). `unreachable` (UUID: why) are connected, but not
    from this API node (a local URI of another machine): they count as not connected. `where`
    ("in cluster web") goes into messages.

    Raises HypervisorUnreachable (503) when none is connected, NoPlacement (409) when none is
    compatible or none has the memory (naming the smallest shortfall)."""
    where = f" {where}" if where else ""
    unreachable = unreachable or {}
    if not hypervisors:
        raise NoPlacement(f"there is no hypervisor{where} to provision onto")
    connected = [hv for hv in hypervisors
                 if hv.status == "connected" and hv.uuid not in unreachable]
    if not connected:
        raise HypervisorUnreachable(f"no hypervisor{where} is connected: " + _some(
            unreachable.get(hv.uuid) or f"{hv.virt_url} is {hv.status}"
            + (f" ({hv.last_error})" if hv.last_error else "") for hv in hypervisors))
    problems = {hv.uuid: incompatibility(need.virt_class, need.arch, hv) for hv in connected}
    compatible = [hv for hv in connected if problems[hv.uuid] is None]
    if not compatible:
        raise NoPlacement(f"no connected hypervisor{where} can run {need.label}, which is "
                          + _some(problems[hv.uuid] or "" for hv in connected))
    want = need.memory_kib or 0
    fits = [hv for hv in compatible if free_memory(hv, loads) >= want]
    if not fits:
        best = max(compatible, key=lambda hv: (free_memory(hv, loads), hv.uuid))
        free = max(free_memory(best, loads), 0)
        raise NoPlacement(
            f"not enough free memory on any hypervisor{where}: {need.label} needs "
            f"{mib(want)}; the most free is {mib(free)} on {best.virt_url} "
            f"({mib(want - free)} short)")
    best = min(fits, key=lambda hv: (-free_memory(hv, loads), vcpu_commitment(hv, loads, need),
                                     hv.uuid))
    return Choice(best, free_memory(best, loads), vcpu_commitment(best, loads, need))


# -- the rows the rule reads ----------------------------------------------------------------


def loads(ctx: Context, hosts: Iterable[str]) -> dict[str, Load]:
    """Memory and vCPUs of the active machines on every hypervisor of these hosts."""
    rows = ctx.db.execute(
        select(Hypervisor.machine_uuid, func.coalesce(func.sum(Machine.memory_kib), 0),
               func.coalesce(func.sum(Machine.vcpus), 0))
        .join(Machine, Machine.parent_uuid == Hypervisor.uuid)
        .where(Hypervisor.machine_uuid.in_(set(hosts)), Machine.kind == "vm",
               Machine.state.in_(ACTIVE))
        .group_by(Hypervisor.machine_uuid))
    return {host: Load(int(mem or 0), int(cpus or 0)) for host, mem, cpus in rows}


def place(ctx: Context, need: Need, *, cluster: Cluster | None, name: str) -> Choice:
    """Pick the hypervisor for a new machine `name`: among the cluster's hosts, or among all
    hypervisors when `cluster` is None. Only the hypervisors the requester holds `control` on
    count; the name must be free on all of them (a second machine of the same name elsewhere
    would only make names ambiguous: to have one, name the hypervisor)."""
    q = select(Hypervisor).order_by(Hypervisor.uuid)
    where = ""
    if cluster is not None:
        where = f"in cluster {cluster.name}"
        q = q.where(Hypervisor.machine_uuid.in_(
            select(ClusterMember.machine_uuid).join(
                Machine, Machine.uuid == ClusterMember.machine_uuid)
            .where(ClusterMember.cluster_uuid == cluster.uuid, Machine.kind == "host")))
    in_scope = list(ctx.db.scalars(q))
    if not in_scope:
        raise NoPlacement(f"cluster {cluster.name} has no host with a hypervisor"
                          if cluster is not None else "there is no hypervisor")
    usable = [hv for hv in in_scope if access.holds(ctx, hv, "control")]
    if not usable:
        raise Forbidden("you need the 'control' permission on a hypervisor"
                        + (f" of cluster {cluster.name}" if cluster is not None else "")
                        + " to provision onto it")
    # Concurrent placements take turns, each seeing the machines (and names) the one before
    # recorded (not row locks on the hypervisors, which the nodes' claim renewals update many
    # at a time, in no fixed order: a deadlock).
    unit.serialize(ctx.db, PLACEMENT_LOCK)
    taken = ctx.db.execute(select(Hypervisor.virt_url).join(
        Machine, Machine.parent_uuid == Hypervisor.uuid).where(
        Machine.name == name, Hypervisor.uuid.in_([hv.uuid for hv in usable]))
        .order_by(Hypervisor.virt_url)).scalars().first()
    if taken:
        raise Conflict(f"a machine named '{name}' already exists on {taken}; choose another "
                       "name, or name the hypervisor")
    # Several API nodes: one that cannot reach a hypervisor (local to another machine) cannot
    # check the name there or act on it; the registry knows that without asking libvirt.
    unreachable = {}
    for hv in usable:
        state, why = ctx.registry.status(hv.uuid)
        if state == "elsewhere":
            unreachable[hv.uuid] = why or f"{hv.virt_url} is not reachable from this node"
    return choose(usable, loads(ctx, {hv.machine_uuid for hv in usable}), need, where=where,
                  unreachable=unreachable)
