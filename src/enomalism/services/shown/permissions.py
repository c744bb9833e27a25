"""An object's access list, and what the caller may do on it, as the answers show them."""

from typing import Any

from enomalism.services import permissions
from enomalism.services.context import Context
from enomalism.store.models import Grant, Group, User


def _grant_obj(ctx: Context, g: Grant) -> dict:
    who = ctx.db.get(User if g.principal_type == "user" else Group, g.principal_uuid)
    name = None if who is None else getattr(who, "username", None) or getattr(who, "name", None)
    return {"uuid": g.uuid, "permission": g.permission, "principal_type": g.principal_type,
            "principal": g.principal_uuid, "principal_name": name, "created_at": g.created_at}


def access_list(ctx: Context, *, uuid: str) -> dict[str, Any]:
    """An object's owner and access list (`wire.AccessList`; needs 'admin' on it)."""
    type_name, obj, grants = permissions.list_grants(ctx, uuid)
    owner = getattr(obj, "owner_uuid", None)
    owner_user = ctx.db.get(User, owner) if owner else None
    name = getattr(obj, "username", None) or getattr(obj, "name", None) or \
        getattr(obj, "virt_url", None) or getattr(obj, "url", None)
    return {"object": obj.uuid, "object_type": type_name, "object_name": name,
            "owner": owner, "owner_name": owner_user.username if owner_user else None,
            "permissions": [_grant_obj(ctx, g) for g in grants]}


def grant(ctx: Context, *, uuid: str, permission: str | None, user: str | None,
          group: str | None) -> str:
    """Grant `permission` on an object to a user or a group; what was done."""
    message = permissions.grant(ctx, uuid, permission=permission, user=user, group=group)
    ctx.db.flush()  # the access list read next shows the new grant
    return message


def revoke(ctx: Context, *, uuid: str, permission: str | None, user: str | None,
           group: str | None) -> str:
    """Revoke `permission` on an object from a user or a group; what was done."""
    message = permissions.revoke(ctx, uuid, permission=permission, user=user, group=group)
    ctx.db.flush()  # the access list read next no longer shows it
    return message


def mine(ctx: Context, *, uuid: str) -> dict[str, Any]:
    """What the caller may do on an object: the permissions held, a machine's actions."""
    type_name, obj, held, acts = permissions.mine(ctx, uuid)
    return {"object": obj.uuid, "object_type": type_name, "permissions": held,
            "actions": acts}
