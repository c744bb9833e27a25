"""Spec section 3: users and groups; API tokens and the audit log (extensions)."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars, writes_on_get
from enomalism.api.schemas import Status
from enomalism.services import tokens, users
from enomalism.services.shown import users as shown
from enomalism.wire import AuditObj, GroupObj, TokenObj, UserObj

router = APIRouter(tags=["users"])


class UsersAnswer(BaseModel):
    users: list[list[str]] = Field(description="[username, id] pairs")


class GroupsAnswer(BaseModel):
    groups: list[list[str]] = Field(description="[groupname, id] pairs")


class UserAnswer(Status):
    user: UserObj | None


class CreateUserAnswer(Status):
    uuid: str = Field(description="the new user's id (an addition to the spec's {})")


class GroupAnswer(Status):
    group: GroupObj | None


class TokensAnswer(Status):
    tokens: list[TokenObj]


class TokenAnswer(Status):
    token: TokenObj
    secret: str = Field(description="send as 'Authorization: Bearer <secret>'; shown only now")


class AuditAnswer(Status):
    entries: list[AuditObj]


class CreateUserVars(Vars):
    username: str | None = Field(None, description="1 to 64 letters, digits or . _ @ -")
    password: str | None = Field(None, description=f"at least {users.MIN_PASSWORD} characters")
    email: str | None = None
    full_name: str | None = None
    admin: bool = Field(False, description="make the user an administrator")
    groups: list[str] = Field(default_factory=list, description="group ids or names")


class UserVars(Vars):
    action: str | None = Field(None, description=", ".join(users.USER_ACTIONS))
    email: str | None = Field(None, description="for update")
    full_name: str | None = Field(None, description="for update")
    password: str | None = Field(None, description="for set_password")
    old_password: str | None = Field(None, description="for set_password of your own password: "
                                     "the current one")
    group: str | None = Field(None, description="a group id or name, for add_group/remove_group")
    admin: bool | None = Field(None, description="for set_admin")


class CreateGroupVars(Vars):
    group_name: str | None = Field(None, description="the new group's name")


class GroupVars(Vars):
    action: str | None = Field(None, description=", ".join(users.GROUP_ACTIONS))
    group_name: str | None = Field(None, description="the new name, for rename")
    user: str | None = Field(None, description="a user id or name, for add_user/remove_user")


class TokenListVars(Vars):
    user: str | None = Field(None, description="another user's id or name (administrators)")


class TokenVars(Vars):
    name: str | None = Field(None, description="a name for the token")
    expires_in_days: str | None = Field(None, description="lifetime in days; none: no expiry")


class AuditVars(Vars):
    object: str | None = Field(None, description="only entries about this object id")
    actor: str | None = Field(None, description="only entries of this user (id or name)")
    failed: bool | None = Field(None, description="true: only refusals and failures; false: "
                                "only changes done")
    limit: int = Field(100, ge=1, le=1000)


def list_users(ctx: Ctx) -> dict:
    """The users the caller may read, as [username, id] pairs."""
    return {"users": shown.user_pairs(ctx)}


def list_groups(ctx: Ctx) -> dict:
    """The groups the caller may read, as [groupname, id] pairs."""
    return {"groups": shown.group_pairs(ctx)}


def create_user(ctx: Ctx, v: Annotated[CreateUserVars, http_vars(CreateUserVars)]) -> dict:
    """Create a user (administrators)."""
    u = shown.create_user(ctx, username=v.username, password=v.password, email=v.email,
                          full_name=v.full_name, admin=v.admin, groups=v.groups)
    return {"uuid": u["uuid"], "errno": 0, "message": f"user {u['username']} created"}


def get_user(uuid: str, ctx: Ctx) -> dict:
    """The user (never their password hash)."""
    return {"user": shown.user(ctx, uuid=uuid), "errno": 0, "message": ""}


def update_user(uuid: str, ctx: Ctx, v: Annotated[UserVars, http_vars(UserVars)]) -> dict:
    """One action on the user; without variables, answers like GET."""
    now = shown.user(ctx, uuid=uuid)  # an unknown user is a 404 before any variable is read
    if posted_nothing(v, needs="action"):
        return {"user": now, "errno": 0, "message": ""}
    u, message = shown.update_user(ctx, uuid=uuid, action=v.action or "", email=v.email,
                                   full_name=v.full_name, password=v.password,
                                   old_password=v.old_password, group=v.group, admin=v.admin)
    return {"user": u, "errno": 0, "message": message}


def delete_user(uuid: str, ctx: Ctx) -> dict:
    """Delete the user (administrators; never the last one)."""
    message = shown.delete_user(ctx, uuid=uuid)
    return {"user": None, "errno": 0, "message": message}


def create_group(ctx: Ctx, v: Annotated[CreateGroupVars, http_vars(CreateGroupVars)]) -> dict:
    """Create a group; its creator owns it."""
    g = shown.create_group(ctx, name=v.group_name)
    return {"group": g, "errno": 0, "message": f"group {g['name']} created"}


def get_group(uuid: str, ctx: Ctx) -> dict:
    """The group and its members."""
    return {"group": shown.group(ctx, uuid=uuid), "errno": 0, "message": ""}


def update_group(uuid: str, ctx: Ctx, v: Annotated[GroupVars, http_vars(GroupVars)]) -> dict:
    """One action on the group; without variables, answers like GET."""
    now = shown.group(ctx, uuid=uuid)  # an unknown group is a 404 before any variable is read
    if posted_nothing(v, needs="action"):
        return {"group": now, "errno": 0, "message": ""}
    g, message = shown.update_group(ctx, uuid=uuid, action=v.action or "", name=v.group_name,
                                    user=v.user)
    return {"group": g, "errno": 0, "message": message}


def delete_group(uuid: str, ctx: Ctx) -> dict:
    """Delete the group (its members stay)."""
    return {"group": None, "errno": 0, "message": shown.delete_group(ctx, uuid=uuid)}


def list_tokens(ctx: Ctx, v: Annotated[TokenListVars, http_vars(TokenListVars)]) -> dict:
    """The caller's API tokens (never their secrets)."""
    return {"tokens": shown.list_tokens(ctx, user=v.user), "errno": 0, "message": ""}


