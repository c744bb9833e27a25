"""What a hypervisor gives its machines and what a new one may join: the vCPUs and memory
allocated to its machines (beside its capacity, `GET /rest/hypervisor/<UUID>/allocation/`)
and its libvirt networks (`.../networks/`, the choices of `libvirt_network`). The dashboard's
hosts page and create form read them; /metrics has the same sums."""

from sqlalchemy import ColumnElement, func, select

from enomalism.errors import HypervisorUnreachable
from enomalism.services import hypervisors, volumes
from enomalism.services.context import Context
from enomalism.services.metrics import ACTIVE
from enomalism.store.models import Machine


def allocation(ctx: Context, uuid: str) -> dict:
    """The hypervisor's capacity and the sums over its machines: those that hold CPUs and
    memory now (running, paused...: what /metrics counts) and all defined ones. Whoever may
    read the hypervisor may read its sums (not which machines make them)."""
    hv = hypervisors.get(ctx, uuid)

    def sums(*where: ColumnElement[bool]) -> dict:
        n, vcpus, kib = ctx.db.execute(
            select(func.count(), func.coalesce(func.sum(Machine.vcpus), 0),
                   func.coalesce(func.sum(Machine.memory_kib), 0))
            .where(Machine.parent_uuid == hv.uuid, Machine.kind == "vm", *where)).one()
        return {"machines": int(n or 0), "vcpus": int(vcpus or 0), "memory_kib": int(kib or 0)}

    return {"uuid": hv.uuid, "cpus": hv.cpus, "memory_kib": hv.memory_kib,
            "active": sums(Machine.state.in_(ACTIVE)), "defined": sums()}


def networks(ctx: Context, uuid: str) -> list[dict]:
    """The hypervisor's libvirt networks the caller may put an interface on (create's and
    provision's rule: a non-administrator only those that are the bridge of a static network
    they may read). Asked within the registry's bounded wait: a hung host answers 503."""
    hv_uuid = hypervisors.get(ctx, uuid).uuid
    found = ctx.registry.ask(hv_uuid, lambda c: c.list_networks())
    if found is None:
        raise HypervisorUnreachable("the hypervisor did not answer for its networks; try again")
    usable = volumes.usable_networks(ctx)
    return [{"name": name, "active": active, "bridge": bridge}
            for name, active, bridge in found if usable(name)]
