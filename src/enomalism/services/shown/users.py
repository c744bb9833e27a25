"""Users, groups, API tokens and the audit log as the answers show them."""

from collections.abc import Sequence

from enomalism.services import access, audit, tokens, users
from enomalism.services.context import Context
from enomalism.services.lookup import parse_uuid
from enomalism.store.models import ApiToken, AuditEntry, Group, User


def user_obj(u: User) -> dict:
    """A user (`wire.UserObj`), never their password hash."""
    return {"uuid": u.uuid, "username": u.username, "email": u.email, "full_name": u.full_name,
            "is_admin": u.is_admin, "enabled": u.enabled,
            "groups": [{"uuid": g.uuid, "name": g.name} for g in u.groups],
            "created_at": u.created_at, "password_changed_at": u.password_changed_at}


def group_obj(g: Group) -> dict:
    """A group and its members (`wire.GroupObj`)."""
    return {"uuid": g.uuid, "name": g.name, "owner": g.owner_uuid,
            "users": [{"uuid": u.uuid, "username": u.username} for u in g.users],
            "created_at": g.created_at}


def token_obj(t: ApiToken) -> dict:
    """An API token (`wire.TokenObj`), never its secret."""
    return {"uuid": t.uuid, "name": t.name, "user": t.user_uuid, "created_at": t.created_at,
            "expires_at": t.expires_at}


def audit_obj(e: AuditEntry) -> dict:
    """An audit log entry (`wire.AuditObj`)."""
    return {"id": e.id, "at": e.at, "actor": e.actor_uuid, "actor_name": e.actor_name,
            "source": e.source, "action": e.action, "object": e.object_uuid,
            "object_type": e.object_type, "object_name": e.object_name, "errno": e.errno,
            "message": e.message, "detail": e.detail}


def user_pairs(ctx: Context) -> list[list[str]]:
    """The users the caller may read, as [username, id] pairs."""
    return [[u.username, u.uuid] for u in users.list_users(ctx)]


def group_pairs(ctx: Context) -> list[list[str]]:
    """The groups the caller may read, as [groupname, id] pairs."""
    return [[g.name, g.uuid] for g in users.list_groups(ctx)]


def create_user(ctx: Context, *, username: str | None, password: str | None,
                email: str | None, full_name: str | None, admin: bool,
                groups: Sequence[str]) -> dict:
    """Create a user (administrators)."""
    return user_obj(users.create_user(ctx, username=username, password=password, email=email,
                                      full_name=full_name, admin=admin, groups=groups))


def _user(ctx: Context, uuid: str) -> User:
    return users.find_user(ctx, parse_uuid(uuid, "user"))


def _group(ctx: Context, uuid: str) -> Group:
    return users.find_group(ctx, parse_uuid(uuid, "group"))


def user(ctx: Context, *, uuid: str) -> dict:
    """One user the caller may read."""
    return user_obj(_user(ctx, uuid))


def update_user(ctx: Context, *, uuid: str, action: str, email: str | None,
                full_name: str | None, password: str | None, old_password: str | None,
                group: str | None, admin: bool | None) -> tuple[dict, str]:
    """One action on a user; the user now, and what was done."""
    u = _user(ctx, uuid)
    message = users.update_user(ctx, u, action, email=email, full_name=full_name,
                                password=password, old_password=old_password, group=group,
                                admin=admin)
    ctx.db.flush()
    return user_obj(u), message


def delete_user(ctx: Context, *, uuid: str) -> str:
    """Delete a user (administrators; never the last one)."""
    return users.delete_user(ctx, _user(ctx, uuid))


def create_group(ctx: Context, *, name: str | None) -> dict:
    """Create a group; its creator owns it."""
    return group_obj(users.create_group(ctx, name))


def group(ctx: Context, *, uuid: str) -> dict:
    """One group the caller may read, and its members."""
    return group_obj(_group(ctx, uuid))


def update_group(ctx: Context, *, uuid: str, action: str, name: str | None,
                 user: str | None) -> tuple[dict, str]:
    """One action on a group; the group now, and what was done."""
    g = _group(ctx, uuid)
    message = users.update_group(ctx, g, action, name=name, user=user)
    ctx.db.flush()
    return group_obj(g), message


def delete_group(ctx: Context, *, uuid: str) -> str:
    """Delete a group (its members stay)."""
    return users.delete_group(ctx, _group(ctx, uuid))


def list_tokens(ctx: Context, *, user: str | None) -> list[dict]:
    """The caller's API tokens, or (administrators) another user's."""
    return [token_obj(t) for t in tokens.list_tokens(ctx, user)]


def create_token(ctx: Context, *, name: str | None, expires_in_days: str | None
                 ) -> tuple[dict, str]:
    """A new API token for the caller, and its secret (shown only now)."""
    token, secret = tokens.create(ctx, name=name, expires_in_days=expires_in_days)
    return token_obj(token), secret


def audit_entries(ctx: Context, *, object_uuid: str | None, actor: str | None,
                  failed: bool | None, limit: int) -> list[dict]:
    """The audit log, newest first (administrators)."""
    access.require_admin(ctx, "read the audit log")
    obj = parse_uuid(object_uuid, "object") if object_uuid else None
    return [audit_obj(e) for e in audit.entries(ctx, object_uuid=obj, actor=actor,
                                                 failed=failed, limit=limit)]
