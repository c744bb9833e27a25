"""`enomalism user`, `group`, `permission`, `token` and `audit`: who may do what."""

from typing import Annotated

import typer

from enomalism.cli import lookup
from enomalism.cli.common import Cli, CLIError, command, read_secret, split_principal
from enomalism.client import Group, User
from enomalism.client import GroupRef as GroupEntry  # GroupRef: the argument type below

user_app = typer.Typer(help="Users (administrators create and delete them).",
                       no_args_is_help=True)
group_app = typer.Typer(help="Groups of users.", no_args_is_help=True)
permission_app = typer.Typer(help="Access lists: who holds which permission on an object.",
                             no_args_is_help=True)
token_app = typer.Typer(help="API tokens (bearer secrets) of your own.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log (administrators).", no_args_is_help=True)

UserRef = Annotated[str, typer.Argument(help="user name, UUID or unique UUID prefix",
                                        show_default=False)]
GroupRef = Annotated[str, typer.Argument(help="group name, UUID or unique UUID prefix",
                                         show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="read the password from the first line of stdin")]


# -- users ---------------------------------------------------------------------------------

def _user_fields(cli: Cli, u: User) -> None:
    cli.fields([
        ("username", u.username), ("uuid", u.uuid), ("full name", u.full_name),
        ("email", u.email), ("admin", u.is_admin), ("enabled", u.enabled),
        ("groups", [g.name for g in u.groups]), ("created", u.created_at),
        ("password changed", u.password_changed_at)])


@command(user_app, "list")
def user_list(cli: Cli) -> None:
    """List the users you may see."""
    c = cli.client()
    users = [c.users.get(r.uuid) for r in c.users.list()]
    cli.emit(users, lambda: cli.table(
        ["USERNAME", "UUID", "ADMIN", "ENABLED", "EMAIL", "GROUPS"],
        [[u.username, u.uuid, u.is_admin, u.enabled, u.email, [g.name for g in u.groups]]
         for u in users]))


@command(user_app, "show")
def user_show(cli: Cli, user: UserRef) -> None:
    """Show a user."""
    c = cli.client()
    u = c.users.get(lookup.user(c, user).uuid)
    cli.emit(u, lambda: _user_fields(cli, u))


@command(user_app, "create")
def user_create(
    cli: Cli,
    username: Annotated[str, typer.Argument(help="1 to 64 letters, digits or . _ @ -")],
    email: Annotated[str | None, typer.Option(help="e-mail address")] = None,
    full_name: Annotated[str | None, typer.Option(help="full name")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="an administrator")] = False,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="a group to join (repeatable)")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user (administrators); the password is asked for twice."""
    c = cli.client()
    password = read_secret(f"Password for {username}", password_stdin)
    u = c.users.create(username, password, email=email, full_name=full_name, admin=admin,
                       groups=group or ())
    cli.emit(u, lambda: cli.say(f"user {u.username} created: {u.uuid}"))


@command(user_app, "update")
def user_update(
    cli: Cli,
    user: UserRef,
    email: Annotated[str | None, typer.Option(help="new e-mail ('' clears it)")] = None,
    full_name: Annotated[str | None, typer.Option(help="new full name")] = None,
) -> None:
    """Change a user's e-mail or full name."""
    if email is None and full_name is None:
        raise CLIError("give --email or --full-name", errno=1001)
    c = cli.client()
    u = c.users.update(lookup.user(c, user).uuid, email=email, full_name=full_name)
    cli.emit(u, lambda: cli.say(f"user {u.username} updated"))


@command(user_app, "delete")
def user_delete(cli: Cli, users: Annotated[list[str], typer.Argument(help="users to delete")],
                yes: Yes = False) -> None:
    """Delete users (administrators)."""
    c = cli.client()
    found = [lookup.user(c, u) for u in users]
    cli.confirm("Delete user(s) " + ", ".join(u.username for u in found) + "?", yes)
    results = []
    for u in found:
        message = c.users.delete(u.uuid)
        results.append({"user": u.uuid, "username": u.username, "message": message})
        cli.say(message)
    cli.emit(results)


