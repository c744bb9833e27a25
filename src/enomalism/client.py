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

from __future__ import annotations

import builtins
import json
import os
import re
import time
import typing
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from enomalism import __version__, wire
from enomalism.wire import WireModel

FINAL_STATES = frozenset({"done", "failed", "cancelled"})

# -- errors ------------------------------------------------------------------------------------

EXIT_OTHER, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_CONFLICT, EXIT_UNREACHABLE = 1, 3, 4, 5, 6


class ClientError(Exception):
    """An error answer (`status` its HTTP status, `errno` and `message` from its body), or no
    answer at all (`status` 0, `errno` 0)."""

    exit_code = EXIT_OTHER

    def __init__(self, status: int, errno: int, message: str, body: dict | None = None) -> None:
        super().__init__(f"{errno}: {message}" if errno else message)
        self.status, self.errno, self.message = status, errno, message
        self.body = body or {}
        self.partial: list[dict[str, Any]] = []  # a batch's results before it failed


class NotFoundError(ClientError):
    """404: no such object, or one the caller may not read."""

    exit_code = EXIT_NOT_FOUND


class DeniedError(ClientError):
    """401 (wrong or missing credentials), 403 (not allowed), 429 (too many failed logins)."""

    exit_code = EXIT_DENIED


class ConflictError(ClientError):
    """409: a name taken, an object in use, an action that does not fit the state."""

    exit_code = EXIT_CONFLICT


class LockedError(ConflictError):
    """423: a transaction holds the machine; `txid` names it."""

    @property
    def txid(self) -> str | None:
        return self.body.get("txid")


class UnreachableError(ClientError):
    """The server did not answer (connection refused, timed out, name unknown)."""

    exit_code = EXIT_UNREACHABLE


class WaitTimeout(ClientError):
    """`Client.wait` gave up before the transaction finished; `transaction` is the last seen."""

    def __init__(self, message: str, transaction: Transaction) -> None:
        super().__init__(0, 1, message)
        self.transaction = transaction


_BY_STATUS: dict[int, type[ClientError]] = {
    401: DeniedError, 403: DeniedError, 429: DeniedError, 404: NotFoundError,
    409: ConflictError, 423: LockedError,
}


def error_for(status: int, errno: int, message: str, body: dict | None = None) -> ClientError:
    """The fitting `ClientError` subclass for an error answer."""
    return _BY_STATUS.get(status, ClientError)(status, errno, message, body)


