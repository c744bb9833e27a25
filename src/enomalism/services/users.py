"""Users and groups (spec section 3).

Passwords: at least 10 characters and at most 1024, not the user name, not one character
repeated; hashed with argon2. The last enabled administrator cannot be deleted, disabled or
demoted, so the installation can always be administered.
"""

import uuid as uuidlib
from collections.abc import Sequence

from sqlalchemy import event, select

from enomalism.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MissingVariable,
    NotFound,
    UnknownAction,
)
from enomalism.services import access, audit, names
from enomalism.services.auth import hash_password, password_matches
from enomalism.services.context import Context
from enomalism.services.lookup import require
from enomalism.store.models import Grant, Group, User, utcnow

MIN_PASSWORD = 10
NAME_RE = names.ACCOUNT_RE  # users, groups, images (services/names.py)
USER_ACTIONS = ("update", "set_password", "add_group", "remove_group", "enable", "disable",
                "set_admin")
GROUP_ACTIONS = ("rename", "add_user", "remove_user")


def check_password(password: str | None, username: str) -> str:
    if not password:
        raise MissingVariable("the variable 'password' is required")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InvalidInput("a password has at most 1024 characters")
    if password.lower() == username.lower():
        raise InvalidInput("the password must not be the user name")
    if len(set(password)) == 1:
        raise InvalidInput("the password must not be one character repeated")
    return password


def _check_name(name: str | None, what: str) -> str:
    return names.check(names.USER if what == "user" else names.GROUP, name,
                       variable=f"{what}name" if what == "user" else f"{what}_name")


def _is_uuid(ref: str) -> bool:
    try:
        uuidlib.UUID(ref)
        return True
    except ValueError:
        return False


def find_user(ctx: Context, ref: str | None, variable: str = "user") -> User:
    """A user by UUID or name, readable by the caller; 404 otherwise."""
    ref = require(ref, variable, " (a user id or name)")
    user = ctx.db.get(User, str(uuidlib.UUID(ref))) if _is_uuid(ref) else \
        ctx.db.scalar(select(User).where(User.username == ref))
    if user is None or not access.holds(ctx, user, "read"):
        raise NotFound(f"no user '{ref}'")
    return user


def find_group(ctx: Context, ref: str | None, variable: str = "group") -> Group:
    ref = require(ref, variable, " (a group id or name)")
    group = ctx.db.get(Group, str(uuidlib.UUID(ref))) if _is_uuid(ref) else \
        ctx.db.scalar(select(Group).where(Group.name == ref))
    if group is None or not access.holds(ctx, group, "read"):
        raise NotFound(f"no group '{ref}'")
    return group


def list_users(ctx: Context) -> list[User]:
    q = select(User).order_by(User.username)
    clause = access.readable(ctx, User)
    return list(ctx.db.scalars(q if clause is None else q.where(clause)))


def list_groups(ctx: Context) -> list[Group]:
    q = select(Group).order_by(Group.name)
    clause = access.readable(ctx, Group)
    return list(ctx.db.scalars(q if clause is None else q.where(clause)))


def create_user(ctx: Context, *, username: str | None, password: str | None,
                email: str | None = None, full_name: str | None = None, admin: bool = False,
                groups: Sequence[str] = ()) -> User:
    access.require_admin(ctx, "create users")
    username = _check_name(username, "user")
    if ctx.db.scalar(select(User.uuid).where(User.username == username)):
        raise Conflict(f"a user named '{username}' already exists")
    user = User(username=username, password_hash="", email=email or None,
                full_name=full_name or None, is_admin=admin)
    user.password_hash = hash_password(check_password(password, username))
    user.groups = [find_group(ctx, g) for g in groups]
    ctx.db.add(user)
    ctx.db.flush()
    audit.record(ctx, "user.create", user.uuid, username=username, admin=admin,
                 groups=[g.name for g in user.groups])
    return user


def _enabled_admins(ctx: Context) -> int:
    """Counted with the rows locked, so two requests demoting the last two administrators
    on two nodes cannot both see the other one still there."""
    return len(ctx.db.scalars(select(User.uuid).where(
        User.is_admin.is_(True), User.enabled.is_(True)).with_for_update()).all())


def _keep_an_admin(ctx: Context, user: User, doing: str) -> None:
    if user.is_admin and user.enabled and _enabled_admins(ctx) <= 1:
        raise Conflict(f"cannot {doing} the last administrator")


def _change_group(ctx: Context, user: User, action: str, group: str | None) -> str:
    """add_group or remove_group."""
    g = find_group(ctx, group)
    access.require(ctx, g, "modify", "group")
    if action == "add_group":
        if g in user.groups:
            raise Conflict(f"user {user.username} is already in group {g.name}")
        user.groups.append(g)
    else:
        if g not in user.groups:
            raise InvalidInput(f"user {user.username} is not in group {g.name}")
        user.groups.remove(g)
    audit.record(ctx, f"user.{action}", user.uuid, group=g.name)
    return f"user {user.username} {'added to' if action == 'add_group' else 'removed from'} " \
           f"group {g.name}"


