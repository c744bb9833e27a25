"""Machine actions: which are possible in which state, and carrying them out.

`POST /rest/machine/<UUID>/actions/<action>/` and `POST /rest/machine/<UUID>/ action=<action>`
both land in `perform`. The checks run in a fixed order, each with its own error: the machine
exists, the action is known, no transaction holds the machine (423), the machine is managed,
and the action fits the state the inventory holds. Only then is libvirt asked.
"""

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Engine, Insert, Integer, Table, bindparam, func, insert, select, update
from sqlalchemy.orm.attributes import flag_modified, set_committed_value

from enomalism.errors import (
    Conflict,
    EnomalismError,
    Forbidden,
    HypervisorError,
    InvalidInput,
    InvalidState,
    Locked,
    NotFound,
    PoolNotAllowed,
    UnknownAction,
)
from enomalism.runtime import sync
from enomalism.services import (
    access,
    dhcp_entries,
    events,
    machine_work,
    moves,
    names,
    pools,
    resize,
    restart_policy,
    volumes,
)
from enomalism.services.context import Context, Principal, commit_before_slow_work
from enomalism.services.lookup import get_hypervisor, get_machine, parse_uuid, require
from enomalism.services.networks import machine_leases
from enomalism.store import records, unit
from enomalism.store.db import Database
from enomalism.store.models import AuditEntry, Event, Hypervisor, Machine, utcnow
from enomalism.store.prepared import Prepared
from enomalism.virt import driver
from enomalism.virt.domxml import DomainXML
from enomalism.virt.hypervisor import HypervisorConnection

if TYPE_CHECKING:
    from enomalism.runtime.registry import HypervisorRegistry

# State -> lifecycle actions that make sense in it (managed VMs).
_BY_STATE = {
    "running": ["suspend", "shutdown", "reboot", "poweroff"],
    "blocked": ["suspend", "shutdown", "reboot", "poweroff"],
    "paused": ["resume", "poweroff"],
    "shutdown": ["poweroff"],
    "shutoff": ["create", "rename"],
    "crashed": ["poweroff"],
    "pmsuspended": ["create", "poweroff"],
    "nostate": ["poweroff"],
    "missing": [],
    "unknown": [],
}
# A VM whose domain is there, whatever its state: its size and disks change (live or not).
_CHANGE_DEVICES = ["set", "attach_disk", "detach_disk", "grow_disk"]
# A machine's snapshots change where its devices do; not in `available` (their own paths).
SNAPSHOT_ACTIONS = ("snapshot", "snapshot_revert", "snapshot_delete")
# Every managed VM, whatever its state.
_ALWAYS = ["xmldesc", "store_xml", "set_parent", "totaldelete"]


@dataclass(frozen=True)
class ActionVars:
    name: str | None = None
    xmldesc: str | None = None
    puuid: str | None = None
    vcpus: str | None = None
    memory: str | None = None
    volume: str | None = None
    size: str | None = None
    target: str | None = None
    restart_policy: str | None = None
    autostart: str | None = None
    pool: str | None = None  # set_parent: the target's pool for copied disks
    bandwidth: str | None = None  # set_parent: a live migration's limit, MiB/s


class Facts(Protocol):
    """What the preconditions of an action read of a machine: the ORM's row (`perform`), or
    the quick path's (`perform_quick`). A host's also has `is_local` and `hypervisors`."""

    uuid: str
    name: str
    kind: str
    managed: bool
    lock_txid: str | None
    state: str


def available(m: Facts) -> list[str]:
    """The actions valid for the machine now, in a stable order."""
    if isinstance(m, Machine) and m.kind == "host":
        if m.is_local or m.hypervisors:
            return ["evacuate", "provision", "rename"] if m.hypervisors else ["rename"]
        return ["rename", "totaldelete"]
    if m.lock_txid:
        return ["unlock"]
    if not m.managed:
        return ["manage"]
    packable = ["package"] if m.state in ("running", "paused", "shutoff") else []
    sizable = _CHANGE_DEVICES if m.state in _BY_STATE and m.state not in ("missing", "unknown") \
        else []
    return _BY_STATE.get(m.state, []) + packable + sizable + _ALWAYS


