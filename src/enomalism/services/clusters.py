"""Clusters: named groups of machines."""

from sqlalchemy import select

from enomalism.errors import ClusterInUse, Conflict
from enomalism.services import access, names
from enomalism.services.context import Context
from enomalism.services.lookup import get_cluster
from enomalism.store.models import Cluster, Network


def _check_name(ctx: Context, name: str | None, *, other_than: str | None = None) -> str:
    name = names.check(names.CLUSTER, name, variable="cluster_name")
    clash = ctx.db.scalar(select(Cluster.uuid).where(Cluster.name == name))
    if clash and clash != other_than:
        raise Conflict(f"a cluster named '{name}' already exists")
    return name


def get(ctx: Context, uuid: str, permission: str = "read") -> Cluster:
    c = get_cluster(ctx.db, uuid)
    access.require(ctx, c, permission, "cluster")
    return c


def members(ctx: Context, c: Cluster) -> list[str]:
    """The UUIDs of the cluster's machines the caller may read."""
    return [m.uuid for m in c.machines if access.holds(ctx, m, "read")]


def list_clusters(ctx: Context) -> list[Cluster]:
    """The clusters the caller may read."""
    q = select(Cluster).order_by(Cluster.name)
    if (clause := access.readable(ctx, Cluster)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def create(ctx: Context, name: str | None) -> Cluster:
    c = Cluster(name=_check_name(ctx, name), owner_uuid=ctx.user.uuid)
    ctx.db.add(c)
    ctx.db.flush()
    return c


def rename(ctx: Context, uuid: str, name: str | None) -> Cluster:
    c = get(ctx, uuid, "modify")
    c.name = _check_name(ctx, name, other_than=c.uuid)
    return c


def delete(ctx: Context, uuid: str, *, force: bool = False) -> str:
    """Delete the group; its machines stay, they only leave it. Static networks that serve it
    would silently serve nothing: refused, unless `force` unties them (the message names
    them)."""
    c = get(ctx, uuid, "delete")
    nets = list(ctx.db.scalars(select(Network.name).where(Network.cluster_uuid == c.uuid)
                               .order_by(Network.name)))
    if nets and not force:
        raise ClusterInUse(f"static networks serve cluster {c.name}: {', '.join(nets)}; "
                           "assign them another cluster, or delete with force=1 to leave "
                           "them serving none")
    ctx.db.delete(c)
    untied = f"; networks left serving no cluster: {', '.join(nets)}" if nets else ""
    return f"cluster {c.name} deleted{untied}"
