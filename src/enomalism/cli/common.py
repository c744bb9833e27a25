"""What every `enomalism` command shares: the connection options, output (rich tables for
people, one JSON document for scripts), errors and exit codes, naming objects by name or id
prefix, and following a transaction with a progress bar."""

import functools
import getpass
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from enomalism.cli import config
from enomalism.client import (  # noqa: F401  (is_uuid, pick: the client's naming rules)
    EXIT_DENIED,
    EXIT_OTHER,
    AmbiguousError,
    Client,
    ClientError,
    Transaction,
    WaitTimeout,
    is_uuid,
    pick,
)

DEFAULT_SERVER = "http://127.0.0.1:8080"
EXIT_INTERRUPTED = 130
T = TypeVar("T")


class CLIError(Exception):
    """An error found by the command itself (an unknown or ambiguous name, bad usage), with
    the exit code and the errno it is reported with."""

    def __init__(self, message: str, code: int = EXIT_OTHER, errno: int = 1000,
                 **extra: Any) -> None:
        super().__init__(message)
        self.message, self.code, self.errno, self.extra = message, code, errno, extra


# -- options -------------------------------------------------------------------------------

@dataclass
class Options:
    server: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    json: bool = False
    config: Path | None = None

    def merged(self, other: "Options") -> "Options":
        """`other`'s values where given, these otherwise."""
        return Options(**{k: (v if v not in (None, False) else getattr(self, k))
                          for k, v in vars(other).items()})


PANEL = "Connection and output"
ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="server URL [ENOMALISM_URL; else the login's; else "
    f"{DEFAULT_SERVER}]", rich_help_panel=PANEL, show_default=False)]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="user name, for HTTP Basic instead of the stored token [ENOMALISM_USER]",
    rich_help_panel=PANEL, show_default=False)]
PasswordOpt = Annotated[str | None, typer.Option(
    "--password", help="password (asked for when --user is given without it) "
    "[ENOMALISM_PASSWORD]", rich_help_panel=PANEL, show_default=False)]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", help="API token to use instead of the stored one [ENOMALISM_TOKEN]",
    rich_help_panel=PANEL, show_default=False)]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="print one JSON document instead of tables", rich_help_panel=PANEL)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="the client configuration file [ENOMALISM_CONFIG; default "
    "~/.config/enomalism/config.toml]", rich_help_panel=PANEL, show_default=False)]

_CONNECTION = {"server": ServerOpt, "user": UserOpt, "password": PasswordOpt,
               "token": TokenOpt, "config": ConfigOpt}


def root_options(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option(
        "--server", envvar="ENOMALISM_URL", show_default=False,
        help=f"server URL; else the login's; else {DEFAULT_SERVER}")] = None,
    user: Annotated[str | None, typer.Option(
        "--user", envvar="ENOMALISM_USER", show_default=False,
        help="user name, for HTTP Basic instead of the stored token")] = None,
    password: Annotated[str | None, typer.Option(
        "--password", envvar="ENOMALISM_PASSWORD", show_default=False,
        help="password (asked for when --user is given without it)")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="ENOMALISM_TOKEN", show_default=False,
        help="API token to use instead of the stored one")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    config_path: Annotated[Path | None, typer.Option(
        "--config", envvar="ENOMALISM_CONFIG", show_default=False,
        help="client configuration file (default ~/.config/enomalism/config.toml)")] = None,
) -> None:
    """Enomalism cloud control plane: serve the API, and drive a server from the terminal.

    Machines are named by name, UUID or a unique UUID prefix. Exit codes: 0 success,
    1 error, 3 not found, 4 denied or not logged in, 5 conflict or locked,
    6 server unreachable. See docs/cli.md."""
    ctx.obj = Options(server=server, user=user, password=password, token=token, json=json_,
                      config=config_path)


# -- the running command -------------------------------------------------------------------

