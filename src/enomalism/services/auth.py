"""Who is asking: password hashing (argon2), HTTP Basic verification and the first admin.

Hashing a password is deliberately slow, so a verified credential is remembered for a short
while, keyed by an HMAC of it under a per-process secret (the cache never holds a password).
"""

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from enomalism.errors import LoginsBusy, LoginsInFlight, NotAuthenticated, TooManyRequests
from enomalism.store.models import LoginFailure, User

if TYPE_CHECKING:
    from enomalism.store.db import Database

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
_dummy_hash: str | None = None
BAD_CREDENTIALS = "wrong or missing credentials"


@dataclass(frozen=True)
class Principal:
    """A user whose credentials were verified: who a request or a job acts as."""

    uuid: str
    username: str
    is_admin: bool


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
    seconds, until the oldest of them is `window` seconds old. A success clears the count.
    Kept in this process's memory; the server uses `SharedLoginThrottle`."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return time.monotonic()

    def _recent(self, username: str, source: str, now: float) -> list[float]:
        key = (username, source)
        with self._lock:
            times = [t for t in self._failures.get(key, []) if now - t < self.window]
            if times:
                self._failures[key] = times
            else:
                self._failures.pop(key, None)
        return times

    def check(self, username: str, source: str) -> None:
        now = self._now()
        times = self._recent(username, source, now)
        if len(times) >= self.limit:
            wait = int(self.window - (now - min(times))) + 1
            raise TooManyRequests(
                f"too many failed logins for '{username}' from {source}; try again in {wait} s",
                retry_after=wait)

    def failed(self, username: str, source: str) -> None:
        now = self._now()
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            self._failures.setdefault((username, source), []).append(now)

    def failed_after(self, s: Session, username: str, source: str) -> None:
        """Count a failure found while `s` is open, once its transaction ends (it is about
        to be rolled back: the count must outlive that)."""
        self.failed(username, source)

    def succeeded(self, username: str, source: str, s: Session | None = None) -> None:
        """Clear the count (in `s`'s transaction when the caller holds one open)."""
        with self._lock:
            self._failures.pop((username, source), None)

    def pending(self) -> int:
        """How many failures are counted now (all users and sources)."""
        now = self._now()
        with self._lock:
            return sum(1 for ts in self._failures.values() for t in ts
                       if now - t < self.window)


