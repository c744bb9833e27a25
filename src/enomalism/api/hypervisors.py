"""Spec section 2.5 (hypervisor/<UUID>) and the host registry (extension: /rest/hosts/)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from enomalism.api import schemas
from enomalism.api.compat import refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.services import allocation, hypervisors, machines
from enomalism.services.shown import machines as shown
from enomalism.wire import HypervisorObj

router = APIRouter(tags=["hypervisors"])


class HostVars(Vars):
    name: str | None = Field(None, description="the host's name")
    address: str | None = Field(None, description="how the host is reached (name or IP)")
    virt_url: str | None = Field(None, description="its libvirt URI, e.g. qemu+ssh://h/system")
    virt_class: str | None = Field(None, description="derived from virt_url when left out")


class HypervisorListAnswer(schemas.Status):
    hypervisors: list[HypervisorObj]


def list_hypervisors(ctx: Ctx) -> dict:
    """The hypervisors the caller may read, whether or not they may read its host."""
    return {"errno": 0, "message": "",
            "hypervisors": [shown.hypervisor_obj(hv) for hv in hypervisors.list_readable(ctx)]}


def get_hypervisor_route(uuid: str, ctx: Ctx) -> dict:
    """The hypervisor object."""
    hv = hypervisors.get(ctx, uuid)
    return {"uuid": hv.uuid, "hypervisor": shown.hypervisor_obj(hv), "errno": 0, "message": ""}


def delete_hypervisor_route(uuid: str, ctx: Ctx) -> dict:
    """Remove a hypervisor that has no managed machines."""
    hv_uuid = hypervisors.get(ctx, uuid).uuid
    message = hypervisors.delete_hypervisor(ctx, hv_uuid)
    return {"uuid": hv_uuid, "hypervisor": None, "errno": 0, "message": message}


def list_hosts(ctx: Ctx) -> dict:
    """Every registered host machine."""
    hosts = machines.list_machines(ctx, kind="host")
    return {"errno": 0, "message": "", "hosts": [shown.machine_obj(h) for h in hosts]}


def register_host(ctx: Ctx, v: Annotated[HostVars, http_vars(HostVars)]) -> dict:
    """Register another host, connecting its hypervisor when virt_url is given."""
    host = shown.register_host(ctx, name=v.name, address=v.address, virt_url=v.virt_url,
                               virt_class=v.virt_class)
    return {"errno": 0, "message": f"host {host['name']} registered",
            "machine": host["machine"], "machine_obj": host["machine_obj"],
            "hypervisors": host["hypervisors"]}


class Sums(BaseModel):
    machines: int
    vcpus: int
    memory_kib: int


class AllocationAnswer(schemas.Status):
    uuid: str
    cpus: int | None
    memory_kib: int | None
    active: Sums = Field(description="machines that hold CPUs and memory now (running, paused...)")
    defined: Sums = Field(description="every VM defined on the hypervisor")


class LibvirtNetwork(BaseModel):
    name: str
    active: bool
    bridge: str | None


class NetworksAnswer(schemas.Status):
    uuid: str
    networks: list[LibvirtNetwork]


def get_allocation(uuid: str, ctx: Ctx) -> dict:
    """The hypervisor's capacity and what its machines are given (extension)."""
    return {"errno": 0, "message": "", **allocation.allocation(ctx, uuid)}


def list_libvirt_networks(uuid: str, ctx: Ctx) -> dict:
    """The libvirt networks a new machine may join there (`libvirt_network`; extension)."""
    hv = hypervisors.get(ctx, uuid)
    return {"errno": 0, "message": "", "uuid": hv.uuid,
            "networks": allocation.networks(ctx, hv.uuid)}


def list_nodes(ctx: Ctx) -> dict:
    """The API nodes sharing this database (administrators only)."""
    return {"errno": 0, "message": "", "node": ctx.registry.ownership.node_id,
            "nodes": hypervisors.list_nodes(ctx)}


expose(router, "/rest/nodes/", ["GET"], list_nodes, response_model=schemas.NodesAnswer,
       summary="List the API nodes (extension)")
expose(router, "/rest/hypervisors/", ["GET"], list_hypervisors,
       response_model=HypervisorListAnswer, summary="List the hypervisors one may read (extension)")
expose(router, "/rest/hypervisor/{uuid}/", ["GET"], get_hypervisor_route,
       response_model=schemas.HypervisorAnswer, summary="Get a hypervisor (2.5)")
expose(router, "/rest/hypervisor/{uuid}/", ["DELETE"], delete_hypervisor_route,
       response_model=schemas.HypervisorAnswer, summary="Delete a hypervisor (2.5)")
expose(router, "/rest/hypervisor/{uuid}/allocation/", ["GET"], get_allocation,
       response_model=AllocationAnswer, summary="A hypervisor's allocation (extension)")
expose(router, "/rest/hypervisor/{uuid}/networks/", ["GET"], list_libvirt_networks,
       response_model=NetworksAnswer, summary="A hypervisor's libvirt networks (extension)")
expose(router, "/rest/hosts/", ["GET"], list_hosts, response_model=schemas.HostsAnswer,
       summary="List hosts (extension)", dependencies=[refuse_changes_on_get(HostVars)])
expose(router, "/rest/hosts/", ["PUT", "POST"], register_host, vars_model=HostVars,
       response_model=schemas.HostAnswer, summary="Register a host (extension)")
