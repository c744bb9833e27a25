"""Spec section 2.21 to 2.23: clusters."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api import schemas
from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.errors import UnknownAction
from enomalism.services import clusters
from enomalism.services.shown import machines as shown

router = APIRouter(tags=["clusters"])


class CreateVars(Vars):
    cluster_name: str | None = Field(None, description="the new cluster's name")


class ClusterVars(Vars):
    action: str | None = Field(None, description="rename")
    cluster_name: str | None = Field(None, description="the new name, for rename")


def list_clusters(ctx: Ctx) -> dict:
    """Every cluster."""
    return {"errno": 0, "message": "",
            "cluster": [shown.cluster_obj(ctx, cluster=c) for c in clusters.list_clusters(ctx)]}


def cluster_list(ctx: Ctx) -> dict:
    """Every cluster, under the key `clusters`."""
    return {"errno": 0, "message": "",
            "clusters": [shown.cluster_obj(ctx, cluster=c) for c in clusters.list_clusters(ctx)]}


def create_cluster(ctx: Ctx, v: Annotated[CreateVars, http_vars(CreateVars)]) -> dict:
    """Create a cluster named cluster_name."""
    c = clusters.create(ctx, v.cluster_name)
    return {"errno": 0, "message": f"cluster {c.name} created",
            "cluster": shown.cluster_obj(ctx, cluster=c)}


def get_cluster_route(uuid: str, ctx: Ctx) -> dict:
    """The cluster and its machines."""
    return {"errno": 0, "message": "",
            "cluster": shown.cluster_obj(ctx, cluster=clusters.get(ctx, uuid))}


def update_cluster(uuid: str, ctx: Ctx, v: Annotated[ClusterVars, http_vars(ClusterVars)]) -> dict:
    """action=rename with cluster_name. Without variables, answers like GET."""
    if posted_nothing(v, needs="action"):
        return get_cluster_route(uuid, ctx)
    if v.action != "rename":
        raise UnknownAction(f"unknown cluster action '{v.action}'; cluster actions are: rename")
    c = clusters.rename(ctx, uuid, v.cluster_name)
    return {"errno": 0, "message": f"cluster renamed to {c.name}",
            "cluster": shown.cluster_obj(ctx, cluster=c)}


class DeleteVars(Vars):
    force: str | None = Field(None, description="1: also when static networks serve it "
                              "(they are left serving none)")


def delete_cluster(uuid: str, ctx: Ctx, v: Annotated[DeleteVars, http_vars(DeleteVars)]) -> dict:
    """Delete the cluster; its machines only leave it."""
    force = (v.force or "").lower() in ("1", "true", "yes")
    return {"errno": 0, "message": clusters.delete(ctx, uuid, force=force)}


expose(router, "/rest/cluster/", ["GET"], list_clusters, response_model=schemas.ClusterAnswer,
       summary="List clusters (2.21)", dependencies=[refuse_changes_on_get(CreateVars)])
expose(router, "/rest/cluster/", ["PUT"], create_cluster, vars_model=CreateVars,
       response_model=schemas.ClusterAnswer, summary="Create a cluster (2.21)")
expose(router, "/rest/cluster/list/", ["GET", "POST"], cluster_list,
       response_model=schemas.ClustersAnswer, summary="List clusters (2.22)")
expose(router, "/rest/cluster/{uuid}/", ["GET"], get_cluster_route,
       response_model=schemas.ClusterAnswer, summary="Get a cluster (2.23)",
       dependencies=[refuse_changes_on_get(ClusterVars)])
expose(router, "/rest/cluster/{uuid}/", ["POST"], update_cluster, vars_model=ClusterVars,
       response_model=schemas.ClusterAnswer, summary="Rename a cluster (2.23)")
expose(router, "/rest/cluster/{uuid}/", ["DELETE"], delete_cluster, vars_model=DeleteVars,
       response_model=schemas.Status, summary="Delete a cluster (2.23)")