def perform(ctx: Context, uuid: str, action: str, v: ActionVars) -> str:
    """Carry out one action and return the message for the answer. The machine's row is
    locked for the checks (a job taking its lock, or an event's resync on another node,
    waits for them); the slow part of an action runs after a commit (`_lifecycle`,
    services/machine_work.py)."""
    m = get_machine(ctx.db, uuid, lock=True)
    access.require(ctx, m, "read", "machine")
    handler = _HANDLERS.get(action)
    if handler is None:
        raise UnknownAction(
            f"unknown action '{action}'; machine actions are: {', '.join(ACTION_NAMES)}")
    _check_permission(ctx, m, action)
    if (refused := refusal(m, action)) is not None:
        raise refused
    return handler(ctx, m, v)


def refusal(m: Facts, action: str) -> EnomalismError | None:
    """Why `action` cannot be done on the machine now, or None: the one precondition check of
    both paths (`perform`, `perform_quick`), in a fixed order. The action is known and the
    caller's permission checked before."""
    if action == "unlock":
        return None if m.lock_txid else InvalidState(f"machine {m.name} is not locked")
    if m.lock_txid:
        return Locked(f"machine {m.uuid} is locked by transaction {m.lock_txid}",
                      txid=m.lock_txid)
    if m.kind == "vm" and not m.managed and action != "manage":
        return InvalidState(f"machine {m.uuid} is not managed; 'manage' it first")
    if action in SNAPSHOT_ACTIONS and _CHANGE_DEVICES[0] in available(m):
        return None  # a VM whose domain is there (services/snapshots.py; paths of their own)
    if action not in available(m):
        what = "host" if m.kind == "host" else f"machine that is {m.state}"
        now = ", ".join(available(m)) or "none"
        return InvalidState(f"cannot {action} a {what}; possible now: {now}")
    return None


# The permission each action needs on the machine. `manage` needs `control` on the machine's
# hypervisor (an unmanaged machine has no owner yet); `unlock` needs an administrator.
PERMISSION = {
    "create": "control", "suspend": "control", "resume": "control", "shutdown": "control",
    "reboot": "control", "poweroff": "control",
    "rename": "modify", "set": "modify", "xmldesc": "modify", "store_xml": "modify",
    "set_parent": "modify", "attach_disk": "modify", "detach_disk": "modify",
    "grow_disk": "modify",
    "totaldelete": "delete",
}


def _check_permission(ctx: Context, m: Machine, action: str) -> None:
    if action == "unlock":
        access.require_admin(ctx, "unlock a machine")
    elif action == "manage":
        # a host has no hypervisor above it: its own permission decides (then its state)
        if not access.holds(ctx, m.parent if m.parent is not None else m, "control"):
            raise Forbidden("you need the 'control' permission on the machine's hypervisor "
                            "to manage it")
    else:
        access.require(ctx, m, PERMISSION[action], "machine")


# What the transactions' actions need (their services check it again when they run).
_TX_PERMISSION = {"package": "export", "provision": "read"}


def permitted(ctx: Context, m: Machine) -> list[str]:
    """The actions valid now that the caller may also do: what the dashboard offers as
    buttons (`GET /rest/permissions/<UUID>/mine/`). Asking changes nothing."""
    allowed = []
    for action in available(m):
        if action in _TX_PERMISSION:
            if access.holds(ctx, m, _TX_PERMISSION[action]):
                allowed.append(action)
            continue
        try:
            _check_permission(ctx, m, action)
        except (Forbidden, NotFound):
            continue
        allowed.append(action)
    return allowed


# -- lifecycle ---------------------------------------------------------------------------

# action -> (the hypervisor's call, the answer's message)
_LIFECYCLE: dict[str, tuple[Callable[..., driver.DomainState | None], str]] = {
    "create": (HypervisorConnection.start, "machine {name} started"),
    "suspend": (HypervisorConnection.suspend, "machine {name} suspended"),
    "resume": (HypervisorConnection.resume, "machine {name} resumed"),
    "shutdown": (HypervisorConnection.shutdown, "shutdown of {name} requested from its guest"),
    "reboot": (HypervisorConnection.reboot, "reboot of {name} requested from its guest"),
    "poweroff": (HypervisorConnection.poweroff, "machine {name} powered off"),
}
# The state an action leaves the machine in, where its own lifecycle event says no more than
# that (see HypervisorRegistry.expecting).
_EXPECTED = {"suspend": "paused", "resume": "running"}


