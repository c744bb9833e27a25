"""Who is asking: password hashing (argon2), HTTP Basic verification and the first admin.

Hashing a password is deliberately slow, so a verified credential is remembered for a short
while, keyed by an HMAC of it under a per-process secret (the cache never holds a password).
"""

import hashlib
import hmac
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from enomalism.errors import NotAuthenticated, TooManyRequests
from enomalism.services.context import Principal
from enomalism.store.models import User

_hasher = PasswordHasher()
_dummy_hash: str | None = None
BAD_CREDENTIALS = "wrong or missing credentials"


def configure_hashing(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set argon2's cost (settings `argon2_*`); the defaults are argon2-cffi's (RFC 9106
    low-memory profile). Existing hashes keep verifying whatever their parameters."""
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                             parallelism=parallelism)
    _dummy_hash = None


def _dummy() -> str:
    """A hash to verify against when the user does not exist, so both failures cost the same."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_hex(16))
    return _dummy_hash


def hash_password(password: str) -> str:
    return _hasher.hash(password)


class CredentialCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def _digest(self, username: str, password: str) -> bytes:
        name = username.encode()  # length first: ("a", "b\0c") and ("a\0b", "c") differ
        msg = len(name).to_bytes(4, "big") + name + password.encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def get(self, username: str, password: str) -> Principal | None:
        d = self._digest(username, password)
        with self._lock:
            hit = self._entries.get(d)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._entries[d]
                return None
            return hit[0]

    def put(self, username: str, password: str, who: Principal,
            valid_for: float | None = None) -> None:
        """Remember a verified credential for the cache's ttl, or `valid_for` seconds when
        that is shorter (a token about to expire)."""
        ttl = self.ttl if valid_for is None else min(self.ttl, valid_for)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[self._digest(username, password)] = (who, time.monotonic() + ttl)

    def forget(self, user_uuid: str) -> None:
        """Drop every cached credential of a user (password changed, user disabled)."""
        with self._lock:
            for k in [k for k, (p, _) in self._entries.items() if p.uuid == user_uuid]:
                del self._entries[k]


def password_matches(password_hash: str, password: str) -> bool:
    """Whether `password` is the one hashed (argon2, deliberately slow)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(db: Session, cache: CredentialCache, username: str, password: str) -> Principal:
    who = cache.get(username, password)
    if who is not None:
        return who
    user = db.scalar(select(User).where(User.username == username))
    matches = password_matches(user.password_hash if user else _dummy(), password)
    if not matches or user is None or not user.enabled:
        raise NotAuthenticated(BAD_CREDENTIALS)
    who = Principal(uuid=user.uuid, username=user.username, is_admin=user.is_admin)
    cache.put(username, password, who)
    return who


def ensure_admin(db: Session, password: str | None) -> str | None:
    """Create the user `admin` when there are no users yet. Returns the generated password
    when none was given, so the caller can print it once."""
    if db.scalar(select(func.count()).select_from(User)):
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(15)
    db.add(User(username="admin", password_hash=hash_password(password), is_admin=True))
    db.flush()
    return generated


class LoginThrottle:
    """Refuses a user name from a source address after `limit` failed logins within `window`
    seconds, until the oldest of them is `window` seconds old. A success clears the count."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def check(self, username: str, source: str) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent((username, source), now)
        if len(times) >= self.limit:
            wait = int(self.window - (now - times[0])) + 1
            raise TooManyRequests(
                f"too many failed logins for '{username}' from {source}; try again in {wait} s",
                retry_after=wait)

    def failed(self, username: str, source: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            self._failures.setdefault((username, source), []).append(now)

    def succeeded(self, username: str, source: str) -> None:
        with self._lock:
            self._failures.pop((username, source), None)
