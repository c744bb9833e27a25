"""The long work of section 6 and 2.19/2.20, as transaction handlers and the requests that
queue them: package retrieval, provisioning a package onto a hypervisor, and packaging a
machine into a new local package.

Provisioning places each disk in the hypervisor's storage through libvirt's storage API (so a
remote host works the same): the package's image is uploaded once per pool as a base volume,
and each new machine gets a copy-on-write qcow2 overlay on it (a full copy where the pool
cannot do backing files). The domain XML is rewritten (new UUID, name, MAC addresses, disk
paths), checked by the domain-XML policy whoever provisions it (a package is data from the
internet: virt/policy.py) and defined. Everything the job creates is on its undo log first,
so a failed or cancelled provision leaves no domain, no volume and no machine behind.
"""

import dataclasses
import functools
import io
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from enomalism.errors import (
    Conflict,
    EnomalismError,
    Forbidden,
    ForeignDisk,
    HypervisorError,
    InvalidInput,
    InvalidState,
    Locked,
    NotFound,
)
from enomalism.feeds import archive
from enomalism.feeds import download as dl
from enomalism.jobs.locks import named_lock
from enomalism.jobs.runner import JobCancelled, JobContext
from enomalism.services import (
    access,
    cloudinit,
    names,
    networks,
    placement,
    transactions,
    volumes,
)
from enomalism.services.context import Context, Principal, commit_before_slow_work
from enomalism.services.lookup import get_hypervisor, get_machine, parse_uuid, require
from enomalism.services.repositories import (
    active_transaction,
    auth_of,
    download_permission,
    get_package,
    retrieving_transaction,
)
from enomalism.store import files
from enomalism.store.models import (
    BaseVolume,
    Cluster,
    Hypervisor,
    Lease,
    Machine,
    Package,
    Transaction,
    User,
    new_uuid,
    utcnow,
)
from enomalism.virt import builder, driver, policy, storage
from enomalism.virt.domxml import DomainXML, StaticNic
from enomalism.virt.hypervisor import HypervisorConnection
from enomalism.virt.pool import StoragePool
from enomalism.virt.uri import is_local

COMPATIBLE = placement.COMPATIBLE
DOMAIN_TYPE = {"kvm": "kvm", "qemu": "qemu", "test": "test"}


def packages_dir(job: JobContext) -> Path:
    return files.private_dir(Path(job.runner.packages_dir))


@contextmanager
def _one_at_a_time(job: JobContext, *key: str) -> Iterator[None]:
    """Jobs fetching the same package, or uploading the same base volume, take turns, on
    every node sharing the database (the second then finds the first one's result); waiting,
    a job still sees its cancel."""
    with named_lock(job.db, ":".join(key), job.txid, wait=job.check_cancelled,
                    still_mine=lambda: not job.taken_over()):
        yield


# -- requests ------------------------------------------------------------------------------

def queue_retrieval(ctx: Context, uuid: str) -> Transaction | None:
    """Queue fetching a package into the local cache; None when it is cached already. The
    transaction fetching it now (a retrieval, or a provision's first step) is returned rather
    than a second one queued behind it; else a retrieval queued already."""
    p = get_package(ctx, uuid)
    if p.state == "cached":
        return None
    running = retrieving_transaction(ctx, p) or active_transaction(ctx, p)
    if running is not None:
        return running
    if not p.url:
        raise InvalidState(f"package {p.name} has no download URL")
    return transactions.enqueue(ctx, "retrieve", target=p.uuid, params={"package": p.uuid})


def check_compatible(p: Package, hv: Hypervisor) -> None:
    problem = placement.incompatibility(p.virt_class, p.arch, hv)
    if problem:
        raise InvalidInput(f"package {p.name} is {problem}")


@functools.lru_cache(maxsize=256)
def _size_in_file(path: str, _mtime_ns: int, _size: int) -> tuple[int | None, int | None]:
    _manifest, xml = archive.read_package(Path(path))
    dom = DomainXML(xml)
    return dom.memory_kib, dom.vcpus


def package_size(p: Package) -> tuple[int | None, int | None]:
    """The memory (KiB) and vCPUs a machine provisioned from the package starts with, from its
    domain XML; (None, None) until the package is cached (a feed does not say). Read from the
    file once per version of it."""
    if p.state != "cached" or not p.path:
        return None, None
    try:
        st = Path(p.path).stat()
        return _size_in_file(p.path, st.st_mtime_ns, st.st_size)
    except (OSError, EnomalismError):  # unreadable: the provision job will say why
        return None, None


