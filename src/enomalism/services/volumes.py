"""Which storage volumes are a machine's own, and what a caller may name in domain XML.

A volume is a machine's when the project created it for the machine (provision) or when an
administrator adopted it with the machine (define, manage). Only a machine's own volumes are
deleted with it (`totaldelete`) or copied out (`package`). A non-administrator attaches a
volume only through a machine they may modify: its owner, or a grant of `modify` on it.
"""

from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.services import access
from enomalism.services.context import Context
from enomalism.store.models import Hypervisor, Machine, Network, Volume
from enomalism.virt import policy
from enomalism.virt.domxml import DomainXML
from enomalism.virt.hypervisor import HypervisorConnection


def owned(db: Session, machine_uuid: str) -> set[str]:
    """The paths of the machine's own volumes."""
    return set(db.scalars(select(Volume.path).where(Volume.machine_uuid == machine_uuid)))


def record(db: Session, hv_uuid: str, machine_uuid: str, paths: Iterable[str]) -> None:
    """Volumes the project just created for the machine are its own (a leftover row for the
    same path, of a volume deleted behind our back, is taken over)."""
    for path in dict.fromkeys(paths):
        row = db.get(Volume, (hv_uuid, path))
        if row is None:
            db.add(Volume(hypervisor_uuid=hv_uuid, path=path, machine_uuid=machine_uuid))
        else:
            row.machine_uuid, row.owner_uuid = machine_uuid, None


def resolve_all(conn: HypervisorConnection, xml: DomainXML) -> list[str]:
    """The paths of the volumes the XML's disks name (read from libvirt before a database
    write: services/machine_work.py)."""
    return [p for s in policy.disk_sources(xml) if (p := resolve(conn, s)) is not None]


def adopt_paths(db: Session, hv_uuid: str, machine_uuid: str, paths: Iterable[str]) -> None:
    """An administrator's machine (defined or managed) takes the volumes at `paths` (those its
    disks name, `resolve_all`) that are no other machine's."""
    for path in paths:
        if db.get(Volume, (hv_uuid, path)) is None:
            db.add(Volume(hypervisor_uuid=hv_uuid, path=path, machine_uuid=machine_uuid))
            db.flush()


def resolve(conn: HypervisorConnection, source: policy.DiskSource) -> str | None:
    """The path of the volume a disk names; None when it is no volume libvirt knows."""
    return conn.volume_path(path=source.path, pool=source.pool, volume=source.volume)


def usable_networks(ctx: Context) -> Callable[[str], bool]:
    """A network or bridge is usable when it is the bridge of a network the caller may read."""
    q = select(Network.bridge)
    if (clause := access.readable(ctx, Network)) is not None:
        q = q.where(clause)
    names = set(ctx.db.scalars(q))
    return lambda name: ctx.user.is_admin or name in names


def rights(ctx: Context, hv: Hypervisor, *, disk: Callable[[policy.DiskSource], bool] | None = None,
           networks: Iterable[str] = (), who: str = "for non-administrators") -> policy.Rights:
    """What the caller may name in domain XML for `hv`: volumes of machines they may modify
    (or `disk`'s answer), networks they may read (and `networks`), the hypervisor's own
    emulators and firmware."""
    conn = ctx.registry.connection(hv.uuid)
    extra = set(networks)
    usable = usable_networks(ctx)

    def attachable(source: policy.DiskSource) -> bool:
        path = resolve(conn, source)
        if not path:
            return False
        row = ctx.db.get(Volume, (hv.uuid, path))
        owner = ctx.db.get(Machine, row.machine_uuid) \
            if row is not None and row.machine_uuid else None  # a user's free one: attach_disk
        return owner is not None and access.holds(ctx, owner, "modify") \
            and source.format == declared_format(conn, owner, path)

    def network(name: str) -> bool:
        return name in extra or usable(name)

    return policy.Rights(
        disk=disk or attachable, network=network, bridge=network,
        emulator=lambda path: path in conn.emulators(),
        loader=lambda path: path in conn.firmware_images(), who=who)


def declared_format(conn: HypervisorConnection, owner: Machine, path: str) -> str | None:
    """The format the owning machine's domain reads the volume in (None: it names no such
    disk). A non-administrator's XML must read it the same way: a raw disk's first bytes are
    the guest's, and read as qcow2 a header written there names any file as its backing."""
    if not owner.xmldesc:
        return None
    xml = DomainXML(owner.xmldesc)
    return next((s.format for s in policy.disk_sources(xml) if resolve(conn, s) == path), None)


def check_xml(ctx: Context, hv: Hypervisor, xml: DomainXML) -> None:
    """Domain XML from the caller: an administrator's is taken as it is (raw XML, as Proxmox
    keeps `args` to root); anyone else's must pass the policy (virt/policy.py)."""
    if not ctx.user.is_admin:
        policy.check(xml, rights(ctx, hv))