def _lifecycle(action: str) -> Callable[[Context, Machine, ActionVars], str]:
    call, done = _LIFECYCLE[action]

    def run(ctx: Context, m: Machine, _v: ActionVars) -> str:
        conn = ctx.registry.connection(m.vm_parent_uuid)
        # Checked, nothing written yet: let go of SQLite's one write lock (PostgreSQL's lock
        # of this row) while libvirt acts, or a host that hangs (until keepalive gives up)
        # would stop every writer. The state libvirt answers is written after the call.
        commit_before_slow_work(ctx)
        # The state right after the action: what the call itself means where libvirt returns
        # only once it is so (suspend: paused, resume: running), else read on the same domain
        # handle (see driver._act). The name, persistence and definition (XML) are left as
        # stored: an action does not change them, and reading them back costs libvirt calls
        # on every action (docs/performance.md). Events keep them true when something else
        # changes them. Stored inside `expecting`: a write that fails resyncs the machine.
        try:
            with ctx.registry.expecting(m.vm_parent_uuid, m.uuid, _EXPECTED.get(action)):
                after = call(conn, m.uuid)
                if after is None:
                    sync.mark_missing(ctx.db, m.vm_parent_uuid, m.uuid)
                elif after.state is not None:  # else a request the guest acts on; events tell
                    _store_state(ctx, m, after)
        except (NotFound, InvalidState):
            # The inventory was behind libvirt: keep the truth even though the action failed.
            ctx.registry.resync_machine(m.vm_parent_uuid, m.uuid, db=ctx.db)
            unit.keep_now(ctx.db)  # the request's end rolls back on the error
            raise
        return done.format(name=m.name)
    return run


# An action's state write, built once (building and caching the statement again on every
# action costs more than the ORM flush it replaces). A size left out (None) keeps the stored
# one.
_SIZES = ("vcpus", "memory_kib", "max_memory_kib")
_STORE_STATE = update(cast(Table, Machine.__table__)).where(
    Machine.__table__.c.uuid == bindparam("machine_uuid")).values(
    {"state": bindparam("state"), "synced_at": bindparam("synced_at"),
     "updated_at": bindparam("updated_at"),
     **{c: func.coalesce(bindparam(c, type_=Integer), Machine.__table__.c[c]) for c in _SIZES}})


def _state_values(after: driver.DomainState) -> dict:
    now = utcnow()
    return {"state": after.state, "vcpus": after.vcpus, "memory_kib": after.memory_kib,
            "max_memory_kib": after.max_memory_kib, "synced_at": now, "updated_at": now}


def _store_state(ctx: Context, m: Machine, after: driver.DomainState) -> None:
    """Write the state and size libvirt answered after an action on `m` with one Core UPDATE
    rather than the ORM's change tracking and flush, and show them on `m` as already stored:
    the answer reads them, the commit has nothing left to flush."""
    values = _state_values(after)
    ctx.db.execute(_STORE_STATE, {"machine_uuid": m.uuid, **values})
    if after.state != m.state:  # the event the ORM would have written (services/events.py)
        ctx.db.add(events.row("machine.state", m.uuid, m.owner_uuid, uuid=m.uuid, name=m.name,
                              kind=m.kind, state=after.state, previous=m.state))
        ctx.db.info["events"] = True
    for key, value in values.items():
        if value is not None:
            set_committed_value(m, key, value)


# -- the quick path of a lifecycle action ----------------------------------------------------

_M = Machine.__table__
_LOAD = select(_M.c.kind, _M.c.managed, _M.c.lock_txid, _M.c.state, _M.c.owner_uuid,
               _M.c.parent_uuid, _M.c.name).where(_M.c.uuid == bindparam("machine_uuid"))


def _insert(table: Table) -> Insert:
    return insert(table).values({c.key: bindparam(c.key, type_=c.type)
                                 for c in table.columns if c.key != "id"})