def _hypervisor_or_cluster(ctx: Context, ref: str | None) -> Hypervisor | Cluster | None:
    """What `hvmuuid` names: a hypervisor, a cluster (placement among its hosts), or nothing
    (placement among all hypervisors)."""
    if ref is None or not str(ref).strip():
        return None
    uuid = parse_uuid(ref, "hypervisor (or cluster)")
    found = ctx.db.get(Hypervisor, uuid) or ctx.db.get(Cluster, uuid)
    if found is None:
        raise NotFound(f"no hypervisor or cluster with UUID {uuid}")
    return found


class Queued(NamedTuple):
    machine: str  # the new machine's UUID
    hypervisor: str  # the hypervisor that takes it
    tx: Transaction


def queue_provision(ctx: Context, host_uuid: str, *, pkguuid: str | None, hvmuuid: str | None,
                    name: str | None, pool: str | None = None, user_data: str | None = None,
                    ssh_keys: Sequence[str] = (), hostname: str | None = None,
                    virt_type: str | None = None, libvirt_network: str | None = None) -> Queued:
    """Check everything that can be checked now, record the new machine (locked by the
    transaction, with the size it will have) and queue the provision.

    `hvmuuid` names the hypervisor, which must be one of `host_uuid`'s (a VM's UUID names its
    host), or a cluster, or is None: then `placement` picks the hypervisor among the cluster's
    hosts, or among all hypervisors, and `host_uuid` only has to be a machine the caller may
    read.

    libvirt is asked (is the name free there, does the pool run) with no database transaction
    open, after a commit with nothing written; then everything is checked again, placement
    too, in the short transaction that records the machine. Should placement then pick
    another hypervisor (others recorded machines meanwhile), that one is asked in turn: at
    most once each."""
    if virt_type not in (None, "", "kvm", "qemu"):
        raise InvalidInput(f"virt_type is kvm or qemu, not '{str(virt_type)[:40]}'")
    name = names.check(names.MACHINE, name, why=" (the new machine's name)")
    asked: set[str] = set()
    while True:
        hv, p, memory_kib, vcpus = _place(ctx, host_uuid, pkguuid=pkguuid, hvmuuid=hvmuuid,
                                          name=name)
        if hv.uuid in asked:
            break
        asked.add(hv.uuid)
        nets = networks.networks_for_host(ctx, hv.machine_uuid)
        commit_before_slow_work(ctx)  # nothing written yet
        conn = ctx.registry.connection(hv.uuid)
        if conn.name_taken(name):
            raise Conflict(f"the hypervisor already has a domain named '{name}'")
        if pool:
            conn.pick_pool(pool)  # exists and runs, or a clear error now
        if libvirt_network:
            usable_network(ctx, conn, libvirt_network)
        # The host's networks, checked on its hypervisor, and the addresses their DHCP
        # servers still lease to MACs gone.
        networks.check_for_host(conn, hv.virt_url, nets)
        held = {n.uuid: conn.dhcp_leased(n.bridge) for n in nets}
    if virt_type == "kvm" and hv.virt_class not in ("kvm", "test"):
        raise InvalidInput(f"hypervisor {hv.virt_url} offers plain QEMU only: virt_type qemu")
    seed = cloudinit.check(user_data=user_data, ssh_keys=list(ssh_keys), hostname=hostname,
                           name=name)
    newuuid = new_uuid()
    # Its size from the start: placement counts machines being provisioned.
    ctx.db.add(Machine(uuid=newuuid, kind="vm", name=name, parent_uuid=hv.uuid, managed=True,
                       state="provisioning", owner_uuid=ctx.user.uuid, memory_kib=memory_kib,
                       vcpus=vcpus))
    ctx.db.flush()
    # One address on each static network of the host's clusters, leased in this transaction:
    # an exhausted network refuses the provision before anything exists.
    nics = []
    for n in networks.networks_for_host(ctx, hv.machine_uuid):
        lease = networks.lease(ctx, n, machine_uuid=newuuid, note=f"provisioned {name}",
                               held=held.get(n.uuid, set()))
        nics.append({"network": n.uuid, "source": n.bridge, "mac": lease.mac,
                     "address": lease.address, "prefix": n.prefix, "gateway": n.gateway})
    tx = transactions.enqueue(ctx, "provision", target=newuuid, lock=[newuuid], params={
        "package": p.uuid, "hypervisor": hv.uuid, "name": name, "machine": newuuid,
        "pool": pool or None, "nics": nics, "memory_kib": memory_kib, "vcpus": vcpus,
        "seed": seed, "virt_type": virt_type or None,
        "libvirt_network": libvirt_network or None})
    tx.undo = [{"kind": "machine", "uuid": newuuid}]
    return Queued(newuuid, hv.uuid, tx)