class Cli:
    """One command's options, consoles and (lazily) its client."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.json = opts.json
        self.out = Console(highlight=False, soft_wrap=False)
        if not self.out.is_terminal and not os.environ.get("COLUMNS"):
            # into a pipe or a file: rows are never wrapped to a guessed 80 columns
            self.out = Console(highlight=False, soft_wrap=False, width=1000)
        self.err = Console(stderr=True, highlight=False)
        if not self.err.is_terminal and not os.environ.get("COLUMNS"):
            # messages into a log or a pipe: never broken inside a URL or a word
            self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self._client: Client | None = None
        self.password: str | None = None  # the password the client logs in with, if any
        self._settings: dict[str, str] | None = None

    # -- configuration and connection -----------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.opts.config or config.default_path()

    @property
    def settings(self) -> dict[str, str]:
        if self._settings is None:
            try:
                self._settings = config.load(self.config_path)
            except config.ConfigError as e:
                raise CLIError(str(e)) from None
            if self._settings.get("token") and config.too_open(self.config_path):
                self.warn(f"{self.config_path} holds a token and others may read it; "
                          f"chmod 600 {self.config_path}")
        return self._settings

    @property
    def server(self) -> str:
        return (self.opts.server or self.settings.get("url") or DEFAULT_SERVER).rstrip("/")

    def stored_token(self) -> str | None:
        """The login's token, if it is for the server this command talks to (a token is
        never sent to another server)."""
        s = self.settings
        if s.get("token") and same_server(s.get("url", ""), self.server):
            return s["token"]
        return None

    @property
    def username(self) -> str | None:
        """Who this command acts as, as far as the options and the login tell."""
        if self.opts.user:
            return self.opts.user
        if not self.opts.token and self.stored_token():
            return self.settings.get("user")
        return None

    def client(self) -> Client:
        if self._client is None:
            o = self.opts
            if o.user and o.password is not None:
                self._client = Client(self.server, o.user, o.password)
                self.password = o.password
            elif o.token:
                self._client = Client(self.server, token=o.token)
            elif (tok := self.stored_token()) and (not o.user or
                                                    o.user == self.settings.get("user")):
                self._client = Client(self.server, token=tok)
            elif o.user:
                password = ask(f"Password for {o.user} at {self.server}", hide=True)
                self._client = Client(self.server, o.user, password)
                self.password = password
            else:
                with Client(self.server) as probe:
                    probe.health()  # nothing listening there: unreachable (exit 6), not this
                raise CLIError(
                    f"not logged in to {self.server}: run `enomalism login`, or give --user "
                    "(with --password or ENOMALISM_PASSWORD) or --token", EXIT_DENIED, 1100)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- output ------------------------------------------------------------------------------

    def emit(self, document: Any, human: Callable[[], None] | None = None) -> None:
        """The command's result: `document` as JSON with --json, else what `human` prints."""
        if self.json:
            typer.echo(json.dumps(plain(document), indent=2, ensure_ascii=False))
        elif human is not None:
            human()

    def say(self, message: str) -> None:
        """A line for people on stdout (nothing with --json)."""
        if not self.json:
            self.out.print(Text(message))

    def note(self, message: str) -> None:
        """A line for people on stderr, whatever the output format."""
        self.err.print(Text(message))

    def warn(self, message: str) -> None:
        self.err.print(Text.assemble(("warning: ", "yellow"), message))

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]],
              title: str | None = None) -> None:
        t = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left", show_edge=False,
                  header_style="bold", pad_edge=False)
        for row in rows:
            t.add_row(*(Text(cell(v)) for v in row))
        self.out.print(t)

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """A two-column view of one object (`show` commands)."""
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style="bold")
        t.add_column()
        for k, v in pairs:
            t.add_row(Text(k), Text(cell(v)))
        self.out.print(t)

    def confirm(self, question: str, yes: bool) -> None:
        if yes:
            return
        try:
            answer = ask(f"{question} [y/N]", default="")
        except CLIError:
            raise CLIError("not confirmed (no answer on standard input); --yes skips the "
                           "question", EXIT_OTHER, 1, aborted=True) from None
        if answer.strip().lower() not in ("y", "yes"):
            raise CLIError("nothing done", EXIT_OTHER, 1, aborted=True)

    # -- transactions ------------------------------------------------------------------------

    def follow(self, txid: str, what: str, timeout: float | None = None,
               check: bool = True) -> Transaction:
        """Wait for a transaction, showing its progress on stderr: a bar on a terminal, a
        line per change otherwise. With `check`, a failed or cancelled end is an error."""
        client = self.client()
        try:
            if self.err.is_terminal:
                tx = self._follow_bar(client, txid, what, timeout)
            else:
                tx = self._follow_lines(client, txid, what, timeout)
        except WaitTimeout as e:
            raise CLIError(f"{e.message}; it goes on: `enomalism tx wait {txid}`", EXIT_OTHER,
                           1, txid=txid, transaction=e.transaction) from None
        except KeyboardInterrupt:
            raise CLIError(f"stopped waiting; transaction {txid} goes on: "
                           f"`enomalism tx wait {txid}`, or `enomalism tx cancel {txid}`",
                           EXIT_INTERRUPTED, 1, txid=txid) from None
        if check and tx.state != "done":
            reason = tx.error or tx.state
            raise CLIError(f"{what}: transaction {txid} {tx.state}: {reason}", EXIT_OTHER, 1,
                           txid=txid, transaction=tx)
        return tx

    def _follow_bar(self, client: Client, txid: str, what: str,
                    timeout: float | None) -> Transaction:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TimeElapsedColumn(), TextColumn("{task.fields[step]}"),
                      console=self.err, transient=False) as bar:
            task = bar.add_task(escape(what), total=100, step="")

            def show(tx: Transaction) -> None:
                bar.update(task, completed=tx.completion,
                           step=escape(f"{tx.state}: {tx.last_message}"[:60]))
            return client.wait(txid, progress=show, timeout=timeout)

    def _follow_lines(self, client: Client, txid: str, what: str,
                      timeout: float | None) -> Transaction:
        seen: list[tuple] = []

        def show(tx: Transaction) -> None:
            now = (tx.state, tx.completion, tx.last_message)
            if not seen or seen[-1] != now:
                seen.append(now)
                self.note(f"{what}: {tx.state} {tx.completion}% {tx.last_message}".rstrip())
        return client.wait(txid, progress=show, timeout=timeout)


