"""Storage as a resource (issue 16): pools and their volumes with owners, volumes a user makes
and deletes, and a machine's disks attached, detached and grown.

Who owns what (docs/access.md, "Volumes and their owners"): a volume is a machine's own (the
project made it for the machine, or it was attached to it here) or, made through
`PUT /rest/pools/<UUID>/volumes/` or detached from a machine, a user's, attached to nothing.
A non-administrator sees the volumes they own and those of machines they may read, deletes only
their own free ones, and attaches only their own free ones; pools carry no grants, so they make
volumes only in the hypervisor's default pool. Every libvirt call runs with no database write
lock held (commit first; a machine's disks change with the machine locked,
services/machine_work.py).
"""

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from enomalism.errors import (
    Conflict,
    EnomalismError,
    Forbidden,
    InvalidInput,
    MissingVariable,
    NotFound,
    PoolNotAllowed,
    VolumeNotAllowed,
)
from enomalism.runtime import sync
from enomalism.services import access, machine_work
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import parse_uuid, require
from enomalism.store.models import Hypervisor, Machine, Volume
from enomalism.virt.domxml import DomainXML

GIB = 1 << 30
MAX_GIB = 64 << 10


@dataclass
class Found:
    hv: Hypervisor
    conn: Any
    pool: Any


def _gib(value: str | None, variable: str) -> int:
    text = require(value, variable, " (GiB)")
    try:
        n = int(text)
    except ValueError:
        raise InvalidInput(f"{variable} must be a whole number of GiB, not '{text[:40]}'") \
            from None
    if not 1 <= n <= MAX_GIB:
        raise InvalidInput(f"{variable} must be between 1 and {MAX_GIB} GiB, not {n}")
    return n * GIB


def _hypervisors(ctx: Context, permission: str = "read") -> list[Hypervisor]:
    return [hv for hv in ctx.db.scalars(select(Hypervisor).order_by(Hypervisor.virt_url))
            if access.holds(ctx, hv, permission)]


def list_pools(ctx: Context) -> list[dict]:
    """The pools of every connected hypervisor the caller may read."""
    out = []
    for hv in _hypervisors(ctx):
        try:
            conn = ctx.registry.connection(hv.uuid)
            found = conn.storage_pools()
        except EnomalismError:
            continue  # not connected: its pools are not known now
        out += [{"name": p.name, "uuid": p.uuid, "hypervisor": hv.uuid, "active": p.active,
                 "capacity": p.capacity, "allocation": p.allocation, "available": p.available}
                for p in found]
    return out


def find_pool(ctx: Context, uuid: str) -> Found:
    """The pool with this UUID on a hypervisor the caller may read (404 otherwise)."""
    uuid = parse_uuid(uuid, "storage pool")
    for hv in _hypervisors(ctx):
        try:
            conn = ctx.registry.connection(hv.uuid)
            return Found(hv, conn, conn.storage_pool(uuid))
        except EnomalismError:
            continue
    raise NotFound(f"no storage pool with UUID {uuid}")


def _users_of(ctx: Context, hv_uuid: str) -> dict[str, str]:
    """Disk path -> the machine whose stored definition names it (the inventory, not libvirt)."""
    out: dict[str, str] = {}
    for uuid, xml in ctx.db.execute(select(Machine.uuid, Machine.xmldesc).where(
            Machine.parent_uuid == hv_uuid, Machine.kind == "vm")):
        if xml:
            for d in DomainXML(xml).disks():
                out.setdefault(d.path, uuid)
    return out


def list_volumes(ctx: Context, pool_uuid: str) -> list[dict]:
    """The pool's volumes the caller may see, with their owner and the machine using each."""
    f = find_pool(ctx, pool_uuid)
    vols = f.pool.volumes()
    rows = {v.path: v for v in ctx.db.scalars(select(Volume).where(
        Volume.hypervisor_uuid == f.hv.uuid, Volume.path.in_([v.path for v in vols])))}
    users = _users_of(ctx, f.hv.uuid)
    out = []
    for v in vols:
        row = rows.get(v.path)
        owner_machine = ctx.db.get(Machine, row.machine_uuid) \
            if row is not None and row.machine_uuid else None
        owner = row.owner_uuid if row is not None and row.machine_uuid is None else \
            owner_machine.owner_uuid if owner_machine is not None else None
        using = ctx.db.get(Machine, users[v.path]) if v.path in users else None
        if not ctx.user.is_admin:
            mine = owner == ctx.user.uuid or (
                owner_machine is not None and access.holds(ctx, owner_machine, "read"))
            if not mine:
                continue
            if using is not None and not access.holds(ctx, using, "read"):
                using = None
        out.append({"name": v.name, "path": v.path, "capacity": v.capacity,
                    "allocation": v.allocation, "format": v.format, "owner": owner,
                    "machine": using.uuid if using is not None else None})
    return out