class SharedLoginThrottle(LoginThrottle):
    """The throttle with its failures in the database (`login_failures`), so that guesses
    spread over several nodes behind a load balancer count together. Blocking (database):
    call it from a worker thread. Rows older than the window are deleted as failures come."""

    def __init__(self, db: "Database", limit: int = 5, window: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(limit, window)
        self.db, self.clock = db, clock

    def _now(self) -> float:
        return self.clock()

    @staticmethod
    def _key(username: str, source: str) -> str:
        name = username.encode()
        return hashlib.sha256(len(name).to_bytes(4, "big") + name + source.encode()).hexdigest()

    @staticmethod
    def _at(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    def _recent(self, username: str, source: str, now: float) -> list[float]:
        with self.db.session(write=False) as s:
            found = s.scalars(select(LoginFailure.at).where(
                LoginFailure.key == self._key(username, source),
                LoginFailure.at > self._at(now - self.window))).all()
        return [(t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() for t in found]

    def failed(self, username: str, source: str) -> None:
        now = self._now()
        with self.db.session() as s:
            s.execute(delete(LoginFailure).where(
                LoginFailure.at <= self._at(now - self.window)))
            s.add(LoginFailure(key=self._key(username, source), at=self._at(now)))

    def failed_after(self, s: Session, username: str, source: str) -> None:
        if not s.in_transaction():
            self.failed(username, source)
            return
        done: list[bool] = []

        def write(_s: Session) -> None:  # SQLite's write lock is let go by now
            if not done:
                done.append(True)
                try:
                    self.failed(username, source)
                except Exception:  # the request's own end must not fail on the count
                    log.exception("could not count a failed password check")
        event.listen(s, "after_rollback", write, once=True)
        event.listen(s, "after_commit", write, once=True)

    def succeeded(self, username: str, source: str, s: Session | None = None) -> None:
        clear = delete(LoginFailure).where(LoginFailure.key == self._key(username, source))
        if s is not None:  # a session of our own would wait for SQLite's lock that s holds
            s.execute(clear)
            return
        with self.db.session() as own:
            own.execute(clear)

    def pending(self) -> int:
        with self.db.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(LoginFailure).where(
                LoginFailure.at > self._at(self._now() - self.window))) or 0


def address_key(source: str) -> str:
    """The unit a per-address bound counts: the address, or its /64 for IPv6 (one host
    usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(source)
    except ValueError:
        return source
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class LoginGate:
    """Bounds the password verifications (argon2, CPU-bound and deliberately slow) in flight:
    at most `slots` on the server and `per_address` from one address. A login waits its turn
    for at most `wait` seconds in all, then is refused (429 errno 1141 when its own address
    holds its share, 503 errno 1142 when the server's slots are taken) with Retry-After; a
    refusal cost no hashing. Addresses that logged in successfully within `remember` seconds
    go first, and (with two slots or more) one slot is kept for them.

    So a spray of user names from one address holds `per_address` slots while everyone else
    shares the rest; a spray from many addresses does not keep someone who works here from a
    slot, and delays anyone else by `wait` at most. Credentials in the credential cache and
    API tokens need no verification and never wait here. Runs on the event loop: waiters hold
    no worker thread."""

    def __init__(self, *, slots: int, per_address: int, wait: float,
                 remember: float = 3600.0) -> None:
        self.wait, self.remember = wait, remember
        self.per_address = max(1, per_address)
        self._free = max(1, slots)
        self._reserve = 1 if slots >= 2 else 0  # slots only known addresses may take
        self._queues: tuple[deque[anyio.Event], deque[anyio.Event]] = (deque(), deque())
        self._addresses: dict[str, anyio.Semaphore] = {}
        self._known: dict[str, float] = {}

    @asynccontextmanager
    async def admit(self, source: str) -> AsyncIterator[None]:
        key = address_key(source)
        mine = self._addresses.get(key)
        if mine is None:
            mine = self._addresses[key] = anyio.Semaphore(self.per_address)
        held = False
        try:
            with anyio.fail_after(self.wait):
                await mine.acquire()
                held = True
                await self._take(first=self._is_known(key))
        except BaseException as e:
            if held:
                mine.release()
            self._forget(key, mine)
            if not isinstance(e, TimeoutError):
                raise
            if not held:
                raise LoginsInFlight(
                    f"{self.per_address} logins from {source} are already being checked; "
                    "retry in a second, or use an API token", retry_after=1) from None
            raise LoginsBusy("the server is checking as many passwords as it can; retry in "
                             "a second, or use an API token", retry_after=1) from None
        try:
            yield
        finally:
            self._give()
            mine.release()
            self._forget(key, mine)

    def succeeded(self, source: str) -> None:
        """The address logged in: its next logins go first."""
        if len(self._known) > 100_000:
            self._known.clear()
        self._known[address_key(source)] = time.monotonic()

    def _is_known(self, key: str) -> bool:
        when = self._known.get(key)
        return when is not None and time.monotonic() - when < self.remember

    async def _take(self, *, first: bool) -> None:
        queue = self._queues[0 if first else 1]
        if not queue and self._free > (0 if first else self._reserve):
            self._free -= 1
            return
        turn = anyio.Event()
        queue.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn in queue:
                queue.remove(turn)
            else:  # handed a slot as the wait ended: pass it on
                self._give()
            raise

    def _give(self) -> None:
        """Free a slot and hand free slots to those waiting: known addresses first."""
        self._free += 1
        known, others = self._queues
        while True:
            if known and self._free > 0:
                queue = known
            elif others and self._free > self._reserve:
                queue = others
            else:
                return
            self._free -= 1
            queue.popleft().set()

    def _forget(self, key: str, mine: anyio.Semaphore) -> None:
        """Drop an address's counter once nothing holds or awaits it (the map stays small)."""
        if mine.value == self.per_address and not mine.statistics().tasks_waiting:
            self._addresses.pop(key, None)
