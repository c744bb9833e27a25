"""Machines: listing from the inventory, defining new VMs, resyncs, cluster membership."""

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import defer, selectinload

from enomalism.errors import Conflict, InvalidInput
from enomalism.runtime import sync
from enomalism.services import access, machine_work, volumes
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import get_cluster, get_hypervisor, get_machine, parse_uuid, require
from enomalism.store.models import Cluster, ClusterMember, Hypervisor, Machine, User, new_uuid
from enomalism.virt.domxml import DomainXML, without_passwords


def shown_xml(m: Machine) -> str | None:
    """The machine's XML as every reader gets it: no graphics passwords."""
    return without_passwords(m.xmldesc)


def get(ctx: Context, uuid: str, permission: str = "read") -> Machine:
    """A machine the caller may read (404 otherwise) and act on with `permission` (403)."""
    m = get_machine(ctx.db, uuid)
    access.require(ctx, m, permission, "machine")
    return m


def _filtered(ctx: Context, q: Select, *, kind: str | None, hypervisor: str | None,
              state: str | None, managed: bool | None, search: str | None,
              host: str | None, cluster: str | None = None, owner: str | None = None
              ) -> Select:
    if (clause := access.readable(ctx, Machine)) is not None:
        q = q.where(clause)
    if kind:
        if kind not in ("host", "vm"):
            raise InvalidInput("kind is 'host' or 'vm'")
        q = q.where(Machine.kind == kind)
    if hypervisor:
        q = q.where(Machine.parent_uuid == parse_uuid(hypervisor, "hypervisor"))
    if state:
        q = q.where(Machine.state == state)
    if managed is not None:
        q = q.where(Machine.managed == managed)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(Machine.name.ilike(f"%{escaped}%", escape="\\"))
    if host:
        on_host = select(Hypervisor.uuid).where(
            Hypervisor.machine_uuid == parse_uuid(host, "host"))
        q = q.where(Machine.parent_uuid.in_(on_host))
    if cluster:  # an id or a name; only narrows what the caller reads, so it reveals nothing
        members = select(ClusterMember.machine_uuid).join(
            Cluster, Cluster.uuid == ClusterMember.cluster_uuid).where(
            or_(Cluster.uuid == cluster, Cluster.name == cluster))
        q = q.where(Machine.uuid.in_(members))
    if owner:  # a user's id or name, likewise
        q = q.where(Machine.owner_uuid.in_(
            select(User.uuid).where(or_(User.uuid == owner, User.username == owner))))
    return q


def list_machines(
    ctx: Context, *, kind: str | None = None, hypervisor: str | None = None,
    state: str | None = None, managed: bool | None = None, search: str | None = None,
    host: str | None = None, cluster: str | None = None, owner: str | None = None,
    page: tuple[int, int] | None = None, xml: bool = True,
) -> list[Machine]:
    """The machines the caller may read, from the inventory (never from libvirt); `search`
    is a case-insensitive part of the name, `host` a host machine's UUID, `page` an
    (offset, limit) slice of the sorted list (the dashboard's pages: docs/dashboard.md);
    `cluster` and `owner` an id or a name; `xml` False leaves each domain's XML unread."""
    # Clusters and hypervisors in one query each, not one per machine when the list is shaped.
    q = select(Machine).order_by(Machine.kind, Machine.name, Machine.uuid).options(
        selectinload(Machine.clusters), selectinload(Machine.hypervisors))
    if not xml:
        q = q.options(defer(Machine.xmldesc))
    q = _filtered(ctx, q, kind=kind, hypervisor=hypervisor, state=state, managed=managed,
                  search=search, host=host, cluster=cluster, owner=owner)
    if page is not None:
        q = q.offset(page[0]).limit(page[1])
    return list(ctx.db.scalars(q))


def count_machines(ctx: Context, *, kind: str | None = None, hypervisor: str | None = None,
                   state: str | None = None, search: str | None = None,
                   host: str | None = None, cluster: str | None = None,
                   owner: str | None = None) -> int:
    """How many machines `list_machines` finds with the same filters, without a page."""
    q = _filtered(ctx, select(func.count()).select_from(Machine), kind=kind,
                  hypervisor=hypervisor, state=state, managed=None, search=search, host=host,
                  cluster=cluster, owner=owner)
    return ctx.db.scalar(q) or 0


