"""Who may do what.

Every object has an owner and an access list of grants (a user or a group holds a permission).
The permissions are `read`, `control` (lifecycle actions), `modify` (rename, XML, settings,
membership), `export` (copy a machine's disks out: `package`, and download such a package),
`delete` and `admin` (change the access list). Rules, in order:

- an administrator may do everything;
- the owner of an object may do everything with it; a user may read and modify themselves; the
  members of a group may read it;
- `admin` granted on an object implies every permission on it, and any grant implies `read`;
- a grant to a group applies to its members;
- a grant on a cluster lets its machines be read, each one only when the grant's granter may
  change that machine's access list (see `_cluster_confers`); `control` on a hypervisor lets
  the machines on it be read and adopted (`manage`); `read` on a repository lets its packages
  be read.

An object the user may not read answers as not found (404), so nothing is revealed about it;
an object they may read but not act on answers 403.
"""

from typing import Any, cast

from sqlalchemy import ColumnElement, and_, delete, event, or_, select
from sqlalchemy.orm import Session, aliased

from enomalism.errors import Forbidden, InvalidInput, MissingVariable, NotFound
from enomalism.services.context import Context
from enomalism.store.models import (
    Cluster,
    ClusterMember,
    Grant,
    Group,
    GroupMember,
    Hypervisor,
    Image,
    Machine,
    Network,
    Package,
    Repository,
    Transaction,
    User,
)

PERMISSIONS = ("read", "control", "modify", "export", "delete", "admin")
MODELS: dict[str, Any] = {
    "machine": Machine, "hypervisor": Hypervisor, "cluster": Cluster, "user": User,
    "group": Group, "transaction": Transaction, "repository": Repository,
    "package": Package, "network": Network, "image": Image}
Object = (Machine | Hypervisor | Cluster | User | Group | Transaction | Repository | Package
          | Network | Image)


@event.listens_for(Session, "before_flush")
def _grants_go_with_their_object(session: Session, _flush: object, _instances: object) -> None:
    """Deleting an object deletes the grants on it, wherever it is deleted: a later object with
    the same UUID (libvirt's, when a domain is defined again from saved XML) inherits nothing."""
    gone = [cast(Object, o).uuid for o in session.deleted
            if isinstance(o, tuple(MODELS.values()))]
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
        if ctx.db.scalar(select(Grant.uuid).where(_cluster_confers(principals(ctx), obj.uuid))
                         .limit(1)):
            return True
        if obj.parent is not None and holds(ctx, obj.parent, "control"):
            return True
    return False


def _cluster_confers(mine: frozenset[str], machine_uuid: Any
                     ) -> ColumnElement[bool]:
    """A WHERE clause on Grant: a grant held by `mine` on a cluster the machine is in, whose
    granter may change the machine's own access list (an administrator, its owner, or a holder
    of `admin` on it, directly or through a group).

    Why the granter: a grant on a cluster shares its machines, so it may share only what its
    granter could have shared by granting `read` on the machine itself. Otherwise a user who
    merely reads a machine (or who owns a cluster someone else's machine was put in) could
    put it in a cluster of her own and hand that cluster to anyone. The rule is checked when
    access is decided, not when the grant or the membership was made, so it also holds for
    memberships made before it and stops when the granter loses `admin` on the machine.
    Owning a cluster confers nothing on its machines: whoever may share them reads them
    already. A grant whose granter was deleted confers nothing."""
    granter = Grant.created_by
    # (each subquery names the tables it reads; the rest are the enclosing queries' rows)
    machine, held = aliased(Machine), aliased(Grant)
    admin = (select(User.uuid).where(User.uuid == granter, User.is_admin.is_(True))
             .correlate_except(User).exists())
    owner = (select(machine.uuid).where(machine.uuid == machine_uuid,
                                        machine.owner_uuid == granter)
             .correlate_except(machine).exists())
    granters = (select(GroupMember.group_uuid).where(GroupMember.user_uuid == granter)
                .correlate_except(GroupMember))
    admin_grant = (select(held.uuid).where(
        held.object_uuid == machine_uuid, held.permission == "admin",
        or_(held.principal_uuid == granter, held.principal_uuid.in_(granters)))
        .correlate_except(held).exists())
    in_cluster = (select(ClusterMember.cluster_uuid)
                  .where(ClusterMember.machine_uuid == machine_uuid)
                  .correlate_except(ClusterMember))
    return and_(Grant.principal_uuid.in_(mine), Grant.object_uuid.in_(in_cluster),
                or_(admin, owner, admin_grant))


def require(ctx: Context, obj: Object, permission: str, what: str) -> None:
    """404 when the user may not even read `obj`, 403 when they may read but not do this."""
    if not holds(ctx, obj, "read"):
        raise NotFound(f"no {what} with UUID {obj.uuid}")
    if permission != "read" and not holds(ctx, obj, permission):
        raise Forbidden(f"you need the '{permission}' permission on this {what} to do that")


def require_admin(ctx: Context, doing: str) -> None:
    if not ctx.user.is_admin:
        raise Forbidden(f"only an administrator may {doing}")


def readable(ctx: Context, model: Any) -> ColumnElement[bool] | None:
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
        shared = select(Grant.uuid).where(_cluster_confers(mine, Machine.uuid)).exists()
        operated = select(Hypervisor.uuid).where(or_(
            Hypervisor.owner_uuid == me,
            Hypervisor.uuid.in_(select(Grant.object_uuid).where(
                Grant.principal_uuid.in_(mine), Grant.permission.in_(("control", "admin"))))))
        clause = or_(clause, shared, Machine.parent_uuid.in_(operated))
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
            return type_name, cast(Object, obj)
    raise NotFound(f"no object with UUID {uuid}")
