"""A Python client for the enomalism API, on httpx.

    from enomalism.client import Client, NotFoundError

    with Client("http://127.0.0.1:8080", "admin", "secret") as c:   # or token="enm_..."
        for m in c.machines.list(kind="vm"):
            print(m.name, m.state)
        queued = c.machines.provision(package=pkg, name="web2")   # the server places it
        tx = c.wait(queued.txid, progress=lambda t: print(t.completion))

Every call returns typed objects (the server's own pydantic models, enomalism/wire.py,
whose fields are the API's answer keys; `to_dict()` gives them back JSON-ready) or plain
values, and every failure raises a `ClientError` carrying the answer's `errno`, `message` and
HTTP `status`; its subclasses tell apart what a caller usually handles differently:
`NotFoundError` (404), `DeniedError` (401, 403, 429), `ConflictError` (409, and `LockedError`
for 423 with the holding transaction's `txid`), `UnreachableError` (no answer at all).
`exit_code` maps them to the `enomalism` command's exit codes.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from enomalism.client.clusters import Clusters
from enomalism.client.connection import OPENED, Connection
from enomalism.client.errors import (
    EXIT_CONFLICT,
    EXIT_DENIED,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_UNREACHABLE,
    AmbiguousError,
    ClientError,
    ConflictError,
    DeniedError,
    LockedError,
    NotFoundError,
    UnreachableError,
    WaitTimeout,
    error_for,
)
from enomalism.client.feeds import Packages, Repositories
from enomalism.client.hosts import Cache, Hosts, Hypervisors, Nodes
from enomalism.client.images import Images
from enomalism.client.machines import Machines
from enomalism.client.models import (
    FINAL_STATES,
    AccessList,
    Address,
    AuditEntry,
    BaseVolume,
    Candidate,
    Cluster,
    Grant,
    Group,
    GroupRef,
    HostRegistration,
    Hypervisor,
    Image,
    IPRange,
    Lease,
    Machine,
    MachineDetails,
    MachineInfo,
    MachineStats,
    Network,
    NewToken,
    Node,
    Package,
    Pool,
    Queued,
    Repository,
    Snapshot,
    StatsPoint,
    Token,
    Transaction,
    User,
    UserRef,
    Volume,
)
from enomalism.client.naming import is_uuid, pick
from enomalism.client.networks import Networks
from enomalism.client.pools import Pools
from enomalism.client.transactions import Transactions
from enomalism.client.users import Audit, Groups, Permissions, Tokens, Users

__all__ = [
    "EXIT_CONFLICT", "EXIT_DENIED", "EXIT_NOT_FOUND", "EXIT_OTHER", "EXIT_UNREACHABLE",
    "FINAL_STATES", "AccessList", "Address", "AmbiguousError", "AuditEntry", "BaseVolume",
    "Candidate", "Client", "ClientError", "Cluster", "ConflictError", "DeniedError", "Grant",
    "Group", "GroupRef", "HostRegistration", "Hypervisor", "IPRange", "Image", "Lease",
    "LockedError", "Machine", "MachineDetails", "MachineInfo", "MachineStats", "Network",
    "NewToken", "Node", "NotFoundError", "Package", "Pool", "Queued", "Repository", "Snapshot",
    "StatsPoint",
    "Token", "Transaction", "UnreachableError", "User", "UserRef", "Volume", "WaitTimeout",
    "error_for", "is_uuid", "pick",
]


class Client:
    """One server, one identity: HTTP Basic (`username`, `password`) or a bearer `token`.

    Resources are attributes: `machines`, `hosts`, `nodes`, `hypervisors`, `clusters`, `users`,
    `groups`, `permissions`, `tokens`, `audit`, `transactions`, `repositories`, `packages`,
    `networks`, `cache`, `images`, `pools`; `wait` follows a transaction to its end, `events` the
    events stream."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        conn = self._conn = Connection(url, username, password, token=token, timeout=timeout,
                                       transport=transport)
        self.url = conn.url
        self.nodes, self.cache, self.images = Nodes(conn), Cache(conn), Images(conn)
        self.pools = Pools(conn)
        self.clusters, self.hosts = Clusters(conn), Hosts(conn)
        self.hypervisors = Hypervisors(conn, self.hosts)
        self.repositories, self.packages = Repositories(conn), Packages(conn)
        self.machines = Machines(conn, hosts=self.hosts, hypervisors=self.hypervisors,
                                 clusters=self.clusters, packages=self.packages)
        self.networks = Networks(conn, clusters=self.clusters, machines=self.machines)
        self.users, self.groups, self.tokens = Users(conn), Groups(conn), Tokens(conn)
        self.permissions, self.audit = Permissions(conn, self.find), Audit(conn, self.find)
        self.transactions = Transactions(conn, self.find)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def call(self, method: str, path: str, **variables: Any) -> dict:
        """One request; `variables` (None ones left out) go as the query string of a GET and
        as a JSON body otherwise. Returns the answer, or raises a `ClientError`."""
        return self._conn.call(method, path, **variables)

    def health(self) -> bool:
        """Whether the server answers /healthz (no credentials needed)."""
        return self._conn.health()

    def events(self, types: Iterable[str] = (), last_event_id: str | int | None = None, *,
               idle: float = 45.0) -> Iterator[dict]:
        """Follow `GET /rest/events/` (`Connection.events`): each event the user may read, as
        a dict (`id`, `type`, `time`, `object`), forever, reopening a broken stream."""
        return self._conn.events(types, last_event_id, idle=idle)

    KINDS = ("machine", "host", "hypervisor", "cluster", "user", "group", "network",
             "package", "feed", "transaction")

    def find(self, ref: str) -> tuple[str, str, str]:
        """Any object: `KIND:REF` (machine:web, cluster:prod, user:bob, feed:URL, ...), a bare
        UUID, or a machine's name or UUID prefix. Returns (kind, uuid, label)."""
        kind, sep, name = ref.partition(":")
        if not sep or kind not in self.KINDS:
            if is_uuid(ref):
                return "object", ref, ref
            kind, name = "machine", ref
        if not name:
            raise ClientError(0, 1000, f"'{ref}' names nothing: use KIND:NAME, KIND one of "
                              f"{', '.join(self.KINDS)}")
        if kind in ("machine", "host"):
            m = self.machines.find(name, kind="host" if kind == "host" else None)
            return m.kind, m.uuid, m.name
        found: Any = {"hypervisor": self.hypervisors, "cluster": self.clusters,
                      "user": self.users, "group": self.groups, "network": self.networks,
                      "package": self.packages, "feed": self.repositories,
                      "transaction": self.transactions}[kind].find(name)
        label = {"hypervisor": "virt_url", "user": "username", "feed": "url"}.get(kind, "name")
        if kind == "transaction":
            return kind, found.uuid, f"{found.kind} {found.uuid}"
        return "repository" if kind == "feed" else kind, found.uuid, getattr(found, label)

    # -- transactions ------------------------------------------------------------------------

    def wait(self, txid: str, progress: Callable[[Transaction], None] | None = None,
             timeout: float | None = None, interval: float = 1.0) -> Transaction:
        """Follow the transaction until it is done, failed or cancelled and return it; call
        `progress(transaction)` at each step. Listens to the events stream; a server without
        one, or a stream that fails, is polled instead: quickly at first (short jobs end soon
        after they start) and then every `interval` seconds. Raises `WaitTimeout` after
        `timeout` seconds (None: no limit); the transaction itself goes on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            tx = self._wait_on_events(txid, progress, deadline)
        except (UnreachableError, NotFoundError, DeniedError):
            tx = None  # no stream here (an older server, a proxy in between): poll
        if tx is not None and (tx.finished or deadline is not None
                               and time.monotonic() >= deadline):
            return self._ended(tx, timeout)
        return self._poll(txid, progress, timeout, deadline, interval)

    @staticmethod
    def _ended(tx: Transaction, timeout: float | None) -> Transaction:
        if tx.finished:
            return tx
        raise WaitTimeout(f"transaction {tx.uuid} is still {tx.state} ({tx.completion}%) "
                          f"after {timeout:g} s", tx)

    def _wait_on_events(self, txid: str, progress: Callable[[Transaction], None] | None,
                        deadline: float | None) -> Transaction | None:
        tx = None
        for event in self._conn.follow(["transaction"], None, idle=45.0, deadline=deadline):
            if event is not OPENED and event.get("type") != "resync" and \
                    (event.get("object") or {}).get("uuid") != txid:
                continue
            # (re)opened, told to resync, or a step of this transaction: read it whole
            tx = self.transactions.get(txid)
            if progress is not None:
                progress(tx)
            if tx.finished:
                return tx
        return tx

    def _poll(self, txid: str, progress: Callable[[Transaction], None] | None,
              timeout: float | None, deadline: float | None, interval: float) -> Transaction:
        pause = min(0.05, interval)
        while True:
            tx = self.transactions.get(txid)
            if progress is not None:
                progress(tx)
            if tx.finished or deadline is not None and time.monotonic() >= deadline:
                return self._ended(tx, timeout)
            left = None if deadline is None else deadline - time.monotonic()
            time.sleep(max(min(pause, left) if left is not None else pause, 0.01))
            pause = min(pause * 2, interval)