def usable_network(ctx: Context, conn: HypervisorConnection, name: str) -> str:
    """A libvirt network of the hypervisor the caller may put an interface on."""
    if not conn.has_network(name):
        raise NotFound(f"the hypervisor has no libvirt network '{name[:80]}'")
    if not ctx.user.is_admin and not volumes.usable_networks(ctx)(name):
        raise Forbidden(f"libvirt network '{name[:80]}' is not one of a network you may use")
    return name


def _place(ctx: Context, host_uuid: str, *, pkguuid: str | None, hvmuuid: str | None,
           name: str) -> tuple[Hypervisor, Package, int | None, int | None]:
    """queue_provision's checks in the database, and the hypervisor it places the machine
    on, with the package and the size; writes nothing."""
    target = get_machine(ctx.db, host_uuid)
    access.require(ctx, target, "read", "machine")
    p = get_package(ctx, require(pkguuid, "pkguuid", " (the package to provision)"))
    # a machine from it is the provisioner's to package and download: as much as the file
    access.require(ctx, p, download_permission(p), "package")
    scope = _hypervisor_or_cluster(ctx, hvmuuid)
    memory_kib, vcpus = package_size(p)
    if isinstance(scope, Hypervisor):
        hv = scope
        access.require(ctx, hv, "control", "hypervisor")
        host_of_target = target.uuid if target.kind == "host" else \
            (target.parent.machine_uuid if target.parent else None)
        if hv.machine_uuid != host_of_target:
            raise InvalidInput(f"hypervisor {hv.virt_url} does not belong to machine "
                               f"{target.name}")
        check_compatible(p, hv)
        if ctx.db.scalar(select(Machine.uuid).where(Machine.parent_uuid == hv.uuid,
                                                    Machine.name == name)):
            raise Conflict(f"a machine named '{name}' already exists on {hv.virt_url}")
    else:
        if scope is not None:
            access.require(ctx, scope, "read", "cluster")
        hv = placement.place(ctx, placement.Need(
            virt_class=p.virt_class, arch=p.arch, memory_kib=memory_kib, vcpus=vcpus,
            label=f"package {p.name}"), cluster=scope, name=name).hypervisor
    return hv, p, memory_kib, vcpus


def _check_packable(m: Machine) -> None:
    if m.lock_txid:  # 423 with the holder, before any state check (docs/transactions.md)
        raise Locked(f"machine {m.uuid} is locked by transaction {m.lock_txid}",
                     txid=m.lock_txid)
    if m.kind != "vm":
        raise InvalidState("only virtual machines can be packaged")
    if not m.managed:
        raise InvalidState(f"machine {m.uuid} is not managed; 'manage' it first")
    if m.state not in ("shutoff", "running", "paused"):
        raise InvalidState(f"cannot package a machine that is {m.state}")


def queue_package(ctx: Context, uuid: str, *, name: str | None, description: str | None,
                  version: str | None, compression: str | None) -> Transaction:
    """Needs `export`: a package is a full copy of the machine's disks (control is not enough)."""
    m = get_machine(ctx.db, uuid)
    access.require(ctx, m, "export", "machine")
    _check_packable(m)
    compression = compression or "zstd"
    if compression not in ("zstd", "gzip"):
        raise InvalidInput("compression is zstd or gzip (gzip: strict XVM2 packages)")
    if m.xmldesc:  # refused now rather than by the job (which checks the live definition)
        conn, xml = ctx.registry.connection(m.vm_parent_uuid), DomainXML(m.xmldesc)
        commit_before_slow_work(ctx)  # checked, nothing written yet: libvirt is asked next
        with ctx.registry.db.session(write=False) as reader:
            try:
                _check_own_disks(reader, conn, m.uuid, xml)
            except ForeignDisk:
                raise
            except InvalidState:
                pass  # a volume that is not there: the job says which, from the live definition
        machine_uuid = m.uuid
        ctx.db.expire(m)  # locked, changed or deleted meanwhile?
        m = get_machine(ctx.db, machine_uuid)
        _check_packable(m)
    return transactions.enqueue(ctx, "package", target=m.uuid, lock=[m.uuid], params={
        "machine": m.uuid, "name": name or m.name, "description": description or "",
        "version": version or "1", "compression": compression})


# -- retrieval -----------------------------------------------------------------------------

