"""Secrets the database must keep but a copy of the database alone must not reveal (feed
passwords): encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) under a
key kept in a file of the data dir, mode 0600, made at first use. docs/deployment.md says how
to keep and share that file."""

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from enomalism.errors import InvalidState

PREFIX = "fernet:"  # marks an encrypted value; a value without it is from before encryption


class SecretBox:
    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _key(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._read_or_make())
            return self._fernet

    def _read_or_make(self) -> bytes:
        """The key, made on first use. Written under another name and linked into place, so
        servers starting together agree on one key and nobody reads a half-written file."""
        if not self.key_file.exists():
            tmp = self.key_file.with_name(f".{self.key_file.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                os.write(fd, Fernet.generate_key() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.key_file)
            except FileExistsError:
                pass  # another server made it first: use theirs
            finally:
                tmp.unlink()
        return self.key_file.read_bytes().strip()

    def seal(self, secret: str) -> str:
        return PREFIX + self._key().encrypt(secret.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        """The secret; a value stored before encryption is returned as it is."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._key().decrypt(stored[len(PREFIX):].encode("ascii")).decode()
        except InvalidToken:
            raise InvalidState(
                f"a stored feed password cannot be decrypted with {self.key_file}: the key "
                "file was replaced, or this node has another one than the node that stored "
                "it; restore the key file (docs/deployment.md) or add the feed again") from None


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)