@dataclass(frozen=True)
class _Statements:
    load: Prepared
    store: Prepared
    event: Prepared
    audit: Prepared


_PREPARED: "weakref.WeakKeyDictionary[Engine, _Statements]" = weakref.WeakKeyDictionary()


def _statements(engine: Engine) -> _Statements:
    st = _PREPARED.get(engine)
    if st is None:
        st = _PREPARED[engine] = _Statements(
            Prepared(_LOAD, engine), Prepared(_STORE_STATE, engine),
            Prepared(_insert(cast(Table, Event.__table__)), engine),
            Prepared(_insert(cast(Table, AuditEntry.__table__)), engine))
    return st


def perform_quick(db: Database, registry: "HypervisorRegistry", user: Principal, uuid: str,
                  action: str, *, source: str | None = None) -> dict | None:
    """The common case of a lifecycle action, on a DBAPI connection in autocommit mode
    (store/unit.py): an existing, managed, unlocked machine in a state the action fits, asked
    by an administrator or its owner. Anything else returns None before anything is done, and
    `perform` answers it (every error, and other users' permissions, are decided there only).
    Otherwise the same steps as `_lifecycle`: the row is read and checked by `refusal` (a
    statement of its own: no lock is held, as `_lifecycle` holds none once it let go before
    libvirt), libvirt acts, then the state it answered, the state's event and the request's
    audit entry (from `source`) are one short transaction. Returns the answer, audited; the
    caller wakes the event hubs (`events.wake_all`) once the answer is sent, so that their
    read of the new events does not compete with sending it."""
    spec = _LIFECYCLE.get(action)
    if spec is None:
        return None
    try:
        uuid = parse_uuid(uuid, "machine")
    except EnomalismError:
        return None
    call, done = spec
    failed: EnomalismError | None = None
    with unit.autocommit(db.engine) as conn:
        row = conn.one(_statements(db.engine).load, {"machine_uuid": uuid})
        if row is None:
            return None
        m, parent = _Row(uuid, *row), row[5]  # a VM's hypervisor
        # the same preconditions as `perform`; a permission other than an owner's or an
        # administrator's, and every refusal, are answered there
        if m.kind != "vm" or not (user.is_admin or m.owner_uuid == user.uuid) \
                or refusal(m, action) is not None:
            return None
        answer = {"errno": 0, "message": done.format(name=m.name)}
        try:
            with registry.expecting(parent, uuid, _EXPECTED.get(action)):  # _lifecycle
                after = call(registry.connection(parent), uuid)
                if after is not None:
                    with conn.together():
                        for stmt, values in _quick_writes(db.engine, user, source, m, action,
                                                          after, answer):
                            conn.run(stmt, values)
        except (NotFound, InvalidState) as e:
            failed, after = e, None
    # With the connection given back:
    if failed is not None:
        registry.resync_machine(parent, uuid)  # the inventory was behind libvirt
        raise failed
    if after is None:  # the domain is gone: as `_lifecycle` finds it, in one session
        with db.session() as s:
            sync.mark_missing(s, parent, uuid)
            s.add(AuditEntry(**_audit_values(user, source, m, action, answer)))
    return answer


def _quick_writes(engine: Engine, user: Principal, source: str | None, m: "_Row", action: str,
                  after: driver.DomainState, answer: dict) -> Iterator[tuple[Prepared, dict]]:
    """The quick path's one transaction after libvirt answered: the state (a request the
    guest acts on has none: events tell), its event when it changed, the audit entry and the
    entry's event, as the ORM would write them (services/events.py)."""
    st = _statements(engine)
    if after.state is not None:
        yield st.store, {"machine_uuid": m.uuid, **_state_values(after)}
        if after.state != m.state:
            yield st.event, records.event_values(
                "machine.state", m.uuid, m.owner_uuid, uuid=m.uuid, name=m.name, kind=m.kind,
                state=after.state, previous=m.state)
    entry = _audit_values(user, source, m, action, answer)
    yield st.audit, entry
    if events.streamed(engine):
        yield st.event, records.audit_event_values(entry)