def create_token(ctx: Ctx, v: Annotated[TokenVars, http_vars(TokenVars)]) -> dict:
    """Create a named API token for the caller; the secret is in this answer only."""
    token, secret = shown.create_token(ctx, name=v.name, expires_in_days=v.expires_in_days)
    return {"token": token, "secret": secret, "errno": 0,
            "message": f"token {token['name']} created; keep the secret, it is not shown again"}


def revoke_token(uuid: str, ctx: Ctx) -> dict:
    """Revoke a token at once."""
    return {"errno": 0, "message": tokens.revoke(ctx, uuid)}


def audit_log(ctx: Ctx, v: Annotated[AuditVars, http_vars(AuditVars)]) -> dict:
    """Every change and refused change, newest first (administrators)."""
    return {"entries": shown.audit_entries(ctx, object_uuid=v.object, actor=v.actor,
                                           failed=v.failed, limit=v.limit),
            "errno": 0, "message": ""}


expose(router, "/rest/users/", ["GET", "POST"], list_users, response_model=UsersAnswer,
       summary="List users (3.1)")
expose(router, "/rest/users/list/", ["GET", "POST"], list_users, response_model=UsersAnswer,
       summary="List users (3.2)")
expose(router, "/rest/group/list/", ["GET", "POST"], list_groups, response_model=GroupsAnswer,
       summary="List groups (3.3)")
expose(router, "/rest/user/create/", ["POST"], create_user, vars_model=CreateUserVars,
       response_model=CreateUserAnswer, summary="Create a user (3.5)")
expose(router, "/rest/user/{uuid}/", ["GET"], get_user, response_model=UserAnswer,
       summary="Get a user (3.4)", dependencies=[refuse_changes_on_get(UserVars)])
expose(router, "/rest/user/{uuid}/", ["POST"], update_user, vars_model=UserVars,
       response_model=UserAnswer, summary="Act on a user (3.4)")
expose(router, "/rest/user/{uuid}/", ["DELETE"], delete_user, response_model=UserAnswer,
       summary="Delete a user (3.4)")
expose(router, "/rest/user/{uuid}/delete/", ["GET", "POST"], delete_user,
       response_model=UserAnswer, summary="Delete a user (3.6)",
       dependencies=[Depends(writes_on_get)])
expose(router, "/rest/group/create/", ["PUT"], create_group, vars_model=CreateGroupVars,
       response_model=GroupAnswer, summary="Create a group (3.7)")
expose(router, "/rest/group/{uuid}/delete/", ["GET", "POST"], delete_group,
       response_model=GroupAnswer, summary="Delete a group (3.8)",
       dependencies=[Depends(writes_on_get)])
expose(router, "/rest/group/{uuid}/", ["GET"], get_group, response_model=GroupAnswer,
       summary="Get a group (3.9)", dependencies=[refuse_changes_on_get(GroupVars)])
expose(router, "/rest/group/{uuid}/", ["POST"], update_group, vars_model=GroupVars,
       response_model=GroupAnswer, summary="Act on a group (3.9)")
expose(router, "/rest/group/{uuid}/", ["DELETE"], delete_group, response_model=GroupAnswer,
       summary="Delete a group (3.9)")
expose(router, "/rest/tokens/", ["GET"], list_tokens, vars_model=TokenListVars,
       response_model=TokensAnswer, dependencies=[refuse_changes_on_get(TokenVars)],
       summary="List API tokens (extension)")
expose(router, "/rest/tokens/", ["PUT", "POST"], create_token, vars_model=TokenVars,
       response_model=TokenAnswer, summary="Create an API token (extension)")
expose(router, "/rest/tokens/{uuid}/", ["DELETE"], revoke_token, response_model=Status,
       summary="Revoke an API token (extension)")
expose(router, "/rest/audit/", ["GET"], audit_log, vars_model=AuditVars,
       response_model=AuditAnswer, summary="The audit log (extension, administrators)")