class AmbiguousError(ClientError):
    """A name or UUID prefix that matches several objects; `candidates` are their ids."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(0, 1000, message, {"candidates": candidates})
        self.candidates = candidates


# -- naming objects ----------------------------------------------------------------------------

T = typing.TypeVar("T")


def is_uuid(ref: str) -> bool:
    try:
        uuidlib.UUID(ref)
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def pick(kind: str, ref: str, items: typing.Sequence[T], uuid_of: Callable[[T], str],
         names_of: Callable[[T], Iterable[str]], describe: Callable[[T], str]) -> T:
    """The one item `ref` names: its UUID, else its name (or another identifier `names_of`
    gives, such as a URL), else a unique UUID prefix. Unknown: `NotFoundError` (errno 1200);
    ambiguous: `AmbiguousError` (errno 1000) listing the candidates."""
    r = ref.strip()
    low = r.lower()
    exact = [i for i in items if uuid_of(i).lower() == low]
    if exact:
        return exact[0]
    for found in ([i for i in items if r in names_of(i)],
                  [i for i in items if low and uuid_of(i).lower().startswith(low)]):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = "\n".join(f"  {describe(i)}" for i in found)
            raise AmbiguousError(f"'{ref}' is ambiguous: it matches {len(found)} {kind}s:\n"
                                 f"{listing}\nname one by its UUID (or a longer prefix)",
                                 [uuid_of(i) for i in found])
    raise NotFoundError(0, 1200, f"no {kind} named '{ref}' or with an id starting with it")


# -- typed results ---------------------------------------------------------------------------
# The objects answers carry are the server's own models (enomalism/wire.py), under the names
# this client has always given them; tests/cli/test_wire.py holds them to the OpenAPI.

Machine = wire.MachineObj  # a host or a VM (the API's `machine_obj`)
MachineInfo = wire.MachineInfo
Hypervisor = wire.HypervisorObj
Node = wire.NodeObj  # an API server process sharing the database
Candidate = wire.Candidate  # a local libvirt URI the server found and did not add
Cluster = wire.ClusterObj
StatsPoint = wire.Point  # a machine's rates at one time; None: not known
MachineStats = wire.MachineStats
BaseVolume = wire.BaseVolume  # a base volume of the cache on a hypervisor
UserRef = wire.UserRef
GroupRef = wire.GroupRef
User = wire.UserObj
Group = wire.GroupObj
Token = wire.TokenObj
AuditEntry = wire.AuditObj
Grant = wire.GrantObj
AccessList = wire.AccessList  # an object's owner and grants
Repository = wire.RepositoryObj
Package = wire.PackageObj
Image = wire.ImageObj  # a disk or ISO image kept in a hypervisor's storage pool
IPRange = wire.RangeObj
Network = wire.NetworkObj
Lease = wire.LeaseObj


class Transaction(wire.TransactionData):
    """A transaction (the server's `TransactionData`), with what a progress display asks."""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def last_message(self) -> str:
        """The newest log line, what a progress display shows beside the bar."""
        return self.log[-1][2] if self.log and len(self.log[-1]) > 2 else ""


# The client's views of whole answers: their objects under the names the client uses.

class MachineDetails(WireModel):
    """GET /rest/machine/<UUID>/: the machine, its runtime information, its hypervisors."""

    machine: Machine
    info: MachineInfo
    hypervisors: list[Hypervisor]


class HostRegistration(WireModel):
    machine: Machine
    hypervisors: list[Hypervisor]
    message: str = ""


class NewToken(WireModel):
    """A token just created; `secret` is shown only once."""

    token: Token
    secret: str


class Queued(WireModel):
    """A transaction just queued; `machine` is the new machine of a provision, `hypervisor`
    the hypervisor it goes to."""

    txid: str
    machine: str
    message: str = ""
    hypervisor: str | None = None


# -- the client --------------------------------------------------------------------------------


def _path_id(value: str) -> str:
    """An id or address as one path segment (never a way to reach another path)."""
    return quote(str(value), safe=":")


class Client:
    """One server, one identity: HTTP Basic (`username`, `password`) or a bearer `token`.

    Resources are attributes: `machines`, `hosts`, `nodes`, `hypervisors`, `clusters`, `users`,
    `groups`, `permissions`, `tokens`, `audit`, `transactions`, `repositories`, `packages`,
    `networks`, `images`; `wait` follows a transaction to its end, `events` the events stream."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise ClientError(0, 1000, f"'{url}' is not a server URL (http://host:port)")
        auth: Any = None
        headers = {"User-Agent": f"enomalism-client/{__version__}", "Accept": "application/json"}
        if username is not None and password is not None:
            auth = (username, password)
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        # Certificates are only loaded for https (loading them costs more than a request).
        self._http = httpx.Client(base_url=self.url, auth=auth, headers=headers,
                                  timeout=timeout, transport=transport,
                                  verify=self.url.startswith("https:"))
        self.machines = Machines(self)
        self.hosts = Hosts(self)
        self.nodes = Nodes(self)
        self.hypervisors = Hypervisors(self)
        self.clusters = Clusters(self)
        self.users = Users(self)
        self.groups = Groups(self)
        self.permissions = Permissions(self)
        self.tokens = Tokens(self)
        self.audit = Audit(self)
        self.transactions = Transactions(self)
        self.repositories = Repositories(self)
        self.packages = Packages(self)
        self.networks = Networks(self)
        self.cache = Cache(self)
        self.images = Images(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- raw calls ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        try:
            if stream:
                return self._http.send(self._http.build_request(method, path, **kw), stream=True)
            return self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise UnreachableError(0, 0, f"cannot reach the server at {self.url}: "
                                         f"{e or type(e).__name__}") from None

    @staticmethod
    def _check(r: httpx.Response) -> dict:
        try:
            answer = r.json()
        except ValueError:
            if r.status_code >= 400:
                raise error_for(r.status_code, 1, f"HTTP {r.status_code} "
                                f"{r.reason_phrase} (not an enomalism answer)") from None
            raise ClientError(r.status_code, 1, "the server's answer is not JSON; is this "
                              "an enomalism server?") from None
        if not isinstance(answer, dict):
            raise ClientError(r.status_code, 1, "the server's answer is not a JSON object")
        errno = answer.get("errno") or 0
        if r.status_code >= 400 or errno:
            raise error_for(r.status_code, errno or 1,
                            answer.get("message") or f"HTTP {r.status_code}", answer)
        return answer

    def call(self, method: str, path: str, **variables: Any) -> dict:
        """One request; `variables` (None ones left out) go as the query string of a GET and
        as a JSON body otherwise. Returns the answer, or raises a `ClientError`."""
        body = {k: v for k, v in variables.items() if v is not None}
        if method in ("GET", "HEAD"):
            r = self._send(method, path, params=body)
        else:
            r = self._send(method, path, json=body)
        return self._check(r)

    def upload(self, path: str, file: str | os.PathLike,
               progress: Callable[[int, int], None] | None, **variables: Any) -> dict:
        """PUT a local file as the request body, read a MiB at a time (never whole), with
        `variables` in the query string."""
        size = os.path.getsize(file)

        def chunks() -> typing.Iterator[bytes]:
            done = 0
            with open(file, "rb") as f:
                while chunk := f.read(1 << 20):
                    done += len(chunk)
                    yield chunk
                    if progress is not None:
                        progress(done, size)
        params = {k: v for k, v in variables.items() if v is not None}
        r = self._send("PUT", path, params=params, content=chunks(), timeout=None,
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size)})
        return self._check(r)

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

    def health(self) -> bool:
        """Whether the server answers /healthz (no credentials needed)."""
        r = self._send("GET", "/healthz")
        return r.status_code == 200

    # -- events ------------------------------------------------------------------------------

    def events(self, types: Iterable[str] = (), last_event_id: str | int | None = None, *,
               idle: float = 45.0) -> Iterator[dict]:
        """Follow `GET /rest/events/`: yield each event the user may read, as a dict (`id`,
        `type`, `time`, `object`), forever. A broken stream (or one silent for `idle`
        seconds: the server sends a heartbeat every 15) is reopened with `Last-Event-ID`, so
        nothing within the server's retention window is missed; past it the server sends a
        `resync` event (re-read what you show). Gives up with `UnreachableError` after five
        failed reconnects in a row. `types`: event types or families (`machine`)."""
        for event in self._follow(list(types), last_event_id, idle=idle):
            if event is not _OPENED:
                yield event

    def _follow(self, types: list[str], last_event_id: str | int | None, *, idle: float,
                deadline: float | None = None) -> Iterator[Any]:
        """The events, and `_OPENED` each time the stream is (re)opened; ends at `deadline`."""
        last = None if last_event_id is None else str(last_event_id)
        retry, failures = 2.0, 0
        while deadline is None or time.monotonic() < deadline:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = last
            left = idle if deadline is None else max(0.1, min(idle, deadline - time.monotonic()))
            try:
                with self._http.stream("GET", "/rest/events/", params={"type": types},
                                       headers=headers,
                                       timeout=httpx.Timeout(self._http.timeout.connect or 10,
                                                             read=left)) as r:
                    if r.status_code != 200:
                        r.read()
                        self._check(r)
                        raise ClientError(r.status_code, 1, "the events stream did not open")
                    failures = 0
                    yield _OPENED
                    for block in _sse_blocks(r.iter_lines()):
                        last = block.get("id", last)
                        if "retry" in block and block["retry"].isdigit():
                            retry = int(block["retry"]) / 1000
                        if "data" in block:
                            yield json.loads(block["data"])
                        if deadline is not None and time.monotonic() >= deadline:
                            return
            except httpx.TransportError as e:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                failures += 1
                if failures > 5:
                    raise UnreachableError(0, 0, f"the events stream of {self.url} broke and "
                                                 f"could not be reopened: {e or type(e).__name__}"
                                           ) from None
            time.sleep(min(retry * failures, 30) if failures else 0.05)

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
        for event in self._follow(["transaction"], None, idle=45.0, deadline=deadline):
            if event is not _OPENED and event.get("type") != "resync" and \
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


_OPENED = object()  # `Client._follow`: the stream was (re)opened


def _sse_blocks(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """The fields of each Server-Sent Events block (comments left out; `data` lines joined)."""
    block: dict[str, str] = {}
    for line in lines:
        if not line:
            if block:
                yield block
            block = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data" and "data" in block:
            block["data"] += "\n" + value
        elif name in ("id", "event", "data", "retry"):
            block[name] = value


class _Resource:
    def __init__(self, client: Client) -> None:
        self._c = client

    def _call(self, method: str, path: str, **variables: Any) -> dict:
        return self._c.call(method, path, **variables)

    def find(self, ref: str) -> Any:
        raise NotImplementedError

    def _uuid(self, ref: str) -> str:
        """The UUID of what `ref` names: a UUID as it is (no request), a name or a unique
        UUID prefix looked up (`find`)."""
        return ref if is_uuid(ref) else self.find(ref).uuid

    def _id(self, ref: str | None) -> str | None:
        """`_uuid` of an optional reference."""
        return None if ref is None else self._uuid(ref)

    def _ref(self, ref: str) -> str:
        """`ref` resolved (`_uuid`), as one path segment."""
        return _path_id(self._uuid(ref))


class Machines(_Resource):
    """Machines (hosts and VMs), their actions, clusters, provisioning and packaging.
    Machines are named by UUID, name or unique UUID prefix."""

    def find(self, ref: str, *, kind: str | None = None) -> Machine:
        """The machine `ref` names (UUID, name or unique UUID prefix)."""
        items = self.list(kind=kind)
        return pick(kind or "machine", ref, items, lambda m: m.uuid, lambda m: (m.name,),
                    self._describe(items))

    def find_all(self, refs: Iterable[str]) -> builtins.list[Machine]:
        """Several machines, listing them once."""
        items = self.list()
        describe = self._describe(items)
        return [pick("machine", r, items, lambda m: m.uuid, lambda m: (m.name,), describe)
                for r in refs]

    def _describe(self, items: builtins.list[Machine]) -> Callable[[Machine], str]:
        """How a candidate is listed when a name is ambiguous: with its hypervisor's URI
        (read only then)."""
        hosts = {m.uuid: m.name for m in items if m.kind == "host"}
        uris: dict[str, str] = {}

        def describe(m: Machine) -> str:
            if m.kind == "host":
                return f"{m.uuid}  {m.name}  (host)"
            if not uris:
                uris.update({h.uuid: h.virt_url for h in self._c.hypervisors.list()} or
                            {"": ""})
            where = uris.get(m.parent or "", hosts.get(m.host or "", m.parent))
            return f"{m.uuid}  {m.name}  ({m.state}, on {where})"
        return describe

    def ids(self) -> builtins.list[str]:
        return self._call("GET", "/rest/machines/")["machines"]

    def list(self, *, kind: str | None = None, state: str | None = None,
             hypervisor: str | None = None) -> builtins.list[Machine]:
        answer = self._call("GET", "/rest/machines/", detail="true", kind=kind, state=state,
                            hypervisor=hypervisor)
        return [Machine.model_validate(o) for o in answer.get("machine_objs", [])]

    def get(self, uuid: str) -> MachineDetails:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/")
        return MachineDetails.model_validate({**a, "machine": a["machine_obj"]})

    def define(self, xmldesc: str, hypervisor: str) -> Machine:
        """Define a new VM from libvirt domain XML (like `virsh define`)."""
        a = self._call("PUT", "/rest/machines/", xmldesc=xmldesc,
                       hvmuuid=self._c.hypervisors._id(hypervisor))
        return Machine.model_validate(a["machine_obj"])

    def create(self, name: str, *, vcpus: int | None = None, memory: int | None = None,
               disk: int | None = None, image: str | None = None, cdrom: str | None = None,
               networks: typing.Sequence[str] = (), libvirt_network: str | None = None,
               hypervisor: str | None = None, cluster: str | None = None,
               pool: str | None = None, virt_type: str | None = None,
               firmware: str | None = None, cpu_mode: str | None = None,
               user_data: str | None = None, ssh_keys: typing.Sequence[str] = (),
               hostname: str | None = None, autostart: bool = False) -> Queued:
        """Queue the creation of a machine from parameters (docs/api.md, "Create a machine
        from parameters"): `memory` in MiB, `disk` in GiB; `image` and `cdrom` name images
        (UUID or name). Without `hypervisor` the server places it (among `cluster`'s hosts),
        or puts it where its image is. `Queued.machine` is the new machine."""
        if hypervisor and cluster:
            raise ValueError("name a hypervisor or a cluster, not both")
        target = self._c.hypervisors._id(hypervisor) or self._c.clusters._id(cluster)
        a = self._call("PUT", "/rest/machines/", name=name, vcpus=vcpus, memory=memory,
                       disk=disk, image=image, cdrom=cdrom, network=list(networks) or None,
                       libvirt_network=libvirt_network, hvmuuid=target, pool=pool,
                       virt_type=virt_type, firmware=firmware, cpu_mode=cpu_mode,
                       user_data=user_data, ssh_key=list(ssh_keys) or None,
                       hostname=hostname, autostart=autostart or None)
        return Queued(txid=a["txid"], machine=a["machine"], message=a.get("message", ""),
                      hypervisor=a["machine_obj"].get("parent"))

    def refresh(self, uuid: str) -> str:
        """Read the machine again from libvirt (a host: all its hypervisors)."""
        return self._call("POST", f"/rest/machine/{self._ref(uuid)}/trigger_status_updates/")[
            "message"]

    def stats(self, uuid: str) -> MachineStats:
        """The machine's current rates and its last hour (sampled by the node owning its
        hypervisor)."""
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/stats/")
        return MachineStats.model_validate(a)

    def actions(self, uuid: str) -> builtins.list[str]:
        """The actions valid for the machine now."""
        return self._call("GET", f"/rest/machine/{self._ref(uuid)}/actions/")["result"]

    def action(self, uuid: str, action: str, **variables: Any) -> str:
        """POST /rest/machine/<UUID>/actions/<action>/; returns the answer's message."""
        return self._call("POST", f"/rest/machine/{self._ref(uuid)}/actions/{action}/",
                          **variables)["message"]

    def start(self, uuid: str) -> str:
        return self.action(uuid, "create")

    def shutdown(self, uuid: str) -> str:
        """Ask the guest to power off (ACPI); returns at once."""
        return self.action(uuid, "shutdown")

    stop = shutdown

    def poweroff(self, uuid: str) -> str:
        return self.action(uuid, "poweroff")

    def suspend(self, uuid: str) -> str:
        return self.action(uuid, "suspend")

    def resume(self, uuid: str) -> str:
        return self.action(uuid, "resume")

    def reboot(self, uuid: str) -> str:
        return self.action(uuid, "reboot")

    def manage(self, uuid: str) -> str:
        return self.action(uuid, "manage")

    def unlock(self, uuid: str) -> str:
        return self.action(uuid, "unlock")

    def rename(self, uuid: str, name: str) -> str:
        return self.action(uuid, "rename", name=name)

    def set_xml(self, uuid: str, xmldesc: str) -> str:
        """Replace the stored definition (`xml_pending` until `store_xml`)."""
        return self.action(uuid, "xmldesc", xmldesc=xmldesc)

    def store_xml(self, uuid: str) -> str:
        return self.action(uuid, "store_xml")

    def move(self, uuid: str, hypervisor: str) -> str:
        """set_parent: move a stopped machine's definition to another hypervisor."""
        return self.action(uuid, "set_parent", puuid=self._c.hypervisors._id(hypervisor))

    def delete(self, uuid: str) -> str:
        """totaldelete: destroy, undefine, delete its unshared volumes, forget it."""
        return self.action(uuid, "totaldelete")

    def hypervisors(self, uuid: str) -> tuple[builtins.list[Hypervisor], builtins.list[Candidate]]:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/hypervisors/")
        return ([Hypervisor.model_validate(h) for h in a["hypervisors"]],
                [Candidate.model_validate(c) for c in a.get("candidates", [])])

    def clusters(self, uuid: str) -> builtins.list[Cluster]:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/clusters/")
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def add_to_clusters(self, uuid: str, clusters: Iterable[str]) -> builtins.list[Cluster]:
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/clusters/",
                       clusters=[self._c.clusters._id(x) for x in clusters])
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def remove_from_clusters(self, uuid: str, clusters: Iterable[str]) -> builtins.list[Cluster]:
        a = self._call("DELETE", f"/rest/machine/{self._ref(uuid)}/clusters/",
                       clusters=[self._c.clusters._id(x) for x in clusters])
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def provision(self, host: str | None = None, *, package: str, name: str,
                  hypervisor: str | None = None, cluster: str | None = None,
                  pool: str | None = None) -> Queued:
        """Queue a provision of `package` as a new machine `name`: on `hypervisor` (one of
        `host`'s) when given; otherwise the server places it (docs/provisioning.md,
        "Placement") among the hypervisors of `cluster`'s hosts, or among all the hypervisors
        the caller may control. `host`, the machine the request is addressed to, defaults to
        the hypervisor's host, else the first host (or machine) the caller may read.
        `Queued.machine` is the new machine, `Queued.hypervisor` where it goes, `Queued.txid`
        the transaction."""
        if hypervisor and cluster:
            raise ValueError("name a hypervisor or a cluster, not both")
        hypervisor = self._c.hypervisors._id(hypervisor)
        cluster, package = self._c.clusters._id(cluster), self._c.packages._uuid(package)
        host = self._id(host)
        if host is None:
            host = self._c.hypervisors.get(hypervisor).machine if hypervisor else \
                self._any_machine()
        a = self._call("POST", f"/rest/machine/{_path_id(host)}/actions/provision/",
                       pkguuid=package, hvmuuid=hypervisor or cluster, name=name, pool=pool)
        return Queued(txid=a["txid"], machine=a["newuuid"], message=a.get("message", ""),
                      hypervisor=a.get("hvmuuid"))

    def _any_machine(self) -> str:
        """A machine to address a placed provision to (the spec's path needs one)."""
        hosts = self._c.hosts.list()
        found = [h.uuid for h in hosts] or self.ids()
        if not found:
            raise NotFoundError(404, 1200, "there is no machine you may read to address the "
                                "provision to")
        return found[0]

    def package(self, uuid: str, *, name: str | None = None, description: str | None = None,
                version: str | None = None, compression: str | None = None) -> Queued:
        """Queue packaging the machine; the transaction's `result["package"]` is the new
        package."""
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/actions/package/", name=name,
                       description=description, version=version, compression=compression)
        return Queued(txid=a["txid"], machine=uuid, message=a.get("message", ""))