def _audit_values(user: Principal, source: str | None, m: "_Row", action: str,
                  answer: dict) -> dict[str, Any]:
    """The entry `api/audit.succeeded` writes for an action without variables."""
    return records.audit_values(
        actor_uuid=user.uuid, actor_name=user.username, source=source, action=f"machine.{action}",
        object_type="machine", object_uuid=m.uuid, object_name=m.name, errno=0,
        message=answer["message"], detail={})


@dataclass(slots=True)
class _Row:
    """The quick path's read of a machine, as `refusal` reads it (Facts)."""

    uuid: str
    kind: str
    managed: bool
    lock_txid: str | None
    state: str
    owner_uuid: str | None
    parent_uuid: str | None
    name: str


def _manage(ctx: Context, m: Machine, _v: ActionVars) -> str:
    """Adopt the domain. An administrator adopts its volumes with it (those no other machine
    owns): they are then deleted and exported with it. Anyone else adopts the domain only.
    The volumes' paths are asked of libvirt after a commit with nothing written, then the
    machine is read again (locked) and written."""
    paths: list[str] = []
    if ctx.user.is_admin and m.kind == "vm" and m.xmldesc:
        conn, xml = ctx.registry.connection(m.vm_parent_uuid), DomainXML(m.xmldesc)
        commit_before_slow_work(ctx)  # checked, nothing written yet
        paths = volumes.resolve_all(conn, xml)
        ctx.db.refresh(m, with_for_update=True)
        if m.lock_txid:  # taken meanwhile (it was managed by another request, then locked)
            raise Locked(f"machine {m.uuid} is locked by transaction {m.lock_txid}",
                         txid=m.lock_txid)
    m.managed = True
    m.owner_uuid = m.owner_uuid or ctx.user.uuid
    volumes.adopt_paths(ctx.db, m.vm_parent_uuid, m.uuid, paths)
    return f"machine {m.name} is now managed"


def _unlock(ctx: Context, m: Machine, _v: ActionVars) -> str:
    txid, m.lock_txid = m.lock_txid, None
    return f"machine {m.name} unlocked (was held by transaction {txid})"


def _store_xml(ctx: Context, m: Machine, _v: ActionVars) -> str:
    """Define the stored XML on the hypervisor (also brings back a missing domain). XML that
    `xmldesc` changed passes the caller's domain-XML policy again (volumes change hands
    meanwhile; an administrator's raw XML is stored by an administrator). Graphics
    passwords, never in the stored XML, are kept from the domain's definition."""
    if not m.xmldesc:
        raise InvalidState(f"machine {m.name} has no stored XML description")
    conn = ctx.registry.connection(m.vm_parent_uuid)
    xml = DomainXML(m.xmldesc)
    hv_uuid, uuid, virt_url = m.vm_parent_uuid, m.uuid, m.vm_parent.virt_url
    pending = m.xml_pending
    with machine_work.locked(ctx, m, "store_xml") as work:
        if pending:
            with work.reading() as rctx:
                volumes.check_xml(rctx, m.vm_parent, xml)
        if conn.name_taken(xml.name or "", other_than=uuid):
            raise Conflict(f"another domain on the hypervisor is named '{xml.name}'")
        conn.check_disks(virt_url, xml)
        # libvirt keeps a domain's name when it is defined again: a new name is a rename first
        current = conn.snapshot(uuid, with_xml=False)
        old_name = current.name if current is not None else None
        renamed = old_name is not None and old_name != xml.name
        if renamed:
            conn.rename(uuid, xml.name or "")  # InvalidState unless the domain is stopped
        if current is not None:
            xml.keep_passwords(DomainXML(conn.domain_xml(uuid, secure=True)))
        try:
            conn.define(xml.to_string())
            snap = conn.snapshot(uuid)
        except EnomalismError:
            if renamed and old_name is not None:
                conn.rename(uuid, old_name)
            raise
        m.xml_pending = False
        sync.store(ctx.db, hv_uuid, uuid, snap)
    return f"XML description of {m.name} stored on the hypervisor"