@command(user_app, "passwd")
def user_passwd(
    cli: Cli,
    user: Annotated[str | None, typer.Argument(help="the user (default: yourself)")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a password (your own, or as an administrator anyone's). Your own needs the current
    one: the password you log in with, else it is asked for (with --password-stdin and a
    token login: the first line, the new password the second)."""
    c = cli.client()
    ref = user or cli.username
    if not ref:
        raise CLIError("name the user: enomalism user passwd USER", errno=1001)
    target = lookup.user(c, ref)
    current = None
    if target.username == cli.username:
        current = cli.password or read_secret(
            f"Current password for {target.username}", password_stdin, confirm=False)
    password = read_secret(f"New password for {target.username}", password_stdin)
    u = c.users.set_password(target.uuid, password, old_password=current)
    cli.emit(u, lambda: cli.say(f"password of {u.username} changed"))


def _flag(name: str, doc: str, call: str, said: str) -> None:
    @command(user_app, name, help=doc)
    def run(cli: Cli, user: UserRef) -> None:
        c = cli.client()
        u = getattr(c.users, call)(lookup.user(c, user).uuid)
        cli.emit(u, lambda: cli.say(f"user {u.username} {said}"))
    run.__name__ = f"user_{call}"


_flag("enable", "Let a user log in again (administrators).", "enable", "enabled")
_flag("disable", "Stop a user from logging in (administrators).", "disable", "disabled")


@command(user_app, "set-admin")
def user_set_admin(
    cli: Cli,
    user: UserRef,
    off: Annotated[bool, typer.Option("--off", help="take administration away")] = False,
) -> None:
    """Make a user an administrator, or (--off) no longer one."""
    c = cli.client()
    u = c.users.set_admin(lookup.user(c, user).uuid, not off)
    cli.emit(u, lambda: cli.say(
        f"user {u.username} is {'an' if u.is_admin else 'no longer an'} administrator"))


# -- groups --------------------------------------------------------------------------------

def _group_fields(cli: Cli, g: Group) -> None:
    cli.fields([("name", g.name), ("uuid", g.uuid), ("owner", g.owner),
                  ("members", [u.username for u in g.users]), ("created", g.created_at)])


@command(group_app, "list")
def group_list(cli: Cli) -> None:
    """List the groups you may see."""
    c = cli.client()
    groups = [c.groups.get(r.uuid) for r in c.groups.list()]
    cli.emit(groups, lambda: cli.table(
        ["NAME", "UUID", "MEMBERS"],
        [[g.name, g.uuid, [u.username for u in g.users]] for g in groups]))


@command(group_app, "show")
def group_show(cli: Cli, group: GroupRef) -> None:
    """Show a group and its members."""
    c = cli.client()
    g = c.groups.get(lookup.group(c, group).uuid)
    cli.emit(g, lambda: _group_fields(cli, g))


@command(group_app, "create")
def group_create(
                 cli: Cli,
                 name: Annotated[str, typer.Argument(help="the new group's name")]) -> None:
    """Create a group (you own it)."""
    g = cli.client().groups.create(name)
    cli.emit(g, lambda: cli.say(f"group {g.name} created: {g.uuid}"))


@command(group_app, "rename")
def group_rename(cli: Cli, group: GroupRef,
                 new_name: Annotated[str, typer.Argument(help="the new name")]) -> None:
    """Rename a group."""
    c = cli.client()
    old = lookup.group(c, group)
    g = c.groups.rename(old.uuid, new_name)
    cli.emit(g, lambda: cli.say(f"group {old.name} renamed to {g.name}"))


@command(group_app, "delete")
def group_delete(cli: Cli, group: GroupRef, yes: Yes = False) -> None:
    """Delete a group (its members stay)."""
    c = cli.client()
    g = lookup.group(c, group)
    cli.confirm(f"Delete group {g.name} ({g.uuid})?", yes)
    message = c.groups.delete(g.uuid)
    cli.emit({"group": g.uuid, "message": message}, lambda: cli.say(message))


def _membership(cli: Cli, group: str, users: list[str], add: bool) -> None:
    c = cli.client()
    g: Group | GroupEntry = lookup.group(c, group)
    for ref in users:
        u = lookup.user(c, ref)
        g = c.groups.add_user(g.uuid, u.uuid) if add else c.groups.remove_user(g.uuid, u.uuid)
        cli.say(f"{u.username} {'added to' if add else 'removed from'} group {g.name}")
    cli.emit(g)


Users = Annotated[list[str], typer.Argument(help="users: names, UUIDs or prefixes")]


@command(group_app, "add-user")
def group_add_user(cli: Cli, group: GroupRef, users: Users) -> None:
    """Add users to a group."""
    _membership(cli, group, users, True)


@command(group_app, "remove-user")
def group_remove_user(cli: Cli, group: GroupRef, users: Users) -> None:
    """Take users out of a group."""
    _membership(cli, group, users, False)


# -- permissions ---------------------------------------------------------------------------

Obj = Annotated[str, typer.Argument(
    help="KIND:NAME (machine, host, hypervisor, cluster, user, group, network, package, feed, "
         "transaction), a UUID, or a machine's name", show_default=False)]
Perm = Annotated[str, typer.Argument(help="read, control, modify, export, delete or admin")]
Principal = Annotated[str, typer.Argument(help="user:NAME or group:NAME (a bare name is a "
                                          "user)")]


def _access_human(cli: Cli, kind: str, label: str, acl) -> None:  # noqa: ANN001
    owner = f"{acl.owner_name} ({acl.owner})" if acl.owner_name else acl.owner or "nobody"
    cli.say(f"{kind} {acl.object_name or label} ({acl.object}), owner {owner}")
    cli.table(["PERMISSION", "TYPE", "NAME", "UUID", "GRANTED"], [
        [g.permission, g.principal_type, g.principal_name, g.principal, g.created_at]
        for g in acl.permissions])


@command(permission_app, "list")
def permission_list(cli: Cli, obj: Obj) -> None:
    """An object's owner and access list (needs admin on it)."""
    c = cli.client()
    kind, uuid, label = lookup.any_object(c, obj)
    acl = c.permissions.list(uuid)
    cli.emit(acl, lambda: _access_human(cli, acl.object_type, label, acl))


def _change(cli: Cli, obj: str, permission: str, principal: str, grant: bool) -> None:
    c = cli.client()
    kind, uuid, label = lookup.any_object(c, obj)
    user, group = split_principal(principal)
    call = c.permissions.grant if grant else c.permissions.revoke
    acl = call(uuid, permission, user=user, group=group)
    who = f"user {user}" if user else f"group {group}"
    cli.emit(acl, lambda: cli.say(
        f"{'granted' if grant else 'revoked'} {permission} on {acl.object_type} {label} "
        f"{'to' if grant else 'from'} {who}"))


@command(permission_app, "grant")
def permission_grant(cli: Cli, obj: Obj, permission: Perm, principal: Principal) -> None:
    """Grant a permission on an object to a user or group."""
    _change(cli, obj, permission, principal, True)


@command(permission_app, "revoke")
def permission_revoke(cli: Cli, obj: Obj, permission: Perm, principal: Principal) -> None:
    """Revoke a permission on an object from a user or group."""
    _change(cli, obj, permission, principal, False)


# -- tokens --------------------------------------------------------------------------------

@command(token_app, "list")
def token_list(cli: Cli, owner: Annotated[str | None, typer.Option(
        help="another user's tokens (administrators)")] = None) -> None:
    """List your API tokens (never their secrets); * marks the one of your login."""
    tokens = cli.client().tokens.list(owner)
    mine = cli.settings.get("token_id") if cli.stored_token() else None
    cli.emit(tokens, lambda: cli.table(
        ["", "NAME", "UUID", "CREATED", "EXPIRES"],
        [["*" if t.uuid == mine else "", t.name, t.uuid, t.created_at, t.expires_at or "never"]
         for t in tokens]))


@command(token_app, "create")
def token_create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="a name for the token (unique among yours)")],
    expires_in_days: Annotated[float | None, typer.Option(
        help="lifetime in days (default: no expiry)")] = None,
) -> None:
    """Create an API token; its secret is shown only now."""
    t = cli.client().tokens.create(name, expires_in_days)

    def human() -> None:
        cli.say(f"token {t.token.name} created: {t.token.uuid}")
        cli.say(f"secret (shown only now): {t.secret}")
        cli.say("use it as: Authorization: Bearer <secret>, or enomalism --token <secret>")
    cli.emit(t, human)


