"""Spec section 4: an object's access list."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.errors import UnknownAction
from enomalism.services import access, permissions
from enomalism.store.models import Grant, Group, User
from enomalism.wire import AccessList

router = APIRouter(tags=["permissions"])


class PermissionVars(Vars):
    action: str | None = Field(None, description="grant or revoke (POST only)")
    permission: str | None = Field(None, description=", ".join(access.PERMISSIONS))
    user: str | None = Field(None, description="the user (id or name) to grant to or revoke from")
    group: str | None = Field(None, description="or the group (id or name)")


class PermissionsAnswer(Status, AccessList):
    pass


class MyPermissionsAnswer(Status):
    object: str
    object_type: str
    permissions: list[str] = Field(description="the permissions the caller holds on the object "
                                   "(by grant, ownership, group or administrator)")
    actions: list[str] | None = Field(None, description="a machine's actions valid now that "
                                      "the caller may do; null for other objects")


def _answer(ctx: Ctx, uuid: str, message: str = "") -> dict:
    type_name, obj, grants = permissions.list_grants(ctx, uuid)
    owner = getattr(obj, "owner_uuid", None)
    owner_user = ctx.db.get(User, owner) if owner else None
    name = getattr(obj, "username", None) or getattr(obj, "name", None) or \
        getattr(obj, "virt_url", None) or getattr(obj, "url", None)
    return {"errno": 0, "message": message, "object": obj.uuid, "object_type": type_name,
            "object_name": name, "owner": owner,
            "owner_name": owner_user.username if owner_user else None,
            "permissions": [_grant_obj(ctx, g) for g in grants]}


def _grant_obj(ctx: Ctx, g: Grant) -> dict:
    who = ctx.db.get(User if g.principal_type == "user" else Group, g.principal_uuid)
    name = None if who is None else getattr(who, "username", None) or getattr(who, "name", None)
    return {"uuid": g.uuid, "permission": g.permission, "principal_type": g.principal_type,
            "principal": g.principal_uuid, "principal_name": name, "created_at": g.created_at}


def list_permissions(uuid: str, ctx: Ctx) -> dict:
    """The object's owner and access list (needs 'admin' on it)."""
    return _answer(ctx, uuid)


def my_permissions(uuid: str, ctx: Ctx) -> dict:
    """What the caller may do on the object (extension: the dashboard's buttons)."""
    type_name, obj, held, acts = permissions.mine(ctx, uuid)
    return {"errno": 0, "message": "", "object": obj.uuid, "object_type": type_name,
            "permissions": held, "actions": acts}


def grant(uuid: str, ctx: Ctx, v: Annotated[PermissionVars, http_vars(PermissionVars)]) -> dict:
    """Grant `permission` to `user` or `group`."""
    message = permissions.grant(ctx, uuid, permission=v.permission, user=v.user, group=v.group)
    ctx.db.flush()
    return _answer(ctx, uuid, message)


def revoke(uuid: str, ctx: Ctx, v: Annotated[PermissionVars, http_vars(PermissionVars)]) -> dict:
    """Revoke `permission` from `user` or `group`."""
    message = permissions.revoke(ctx, uuid, permission=v.permission, user=v.user, group=v.group)
    ctx.db.flush()
    return _answer(ctx, uuid, message)


def act(uuid: str, ctx: Ctx, v: Annotated[PermissionVars, http_vars(PermissionVars)]) -> dict:
    """action=grant or action=revoke; without variables, answers like GET."""
    if posted_nothing(v, needs="action"):
        return list_permissions(uuid, ctx)
    if v.action not in ("grant", "revoke"):
        raise UnknownAction(f"unknown permission action '{v.action}'; use grant or revoke")
    return (grant if v.action == "grant" else revoke)(uuid, ctx, v)


expose(router, "/rest/permissions/{uuid}/", ["GET"], list_permissions,
       response_model=PermissionsAnswer, summary="An object's access list (4.1)",
       dependencies=[refuse_changes_on_get(PermissionVars)])
expose(router, "/rest/permissions/{uuid}/mine/", ["GET"], my_permissions,
       response_model=MyPermissionsAnswer, summary="What the caller may do on an object "
       "(extension)")
expose(router, "/rest/permissions/{uuid}/", ["PUT"], grant, vars_model=PermissionVars,
       response_model=PermissionsAnswer, summary="Grant a permission (4.1)")
expose(router, "/rest/permissions/{uuid}/", ["DELETE"], revoke, vars_model=PermissionVars,
       response_model=PermissionsAnswer, summary="Revoke a permission (4.1)")
expose(router, "/rest/permissions/{uuid}/", ["POST"], act, vars_model=PermissionVars,
       response_model=PermissionsAnswer, summary="Grant or revoke (4.1)")