def _retrieve(job: JobContext, pkg_uuid: str,
              scale: Callable[[float], float]) -> tuple[Path, int]:
    """Download a package into the cache, verify it, and mark it cached: its file and size.
    (The file may be taken back to a .part if it cannot be written to the disk.)"""
    with _one_at_a_time(job, "package", pkg_uuid):
        return _retrieve_now(job, pkg_uuid, scale)


def _retrieve_now(job: JobContext, pkg_uuid: str,
                  scale: Callable[[float], float]) -> tuple[Path, int]:
    with job.db.session() as s:
        p = s.get(Package, pkg_uuid)
        if p is None:
            raise InvalidState("the package was deleted")
        if p.state == "cached" and p.path and p.size is not None and Path(p.path).exists():
            return Path(p.path), p.size
        url, length, sha = p.url, p.length, p.sha256
        if url is None:  # uploaded here, and its file is gone
            raise InvalidState(f"package {p.name} is not cached and has no URL to fetch it from")
        auth = auth_of(job.runner.secrets, p.repository, url)
        previous, p.state = p.state, "retrieving"
    job.will_create("package_state", uuid=pkg_uuid, state=previous)
    dest = packages_dir(job) / f"{pkg_uuid}.xvm2"
    job.will_create("file", path=str(dest))
    job.will_create("file", path=f"{dest}.part")
    job.log(f"downloading {dl.redact(url)}")

    def progress(done: int, total: int | None) -> None:
        job.progress(scale(90.0 * done / total if total else 0.0))

    try:
        try:
            dl.download(url, dest, auth=auth, expected_size=length, expected_sha256=sha,
                        progress=progress, cancelled=job.cancel_requested, fsync=False)
        except dl.DownloadCancelled:
            raise JobCancelled() from None
        job.progress(scale(90), "verifying the package")
        manifest, _xml = archive.read_package(dest)  # the archive's structure
        if not (sha and all(d.size is not None and d.sha256 for d in manifest.disks)):
            # No checksum from the feed, or images of unknown size (an XVM2 package made
            # elsewhere): decompress every image to check or measure it. With the feed's
            # checksum matched, the file is byte for byte what its publisher verified.
            manifest = archive.verify_package(dest)
    except BaseException:
        if job.taken_over():  # undone by the node that took over; the files may be a retry's
            raise
        # Undone here, before the next job waiting for this package goes on: the runner's
        # undo would come after it and could remove that job's files. (After a crash, the
        # undo log still has these entries.)
        dest.unlink(missing_ok=True)
        Path(f"{dest}.part").unlink(missing_ok=True)
        with job.db.session() as s:
            if (p := s.get(Package, pkg_uuid)) is not None:
                p.state = previous
        job.created_ok("file", path=f"{dest}.part")
        job.created_ok("file", path=str(dest))
        job.created_ok("package_state", uuid=pkg_uuid, state=previous)
        raise
    mark, size = job.runner.package_sync.mark(job.txid), dest.stat().st_size
    with job.db.session() as s:
        p = s.get(Package, pkg_uuid)
        if p is None:
            raise InvalidState("the package was deleted")
        p.state, p.path, p.size = "cached", str(dest), size
        p.unsynced = mark
        p.manifest = manifest.to_json()
        p.virt_class = p.virt_class or manifest.virt_class
        p.arch = p.arch or manifest.arch
        p.version = p.version or manifest.version
    job.created_ok("file", path=str(dest))
    job.created_ok("package_state", uuid=pkg_uuid, state=previous)
    job.runner.package_sync.later(pkg_uuid, dest, mark)
    return dest, size


def retrieve(job: JobContext) -> dict[str, Any]:
    _path, size = _retrieve(job, job.params["package"], lambda pct: pct)
    return {"package": job.params["package"], "size": size}


# -- provision -----------------------------------------------------------------------------

