"""Spec section 7: static networks, their IP ranges and cluster; leases (extension)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api import schemas
from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import networks
from enomalism.services.shown import networks as shown
from enomalism.wire import LeaseObj, NetworkObj, RangeObj

router = APIRouter(tags=["networks"])


class NetworksAnswer(Status):
    networks: list[NetworkObj]
    network: NetworkObj | None = Field(None, description="the new network (PUT only)")


class NetworkAnswer(Status):
    network: NetworkObj | None


class RangesAnswer(Status):
    network: NetworkObj
    ranges: list[RangeObj]


class RangeAnswer(Status):
    iprange: RangeObj | None


class ClusterAnswer(Status):
    cluster: schemas.ClusterObj | None


class LeasesAnswer(Status):
    leases: list[LeaseObj]


class LeaseAnswer(Status):
    lease: LeaseObj


class CreateVars(Vars):
    name: str | None = Field(None, description="the network's name")
    description: str | None = None
    bridge: str | None = Field(None, description="host bridge or libvirt network name")
    cluster: str | None = Field(None, description="the cluster (UUID) it serves")
    ip: str | None = Field(None, description="the network address, IPv4 or IPv6")
    netmask: str | None = Field(None, description="dotted mask or prefix length")
    gateway: str | None = None


class UpdateVars(Vars):
    name: str | None = None
    description: str | None = None
    bridge: str | None = None
    cluster: str | None = Field(None, description="a cluster UUID; empty: none")


class RangeVars(Vars):
    start_ip: str | None = Field(None, description="the first address of the range")
    end_ip: str | None = Field(None, description="the last address of the range")


class ClusterVars(Vars):
    cluster: str | None = Field(None, description="a cluster UUID; empty: none")


class ReserveVars(Vars):
    address: str | None = Field(None, description="the address; none: the next free one")
    machine: str | None = Field(None, description="the machine it is for, if any")
    mac: str | None = Field(None, description="its MAC address; none: a new one")
    note: str | None = Field(None, description="why it is reserved")


def list_networks(ctx: Ctx) -> dict:
    """The networks the caller may read."""
    return {"networks": shown.list_networks(ctx), "errno": 0, "message": ""}


def create_network(ctx: Ctx, v: Annotated[CreateVars, http_vars(CreateVars)]) -> dict:
    """Create a static network."""
    obj, warnings = shown.create(ctx, name=v.name, description=v.description,
                                 bridge=v.bridge, cluster=v.cluster, ip=v.ip,
                                 netmask=v.netmask, gateway=v.gateway)
    return {"networks": [obj], "network": obj, "errno": 0,
            "message": _warned(f"network {obj['name']} created", warnings)}


def _warned(message: str, warnings: list[str]) -> str:
    """What was done, then what could not be checked."""
    return "; ".join([message, *(f"warning: {w}" for w in warnings)])


def get_network(uuid: str, ctx: Ctx) -> dict:
    """The network, its ranges and how many addresses are leased."""
    return {"network": shown.network(ctx, uuid=uuid), "errno": 0, "message": ""}


def update_network(uuid: str, ctx: Ctx, v: Annotated[UpdateVars, http_vars(UpdateVars)]) -> dict:
    """Change name, description, bridge or cluster; without variables, answers like GET."""
    if posted_nothing(v):
        return get_network(uuid, ctx)
    obj, warnings = shown.update(ctx, uuid=uuid, name=v.name, description=v.description,
                                 bridge=v.bridge, cluster=v.cluster)
    return {"network": obj, "errno": 0,
            "message": _warned(f"network {obj['name']} updated", warnings)}


def delete_network(uuid: str, ctx: Ctx) -> dict:
    """Delete a network that has no leases."""
    return {"network": None, "errno": 0, "message": networks.delete(ctx, uuid)}


def list_ranges(uuid: str, ctx: Ctx) -> dict:
    """The network and its IP ranges."""
    obj, ranges = shown.ranges(ctx, uuid=uuid)
    return {"network": obj, "ranges": ranges, "errno": 0, "message": ""}


def add_range(uuid: str, ctx: Ctx, v: Annotated[RangeVars, http_vars(RangeVars)]) -> dict:
    """Add an IP range (start_ip to end_ip, both included); without variables, like GET."""
    if posted_nothing(v):
        return list_ranges(uuid, ctx)
    r = shown.add_range(ctx, uuid=uuid, start_ip=v.start_ip, end_ip=v.end_ip)
    answer = list_ranges(uuid, ctx)
    answer["message"] = f"range {r['start_ip']}-{r['end_ip']} added"
    return answer


def get_range(uuid: str, ruuid: str, ctx: Ctx) -> dict:
    """One IP range."""
    return {"iprange": shown.get_range(ctx, uuid=uuid, range_uuid=ruuid), "errno": 0,
            "message": ""}


def change_range(uuid: str, ruuid: str, ctx: Ctx,
                 v: Annotated[RangeVars, http_vars(RangeVars)]) -> dict:
    """Move the range's start or end (never past an address in use)."""
    r = shown.change_range(ctx, uuid=uuid, range_uuid=ruuid, start_ip=v.start_ip,
                           end_ip=v.end_ip)
    return {"iprange": r, "errno": 0, "message": f"range is now {r['start_ip']}-{r['end_ip']}"}