def _xmldesc(ctx: Context, m: Machine, v: ActionVars) -> str:
    """Replace the stored XML description; `store_xml` puts it on the hypervisor."""
    xml = DomainXML(require(v.xmldesc, "xmldesc", " for the action xmldesc"))
    if xml.uuid is None:
        xml.uuid = m.uuid
    elif parse_uuid(xml.uuid, "domain") != m.uuid:
        raise InvalidInput(f"the XML describes domain {xml.uuid}, not machine {m.uuid}")
    if not xml.name:
        raise InvalidInput("the XML has no <name>")
    volumes.check_xml(ctx, m.vm_parent, xml)
    if xml.name != m.name:  # a name it has already stands, whatever libvirt let it be
        _check_name_free(ctx, m, names.ensure(names.MACHINE, xml.name))
    m.xmldesc = xml.to_string()
    m.xml_pending = True
    return f"XML description of {m.name} replaced; 'store_xml' applies it to the hypervisor"


def _rename(ctx: Context, m: Machine, v: ActionVars) -> str:
    name = names.check(names.MACHINE, v.name, why=" for the action rename")
    if name == m.name:
        return f"machine is already named {name}"
    if m.kind == "host":
        if ctx.db.scalar(select(Machine.uuid).where(Machine.kind == "host", Machine.name == name)):
            raise Conflict(f"a host named '{name}' already exists")
        m.name = name
        return f"host renamed to {name}"
    _check_name_free(ctx, m, name, on_hypervisor=False)
    conn = ctx.registry.connection(m.vm_parent_uuid)
    hv_uuid, uuid = m.vm_parent_uuid, m.uuid
    with machine_work.locked(ctx, m, "rename"):
        if conn.name_taken(name, other_than=uuid):
            raise Conflict(f"another machine on the hypervisor is named '{name}'")
        conn.rename(uuid, name)
        snap = conn.snapshot(uuid)
        if m.xmldesc:
            xml = DomainXML(m.xmldesc)
            xml.name = name
            m.xmldesc = xml.to_string()
        sync.store(ctx.db, hv_uuid, uuid, snap)
        # dnsmasq hands the name to the guest as its host name
        problems = dhcp_entries.follow(ctx, m, [(conn, "modify")])
    if problems:
        return f"machine renamed to {name}; DHCP entries keep the old name: {problems}"
    return f"machine renamed to {name}"


def _check_name_free(ctx: Context, m: Machine, name: str, *, on_hypervisor: bool = True) -> None:
    """The name is no other machine's in the inventory, nor (`on_hypervisor`) in libvirt."""
    taken = ctx.db.scalar(select(Machine.uuid).where(
        Machine.parent_uuid == m.parent_uuid, Machine.name == name, Machine.uuid != m.uuid))
    if taken or on_hypervisor and ctx.registry.connection(m.vm_parent_uuid).name_taken(
            name, other_than=m.uuid):
        raise Conflict(f"another machine on the hypervisor is named '{name}'")


def _set_parent(ctx: Context, m: Machine, v: ActionVars) -> str:
    """Move the machine to another hypervisor: adopt the domain if the target already has it
    (after a migration done elsewhere); move a stopped machine's definition when the target
    sees its disks; otherwise queue a `migrate` transaction (services/moves.py): a running
    machine migrates live, a stopped one moves with its disks. The answer names it (txid)."""
    target = get_hypervisor(ctx.db, require(v.puuid, "puuid", " for the action set_parent"))
    access.require(ctx, target, "control", "hypervisor")
    moves.check_target(m, target)
    bandwidth = moves.parse_bandwidth(v.bandwidth)
    dest = ctx.registry.connection(target.uuid)
    if v.pool and not ctx.user.is_admin and v.pool != dest.pick_pool().name():
        raise PoolNotAllowed(f"storage pool '{v.pool[:80]}' is for administrators; leave pool "
                             "out for the target's default pool")
    xml = DomainXML(m.xmldesc) if m.xmldesc else None
    commit_before_slow_work(ctx)  # checked, nothing written: libvirt is asked next
    adopt = dest.uuid_taken(m.uuid)
    as_job = not adopt and (m.state in moves.LIVE_STATES or (
        m.state == "shutoff" and xml is not None and not _sees_disks(dest, target, xml)))
    ctx.db.refresh(m, with_for_update=True)  # read again, locked: changed meanwhile?
    if (refused := refusal(m, "set_parent")) is not None:
        raise refused
    if as_job:
        return moves.queue_move(ctx, m, target, pool=v.pool, bandwidth=bandwidth)
    with machine_work.locked(ctx, m, "set_parent") as work:
        return _move(ctx, work, m, target, dest)


