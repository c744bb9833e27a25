"""Spec section 4: an object's access list."""

from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.errors import UnknownAction
from enomalism.services import access
from enomalism.services.shown import permissions as shown
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
    return {"errno": 0, "message": message, **shown.access_list(ctx, uuid=uuid)}


def list_permissions(uuid: str, ctx: Ctx) -> dict:
    """The object's owner and access list (needs 'admin' on it)."""
    return _answer(ctx, uuid)


def my_permissions(uuid: str, ctx: Ctx) -> dict:
    """What the caller may do on the object (extension: the dashboard's buttons)."""
    return {"errno": 0, "message": "", **shown.mine(ctx, uuid=uuid)}


def grant(uuid: str, ctx: Ctx, v: Annotated[PermissionVars, http_vars(PermissionVars)]) -> dict:
    """Grant `permission` to `user` or `group`."""
    message = shown.grant(ctx, uuid=uuid, permission=v.permission, user=v.user, group=v.group)
    return _answer(ctx, uuid, message)


def revoke(uuid: str, ctx: Ctx, v: Annotated[PermissionVars, http_vars(PermissionVars)]) -> dict:
    """Revoke `permission` from `user` or `group`."""
    message = shown.revoke(ctx, uuid=uuid, permission=v.permission, user=v.user, group=v.group)
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
