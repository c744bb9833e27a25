"""`enomalism login` and `enomalism logout`: an API token in the user's config file."""

import secrets
import socket
from typing import Annotated

import typer

from enomalism.cli import config
from enomalism.cli.common import DEFAULT_SERVER, Cli, ask, same_server
from enomalism.client import Client, ClientError, UnreachableError


def token_name() -> str:
    host = (socket.gethostname() or "host")[:40]
    return f"cli@{host}-{secrets.token_hex(3)}"


def login(
    cli: Cli,
    url: Annotated[str | None, typer.Argument(
        help="the server URL (asked for when not given here or with --server)",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        "--token-name", help="a name for the token (default cli@HOST-RANDOM)")] = None,
    expires_in_days: Annotated[float | None, typer.Option(
        help="the token's lifetime in days (default: no expiry)")] = None,
) -> None:
    """Log in: create an API token with your password and store the server URL and the token
    in your config file (mode 0600); later commands use them."""
    c = cli
    stored = c.settings
    server = url or c.opts.server or ask("Server URL",
                                         default=stored.get("url") or DEFAULT_SERVER)
    user = c.opts.user or ask("User", default=stored.get("user") or "admin")
    password = c.opts.password if c.opts.password is not None else ask(
        f"Password for {user} at {server}", hide=True)
    server = server.rstrip("/")
    with Client(server, user, password) as client:
        new = client.tokens.create(name or token_name(), expires_in_days)
    old = stored.get("token_id") if same_server(stored.get("url", ""), server) else None
    config.save(c.config_path, {"url": server, "user": user, "token": new.secret,
                                "token_id": new.token.uuid, "token_name": new.token.name})
    if old and old != new.token.uuid:  # the previous login's token is of no use any more
        try:
            with Client(server, token=new.secret) as client:
                client.tokens.revoke(old)
        except ClientError:
            pass
    c.emit({"url": server, "user": user, "token": new.token, "config": str(c.config_path)},
           lambda: c.say(f"logged in to {server} as {user}; token {new.token.name} stored in "
                         f"{c.config_path}"))


def logout(cli: Cli) -> None:
    """Log out: revoke the stored token and remove it from the config file."""
    c = cli
    stored = c.settings
    if not stored.get("token"):
        c.emit({"url": stored.get("url"), "revoked": False},
               lambda: c.say("not logged in"))
        return
    revoked = True
    try:
        with Client(stored.get("url") or DEFAULT_SERVER, token=stored["token"]) as client:
            client.tokens.revoke(stored.get("token_id") or "")
    except UnreachableError as e:
        revoked = False
        c.warn(f"{e.message}; the token stays valid until it is revoked "
               f"(`enomalism token revoke {stored.get('token_name')}`)")
    except ClientError:
        pass  # revoked or expired already
    config.save(c.config_path, {"url": stored.get("url"), "user": stored.get("user")})
    c.emit({"url": stored.get("url"), "revoked": revoked},
           lambda: c.say(f"logged out of {stored.get('url')}"))