def same_server(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def plain(value: Any) -> Any:
    """A JSON-ready copy: typed results as their dicts, datetimes in ISO 8601."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def cell(value: Any) -> str:
    """How a value reads in a table."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def kib(n: int | None) -> str:
    return "" if n is None else size(n * 1024)


# -- the command decorator -------------------------------------------------------------------

def _param(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def _root_options(ctx: typer.Context) -> Options:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Options) else Options()


def report(c: Cli, e: ClientError | CLIError,
           words: Callable[[str], str] | None = None) -> int:
    """Print an error (a JSON document on stdout with --json, a line on stderr always), its
    message in the command's own words (`words`: the API's names of things as the command
    calls them); returns the exit code."""
    if isinstance(e, ClientError):
        doc: dict[str, Any] = {"errno": e.errno, "message": e.message, "status": e.status}
        if e.body.get("txid"):
            doc["txid"] = e.body["txid"]
        if e.partial:
            doc["results"] = e.partial
        if isinstance(e, AmbiguousError):
            doc["candidates"] = e.candidates
        code = e.exit_code
    else:
        doc = {"errno": e.errno, "message": e.message, "status": 0, **e.extra}
        code = e.code
    if words is not None:
        doc["message"] = words(doc["message"])
    if c.json:
        typer.echo(json.dumps(plain(doc), indent=2, ensure_ascii=False))
    label = f"error {doc['errno']}: " if doc["errno"] else "error: "
    c.err.print(Text.assemble((label, "bold red"), doc["message"]))
    return code


def command(app: typer.Typer, name: str | None = None, *, connection: bool = True,
            words: Callable[[str], str] | None = None,
            **kw: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Register `fn(cli, ...)` as a command of `app`: its first parameter receives the running
    command's `Cli`, the others are its arguments and options; --json (and, if `connection`,
    --server, --user, --password, --token, --config) come after its own options, and those
    given here win over the same given before the command. Errors become a message and the
    exit code."""
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        sig = inspect.signature(fn)
        first, *own = sig.parameters.values()  # the first receives the `Cli`, passed in here
        extra = [_param("enomalism_ctx", typer.Context), _param("opt_json", JsonOpt, False)]
        if connection:
            extra += [_param(f"opt_{k}", a) for k, a in _CONNECTION.items()]
        names = [p.name for p in extra]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = kwargs.pop("enomalism_ctx")
            given = {n[4:]: kwargs.pop(n) for n in names[1:]}
            opts = _root_options(ctx).merged(Options(**given))
            c = Cli(opts)
            try:
                return fn(c, *args, **kwargs)
            except (ClientError, CLIError) as e:
                raise typer.Exit(report(c, e, words)) from None
            finally:
                c.close()

        cast(Any, wrapper).__signature__ = sig.replace(parameters=[*own, *extra])
        wrapper.__annotations__ = {**{k: v for k, v in fn.__annotations__.items()
                                      if k != first.name},
                                   **{p.name: p.annotation for p in extra}}
        app.command(name, **kw)(wrapper)
        return fn
    return decorate


# -- naming objects --------------------------------------------------------------------------

def split_principal(ref: str) -> tuple[str | None, str | None]:
    """`user:NAME`, `group:NAME`, or a bare user name: (user, group)."""
    kind, sep, name = ref.partition(":")
    if sep and kind in ("user", "group") and name:
        return (name, None) if kind == "user" else (None, name)
    if sep:
        raise CLIError(f"'{ref}' names no principal: use user:NAME or group:NAME")
    return ref, None


def ask(text: str, default: str | None = None, hide: bool = False) -> str:
    """A line from the person at the terminal: the prompt on stderr (never a character of it
    on stdout, which belongs to the command's result), input hidden on a terminal."""
    stdin = sys.stdin
    while True:
        prompt = f"{text} [{default}]: " if default else f"{text}: "
        if hide and stdin.isatty():
            value = getpass.getpass(prompt, stream=sys.stderr)
        else:
            sys.stderr.write(prompt)
            sys.stderr.flush()
            line = stdin.readline()
            if not line:
                raise CLIError(f"no answer to '{text}' on standard input", EXIT_OTHER, 1001)
            value = line.rstrip("\r\n")
            if hide:
                sys.stderr.write("\n")
        if not value and default is not None:
            return default
        if value:
            return value


def read_secret(prompt: str, from_stdin: bool, confirm: bool = True) -> str:
    """A password: the first line of stdin, or asked for (twice) without echo."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CLIError("no password on standard input", EXIT_OTHER, 1001)
        return line
    value = ask(prompt, hide=True)
    if confirm and ask(f"{prompt} (again)", hide=True) != value:
        raise CLIError("the two passwords differ", EXIT_OTHER, 1000)
    return value