def _may_use_pool(ctx: Context, f: Found) -> None:
    access.require(ctx, f.hv, "control", "hypervisor")
    if not ctx.user.is_admin and f.pool.name() != f.conn.pick_pool().name():
        raise PoolNotAllowed(f"storage pool '{f.pool.name()}' is for administrators; "
                             "non-administrators make volumes in the hypervisor's default pool")


def create_volume(ctx: Context, pool_uuid: str, *, name: str | None, size: str | None) -> dict:
    """A blank volume of `size` GiB owned by the caller, attached to nothing."""
    f = find_pool(ctx, pool_uuid)
    _may_use_pool(ctx, f)
    name = require(name, "name", " (the new volume's name)")
    if len(name) > 200:
        raise InvalidInput("a volume name has at most 200 characters")
    nbytes = _gib(size, "size")
    hv_uuid, user = f.hv.uuid, ctx.user.uuid
    commit_before_slow_work(ctx)  # checked, nothing written: no write lock while libvirt works
    path = f.pool.create_volume(name, nbytes)
    try:
        ctx.db.add(Volume(hypervisor_uuid=hv_uuid, path=path, machine_uuid=None,
                          owner_uuid=user))
        ctx.db.flush()
    except Exception:
        f.conn.delete_volume(path)
        raise
    return {"name": name, "path": path, "capacity": nbytes, "owner": user, "machine": None}


def _volume_row(ctx: Context, hv_uuid: str, path: str) -> Volume | None:
    return ctx.db.get(Volume, (hv_uuid, path))


def delete_volume(ctx: Context, pool_uuid: str, name: str) -> str:
    """Delete a free volume: the caller's own (administrators: any that is no machine's and no
    domain uses)."""
    f = find_pool(ctx, pool_uuid)
    vol = next((v for v in f.pool.volumes() if v.name == name), None)
    row = _volume_row(ctx, f.hv.uuid, vol.path) if vol is not None else None
    mine = row is not None and row.machine_uuid is None and row.owner_uuid == ctx.user.uuid
    if vol is None or not (mine or ctx.user.is_admin):
        raise NotFound(f"storage pool {f.pool.name()} has no volume '{name}' of yours")
    if row is not None and row.machine_uuid is not None:
        raise Conflict(f"volume '{name}' is a disk of machine {row.machine_uuid}: detach it "
                       "first (action detach_disk), or delete the machine")
    path = vol.path
    commit_before_slow_work(ctx)
    if path in f.conn.disks_in_use(except_uuid=""):
        raise Conflict(f"volume '{name}' is a disk of a domain on the hypervisor")
    f.conn.delete_volume(path)
    if row is not None:
        ctx.db.delete(row)
    return f"volume {name} deleted"


# -- a machine's disks (actions attach_disk, detach_disk, grow_disk) --------------------------

def _resolve(conn: Any, ref: str) -> str:
    """A volume named by path, or by name in one of the hypervisor's active pools."""
    if ref.startswith("/"):
        return conn.volume_info(ref).path
    matches = [v.path for p in conn.storage_pools() if p.active
               for v in conn.storage_pool(p.uuid).volumes() if v.name == ref]
    if not matches:
        raise NotFound(f"no volume '{ref}' on the machine's hypervisor")
    if len(matches) > 1:
        raise InvalidInput(f"several pools have a volume '{ref}': name it by path "
                           f"({', '.join(matches)})")
    return matches[0]