def _sees_disks(dest: HypervisorConnection, target: Hypervisor, xml: DomainXML) -> bool:
    try:
        dest.check_disks(target.virt_url, xml)
    except InvalidInput:
        return False
    return True


def _move(ctx: Context, work: machine_work.Work, m: Machine, target: Hypervisor,
          dest: HypervisorConnection) -> str:
    """set_parent's work, with the machine locked and no database transaction open while
    libvirt works (services/machine_work.py)."""
    if dest.uuid_taken(m.uuid):
        source_uuid = m.vm_parent_uuid
        snap = dest.snapshot(m.uuid)
        m.parent_uuid = target.uuid  # first, or the snapshot would not take the target's state
        sync.store(ctx.db, target.uuid, m.uuid, snap)
        return dhcp_entries.follow_move(ctx, m, source_uuid, dest,
                      f"machine adopted by hypervisor {target.virt_url}")
    if m.state not in ("shutoff", "missing"):
        raise InvalidState("only a stopped machine's definition moves alone to another "
                           f"hypervisor (it is {m.state}); a running one migrates live")
    if not m.xmldesc:
        raise InvalidState(f"machine {m.name} has no stored XML description to move")
    xml = DomainXML(m.xmldesc)
    if dest.name_taken(xml.name or "", other_than=m.uuid):
        raise Conflict(f"hypervisor {target.virt_url} already has a domain named '{xml.name}'")
    # the same paths may be other volumes there: a non-administrator's disks must be theirs
    with work.reading() as rctx:
        volumes.check_xml(rctx, target, xml)
    dest.check_disks(target.virt_url, xml)
    source_uuid = m.vm_parent_uuid
    if m.state != "missing":
        source = ctx.registry.connection(source_uuid)
        xml.keep_passwords(DomainXML(source.domain_xml(m.uuid, secure=True)))
    dest.define(xml.to_string())
    if m.state != "missing":
        try:
            ctx.registry.connection(source_uuid).undefine(m.uuid)
        except EnomalismError:
            dest.undefine(m.uuid)  # leave things as they were
            raise
    snap = dest.snapshot(m.uuid)
    # the source's event worker may mark it missing meanwhile (its domain went from there):
    # read again, and write the state even if it reads unchanged, or that write would stand
    ctx.db.refresh(m)
    m.parent_uuid = target.uuid
    m.xml_pending = False
    sync.store(ctx.db, target.uuid, m.uuid, snap)
    flag_modified(m, "state")
    return dhcp_entries.follow_move(ctx, m, source_uuid, dest,
                                    f"machine moved to hypervisor {target.virt_url}")


def _release_dhcp(ctx: Context, conn: HypervisorConnection, m: Machine) -> list[tuple]:
    """Remove the DHCP host entries of the machine's leases (the leases go with the record);
    returns them (network, MAC, address) for `_forget_dhcp_leases`."""
    leases = list(machine_leases(ctx.db, m.uuid))
    commit_before_slow_work(ctx)  # nothing written: read, with the machine locked
    out = []
    for lease, n in leases:
        if lease.mac and conn.has_network(n.bridge):  # an entry is made only for a MAC
            conn.dhcp_host(n.bridge, mac=lease.mac, ip=lease.address, name="",
                           command="delete")
            out.append((n.bridge, lease.mac, lease.address))
    return out


def _forget_dhcp_leases(conn: HypervisorConnection, where: str, entries: list[tuple]) -> None:
    """Once the guest is gone: dnsmasq would keep its lease (an hour by default) and give the
    next machine leased the address another one meanwhile. It forgets them here on a local
    hypervisor; elsewhere a provision passes over the addresses until the leases end."""
    for network, mac, ip in entries:
        conn.release_dhcp_lease(where, network, mac=mac, ip=ip)