def list_machine_ids(ctx: Context) -> list[str]:
    q = select(Machine.uuid).order_by(Machine.kind, Machine.name, Machine.uuid)
    if (clause := access.readable(ctx, Machine)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def define_vm(ctx: Context, *, xmldesc: str | None, hvmuuid: str | None) -> Machine:
    """Define a new persistent domain from XML on a hypervisor, as `virsh define` does.
    The UUID is fixed before libvirt sees the XML so the new machine is ours from the start.
    A non-administrator's XML passes the domain-XML policy; an administrator's machine
    adopts the volumes its disks name that are no other machine's. The machine's record is
    written first, locked (services/machine_work.py): libvirt checks and defines with no
    database transaction open, and a failure removes the domain and the record again."""
    hv = get_hypervisor(ctx.db, require(hvmuuid, "hvmuuid", " (the hypervisor to define on)"))
    access.require(ctx, hv, "control", "hypervisor")
    xml = DomainXML(require(xmldesc, "xmldesc"))
    if not xml.name:
        raise InvalidInput("the XML has no <name>")
    if xml.uuid is None:
        xml.uuid = new_uuid()
    uuid = parse_uuid(xml.uuid, "domain")
    xml.uuid = uuid
    if ctx.db.get(Machine, uuid) is not None:
        raise Conflict(f"a machine with UUID {uuid} already exists")
    conn = ctx.registry.connection(hv.uuid)
    hv_uuid, virt_url = hv.uuid, hv.virt_url
    m = Machine(uuid=uuid, kind="vm", name=xml.name, parent_uuid=hv_uuid, managed=True,
                state="shutoff", owner_uuid=ctx.user.uuid)
    ctx.db.add(m)
    ctx.db.flush()
    with machine_work.locked(ctx, m, "define",
                             undo_log=[{"kind": "machine", "uuid": uuid}]) as work:
        with work.reading() as rctx:
            volumes.check_xml(rctx, hv, xml)
        if conn.uuid_taken(uuid):
            raise Conflict(f"the hypervisor already has a domain with UUID {uuid}")
        if conn.name_taken(xml.name):
            raise Conflict(f"the hypervisor already has a domain named '{xml.name}'")
        conn.check_disks(virt_url, xml)
        work.will_create("domain", hypervisor=hv_uuid, uuid=uuid)  # nothing half-made
        conn.define(xml.to_string())
        snap = conn.snapshot(uuid)
        adopted = volumes.resolve_all(conn, xml) if ctx.user.is_admin else []
        sync.store(ctx.db, hv_uuid, uuid, snap)
        volumes.adopt_paths(ctx.db, hv_uuid, uuid, adopted)
    return m


def trigger_status_updates(ctx: Context, uuid: str) -> str:
    """Resync one VM from libvirt, or every hypervisor of a host."""
    m = get(ctx, uuid)
    if m.kind == "vm":
        # In a session of its own that takes the write lock first: a GET's session is a reader,
        # and a reader that starts writing fails when another writer committed meanwhile.
        hv_uuid, vm_uuid = m.vm_parent_uuid, m.uuid
        commit_before_slow_work(ctx)
        ctx.registry.resync_machine(hv_uuid, vm_uuid)
        ctx.db.refresh(m)
        return f"machine {m.name} is {m.state}"
    hv_uuids, name = [hv.uuid for hv in m.hypervisors], m.name
    commit_before_slow_work(ctx)  # the bulk resync writes in sessions of its own
    for hv_uuid in hv_uuids:
        ctx.registry.resync_hypervisor(hv_uuid)
    return f"{len(hv_uuids)} hypervisor(s) of {name} resynchronised"


def _clusters(ctx: Context, clusters: list[str]) -> list[Cluster]:
    """The named clusters, each one the caller may modify."""
    if not clusters:
        require(None, "clusters", " (one or more cluster UUIDs)")
    targets = list(dict.fromkeys(get_cluster(ctx.db, c) for c in clusters))  # each once
    for c in targets:
        access.require(ctx, c, "modify", "cluster")
    return targets


def add_to_clusters(ctx: Context, uuid: str, clusters: list[str]) -> Machine:
    """Needs `admin` on the machine, as granting on it would: whoever holds a grant on the
    cluster reads the machine (services/access.py)."""
    m = get(ctx, uuid, "admin")
    targets = _clusters(ctx, clusters)
    for c in targets:
        if c not in m.clusters:
            m.clusters.append(c)
    return m


def remove_from_clusters(ctx: Context, uuid: str, clusters: list[str]) -> Machine:
    m = get(ctx, uuid)
    targets = _clusters(ctx, clusters)
    for c in targets:
        if c not in m.clusters:
            raise InvalidInput(f"machine {m.name} is not in cluster {c.name}")
    for c in targets:
        m.clusters.remove(c)
    return m