def attach_disk(ctx: Context, m: Machine, *, volume: str | None, size: str | None) -> str:
    """Attach a free volume the caller owns (`volume`), or a new blank one of `size` GiB in
    the hypervisor's default pool; either becomes the machine's own (deleted with it)."""
    if bool(volume) == bool(size):
        raise MissingVariable("attach_disk needs either volume (a volume's name or path) or "
                              "size (GiB of a new blank disk)")
    conn = ctx.registry.connection(m.vm_parent_uuid)
    hv_uuid, uuid, name = m.vm_parent_uuid, m.uuid, m.name
    if volume:
        path = _resolve(conn, volume)
        row = _volume_row(ctx, hv_uuid, path)
        if row is not None and row.machine_uuid is not None:
            raise Conflict(f"volume '{volume}' is a disk of machine {row.machine_uuid}")
        if not ctx.user.is_admin and (row is None or row.owner_uuid != ctx.user.uuid):
            raise VolumeNotAllowed(f"volume '{volume}' is not yours to attach")
        nbytes = 0  # an existing volume: no new one made
    else:
        nbytes = _gib(size, "size")
        pool = conn.pick_pool()
        pool.check_space(nbytes)
    with machine_work.locked(ctx, m, "attach_disk") as work:
        if volume:
            if path in conn.disks_in_use(except_uuid=""):
                raise Conflict(f"volume '{volume}' is a disk of a domain on the hypervisor")
            target = conn.attach_disk(uuid, path)
        else:
            vol_name = f"{name}-disk-{secrets.token_hex(3)}.qcow2"
            planned = pool.planned_path(vol_name)
            work.will_create("volume", hypervisor=hv_uuid, path=planned)
            path = pool.create_volume(vol_name, nbytes)
            target = conn.attach_disk(uuid, path)
        row = ctx.db.get(Volume, (hv_uuid, path))
        if row is None:
            ctx.db.add(Volume(hypervisor_uuid=hv_uuid, path=path, machine_uuid=uuid))
        else:  # its owner stays on record: a detach gives it back (detach_disk)
            row.machine_uuid = uuid
        sync.store(ctx.db, hv_uuid, uuid, conn.snapshot(uuid))
    return f"disk {target} ({path}) attached to {name}"


def detach_disk(ctx: Context, m: Machine, *, target: str | None) -> str:
    """Take a disk off the machine; the volume stays, attached to nothing: a volume attached
    with attach_disk goes back to the user who owned it, one made for the machine becomes the
    machine's owner's (to delete, or attach elsewhere). Never the caller's: `modify` on a
    machine is not `export` of its data."""
    target = require(target, "target", " (the disk's device name, e.g. vdb)")
    conn = ctx.registry.connection(m.vm_parent_uuid)
    hv_uuid, uuid, name, owner = m.vm_parent_uuid, m.uuid, m.name, m.owner_uuid
    with machine_work.locked(ctx, m, "detach_disk"):
        path, device = conn.disk_path(uuid, target)
        if device != "disk":
            raise InvalidInput(f"{target} is a {device}, not a disk")
        conn.detach_disk(uuid, target)
        row = ctx.db.get(Volume, (hv_uuid, path))
        if row is not None and row.machine_uuid == uuid:
            row.machine_uuid, row.owner_uuid = None, row.owner_uuid or owner
        sync.store(ctx.db, hv_uuid, uuid, conn.snapshot(uuid))
    return f"disk {target} ({path}) detached from {name}"


def grow_disk(ctx: Context, m: Machine, *, target: str | None, size: str | None) -> str:
    """Grow one of the machine's own disks to `size` GiB (offline: the volume; running: the
    block resize). Administrators may grow any of its disks."""
    target = require(target, "target", " (the disk's device name, e.g. vda)")
    nbytes = _gib(size, "size")
    conn = ctx.registry.connection(m.vm_parent_uuid)
    hv_uuid, uuid, name = m.vm_parent_uuid, m.uuid, m.name
    path, device = conn.disk_path(uuid, target)
    if device != "disk":
        raise InvalidInput(f"{target} is a {device}, not a disk")
    row = _volume_row(ctx, hv_uuid, path)
    if not ctx.user.is_admin and (row is None or row.machine_uuid != uuid):
        raise Forbidden(f"disk {target} is not one of the machine's own volumes")
    with machine_work.locked(ctx, m, "grow_disk"):
        live = conn.grow_disk(uuid, target, path, nbytes)
    return f"disk {target} of {name} grown to {nbytes // GIB} GiB" + (" (live)" if live else "")