def _base_volume(job: JobContext, hv_uuid: str, pool: StoragePool, pkg_uuid: str,
                 path: Path, disk: archive.DiskInfo, scale: Callable[[float], float]) -> str:
    """The package disk as a volume of the pool, uploaded once and reused (a cache shared by
    every machine provisioned from it). Only while it is being uploaded is it on the job's
    undo log: a crash then must not leave a partial base that later provisions would use."""
    name = f"enomalism-base-{pkg_uuid}-{disk.target}.{disk.format}"
    size = disk.size
    if size is None:  # a retrieved package's manifest has every size measured
        raise InvalidState(f"disk {disk.target} of the package has no known size")
    with _one_at_a_time(job, "volume", hv_uuid, pool.name(), name):
        if (found := pool.volume_path(name)) is not None:
            return found
        job.log(f"uploading disk {disk.target} ({disk.size} bytes) into pool {pool.name()}")
        entry = {"hypervisor": hv_uuid, "pool": pool.name(), "name": name}
        job.will_create("pool_volume", **entry)
        try:
            with archive.open_disk(path, disk.member) as src:
                try:
                    vol_path = pool.upload(name, src, size=size, fmt=disk.format,
                                           progress=lambda done: job.progress(
                                               scale(100.0 * done / max(size, 1))),
                                           cancelled=job.cancel_requested)
                except storage.StorageCancelled:
                    raise JobCancelled() from None
        except Conflict:  # made meanwhile by someone else: not ours to remove
            job.created_ok("pool_volume", **entry)
            raise
        except BaseException:  # upload removed its volume; make sure, before the next job
            if job.taken_over():  # undone by the node that took over; a retry's volume now
                raise
            try:
                job.registry.connection(hv_uuid).delete_pool_volume(pool.name(), name)
                job.created_ok("pool_volume", **entry)
            except EnomalismError:
                pass  # left on the undo log
            raise
        job.created_ok("pool_volume", **entry)
        with job.db.session() as s:  # ours to remove when nothing uses it (services/cache.py)
            s.merge(BaseVolume(hypervisor_uuid=hv_uuid, pool=pool.name(), name=name,
                               package_uuid=pkg_uuid))
        return vol_path


def _domain_type(virt_class: str, virt_type: str | None) -> str | None:
    """The caller's choice (kvm or plain QEMU/TCG: nested KVM hosts cannot run every guest)
    where the hypervisor offers it, else the hypervisor's class."""
    if virt_class == "test":
        return "test"
    return virt_type or DOMAIN_TYPE.get(virt_class)


def _record_again(job: JobContext, virt_url: str) -> None:
    """A retried provision's machine record and its leases, as the first attempt made them
    (its undo removed them): the same addresses again, or no retry."""
    prm = job.params
    hv_uuid, newuuid, name = prm["hypervisor"], prm["machine"], prm["name"]
    job.will_create("machine", uuid=newuuid)
    with job.db.session() as s:
        if s.scalar(select(Machine.uuid).where(Machine.parent_uuid == hv_uuid,
                                               Machine.name == name)):
            raise Conflict(f"a machine named '{name}' exists now on {virt_url}")
        s.add(Machine(uuid=newuuid, kind="vm", name=name, parent_uuid=hv_uuid,
                      managed=True, state="provisioning", owner_uuid=job.owner_uuid,
                      lock_txid=job.txid, memory_kib=prm.get("memory_kib"),
                      vcpus=prm.get("vcpus")))
        s.flush()
        for nic in prm.get("nics", []):
            try:
                with s.begin_nested():
                    s.add(Lease(network_uuid=nic["network"], address=nic["address"],
                                machine_uuid=newuuid, mac=nic["mac"],
                                note=f"provisioned {name}", created_by=job.owner_uuid))
            except IntegrityError:
                raise Conflict(f"address {nic['address']} of this provision was taken "
                               "meanwhile; provision again for a new one") from None


def _stored_manifest(job: JobContext, pkg_uuid: str) -> archive.Manifest:
    """The manifest `_retrieve` stored (verified, every disk's size measured)."""
    with job.db.session(write=False) as s:
        p = s.get(Package, pkg_uuid)
        if p is None or p.manifest is None:
            raise InvalidState("the package was deleted")
        return archive.Manifest.from_json(p.manifest)