def delete_range(uuid: str, ruuid: str, ctx: Ctx) -> dict:
    """Delete a range none of whose addresses is in use (extension)."""
    return {"iprange": None, "errno": 0, "message": networks.delete_range(ctx, uuid, ruuid)}


def get_network_cluster(uuid: str, ctx: Ctx) -> dict:
    """The cluster the network serves."""
    return {"cluster": shown.cluster(ctx, uuid=uuid), "errno": 0, "message": ""}


def set_network_cluster(uuid: str, ctx: Ctx,
                        v: Annotated[ClusterVars, http_vars(ClusterVars)]) -> dict:
    """Assign the network to a cluster (empty: to none)."""
    c, warnings = shown.set_cluster(ctx, uuid=uuid, cluster=v.cluster)
    return {"cluster": c, "errno": 0,
            "message": _warned("cluster assigned" if c else "cluster removed", warnings)}


def list_leases(uuid: str, ctx: Ctx) -> dict:
    """Every address in use on the network and who holds it (extension)."""
    return {"leases": shown.leases(ctx, uuid=uuid), "errno": 0, "message": ""}


def reserve(uuid: str, ctx: Ctx, v: Annotated[ReserveVars, http_vars(ReserveVars)]) -> dict:
    """Reserve an address by hand: a given one, or the next free (extension)."""
    lease = shown.reserve(ctx, uuid=uuid, address=v.address, machine=v.machine, mac=v.mac,
                          note=v.note)
    return {"lease": lease, "errno": 0, "message": f"{lease['address']} reserved"}


def release(uuid: str, address: str, ctx: Ctx) -> dict:
    """Release an address (extension)."""
    lease = shown.release(ctx, uuid=uuid, address=address)
    return {"lease": lease, "errno": 0, "message": f"{lease['address']} released"}


expose(router, "/rest/networks/", ["GET"], list_networks, response_model=NetworksAnswer,
       response_model_exclude_unset=True, summary="List networks (7.1)",
       dependencies=[refuse_changes_on_get(CreateVars)])
expose(router, "/rest/networks/", ["PUT"], create_network, vars_model=CreateVars,
       response_model=NetworksAnswer, summary="Create a network (7.1)")
expose(router, "/rest/networks/{uuid}/", ["GET"], get_network, response_model=NetworkAnswer,
       summary="Get a network (7.2)", dependencies=[refuse_changes_on_get(UpdateVars)])
expose(router, "/rest/networks/{uuid}/", ["POST"], update_network, vars_model=UpdateVars,
       response_model=NetworkAnswer, summary="Change a network (7.2)")
expose(router, "/rest/networks/{uuid}/", ["DELETE"], delete_network,
       response_model=NetworkAnswer, summary="Delete a network (7.2)")
expose(router, "/rest/networks/{uuid}/iprange/", ["GET"], list_ranges,
       response_model=RangesAnswer, summary="A network's IP ranges (7.3)",
       dependencies=[refuse_changes_on_get(RangeVars)])
expose(router, "/rest/networks/{uuid}/iprange/", ["POST"], add_range, vars_model=RangeVars,
       response_model=RangesAnswer, summary="Add an IP range (7.3)")
expose(router, "/rest/networks/{uuid}/iprange/{ruuid}/", ["GET"], get_range,
       response_model=RangeAnswer, summary="Get an IP range (7.4)",
       dependencies=[refuse_changes_on_get(RangeVars)])
expose(router, "/rest/networks/{uuid}/iprange/{ruuid}/", ["PUT"], change_range,
       vars_model=RangeVars, response_model=RangeAnswer, summary="Change an IP range (7.4)")
expose(router, "/rest/networks/{uuid}/iprange/{ruuid}/", ["DELETE"], delete_range,
       response_model=RangeAnswer, summary="Delete an IP range (extension)")
expose(router, "/rest/networks/{uuid}/cluster/", ["GET"], get_network_cluster,
       response_model=ClusterAnswer, summary="A network's cluster (7.5)",
       dependencies=[refuse_changes_on_get(ClusterVars)])
expose(router, "/rest/networks/{uuid}/cluster/", ["PUT"], set_network_cluster,
       vars_model=ClusterVars, response_model=ClusterAnswer, summary="Assign a cluster (7.5)")
expose(router, "/rest/networks/{uuid}/leases/", ["GET"], list_leases,
       response_model=LeasesAnswer, summary="A network's leases (extension)")
expose(router, "/rest/networks/{uuid}/leases/", ["PUT", "POST"], reserve,
       vars_model=ReserveVars, response_model=LeaseAnswer,
       summary="Reserve an address (extension)")
expose(router, "/rest/networks/{uuid}/leases/{address}/", ["DELETE"], release,
       response_model=LeaseAnswer, summary="Release an address (extension)")
