"""Access lists (spec section 4): list, grant and revoke permissions on any object. Changing an
object's access list needs the `admin` permission on it."""

from sqlalchemy import select

from enomalism.errors import Conflict, InvalidInput, MissingVariable, NotFound
from enomalism.services import access, actions, audit
from enomalism.services.context import Context
from enomalism.services.lookup import parse_uuid
from enomalism.services.users import find_group, find_user
from enomalism.store.models import Grant, Group, Machine, User


def _target(ctx: Context, uuid: str) -> tuple[str, access.Object]:
    type_name, obj = access.find_object(ctx, parse_uuid(uuid, "object"))
    access.require(ctx, obj, "read", type_name)
    return type_name, obj


def _principal(ctx: Context, user: str | None, group: str | None) -> User | Group:
    if not user and not group:
        raise MissingVariable("name the principal: 'user' or 'group' (an id or a name)")
    if user and group:
        raise InvalidInput("name exactly one principal: 'user' or 'group' (an id or a name)")
    return find_user(ctx, user) if user else find_group(ctx, group)


def list_grants(ctx: Context, uuid: str) -> tuple[str, access.Object, list[Grant]]:
    type_name, obj = _target(ctx, uuid)
    access.require(ctx, obj, "admin", type_name)
    grants = list(ctx.db.scalars(select(Grant).where(Grant.object_uuid == obj.uuid)
                                 .order_by(Grant.created_at)))
    return type_name, obj, grants


def grant(ctx: Context, uuid: str, *, permission: str | None, user: str | None,
          group: str | None) -> str:
    type_name, obj = _target(ctx, uuid)
    access.require(ctx, obj, "admin", type_name)
    permission = access.check_permission(permission)
    who = _principal(ctx, user, group)
    if ctx.db.scalar(select(Grant.uuid).where(Grant.object_uuid == obj.uuid,
                                              Grant.principal_uuid == who.uuid,
                                              Grant.permission == permission)):
        raise Conflict(f"{_name(who)} already holds '{permission}' on this {type_name}")
    ctx.db.add(Grant(object_uuid=obj.uuid, object_type=type_name,
                     principal_type="user" if isinstance(who, User) else "group",
                     principal_uuid=who.uuid, permission=permission, created_by=ctx.user.uuid))
    audit.record(ctx, "permission.grant", obj.uuid, permission=permission,
                 principal=_name(who), object_type=type_name)
    return f"granted '{permission}' on {type_name} {obj.uuid} to {_name(who)}"


def revoke(ctx: Context, uuid: str, *, permission: str | None, user: str | None,
           group: str | None) -> str:
    type_name, obj = _target(ctx, uuid)
    access.require(ctx, obj, "admin", type_name)
    permission = access.check_permission(permission)
    who = _principal(ctx, user, group)
    g = ctx.db.scalar(select(Grant).where(Grant.object_uuid == obj.uuid,
                                          Grant.principal_uuid == who.uuid,
                                          Grant.permission == permission))
    if g is None:
        raise NotFound(f"{_name(who)} holds no '{permission}' on this {type_name}")
    ctx.db.delete(g)
    audit.record(ctx, "permission.revoke", obj.uuid, permission=permission,
                 principal=_name(who), object_type=type_name)
    return f"revoked '{permission}' on {type_name} {obj.uuid} from {_name(who)}"


def _name(who: User | Group) -> str:
    return f"user {who.username}" if isinstance(who, User) else f"group {who.name}"


def mine(ctx: Context, uuid: str) -> tuple[str, access.Object, list[str], list[str] | None]:
    """What the caller may do on the object: the permissions they hold on it (by any rule of
    services/access.py) and, for a machine, the actions valid now that they may do. Anyone
    who may read the object may ask (an object they may not read is not found)."""
    type_name, obj = _target(ctx, uuid)
    held = [p for p in access.PERMISSIONS if access.holds(ctx, obj, p)]
    acts = actions.permitted(ctx, obj) if isinstance(obj, Machine) else None
    return type_name, obj, held, acts
