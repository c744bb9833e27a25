"""`enomalism admin`: work on the local data directory, without a server: the first
administrator, a forgotten password, migrations, the effective configuration."""

from pathlib import Path
from typing import Annotated, Any, cast

import typer

from enomalism.cli.common import Cli, CLIError, command, read_secret
from enomalism.client import error_for
from enomalism.errors import EnomalismError

app = typer.Typer(help="Administration of the local data directory (no server needed).",
                  no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option(
    help="data directory [ENOMALISM_DATA_DIR; default ./var]", show_default=False)]
DatabaseUrl = Annotated[str | None, typer.Option(
    help="SQLAlchemy URL; default SQLite in the data dir [ENOMALISM_DATABASE_URL]",
    show_default=False)]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="read the password from the first line of stdin")]
LOCAL = "enomalism admin"


def _settings(data_dir: Path | None, database_url: str | None) -> Any:
    from enomalism.config import Settings

    given: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url}
    return Settings(**{k: v for k, v in given.items() if v is not None})


def _database(settings: Any) -> Any:
    """The database, migrated, with the server's password hashing settings."""
    from enomalism.services import auth
    from enomalism.store.db import Database

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    db.migrate()
    auth.configure_hashing(time_cost=settings.argon2_time_cost,
                           memory_kib=settings.argon2_memory_kib,
                           parallelism=settings.argon2_parallelism)
    return db


def _context(session: Any) -> Any:
    from enomalism.services.context import Context, Principal

    # A local command reaches no hypervisor (no registry) and acts as no stored user (no id).
    nothing = cast(Any, None)
    return Context(db=session, registry=nothing, source="local",
                   user=Principal(uuid=nothing, username=LOCAL, is_admin=True))


def _service_error(e: EnomalismError) -> CLIError:
    err = error_for(e.status, e.errno, e.message)
    return CLIError(e.message, err.exit_code, e.errno)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"


@command(app, "create-admin", connection=False)
def create_admin(
    cli: Cli,
    username: Annotated[str, typer.Argument(help="the new administrator's name")],
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
    email: Annotated[str | None, typer.Option(help="e-mail address")] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an administrator in the local database (creating and migrating it if needed);
    the password is asked for twice."""
    from enomalism.services import users

    settings = _settings(data_dir, database_url)
    password = read_secret(f"Password for {username}", password_stdin)
    db = _database(settings)
    try:
        with db.session() as s:
            u = users.create_user(_context(s), username=username, password=password,
                                  email=email, admin=True)
            doc = {"uuid": u.uuid, "username": u.username, "is_admin": True,
                   "database": _redact(settings.db_url)}
    except EnomalismError as e:
        raise _service_error(e) from None
    finally:
        db.dispose()
    cli.emit(doc, lambda: cli.say(f"administrator {username} created: {doc['uuid']}"))


@command(app, "reset-password", connection=False)
def reset_password(
    cli: Cli,
    username: Annotated[str, typer.Argument(help="the user")],
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
    enable: Annotated[bool, typer.Option("--enable", help="also enable the user")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password in the local database. A running server may accept the old
    password for up to ENOMALISM_AUTH_CACHE_SECONDS (60 s) more."""
    from sqlalchemy import select

    from enomalism.services import users
    from enomalism.store.models import User

    settings = _settings(data_dir, database_url)
    db = _database(settings)
    try:
        with db.session() as s:
            u = s.scalar(select(User).where(User.username == username))
            if u is None:
                raise CLIError(f"no user '{username}' in {_redact(settings.db_url)}", 3, 1200)
            password = read_secret(f"New password for {username}", password_stdin)
            ctx = _context(s)
            users.update_user(ctx, u, "set_password", password=password)
            if enable and not u.enabled:
                users.update_user(ctx, u, "enable")
            doc = {"uuid": u.uuid, "username": u.username, "enabled": u.enabled}
    except EnomalismError as e:
        raise _service_error(e) from None
    finally:
        db.dispose()
    cli.emit(doc, lambda: cli.say(f"password of {username} changed"
                                  + ("" if doc["enabled"] else " (the user is disabled: "
                                       "--enable)")))


@command(app, "migrate", connection=False)
def migrate(cli: Cli, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema (the server also does this at start)."""
    from sqlalchemy import text

    settings = _settings(data_dir, database_url)
    db = _database(settings)
    try:
        with db.session(write=False) as s:
            revision = s.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        db.dispose()
    doc = {"database": _redact(settings.db_url), "revision": revision}
    cli.emit(doc, lambda: cli.say(f"database {doc['database']} is at revision {revision}"))


@command(app, "config")
def show_config(cli: Cli, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """The effective configuration: the server's settings (from ENOMALISM_* and these
    options) and this client's login. Passwords and tokens are never shown."""
    from enomalism.cli.common import DEFAULT_SERVER

    settings = _settings(data_dir, database_url)
    server: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name == "admin_password":
            value = "(set)" if value else "(not set)"
        elif name == "database_url" and value:
            value = _redact(value)
        server[name] = str(value) if isinstance(value, Path) else value
    server["database"] = _redact(settings.db_url)
    c = cli
    stored = c.settings
    client = {"config": str(c.config_path), "exists": c.config_path.exists(),
              "url": c.server, "login_url": stored.get("url"), "user": c.username,
              "token": "(stored)" if stored.get("token") else None,
              "token_name": stored.get("token_name")}
    if c.opts.server is None and not stored.get("url"):
        client["url"] = DEFAULT_SERVER

    def human() -> None:
        c.fields([(k, v) for k, v in server.items()])
        c.say("")
        c.fields([(f"client {k}", v) for k, v in client.items()])
    c.emit({"server": server, "client": client}, human)