@command(token_app, "revoke")
def token_revoke(
    cli: Cli,
    tokens: Annotated[list[str], typer.Argument(help="tokens: names, UUIDs or prefixes")],
    owner: Annotated[str | None, typer.Option(
        help="another user's tokens (administrators)")] = None,
) -> None:
    """Revoke tokens at once."""
    c = cli.client()
    mine = cli.settings.get("token_id") if cli.stored_token() else None
    found = [lookup.token(c, t, owner) for t in tokens]
    results = []
    for t in found:
        message = c.tokens.revoke(t.uuid)
        results.append({"token": t.uuid, "name": t.name, "message": message})
        cli.say(message)
        if t.uuid == mine:
            cli.warn("that was the token of your login: run `enomalism login` again")
    cli.emit(results)


# -- audit ---------------------------------------------------------------------------------

@command(audit_app, "list")
def audit_list(
    cli: Cli,
    obj: Annotated[str | None, typer.Option(
        "--object", help="only entries about this object (KIND:NAME or UUID)")] = None,
    actor: Annotated[str | None, typer.Option(help="only this user's entries (name or "
                                              "UUID)")] = None,
    failed: Annotated[bool | None, typer.Option(
        "--failed/--done", help="only refusals and failures / only changes done",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="at most this many entries (1 to 1000)")] = 100,
) -> None:
    """Every change and refused change, newest first (docs/access.md, The audit log)."""
    c = cli.client()
    uuid = lookup.any_object(c, obj)[1] if obj else None
    entries = c.audit.list(object=uuid, actor=actor, failed=failed, limit=limit)
    cli.emit(entries, lambda: cli.table(
        ["AT", "WHO", "FROM", "ACTION", "OBJECT", "OUTCOME", "DETAIL"],
        [[e.at, e.actor_name, e.source, e.action,
          " ".join(x for x in (e.object_type, e.object_name or e.object) if x),
          "ok" if not e.errno else f"error {e.errno}: {e.message}",
          ", ".join(f"{k}={v}" for k, v in e.detail.items())] for e in entries]))
