"""The server's files are its own, whatever the umask: directories 0700, files 0600 (the
database holds password and token hashes and feed credentials; packages hold whole disks).
New ones are created so (`private_dir`, `private_opener`); existing ones are tightened at start
(`secure`)."""

import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from enomalism.config import Settings

log = logging.getLogger(__name__)
DIR_MODE, FILE_MODE = 0o700, 0o600
SQLITE_FILES = ("", "-wal", "-shm", "-journal")  # the database and what SQLite makes beside it


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    _chmod(path, DIR_MODE)
    return path


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except OSError as e:  # another user's (a shared packages dir): say so, go on
        log.warning("cannot make %s private (mode %o): %s", path, mode, e)


def private_opener(path: str, flags: int) -> int:
    """`open(path, mode, opener=private_opener)`: a new file 0600, an existing one made so."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _tighten_tree(root: Path) -> None:
    """Every directory under `root` 0700 and every file 0600; links are left alone (chmod
    would follow them out of the tree)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                _chmod(path, DIR_MODE if name in dirnames else FILE_MODE)


def secure(settings: Settings) -> None:
    """At start: the data dir and the packages dir 0700 with all they hold 0600 (0700 for
    directories), and a SQLite database file made 0600 before SQLite first opens it (SQLite
    gives its -wal and -shm files the database file's mode)."""
    private_dir(settings.data_dir)
    _tighten_tree(settings.data_dir)
    db = sqlite_path(settings.db_url)
    if db is not None:
        if not db.exists():
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        for suffix in SQLITE_FILES:
            path = db.with_name(db.name + suffix)
            if path.exists():
                _chmod(path, FILE_MODE)
    private_dir(settings.packages_path)
    _tighten_tree(settings.packages_path)
