"""Hosts and their hypervisors: registering, connecting, detecting candidates, removing."""

import logging
import socket
from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from enomalism.errors import (
    Conflict,
    HypervisorUnreachable,
    InvalidInput,
    InvalidState,
    NotFound,
)
from enomalism.runtime import nodes
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.services import access, names
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import get_host, get_hypervisor, require
from enomalism.store import unit
from enomalism.store.db import Database
from enomalism.store.models import Hypervisor, Machine, Node, utcnow
from enomalism.virt import uri as uris
from enomalism.virt.connection import open_hypervisor
from enomalism.virt.hypervisor import HypervisorConnection

log = logging.getLogger(__name__)

# What a local host may offer, in the order candidates are listed.
LOCAL_CANDIDATES = [("kvm", "qemu:///system"), ("lxc", "lxc:///system"), ("test", "test:///default")]


def get(ctx: Context, uuid: str, permission: str = "read") -> Hypervisor:
    hv = get_hypervisor(ctx.db, uuid)
    access.require(ctx, hv, permission, "hypervisor")
    return hv


def list_readable(ctx: Context) -> list[Hypervisor]:
    """The hypervisors the caller may read (owned, or granted a permission on), by URI: what a
    non-administrator can name in `hvmuuid`, whose hosts they may not see."""
    q = select(Hypervisor).order_by(Hypervisor.virt_url, Hypervisor.uuid)
    if (clause := access.readable(ctx, Hypervisor)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def _connect_unlocked(ctx: Context, url: str) -> HypervisorConnection:
    """Open a connection to a new hypervisor with no database transaction open: a host that
    is slow to answer (up to OPEN_TIMEOUT) must not hold SQLite's write lock, which every
    other writer waits on. Nothing may have been written in the request before this."""
    commit_before_slow_work(ctx)
    conn = open_hypervisor(url)
    if ctx.db.scalar(select(Hypervisor.uuid).where(Hypervisor.virt_url == url)):
        conn.close()  # registered by someone else while we waited
        raise Conflict(f"the hypervisor {url} is already registered")
    return conn


def _check_user_uri(ctx: Context, host: Machine, url: str) -> None:
    """A non-administrator's URI: the allow-list of virt/uri.py, towards the host itself, and
    not a second spelling of a daemon already registered (which would hand its machines to a
    new hypervisor object she owns)."""
    here = host.is_local and host.local_to == nodes.this_machine()
    uris.check_user_uri(url, host_address=host.address, host_is_local=here)
    key = uris.daemon_key(url)
    for other in ctx.db.scalars(select(Hypervisor.virt_url)):
        if uris.daemon_key(other) == key:
            raise Conflict(f"{url} reaches a hypervisor that is already registered")


def _connect_for(ctx: Context, url: str) -> HypervisorConnection:
    """Connect; a non-administrator is not told libvirt's reason (it can tell an open port
    from a closed one, or quote what the far side said): the server log has it."""
    if ctx.user.is_admin:
        return _connect_unlocked(ctx, url)
    try:
        return _connect_unlocked(ctx, url)
    except (HypervisorUnreachable, InvalidInput) as e:
        log.warning("connecting %s for %s failed: %s", url, ctx.user.username, e.message)
        raise HypervisorUnreachable(f"cannot connect to {url}; an administrator can find "
                                    "why in the server log") from None


def add_hypervisor(ctx: Context, host_uuid: str, *, virt_url: str | None,
                   virt_class: str | None, conn: HypervisorConnection | None = None) -> Hypervisor:
    """Connect to a libvirt URI and register it as a hypervisor of the host (needs `admin` on
    the host: it decides where the server connects, with its own credentials). A
    non-administrator's URI must pass the allow-list (docs/access.md). An unreachable URI is
    refused and nothing is stored. `conn`: the connection, already opened by the caller."""
    host = get_host(ctx.db, host_uuid)
    access.require(ctx, host, "admin", "machine")
    url = require(virt_url, "virt_url", " (a libvirt URI such as qemu+ssh://host/system)")
    uris.driver_of(url)  # a URI at all (400), before what it may name (403)
    if not ctx.user.is_admin:
        _check_user_uri(ctx, host, url)
    given = (virt_class or "").strip()
    virt_class = given or uris.class_of(url)
    uris.check_class(virt_class, url)
    if ctx.db.scalar(select(Hypervisor.uuid).where(Hypervisor.virt_url == url)):
        raise Conflict(f"the hypervisor {url} is already registered")
    if conn is None:
        conn = _connect_for(ctx, url)
        try:
            host = get_host(ctx.db, host_uuid)  # still there after the wait?
        except NotFound:
            conn.close()
            raise
    if not given and virt_class == "qemu" and conn.offers_kvm():
        virt_class = "kvm"  # as the local default: guests get hardware virtualisation
    hv = Hypervisor(machine_uuid=host.uuid, virt_class=virt_class, virt_url=url,
                    owner_uuid=ctx.user.uuid, status="connecting", local_to=nodes.local_to(url))
    ctx.db.add(hv)
    host.candidates = [c for c in host.candidates or [] if c.get("virt_url") != url]
    try:
        unit.keep_now(ctx.db)  # the first resync writes in sessions of its own
    except Exception:
        conn.close()
        raise
    ctx.registry.attach(hv.uuid, url, conn)
    ctx.db.refresh(hv)
    return hv


def delete_hypervisor(ctx: Context, uuid: str) -> str:
    """Remove a hypervisor that no managed machine depends on; forget its unmanaged ones."""
    hv = get(ctx, uuid, "delete")
    managed = ctx.db.scalar(select(func.count()).select_from(Machine).where(
        Machine.parent_uuid == hv.uuid, Machine.managed.is_(True)))
    if managed:
        raise InvalidState(f"hypervisor {hv.virt_url} still has {managed} managed machine(s); "
                           "delete them or move them with set_parent first")
    url = hv.virt_url
    for m in ctx.db.scalars(select(Machine).where(Machine.parent_uuid == hv.uuid)):
        ctx.db.delete(m)
    ctx.db.delete(hv)
    commit_before_slow_work(ctx)
    ctx.registry.detach(hv.uuid)
    return f"hypervisor {url} removed"


def register_host(ctx: Context, *, name: str | None, address: str | None,
                  virt_url: str | None, virt_class: str | None) -> Machine:
    """Register another physical host, and its hypervisor when a URI is given (both or
    neither: an unreachable URI leaves no host behind). Administrators only."""
    access.require_admin(ctx, "register hosts")
    name = names.check(names.MACHINE, name, why=" (the host's name)")
    if ctx.db.scalar(select(Machine.uuid).where(Machine.kind == "host", Machine.name == name)):
        raise Conflict(f"a host named '{name}' already exists")
    conn = None
    if virt_url:
        uris.check_class(virt_class or uris.class_of(virt_url), virt_url)
        if ctx.db.scalar(select(Hypervisor.uuid).where(Hypervisor.virt_url == virt_url)):
            raise Conflict(f"the hypervisor {virt_url} is already registered")
        conn = _connect_unlocked(ctx, virt_url)  # before anything is written
        if ctx.db.scalar(select(Machine.uuid).where(Machine.kind == "host",
                                                    Machine.name == name)):
            conn.close()
            raise Conflict(f"a host named '{name}' already exists")
    host = Machine(kind="host", name=name, address=address or None, managed=True,
                   state="unknown", owner_uuid=ctx.user.uuid, candidates=[])
    ctx.db.add(host)
    ctx.db.flush()
    if conn is not None:  # on failure nothing was committed: the request rolls the host back
        try:
            add_hypervisor(ctx, host.uuid, virt_url=virt_url, virt_class=virt_class,
                           conn=conn)
        except BaseException:
            conn.close()  # unless add_hypervisor closed it already
            raise
    return host


def candidates(host: Machine) -> list[dict]:
    return list(host.candidates or [])


def probe(url: str, timeout: float = 5.0) -> bool:
    try:
        open_hypervisor(url, timeout=timeout).close()
        return True
    except (HypervisorUnreachable, InvalidInput):
        return False


def ensure_local_host(db: Database, registry: HypervisorRegistry, uris_wanted: list[str]) -> str:
    """At start: the host this server runs on, its configured hypervisors, and candidates for
    the local URIs not added. With no URIs configured, qemu:///system is added if it answers."""
    here = nodes.this_machine()
    with db.session() as s:
        # Several API nodes on one machine share its host; a node on another machine has its
        # own. A host made before nodes knew their machine is adopted by the first to start.
        host = (s.scalar(select(Machine).where(Machine.kind == "host", Machine.is_local.is_(True),
                                               Machine.local_to == here))
                or s.scalar(select(Machine).where(Machine.kind == "host",
                                                  Machine.is_local.is_(True),
                                                  Machine.local_to.is_(None))))
        if host is None:
            host = Machine(kind="host", name=_free_host_name(s, here), is_local=True,
                           managed=True, state="running", address=socket.getfqdn(),
                           candidates=[])
            s.add(host)
        host.local_to = here
        s.flush()
        host_uuid = host.uuid
        for hv in s.scalars(select(Hypervisor).where(Hypervisor.machine_uuid == host_uuid,
                                                     Hypervisor.local_to.is_(None))):
            hv.local_to = nodes.local_to(hv.virt_url)
        registered = set(s.scalars(select(Hypervisor.virt_url).where(or_(
            Hypervisor.local_to.is_(None), Hypervisor.local_to == here))))
    wanted = list(uris_wanted)
    if not wanted and "qemu:///system" not in registered and probe("qemu:///system"):
        wanted = ["qemu:///system"]
    for url in wanted:
        if url in registered:
            continue
        virt_class = uris.class_of(url)
        if virt_class == "qemu" and uris.is_local(url) and _has_kvm():
            virt_class = "kvm"
        with db.session() as s:
            s.add(Hypervisor(machine_uuid=host_uuid, virt_class=virt_class, virt_url=url,
                             local_to=nodes.local_to(url)))
        registered.add(url)
    with db.session() as s:
        host = s.get_one(Machine, host_uuid)
        host.candidates = [
            {"virt_class": "qemu" if c == "kvm" and not _has_kvm() else c, "virt_url": u,
             "reachable": probe(u, timeout=3.0)}
            for c, u in LOCAL_CANDIDATES if u not in registered
        ]
    return host_uuid


def _free_host_name(s: Session, name: str) -> str:
    taken = set(s.scalars(select(Machine.name).where(Machine.kind == "host")))
    n, candidate = 1, name
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _has_kvm() -> bool:
    try:
        with open("/dev/kvm", "rb"):
            return True
    except OSError:
        return False


def list_nodes(ctx: Context) -> list[dict]:
    """Every node that ever ran on this database, live or not, with what it owns."""
    access.require_admin(ctx, "list the API nodes")
    lease = ctx.registry.ownership.lease
    cutoff = utcnow() - timedelta(seconds=lease)
    owned: dict[str, list[str]] = {}
    for hv_uuid, node in ctx.db.execute(select(Hypervisor.uuid, Hypervisor.owner_node).where(
            Hypervisor.owner_node.is_not(None)).order_by(Hypervisor.uuid)):
        owned.setdefault(node or "", []).append(hv_uuid)
    return [{"id": n.id, "hostname": n.hostname, "pid": n.pid, "started_at": n.started_at,
             "seen_at": n.seen_at, "alive": n.stopped_at is None and n.seen_at >= cutoff,
             "hypervisors": owned.get(n.id, [])}
            for n in ctx.db.scalars(select(Node).order_by(Node.id))]