def provision(job: JobContext) -> dict[str, Any]:
    prm = job.params
    hv_uuid, newuuid, name = prm["hypervisor"], prm["machine"], prm["name"]
    with job.db.session(write=False) as s:
        hv = s.get(Hypervisor, hv_uuid)
        if hv is None:
            raise InvalidState("the hypervisor was removed")
        virt_class, virt_url = hv.virt_class, hv.virt_url
        p = s.get(Package, prm["package"])
        if p is None:
            raise InvalidState("the package was deleted")
        check_compatible(p, hv)
        again = s.get(Machine, newuuid) is None
    if again:  # a retry: the failed attempt removed the machine record; make it again
        _record_again(job, virt_url)
    path, _size = _retrieve(job, prm["package"], lambda pct: pct * 0.4)
    _legacy, xml_text = archive.read_package(path)
    manifest = _stored_manifest(job, prm["package"])
    conn = job.registry.connection(hv_uuid)
    if conn.name_taken(name):
        raise Conflict(f"the hypervisor already has a domain named '{name}'")
    pool = conn.pick_pool(prm.get("pool"))
    nics = [StaticNic(libvirt_network=conn.has_network(nic["source"]), **nic)
            for nic in prm.get("nics", [])]
    fill = functools.cache(lambda: _fill_network(conn, virt_url, prm.get("libvirt_network"),
                                                 nics))

    seed_name = f"{name}-cidata.iso"
    seed_path = pool.planned_path(seed_name) if prm.get("seed") else None

    def domain(paths: dict[str, str]) -> DomainXML:
        """The package's XML made this machine's, refused unless within the policy."""
        xml = DomainXML(xml_text)
        xml.rewrite_for_provision(
            name=name, uuid=newuuid, disk_paths=paths, disk_formats={t: "qcow2" for t in paths},
            domain_type=_domain_type(virt_class, prm.get("virt_type")))
        if nics:
            xml.set_static_addresses(nics)
        if xml.unsourced_interfaces():  # an exported package's: on the target's network
            source, is_network = fill()
            xml.fill_interface_sources(source, libvirt_network=is_network)
        if seed_path:
            builder.add_seed(xml.root, seed_path)
            xml.mark_seed(seed_path)
        ours = set(paths.values()) | ({seed_path} if seed_path else set())
        chosen = [prm["libvirt_network"]] if prm.get("libvirt_network") else []
        _check_package_xml(job, hv_uuid, xml, ours, [n.source for n in nics] + chosen)
        return xml

    # before anything is uploaded: a package the policy refuses costs no copy
    domain({d.target: pool.planned_path(f"{name}-{d.target}.qcow2")
            for d in manifest.disks})
    disk_paths: dict[str, str] = {}
    n = max(len(manifest.disks), 1)
    for i, disk in enumerate(manifest.disks):
        lo = 40 + 50 * i / n

        def scale(pct: float, lo: float = lo) -> float:
            return lo + pct * 0.45 / n

        base = _base_volume(job, hv_uuid, pool, prm["package"], path, disk, scale)
        vol_name = f"{name}-{disk.target}.qcow2"
        job.will_create("pool_volume", hypervisor=hv_uuid, pool=pool.name(), name=vol_name)
        try:
            disk_paths[disk.target] = pool.overlay(vol_name, base, disk.format,
                                                   disk.virtual_size)
        except EnomalismError as e:
            job.log(f"no copy-on-write overlay here ({e.message}); copying the disk")
            disk_paths[disk.target] = pool.clone(vol_name, base)
        job.progress(40 + 50 * (i + 1) / n)
    if seed_path:  # the cloud-init seed, written only now: it carries the leased addresses
        data = cloudinit.seed_for(newuuid, prm["seed"], prm.get("nics", []))
        job.will_create("pool_volume", hypervisor=hv_uuid, pool=pool.name(), name=seed_name)
        seed_path = pool.upload(seed_name, io.BytesIO(data), size=len(data), fmt="raw")
    with job.db.session() as s:  # the new volumes are the machine's own
        volumes.record(s, hv_uuid, newuuid, [*disk_paths.values(), *filter(None, [seed_path])])
    xml = domain(disk_paths)
    for nic in nics:
        if nic.libvirt_network:  # the guest's DHCP client gets its address from libvirt
            job.will_create("dhcp_host", hypervisor=hv_uuid, network=nic.source, mac=nic.mac,
                            ip=nic.address)
            conn.dhcp_host(nic.source, mac=nic.mac, ip=nic.address, name=name,
                           command="add")
    job.progress(92, "defining the domain")
    job.will_create("domain", hypervisor=hv_uuid, uuid=newuuid)
    conn.define(xml.to_string())
    job.registry.resync_machine(hv_uuid, newuuid)
    return {"machine": newuuid, "name": name, "disks": disk_paths,
            "addresses": [n.address for n in nics]}


def _fill_network(conn: HypervisorConnection, virt_url: str, chosen: str | None,
                  nics: list[StaticNic]) -> tuple[str, bool]:
    """Where the package's interfaces that name no network go (an exported package leaves
    them to the target), as (source, is a libvirt network): the caller's `libvirt_network`,
    else the static network's, else the hypervisor's default network; InvalidState when
    there is nowhere to put them."""
    if chosen:
        return chosen, True
    if nics:
        return nics[0].source, nics[0].libvirt_network
    default = conn.default_network()
    if default is None:
        raise InvalidState(f"the package's network interfaces name no network (it leaves them "
                           f"to the target) and hypervisor {virt_url} runs no libvirt network "
                           "named 'default': give libvirt_network")
    return default, True


