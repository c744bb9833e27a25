"""The base-image cache on the hypervisors (extension): the `enomalism-base-*` volumes that
provisioned machines back onto, and removing those nothing uses (docs/packages.md)."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import cache

router = APIRouter(tags=["cache"])


class BaseVolume(BaseModel):
    hypervisor: str
    pool: str
    name: str
    path: str
    capacity: int = Field(description="bytes the guest sees")
    allocation: int = Field(description="bytes it takes in the pool")
    package: str | None = Field(description="the package it was uploaded from")
    package_name: str | None = Field(description="none when the package is gone")
    cached: bool = Field(description="its package is in this server's package cache")
    ours: bool = Field(description="made by this installation (only those are ever removed)")
    domains: list[str] = Field(description="domains whose disks back onto it (libvirt's word)")
    volumes: list[str] = Field(description="pool/name of the volumes backing onto it")
    unused: bool = Field(description="the next sweep removes it")
    kept: str | None = Field(description="why it is kept")


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
