"""Who may do what.

Every object has an owner and an access list of grants (a user or a group holds a permission).
The permissions are `read`, `control` (lifecycle actions), `modify` (rename, XML, settings,
membership), `delete` and `admin` (change the access list). Rules, in order:

- an administrator may do everything;
- the owner of an object may do everything with it; a user may read and modify themselves; the
  members of a group may read it;
- `admin` granted on an object implies every permission on it, and any grant implies `read`;
- a grant to a group applies to its members;
- `read` on a cluster lets its machines be read; `control` on a hypervisor lets the machines on
  it be read and adopted (`manage`); `read` on a repository lets its packages be read.

An object the user may not read answers as not found (404), so nothing is revealed about it;
an object they may read but not act on answers 403.
"""

from sqlalchemy import ColumnElement, delete, event, or_, select
from sqlalchemy.orm import Session

from enomalism.errors import Forbidden, InvalidInput, MissingVariable, NotFound
from enomalism.services.context import Context
from enomalism.store.models import (
    Cluster,
    ClusterMember,
    Grant,
    Group,
    GroupMember,
    Hypervisor,
    Machine,
    Network,
    Package,
    Repository,
    Transaction,
    User,
)

PERMISSIONS = ("read", "control", "modify", "delete", "admin")
MODELS = {"machine": Machine, "hypervisor": Hypervisor, "cluster": Cluster, "user": User,
          "group": Group, "transaction": Transaction, "repository": Repository,
          "package": Package, "network": Network}
Object = (Machine | Hypervisor | Cluster | User | Group | Transaction | Repository | Package
          | Network)


@event.listens_for(Session, "before_flush")
def _grants_go_with_their_object(session: Session, _flush: object, _instances: object) -> None:
    """Deleting an object deletes the grants on it, wherever it is deleted: a later object with
    the same UUID (libvirt's, when a domain is defined again from saved XML) inherits nothing."""
    gone = [o.uuid for o in session.deleted if isinstance(o, tuple(MODELS.values()))]
    if gone:
        session.execute(delete(Grant).where(Grant.object_uuid.in_(gone)))


def check_permission(name: str | None) -> str:
    if not name:
        raise MissingVariable(f"the variable 'permission' is required: {', '.join(PERMISSIONS)}")
    if name not in PERMISSIONS:
        raise InvalidInput(f"unknown permission '{name}'; use one of {', '.join(PERMISSIONS)}")
    return name


def principals(ctx: Context) -> frozenset[str]:
    """The user's UUID and the UUIDs of their groups."""
    if ctx.principals is None:
        groups = ctx.db.scalars(
            select(GroupMember.group_uuid).where(GroupMember.user_uuid == ctx.user.uuid))
        ctx.principals = frozenset([ctx.user.uuid, *groups])
    return ctx.principals


def _granted(ctx: Context, uuid: str) -> set[str]:
    return set(ctx.db.scalars(select(Grant.permission).where(
        Grant.object_uuid == uuid, Grant.principal_uuid.in_(principals(ctx)))))


def _grants_allow(held: set[str], permission: str) -> bool:
    return "admin" in held or permission in held or (permission == "read" and bool(held))


def holds(ctx: Context, obj: Object, permission: str) -> bool:
    """True when the user holds `permission` on `obj` by any rule above."""
    me = ctx.user.uuid
    if ctx.user.is_admin or getattr(obj, "owner_uuid", None) == me:
        return True
    if isinstance(obj, User) and obj.uuid == me and permission in ("read", "modify"):
        return True
    if isinstance(obj, Group) and permission == "read" and obj.uuid in principals(ctx):
        return True
    if _grants_allow(_granted(ctx, obj.uuid), permission):
        return True
    if isinstance(obj, Package) and permission == "read" and obj.repository is not None:
        return holds(ctx, obj.repository, "read")
    if isinstance(obj, Machine) and permission == "read":
        if any(holds(ctx, c, "read") for c in obj.clusters):
            return True
        if obj.parent is not None and holds(ctx, obj.parent, "control"):
            return True
    return False


def require(ctx: Context, obj: Object, permission: str, what: str) -> None:
    """404 when the user may not even read `obj`, 403 when they may read but not do this."""
    if not holds(ctx, obj, "read"):
        raise NotFound(f"no {what} with UUID {obj.uuid}")
    if permission != "read" and not holds(ctx, obj, permission):
        raise Forbidden(f"you need the '{permission}' permission on this {what} to do that")


def require_admin(ctx: Context, doing: str) -> None:
    if not ctx.user.is_admin:
        raise Forbidden(f"only an administrator may {doing}")


def readable(ctx: Context, model: type) -> ColumnElement[bool] | None:
    """A WHERE clause selecting the rows of `model` the user may read (None: all of them)."""
    if ctx.user.is_admin:
        return None
    me, mine = ctx.user.uuid, principals(ctx)
    granted = select(Grant.object_uuid).where(Grant.principal_uuid.in_(mine))
    if model is User:
        return or_(User.uuid == me, User.uuid.in_(granted))
    if model is Group:
        return or_(Group.owner_uuid == me, Group.uuid.in_(granted), Group.uuid.in_(mine))
    clause = or_(model.owner_uuid == me, model.uuid.in_(granted))
    if model is Machine:
        clusters = select(Cluster.uuid).where(or_(Cluster.owner_uuid == me,
                                                  Cluster.uuid.in_(granted)))
        in_cluster = select(ClusterMember.machine_uuid).where(
            ClusterMember.cluster_uuid.in_(clusters))
        operated = select(Hypervisor.uuid).where(or_(
            Hypervisor.owner_uuid == me,
            Hypervisor.uuid.in_(select(Grant.object_uuid).where(
                Grant.principal_uuid.in_(mine), Grant.permission.in_(("control", "admin"))))))
        clause = or_(clause, Machine.uuid.in_(in_cluster), Machine.parent_uuid.in_(operated))
    if model is Package:
        repos = select(Repository.uuid).where(or_(Repository.owner_uuid == me,
                                                  Repository.uuid.in_(granted)))
        clause = or_(clause, Package.repository_uuid.in_(repos))
    return clause


def find_object(ctx: Context, uuid: str) -> tuple[str, Object]:
    """Any object by UUID, with its type name; 404 when there is none."""
    for type_name, model in MODELS.items():
        obj = ctx.db.get(model, uuid)
        if obj is not None:
            return type_name, obj
    raise NotFound(f"no object with UUID {uuid}")