class Hosts(_Resource):
    def find(self, ref: str) -> Machine:
        """The host `ref` names (UUID, name, address or unique UUID prefix)."""
        return pick("host", ref, self.list(), lambda m: m.uuid,
                    lambda m: (m.name, m.address or m.name), lambda m: f"{m.uuid}  {m.name}")

    def list(self) -> builtins.list[Machine]:
        return [Machine.model_validate(h) for h in self._call("GET", "/rest/hosts/")["hosts"]]

    def register(self, name: str, *, virt_url: str | None = None, address: str | None = None,
                 virt_class: str | None = None) -> HostRegistration:
        """Register a host, connecting its hypervisor when `virt_url` is given (both or
        neither)."""
        a = self._call("PUT", "/rest/hosts/", name=name, virt_url=virt_url, address=address,
                       virt_class=virt_class)
        return HostRegistration.model_validate({**a, "machine": a["machine_obj"]})


class Nodes(_Resource):
    def list(self) -> builtins.list[Node]:
        """The API nodes sharing the server's database (administrators only)."""
        return [Node.model_validate(n) for n in self._call("GET", "/rest/nodes/")["nodes"]]


class Cache(_Resource):
    """The base-image cache on the hypervisors (administrators only)."""

    def list(self, hypervisor: str | None = None
             ) -> tuple[builtins.list[BaseVolume], builtins.list[str]]:
        """The base volumes, and the problems met reading them (hypervisors not connected)."""
        a = self._call("GET", "/rest/cache/", hypervisor=hypervisor)
        return [BaseVolume.model_validate(b) for b in a["bases"]], a["problems"]

    def prune(self, hypervisor: str | None = None) -> str:
        """Queue removing the unused base volumes; the transaction id."""
        return self._call("POST", "/rest/cache/prune/", hypervisor=hypervisor)["txid"]