def _totaldelete(ctx: Context, m: Machine, _v: ActionVars) -> str:
    """Destroy, undefine, delete the machine's own volumes (services/volumes.py) that no other
    domain uses, forget the machine. Disks on volumes it does not own are left alone."""
    if m.kind == "host":
        ctx.db.delete(m)
        return f"host {m.name} removed"
    conn = None if m.state == "missing" else ctx.registry.connection(m.vm_parent_uuid)
    with machine_work.locked(ctx, m, "totaldelete"):
        return _delete_vm(ctx, m, conn)


def _delete_vm(ctx: Context, m: Machine, conn: HypervisorConnection | None) -> str:
    """totaldelete's work, with the machine locked and no database transaction open while
    libvirt works (services/machine_work.py)."""
    deleted: list[str] = []
    owned = volumes.owned(ctx.db, m.uuid)  # read with the leases, before libvirt works
    where = m.vm_parent.virt_url  # the hypervisor's URI: is it this machine's (dhcp_release)?
    if conn is None:  # missing, undefined behind our back: its DHCP entries go all the same
        try:
            conn = ctx.registry.connection(m.vm_parent_uuid)
            _forget_dhcp_leases(conn, where, _release_dhcp(ctx, conn, m))
        except EnomalismError:
            pass  # the hypervisor is out of reach: the record goes, as before
    else:
        entries = _release_dhcp(ctx, conn, m)
        xml_text = conn.domain_xml(m.uuid) if conn.uuid_taken(m.uuid) else m.xmldesc
        xml = DomainXML(xml_text) if xml_text else None
        keep = conn.disks_in_use(except_uuid=m.uuid)
        try:  # snapshots live inside the volumes: out of those that stay, too
            conn.delete_snapshots(m.uuid)
        except EnomalismError:
            pass  # a disk gone or unreadable: undefine drops their metadata all the same
        conn.undefine(m.uuid)
        _forget_dhcp_leases(conn, where, entries)
        if xml is not None:
            try:
                deleted = conn.delete_volumes(xml, keep=keep, only=owned)
            except HypervisorError as e:
                ctx.db.delete(m)  # the domain is gone already; say what is left behind
                return f"machine {m.name} deleted, but not all its volumes: {e.message}"
    ctx.db.delete(m)
    vols = f" and {len(deleted)} volume(s)" if deleted else ""
    return f"machine {m.name}{vols} deleted"


def _set(ctx: Context, m: Machine, v: ActionVars) -> str:
    """Size (services/resize.py) and restart policy and autostart
    (services/restart_policy.py), all checked before anything changes."""
    policy, autostart = restart_policy.parse(v.restart_policy, v.autostart)
    if policy is None and autostart is None:
        return resize.set_size(ctx, m, vcpus=v.vcpus, memory=v.memory)
    sized = v.vcpus not in (None, "") or v.memory not in (None, "")
    if sized:
        resize.check(vcpus=v.vcpus, memory=v.memory)
    said = restart_policy.set_policy(ctx, m, restart_policy=policy, autostart=autostart)
    if sized:
        said += "; " + resize.set_size(ctx, m, vcpus=v.vcpus, memory=v.memory)
    return said


_HANDLERS: dict[str, Callable[[Context, Machine, ActionVars], str]] = {
    **{action: _lifecycle(action) for action in _LIFECYCLE},
    "manage": _manage,
    "unlock": _unlock,
    "store_xml": _store_xml,
    "xmldesc": _xmldesc,
    "rename": _rename,
    "set_parent": _set_parent,
    "set": lambda ctx, m, v: _set(ctx, m, v),
    "attach_disk": lambda ctx, m, v: pools.attach_disk(ctx, m, volume=v.volume, size=v.size),
    "detach_disk": lambda ctx, m, v: pools.detach_disk(ctx, m, target=v.target),
    "grow_disk": lambda ctx, m, v: pools.grow_disk(ctx, m, target=v.target, size=v.size),
    "totaldelete": _totaldelete,
}
# package and provision start transactions (services/provisioning.py) and answer with their ids.
# evacuate (a host's) queues a parent transaction (services/moves.py).
ACTION_NAMES = sorted([*_HANDLERS, "evacuate", "package", "provision"])