def update_user(ctx: Context, user: User, action: str, *, email: str | None = None,
                full_name: str | None = None, password: str | None = None,
                old_password: str | None = None, group: str | None = None,
                admin: bool | None = None) -> str:
    """One `action` on a user; returns the message. Forgets cached credentials when the
    user's access changes."""
    if action not in USER_ACTIONS:
        raise UnknownAction(f"unknown user action '{action}'; use one of "
                            f"{', '.join(USER_ACTIONS)}")
    if action == "update":
        access.require(ctx, user, "modify", "user")
        if email is None and full_name is None:
            raise InvalidInput("update needs email or full_name")
        if email is not None:
            user.email = email or None
        if full_name is not None:
            user.full_name = full_name or None
        audit.record(ctx, "user.update", user.uuid, email=email, full_name=full_name)
        return f"user {user.username} updated"
    if action == "set_password":
        access.require(ctx, user, "modify", "user")
        if user.uuid == ctx.user.uuid:
            _check_old_password(ctx, user, old_password)
        user.password_hash = hash_password(check_password(password, user.username))
        user.password_changed_at = utcnow()
        audit.record(ctx, "user.set_password", user.uuid)
    elif action in ("add_group", "remove_group"):
        return _change_group(ctx, user, action, group)
    else:  # enable, disable, set_admin
        access.require_admin(ctx, f"{action.replace('_', ' ')} users")
        if action == "disable":
            _keep_an_admin(ctx, user, "disable")
            user.enabled = False
        elif action == "enable":
            user.enabled = True
        else:
            if admin is None:
                raise InvalidInput("set_admin needs admin=true or admin=false")
            if not admin:
                _keep_an_admin(ctx, user, "demote")
            user.is_admin = admin
        audit.record(ctx, f"user.{action}", user.uuid, admin=admin)
    forget_credentials(ctx, user.uuid)
    return f"user {user.username}: {action.replace('_', ' ')} done"


def _check_old_password(ctx: Context, user: User, old_password: str | None) -> None:
    """Your own password changes only with the current one, so that a token or a session
    left open is not enough to take the account. A wrong one counts as a failed login (and
    is throttled like one); an administrator resetting someone else's needs none."""
    if not old_password:
        raise MissingVariable("the variable 'old_password' (your current password) is required "
                              "to change your own password")
    source = ctx.source or ""
    if ctx.throttle is not None:
        ctx.throttle.check(user.username, source)
    if not password_matches(user.password_hash, old_password):
        if ctx.throttle is not None:
            ctx.throttle.failed_after(ctx.db, user.username, source)
        raise Forbidden("old_password is not your current password; nothing was changed")
    if ctx.throttle is not None:
        ctx.throttle.succeeded(user.username, source, ctx.db)


def forget_credentials(ctx: Context, user_uuid: str) -> None:
    """Drop the user's cached credentials (passwords and tokens) now and again once the change
    is committed (a request verified against the old state in between must not keep it)."""
    cache = ctx.credentials
    if cache is None:
        return
    cache.forget(user_uuid)
    event.listen(ctx.db, "after_commit", lambda _s: cache.forget(user_uuid), once=True)


def delete_user(ctx: Context, user: User) -> str:
    access.require_admin(ctx, "delete users")
    _keep_an_admin(ctx, user, "delete")
    if user.uuid == ctx.user.uuid:
        raise Conflict("you cannot delete yourself")
    ctx.db.query(Grant).filter(Grant.principal_uuid == user.uuid).delete()
    ctx.db.query(Grant).filter(Grant.object_uuid == user.uuid).delete()
    ctx.db.delete(user)
    audit.record(ctx, "user.delete", user.uuid, username=user.username)
    forget_credentials(ctx, user.uuid)
    return f"user {user.username} deleted"


def create_group(ctx: Context, name: str | None) -> Group:
    name = _check_name(name, "group")
    if ctx.db.scalar(select(Group.uuid).where(Group.name == name)):
        raise Conflict(f"a group named '{name}' already exists")
    g = Group(name=name, owner_uuid=ctx.user.uuid)
    ctx.db.add(g)
    ctx.db.flush()
    audit.record(ctx, "group.create", g.uuid, name=name)
    return g


def update_group(ctx: Context, g: Group, action: str, *, name: str | None = None,
                 user: str | None = None) -> str:
    if action not in GROUP_ACTIONS:
        raise UnknownAction(f"unknown group action '{action}'; use one of "
                            f"{', '.join(GROUP_ACTIONS)}")
    access.require(ctx, g, "modify", "group")
    if action == "rename":
        new = _check_name(name, "group")
        clash = ctx.db.scalar(select(Group.uuid).where(Group.name == new))
        if clash and clash != g.uuid:
            raise Conflict(f"a group named '{new}' already exists")
        old, g.name = g.name, new
        audit.record(ctx, "group.rename", g.uuid, old=old, new=new)
        return f"group {old} renamed to {new}"
    u = find_user(ctx, user)
    if action == "add_user":
        if u in g.users:
            raise Conflict(f"user {u.username} is already in group {g.name}")
        g.users.append(u)
    else:
        if u not in g.users:
            raise InvalidInput(f"user {u.username} is not in group {g.name}")
        g.users.remove(u)
    audit.record(ctx, f"group.{action}", g.uuid, user=u.username)
    return f"user {u.username} {'added to' if action == 'add_user' else 'removed from'} " \
           f"group {g.name}"


def delete_group(ctx: Context, g: Group) -> str:
    access.require(ctx, g, "delete", "group")
    ctx.db.query(Grant).filter(Grant.principal_uuid == g.uuid).delete()
    ctx.db.query(Grant).filter(Grant.object_uuid == g.uuid).delete()
    ctx.db.delete(g)
    audit.record(ctx, "group.delete", g.uuid, name=g.name)
    return f"group {g.name} deleted"