def _check_package_xml(job: JobContext, hv_uuid: str, xml: DomainXML, disks: set[str],
                       nic_sources: list[str]) -> None:
    """The policy for a package's XML, whoever provisions it: no administrator wrote it. Its
    disks are the volumes this job makes; its interfaces are on the networks the provision
    leased on, or on networks the provisioning user may use."""
    with job.db.session(write=False) as s:
        user = s.get(User, job.owner_uuid) if job.owner_uuid else None
        who = Principal(user.uuid, user.username, user.is_admin) if user is not None else \
            Principal("", "", False)
        ctx = Context(db=s, registry=job.registry, user=who)
        policy.check(xml, volumes.rights(
            ctx, get_hypervisor(s, hv_uuid), disk=lambda source: source.path in disks,
            networks=nic_sources, who="in a package's description.xml"))


# -- package (export) ----------------------------------------------------------------------


def _check_own_disks(db: Any, conn: HypervisorConnection, machine: Machine | str,
                     xml: DomainXML) -> list[driver.Disk]:
    """The machine's hard disks, each one of its own volumes, or ForeignDisk: `package` copies
    out only what is the machine's (services/volumes.py)."""
    uuid = machine if isinstance(machine, str) else machine.uuid
    own = volumes.owned(db, uuid)
    disks = conn.hard_disks(xml)
    for d in disks:
        if conn.volume_path(path=d.path) not in own:
            raise ForeignDisk(f"disk {d.target or ''} '{d.path}' is not a volume of this machine's "
                              "own: package exports only those; detach it first (xmldesc, "
                              "store_xml)".replace("  ", " "))
    return disks


def _declared_formats(conn: HypervisorConnection, xml: DomainXML) -> dict[str, str]:
    """The format the domain reads each disk in (libvirt's default: raw), by path. What the
    pool probes is not trusted: a raw disk's first bytes are the guest's, and a qcow2 header
    written there would name any file as its backing store."""
    out = {}
    for d in xml.root.iterfind("devices/disk"):
        src, drv = d.find("source"), d.find("driver")
        if src is None:
            continue
        path = src.get("file") or src.get("dev") or (
            conn.volume_path(pool=src.get("pool"), volume=src.get("volume"))
            if src.get("pool") and src.get("volume") else None)
        if path:
            out[path] = (drv.get("type") if drv is not None else None) or "raw"
    return out


def disk_source(job: JobContext, conn: HypervisorConnection, hv_uuid: str, uri: str,
                disk_path: str, declared: str, stack: ExitStack,
                 tmp: Path) -> tuple[Callable[[], BinaryIO], str, int]:
    """An opener of the disk's whole content (backing chain flattened), its format and its
    virtual size. Local disks are read in place, a chain flattened with qemu-img; a remote
    volume is streamed to a temporary file first, a chain flattened into a scratch volume.
    `declared`: the domain's format for the disk; a disk the domain reads as raw is copied
    byte for byte, whatever header the guest wrote into it."""
    info = conn.volume_info(disk_path)
    if declared != "qcow2":
        info = dataclasses.replace(info, format="raw", backing=None,
                                   capacity=conn.physical_size(disk_path))
    fmt = info.format if info.format in ("raw", "qcow2") else "raw"
    if is_local(uri) and Path(disk_path).exists():
        if info.backing:
            flat = tmp / (Path(disk_path).name + ".flat.qcow2")
            job.will_create("file", path=str(flat))
            # -U: the (paused) guest's QEMU holds the image's write lock
            done = subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "qcow2",
                                   disk_path, str(flat)], capture_output=True, text=True)
            if done.returncode != 0:
                raise HypervisorError(f"flattening disk {disk_path} failed: "
                                      f"{done.stderr.strip() or done.returncode}")
            return (lambda: open(flat, "rb")), "qcow2", info.capacity
        return (lambda: open(disk_path, "rb")), fmt, info.capacity
    source = disk_path
    if info.backing and info.pool:  # flatten on the host into a scratch volume, then fetch
        scratch = f"enomalism-export-{job.txid}-{Path(disk_path).name}"
        job.will_create("pool_volume", hypervisor=hv_uuid, pool=info.pool, name=scratch)
        pool = conn.pool(info.pool)
        source = pool.clone(scratch, disk_path, fmt="qcow2")
        stack.callback(conn.delete_pool_volume, info.pool, scratch)
    elif info.backing:
        raise InvalidState(f"disk {disk_path} has a backing chain outside any storage pool "
                           "on a remote host; it cannot be read through libvirt")
    copy = tmp / (Path(disk_path).name + ".download")
    job.will_create("file", path=str(copy))
    with open(copy, "wb", opener=files.private_opener) as sink:
        conn.download(source, sink, cancelled=job.cancel_requested)
    return (lambda: open(copy, "rb")), fmt if source == disk_path else "qcow2", info.capacity