class Hypervisors(_Resource):
    def find(self, ref: str, host: str | None = None) -> Hypervisor:
        """The hypervisor `ref` names (UUID, libvirt URI or unique UUID prefix), among
        `host`'s when given."""
        if is_uuid(ref) and not host:  # also one on a host the caller may not read
            return self.get(ref)
        return pick("hypervisor", ref, self.list(host), lambda h: h.uuid,
                    lambda h: (h.virt_url,), lambda h: f"{h.uuid}  {h.virt_url}  ({h.status})")

    def get(self, uuid: str) -> Hypervisor:
        return Hypervisor.model_validate(
            self._call("GET", f"/rest/hypervisor/{self._ref(uuid)}/")["hypervisor"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/hypervisor/{self._ref(uuid)}/")["message"]

    def list(self, host: str | None = None) -> builtins.list[Hypervisor]:
        """The hypervisors of one host, or of every host the caller may read."""
        hosts = [self._c.hosts._uuid(host)] if host else [h.uuid for h in self._c.hosts.list()]
        return [hv for h in hosts for hv in self._c.machines.hypervisors(h)[0]]

    def candidates(self, host: str) -> builtins.list[Candidate]:
        return self._c.machines.hypervisors(self._c.hosts._uuid(host))[1]

    def add(self, host: str, virt_url: str, virt_class: str | None = None) -> Hypervisor:
        """Connect and add a hypervisor to a host; returns it."""
        a = self._call("POST", f"/rest/machine/{self._c.hosts._ref(host)}/hypervisors/",
                       virt_url=virt_url, virt_class=virt_class)
        hvs = [Hypervisor.model_validate(h) for h in a["hypervisors"]]
        return next((h for h in hvs if h.virt_url == virt_url), hvs[-1])


class Clusters(_Resource):
    def find(self, ref: str) -> Cluster:
        return pick("cluster", ref, self.list(), lambda x: x.uuid, lambda x: (x.name,),
                    lambda x: f"{x.uuid}  {x.name}")

    def list(self) -> builtins.list[Cluster]:
        a = self._call("GET", "/rest/cluster/list/")
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def get(self, uuid: str) -> Cluster:
        a = self._call("GET", f"/rest/cluster/{self._ref(uuid)}/")
        return Cluster.model_validate(a["cluster"])

    def create(self, name: str) -> Cluster:
        a = self._call("PUT", "/rest/cluster/", cluster_name=name)
        return Cluster.model_validate(a["cluster"])

    def rename(self, uuid: str, name: str) -> Cluster:
        return Cluster.model_validate(self._call("POST", f"/rest/cluster/{self._ref(uuid)}/",
                                            action="rename", cluster_name=name)["cluster"])

    def delete(self, uuid: str, *, force: bool = False) -> str:
        """force: also when static networks serve it (they are left serving none)."""
        return self._call("DELETE", f"/rest/cluster/{self._ref(uuid)}/",
                          force="1" if force else None)["message"]


class Users(_Resource):
    def find(self, ref: str) -> UserRef:
        return pick("user", ref, self.list(), lambda u: u.uuid, lambda u: (u.username,),
                    lambda u: f"{u.uuid}  {u.username}")

    def list(self) -> builtins.list[UserRef]:
        return [UserRef(uuid=i, username=n) for n, i in self._call("GET", "/rest/users/")["users"]]

    def get(self, uuid: str) -> User:
        return User.model_validate(self._call("GET", f"/rest/user/{self._ref(uuid)}/")["user"])

    def create(self, username: str, password: str, *, email: str | None = None,
               full_name: str | None = None, admin: bool = False,
               groups: Iterable[str] = ()) -> User:
        a = self._call("POST", "/rest/user/create/", username=username, password=password,
                       email=email, full_name=full_name, admin=admin, groups=list(groups) or None)
        return self.get(a["uuid"])

    def _act(self, uuid: str, action: str, **variables: Any) -> User:
        a = self._call("POST", f"/rest/user/{self._ref(uuid)}/", action=action, **variables)
        return User.model_validate(a["user"])

    def update(self, uuid: str, *, email: str | None = None,
               full_name: str | None = None) -> User:
        return self._act(uuid, "update", email=email, full_name=full_name)

    def set_password(self, uuid: str, password: str, old_password: str | None = None) -> User:
        """Your own password needs `old_password`, the current one; an administrator setting
        another user's does not."""
        return self._act(uuid, "set_password", password=password, old_password=old_password)

    def enable(self, uuid: str) -> User:
        return self._act(uuid, "enable")

    def disable(self, uuid: str) -> User:
        return self._act(uuid, "disable")

    def set_admin(self, uuid: str, admin: bool = True) -> User:
        return self._act(uuid, "set_admin", admin=admin)

    def add_group(self, uuid: str, group: str) -> User:
        return self._act(uuid, "add_group", group=group)

    def remove_group(self, uuid: str, group: str) -> User:
        return self._act(uuid, "remove_group", group=group)

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/user/{self._ref(uuid)}/")["message"]


class Groups(_Resource):
    def find(self, ref: str) -> GroupRef:
        return pick("group", ref, self.list(), lambda g: g.uuid, lambda g: (g.name,),
                    lambda g: f"{g.uuid}  {g.name}")

    def list(self) -> builtins.list[GroupRef]:
        pairs = self._call("GET", "/rest/group/list/")["groups"]
        return [GroupRef(uuid=i, name=n) for n, i in pairs]

    def get(self, uuid: str) -> Group:
        return Group.model_validate(self._call("GET", f"/rest/group/{self._ref(uuid)}/")["group"])

    def create(self, name: str) -> Group:
        a = self._call("PUT", "/rest/group/create/", group_name=name)
        return Group.model_validate(a["group"])

    def _act(self, uuid: str, action: str, **variables: Any) -> Group:
        a = self._call("POST", f"/rest/group/{self._ref(uuid)}/", action=action, **variables)
        return Group.model_validate(a["group"])

    def rename(self, uuid: str, name: str) -> Group:
        return self._act(uuid, "rename", group_name=name)

    def add_user(self, uuid: str, user: str) -> Group:
        return self._act(uuid, "add_user", user=user)

    def remove_user(self, uuid: str, user: str) -> Group:
        return self._act(uuid, "remove_user", user=user)

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/group/{self._ref(uuid)}/")["message"]


class Permissions(_Resource):
    """Access lists of any object (needs `admin` on it), named as `Client.find` takes it."""

    def _obj(self, obj: str) -> str:
        return _path_id(obj if is_uuid(obj) else self._c.find(obj)[1])

    def _acl(self, method: str, obj: str, **variables: Any) -> AccessList:
        return AccessList.model_validate(
            self._call(method, f"/rest/permissions/{self._obj(obj)}/", **variables))

    def list(self, obj: str) -> AccessList:
        return self._acl("GET", obj)

    def grant(self, obj: str, permission: str, *, user: str | None = None,
              group: str | None = None) -> AccessList:
        return self._acl("PUT", obj, permission=permission, user=user, group=group)

    def revoke(self, obj: str, permission: str, *, user: str | None = None,
               group: str | None = None) -> AccessList:
        return self._acl("DELETE", obj, permission=permission, user=user, group=group)


class Tokens(_Resource):
    def find(self, ref: str, owner: str | None = None) -> Token:
        return pick("token", ref, self.list(owner), lambda t: t.uuid, lambda t: (t.name,),
                    lambda t: f"{t.uuid}  {t.name}")

    def list(self, user: str | None = None) -> builtins.list[Token]:
        a = self._call("GET", "/rest/tokens/", user=user)
        return [Token.model_validate(t) for t in a["tokens"]]

    def create(self, name: str, expires_in_days: float | None = None) -> NewToken:
        a = self._call("PUT", "/rest/tokens/", name=name,
                       expires_in_days=None if expires_in_days is None else str(expires_in_days))
        return NewToken.model_validate(a)

    def revoke(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/tokens/{self._ref(uuid)}/")["message"]


class Audit(_Resource):
    def list(self, *, object: str | None = None, actor: str | None = None,
             failed: bool | None = None, limit: int = 100) -> builtins.list[AuditEntry]:
        """Newest first; `object`: a UUID or anything `Client.find` names; `failed`: True
        for refusals and failures only, False for changes done only."""
        if object is not None and not is_uuid(object):
            object = self._c.find(object)[1]
        a = self._call("GET", "/rest/audit/", object=object, actor=actor,
                       failed=None if failed is None else str(failed).lower(), limit=limit)
        return [AuditEntry.model_validate(e) for e in a["entries"]]


class Transactions(_Resource):
    def find(self, ref: str) -> Transaction:
        """The transaction `ref` names: its UUID or a unique UUID prefix."""
        if is_uuid(ref):
            return self.get(ref)
        return pick("transaction", ref, self.list(limit=1000), lambda t: t.uuid,
                    lambda t: (), lambda t: f"{t.uuid}  {t.kind} {t.state}")

    def list(self, *, state: str | None = None, target: str | None = None,
             limit: int = 100) -> builtins.list[Transaction]:
        """Newest first; `target`: a UUID, or anything `Client.find` names."""
        if target is not None and not is_uuid(target):
            target = self._c.find(target)[1]
        a = self._call("GET", "/rest/transactions/", state=state, target=target, limit=limit)
        return [Transaction.model_validate(t) for t in a["transactions"]]

    def get(self, uuid: str) -> Transaction:
        return Transaction.model_validate(
            self._call("GET", f"/rest/transaction/{self._ref(uuid)}/")["data"])

    def cancel(self, uuid: str) -> tuple[Transaction, str]:
        a = self._call("POST", f"/rest/transaction/{self._ref(uuid)}/", action="cancel")
        return Transaction.model_validate(a["data"]), a.get("message", "")

    def retry(self, uuid: str) -> tuple[Transaction, str]:
        a = self._call("POST", f"/rest/transaction/{self._ref(uuid)}/", action="retry")
        return Transaction.model_validate(a["data"]), a.get("message", "")


class Repositories(_Resource):
    """VMcast feeds, named by UUID, URL, title or unique UUID prefix."""

    def find(self, ref: str) -> Repository:
        return pick("feed", ref, self.list(), lambda r: r.uuid,
                    lambda r: (r.url, r.url.rstrip("/"), r.title or r.url),
                    lambda r: f"{r.uuid}  {r.url}")

    def list(self) -> builtins.list[Repository]:
        a = self._call("GET", "/rest/vmfeed/repo/")
        return [Repository.model_validate(r) for r in a["repositories"]]

    def get(self, uuid: str) -> tuple[Repository, builtins.list[Package]]:
        a = self._call("GET", f"/rest/vmfeed/repo/{self._ref(uuid)}/")
        return (Repository.model_validate(a["repository"]),
                [Package.model_validate(p) for p in a["packages"]])

    def add(self, url: str) -> tuple[Repository, builtins.list[Package]]:
        """Add a feed (fetched at once); credentials may be given in the URL."""
        a = self._call("PUT", "/rest/vmfeed/", url=url)
        return self.get(a["uuid"])

    def refresh(self, uuid: str) -> tuple[Repository, builtins.list[Package]]:
        a = self._call("POST", f"/rest/vmfeed/repo/{self._ref(uuid)}/", action="refresh")
        return (Repository.model_validate(a["repository"]),
                [Package.model_validate(p) for p in a["packages"]])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/vmfeed/repo/{self._ref(uuid)}/")["message"]


class Packages(_Resource):
    def find(self, ref: str) -> Package:
        return pick("package", ref, self.list(), lambda p: p.uuid, lambda p: (p.name,),
                    lambda p: f"{p.uuid}  {p.name} {p.version or ''}  ({p.state})")

    def list(self, *, state: str | None = None) -> builtins.list[Package]:
        return [Package.model_validate(p) for p in self._call("GET", "/rest/vmfeed/",
                                                         state=state)["packages"]]

    def get(self, uuid: str) -> Package:
        a = self._call("GET", f"/rest/vmfeed/{self._ref(uuid)}/")
        return Package.model_validate(a["package"])

    def update(self, uuid: str, *, name: str | None = None,
               description: str | None = None) -> Package:
        return Package.model_validate(self._call("POST", f"/rest/vmfeed/{self._ref(uuid)}/",
                                            name=name, description=description)["package"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/vmfeed/{self._ref(uuid)}/")["message"]

    def retrieve(self, uuid: str) -> str | None:
        """Queue retrieval into the server's cache; the transaction id, or None when the
        package is cached already."""
        return self._call("POST", f"/rest/vmfeed/repo/package/{self._ref(uuid)}/")["tx"]

    def uncache(self, uuid: str) -> str:
        """Remove the server's local copy of a feed's package."""
        return self._call("DELETE", f"/rest/vmfeed/repo/package/{self._ref(uuid)}/")["message"]

    def download(self, uuid: str, dest: str | os.PathLike,
                 progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Download the package file to `dest` (a file, or a directory to put `<name>.xvm2`
        in), through `dest.part`; `progress(done, total)` as it goes. Returns the path."""
        r = self._c._send("GET", f"/rest/vmfeed/{self._ref(uuid)}/download/", stream=True)
        try:
            if r.status_code != 200:
                r.read()
                self._c._check(r)
                raise ClientError(r.status_code, 1, f"unexpected HTTP {r.status_code}")
            target = Path(dest)
            if target.is_dir():
                target = target / _filename(r.headers.get("content-disposition"), uuid)
            total = int(r.headers["content-length"]) if "content-length" in r.headers else None
            part = target.with_name(target.name + ".part")
            done = 0
            try:
                with open(part, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                if total is not None and done != total:
                    raise ClientError(200, 1, f"the download ended after {done} of {total} "
                                      "bytes")
                part.replace(target)
            except httpx.TransportError as e:
                part.unlink(missing_ok=True)
                raise UnreachableError(0, 0, f"the download broke off: {e}") from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            return target
        finally:
            r.close()


    def upload(self, path: str | os.PathLike, *, name: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Package:
        """Upload a local `.xvm2` file as a new package (streamed from the file);
        `progress(done, total)` as it goes."""
        return Package.model_validate(self._c.upload("/rest/vmfeed/upload/", path, progress,
                                                name=name)["package"])


class Images(_Resource):
    """Disk and ISO images, named by UUID, name or unique UUID prefix."""

    def find(self, ref: str) -> Image:
        return pick("image", ref, self.list(), lambda i: i.uuid, lambda i: (i.name,),
                    lambda i: f"{i.uuid}  {i.name}  ({i.format}, {i.state})")

    def list(self) -> builtins.list[Image]:
        return [Image.model_validate(i) for i in self._call("GET", "/rest/images/")["images"]]

    def get(self, ref: str) -> Image:
        return Image.model_validate(self._call("GET", f"/rest/images/{_path_id(ref)}/")["image"])

    def delete(self, ref: str) -> str:
        return self._call("DELETE", f"/rest/images/{_path_id(ref)}/")["message"]

    def upload(self, path: str | os.PathLike, *, name: str, format: str,
               hypervisor: str | None = None, pool: str | None = None,
               sha256: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Image:
        """Upload a local qcow2, raw or ISO file, streamed from the file (the server checks
        and streams it into a volume); `progress(done, total)` as it goes."""
        return Image.model_validate(self._c.upload(
            "/rest/images/", path, progress, name=name, format=format, hvmuuid=hypervisor,
            pool=pool, sha256=sha256)["image"])

    def package(self, ref: str, *, name: str | None = None,
                description: str | None = None) -> str:
        """Queue `package import`: the image as a new package; the transaction's id."""
        return self._call("POST", f"/rest/images/{_path_id(ref)}/", action="package",
                          name=name, description=description)["txid"]

    def register(self, url: str, *, name: str, format: str, hypervisor: str | None = None,
                 pool: str | None = None, sha256: str | None = None) -> tuple[Image, str]:
        """Register an image from an http(s) URL: the server downloads it in a transaction.
        Returns the image (uploading) and the transaction's id."""
        body = self._call("PUT", "/rest/images/", url=url, name=name, format=format,
                          hvmuuid=hypervisor, pool=pool, sha256=sha256)
        return Image.model_validate(body["image"]), body["txid"]


def _filename(disposition: str | None, fallback: str) -> str:
    m = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition or "")
    name = Path(m.group(1)).name if m else ""
    return name if name and name not in (".", "..") else f"{fallback}.xvm2"


class Networks(_Resource):
    """Static networks, their IP ranges, cluster and leases."""

    def find(self, ref: str) -> Network:
        return pick("network", ref, self.list(), lambda n: n.uuid,
                    lambda n: (n.name,), lambda n: f"{n.uuid}  {n.name}  ({n.ip}/{n.prefix})")

    def list(self) -> builtins.list[Network]:
        return [Network.model_validate(n) for n in self._call("GET", "/rest/networks/")["networks"]]

    def get(self, uuid: str) -> Network:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/")
        return Network.model_validate(a["network"])

    def create(self, name: str, *, bridge: str, ip: str, netmask: str,
               gateway: str | None = None, cluster: str | None = None,
               description: str | None = None) -> Network:
        a = self._call("PUT", "/rest/networks/", name=name, bridge=bridge, ip=ip,
                       netmask=netmask, gateway=gateway, cluster=self._c.clusters._id(cluster),
                       description=description)
        return Network.model_validate(a["network"])

    def update(self, uuid: str, *, name: str | None = None, description: str | None = None,
               bridge: str | None = None, cluster: str | None = None) -> Network:
        a = self._call("POST", f"/rest/networks/{self._ref(uuid)}/", name=name,
                       description=description, bridge=bridge,
                       cluster=self._c.clusters._id(cluster) if cluster else cluster)
        return Network.model_validate(a["network"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/")["message"]

    def ranges(self, uuid: str) -> builtins.list[IPRange]:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/iprange/")
        return [IPRange.model_validate(r) for r in a["ranges"]]

    def add_range(self, uuid: str, start_ip: str, end_ip: str) -> IPRange:
        a = self._call("POST", f"/rest/networks/{self._ref(uuid)}/iprange/", start_ip=start_ip,
                       end_ip=end_ip)
        ranges = [IPRange.model_validate(r) for r in a["ranges"]]
        return next((r for r in ranges if r.start_ip == start_ip), ranges[-1])

    def get_range(self, uuid: str, range_uuid: str) -> IPRange:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/iprange/{_path_id(range_uuid)}/")
        return IPRange.model_validate(a["iprange"])

    def change_range(self, uuid: str, range_uuid: str, *, start_ip: str | None = None,
                     end_ip: str | None = None) -> IPRange:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/iprange/{_path_id(range_uuid)}/",
                       start_ip=start_ip, end_ip=end_ip)
        return IPRange.model_validate(a["iprange"])

    def delete_range(self, uuid: str, range_uuid: str) -> str:
        return self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/iprange/"
                                    f"{_path_id(range_uuid)}/")["message"]

    def cluster(self, uuid: str) -> Cluster | None:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/cluster/")
        return Cluster.model_validate(a["cluster"]) if a.get("cluster") else None

    def set_cluster(self, uuid: str, cluster: str | None) -> Cluster | None:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/cluster/",
                       cluster=self._c.clusters._id(cluster) or "")
        return Cluster.model_validate(a["cluster"]) if a.get("cluster") else None

    def leases(self, uuid: str) -> builtins.list[Lease]:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/leases/")
        return [Lease.model_validate(x) for x in a["leases"]]

    def reserve(self, uuid: str, *, address: str | None = None, machine: str | None = None,
                mac: str | None = None, note: str | None = None) -> Lease:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/leases/", address=address,
                       machine=self._c.machines._id(machine), mac=mac, note=note)
        return Lease.model_validate(a["lease"])

    def release(self, uuid: str, address: str) -> Lease:
        a = self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/leases/{_path_id(address)}/")
        return Lease.model_validate(a["lease"])
