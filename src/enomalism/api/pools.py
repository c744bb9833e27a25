"""Storage pools and volumes (issue 16, extension): list pools, a pool's volumes with owner and
machine, make and delete volumes of one's own. Disks of a machine change through its actions
attach_disk, detach_disk and grow_disk (api/machines.py)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import pools
from enomalism.wire import PoolObj, VolumeObj

router = APIRouter(tags=["storage"])


class PoolsAnswer(Status):
    pools: list[PoolObj]


class VolumesAnswer(Status):
    volumes: list[VolumeObj]


class VolumeAnswer(Status):
    volume: VolumeObj | None


class NewVolumeVars(Vars):
    name: str | None = Field(None, description="the volume's name in the pool")
    size: str | None = Field(None, description="GiB")


def list_pools(ctx: Ctx) -> dict:
    """The storage pools of the connected hypervisors the caller may read."""
    return {"pools": pools.list_pools(ctx), "errno": 0, "message": ""}


def list_volumes(uuid: str, ctx: Ctx) -> dict:
    """The pool's volumes the caller may see: their own, and their machines'."""
    return {"volumes": pools.list_volumes(ctx, uuid), "errno": 0, "message": ""}


def create_volume(uuid: str, ctx: Ctx,
                  v: Annotated[NewVolumeVars, http_vars(NewVolumeVars)]) -> dict:
    """A blank volume owned by the caller (attach it with action attach_disk)."""
    vol = pools.create_volume(ctx, uuid, name=v.name, size=v.size)
    return {"volume": vol, "errno": 0, "message": f"volume {vol['name']} created"}


def delete_volume(uuid: str, name: str, ctx: Ctx) -> dict:
    """Delete a volume of the caller's that no machine uses."""
    return {"volume": None, "errno": 0, "message": pools.delete_volume(ctx, uuid, name)}


expose(router, "/rest/pools/", ["GET"], list_pools, response_model=PoolsAnswer,
       summary="List storage pools (extension)")
expose(router, "/rest/pools/{uuid}/volumes/", ["GET"], list_volumes,
       response_model=VolumesAnswer, summary="A pool's volumes (extension)",
       dependencies=[refuse_changes_on_get(NewVolumeVars)])
expose(router, "/rest/pools/{uuid}/volumes/", ["PUT"], create_volume, vars_model=NewVolumeVars,
       response_model=VolumeAnswer, summary="Make a volume of your own (extension)")
expose(router, "/rest/pools/{uuid}/volumes/{name}/", ["DELETE"], delete_volume,
       response_model=VolumeAnswer, summary="Delete a volume of yours (extension)")
