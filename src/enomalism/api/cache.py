"""The base-image cache on the hypervisors (extension): the `enomalism-base-*` volumes that
provisioned machines back onto, and removing those nothing uses (docs/packages.md)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import cache
from enomalism.wire import BaseVolume

router = APIRouter(tags=["cache"])


class CacheAnswer(Status):
    bases: list[BaseVolume]
    problems: list[str] = Field(description="hypervisors not read, disks whose backing is unseen")


class PruneAnswer(Status):
    txid: str = Field(description="the cache_prune transaction")


class CacheVars(Vars):
    hypervisor: str | None = Field(None, description="only this hypervisor (UUID)")


def list_cache(ctx: Ctx, v: Annotated[CacheVars, http_vars(CacheVars)]) -> dict:
    """The base volumes on every hypervisor (or one), their size, package and users
    (administrators only)."""
    return {**cache.list_cache(ctx, hypervisor=v.hypervisor), "errno": 0, "message": ""}


def prune_cache(ctx: Ctx, v: Annotated[CacheVars, http_vars(CacheVars)]) -> dict:
    """Queue the removal of every unused base volume now (administrators only)."""
    tx = cache.queue_prune(ctx, hypervisor=v.hypervisor)
    return {"txid": tx.uuid, "errno": 0, "message": "removal of unused base volumes queued"}


expose(router, "/rest/cache/", ["GET"], list_cache, vars_model=CacheVars,
       response_model=CacheAnswer, summary="List the base-image cache (extension)")
expose(router, "/rest/cache/prune/", ["POST"], prune_cache, vars_model=CacheVars,
       response_model=PruneAnswer, summary="Remove unused base volumes (extension)")
