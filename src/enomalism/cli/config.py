"""The user's client configuration: a small TOML file written by `enomalism login`.

    # ~/.config/enomalism/config.toml (mode 0600)
    url = "http://127.0.0.1:8080"
    user = "admin"
    token = "enm_..."
    token_id = "6a3f1b8e-..."
    token_name = "cli@laptop-3f2a1b"

`--config PATH` or `ENOMALISM_CONFIG` names another file; `XDG_CONFIG_HOME` moves the default.
"""

import os
import stat
import tomllib
from pathlib import Path

KEYS = ("url", "user", "token", "token_id", "token_name")


class ConfigError(Exception):
    pass


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "enomalism" / "config.toml"


def load(path: Path) -> dict[str, str]:
    """The file's settings ({} when there is none)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the configuration file {path}: {e}") from None
    return {k: str(v) for k, v in data.items() if k in KEYS and isinstance(v, str)}


def too_open(path: Path) -> bool:
    """Whether others than its owner may read or write the file (it holds a token)."""
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def _toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def save(path: Path, settings: dict[str, str | None]) -> None:
    """Write the settings (None ones left out), readable by the owner only (0600), replacing
    the file at once (a temporary file renamed over it)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    lines = ["# written by `enomalism login`; holds an API token: keep it private"]
    lines += [f"{k} = {_toml_string(v)}" for k in KEYS
              if (v := settings.get(k)) is not None]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