PACKAGE_CLASSES = ("kvm", "qemu", "xen", "lxc", "test")


def package(job: JobContext) -> dict[str, Any]:
    prm = job.params
    with job.db.session(write=False) as s:
        m = s.get(Machine, prm["machine"])
        if m is None:
            raise InvalidState("the machine was deleted")
        hv = m.vm_parent
        hv_uuid, uri, virt_class, arch = hv.uuid, hv.virt_url, hv.virt_class, hv.arch
    conn = job.registry.connection(hv_uuid)
    xml_text = conn.domain_xml(prm["machine"])  # without secrets (graphics passwords)
    portable = DomainXML(xml_text)
    portable.portable_consoles()  # no log file or socket path of this host travels
    portable.portable_interfaces()  # nor its networks' names: the target's fill them
    # the package's class is the domain's type (a qemu (TCG) guest on a kvm host is qemu)
    virt_class = portable.domain_type if portable.domain_type in PACKAGE_CLASSES else virt_class
    xml_text = portable.to_string()
    with job.db.session(write=False) as s:
        disks = _check_own_disks(s, conn, prm["machine"], DomainXML(xml_text))
    formats = _declared_formats(conn, DomainXML(xml_text))
    snap = conn.snapshot(prm["machine"], with_xml=False)
    suspended = snap is not None and snap.state == "running"
    pkg_uuid = new_uuid()
    dest = packages_dir(job) / f"{pkg_uuid}.xvm2"
    with ExitStack() as stack:
        # on the undo log, unlike a TemporaryDirectory: a crash must not leave it behind
        tmp = packages_dir(job) / f".export-{job.txid}"
        job.will_create("dir", path=str(tmp))
        tmp.mkdir(exist_ok=True, mode=files.DIR_MODE)
        stack.callback(shutil.rmtree, tmp, True)
        if suspended:  # a consistent image without stopping the guest: pause it meanwhile
            job.log("pausing the machine while its disks are read")
            job.will_create("paused", hypervisor=hv_uuid, uuid=prm["machine"])
            conn.suspend(prm["machine"])
            stack.callback(conn.resume, prm["machine"])
        sources, infos = {}, []
        for d in disks:
            if d.target is None:  # libvirt requires one: not a domain it defined
                raise InvalidState(f"disk '{d.path}' has no target device")
            opener, fmt, vsize = disk_source(job, conn, hv_uuid, uri, d.path,
                                             formats.get(d.path, "raw"), stack, tmp)
            sources[d.target] = opener
            infos.append(archive.DiskInfo(target=d.target, format=fmt, virtual_size=vsize,
                                          compression=prm["compression"]))
        total = sum(Path(d.path).stat().st_size if Path(d.path).exists() else 0
                    for d in disks) or 1
        manifest = archive.Manifest(
            name=prm["name"], description=prm["description"], version=prm["version"],
            virt_class=virt_class, arch=arch, created_at=utcnow().isoformat(), disks=infos)
        job.will_create("file", path=str(dest))
        job.will_create("file", path=f"{dest}.part")  # write_package's, until it renames it
        job.progress(5, f"writing package {prm['name']}")
        # the archive's sha256 (the feed's eno:sha256) is computed as it is written
        manifest, digest = archive.write_package_sha256(
            dest, domain_xml=xml_text, manifest=manifest, disk_sources=sources,
            compression=prm["compression"],
            progress=lambda done: job.progress(5 + 90 * min(done / total, 1.0)))
    if suspended:  # resumed: the inventory says so before the job is done, not after an event
        job.registry.resync_machine(hv_uuid, prm["machine"])
    with job.db.session() as s:
        s.add(Package(uuid=pkg_uuid, name=prm["name"], description=prm["description"],
                      version=prm["version"], virt_class=virt_class, arch=arch,
                      state="cached", path=str(dest), size=dest.stat().st_size,
                      length=dest.stat().st_size, manifest=manifest.to_json(),
                      owner_uuid=job.owner_uuid, sha256=digest))
    job.created_ok("file", path=str(dest))
    return {"package": pkg_uuid, "size": dest.stat().st_size}
