"""Create a machine from parameters (`PUT /rest/machines/` without `xmldesc`; issue 16).

The request checks everything it can (images, pool and its space, networks, names, cloud-init
input), records the machine (locked, in state `provisioning`), leases its addresses and queues
a `create` transaction, as provision does. The job makes the disk (a qcow2 overlay on the
image, copy-on-write, or a blank disk), the NoCloud seed, the DHCP host entries, builds the
domain XML (virt/builder.py), puts it through the domain-XML policy whoever asked, and defines
it. Every step is on the job's undo log before it is taken: a failure leaves no volume, seed,
lease, DHCP entry, domain or machine behind.

Why a transaction though each step is O(1) in the image size: it keeps libvirt and the disks
out of the request's database transaction (no slow call under the write lock), and reuses the
job runner's undo log, which also covers a crash half-way. The request itself asks libvirt only
quick questions (is the name free, the pool and its free space, does the network exist), as
provision's request does; whatever changes libvirt or a disk runs in the job, whose database
writes are short sessions of their own with no libvirt call inside.
"""

import dataclasses
import io
from typing import Any, NamedTuple

from sqlalchemy import select

from enomalism.errors import (
    Conflict,
    DiskTooLarge,
    InvalidInput,
    InvalidState,
    MissingVariable,
    PoolFull,
    PoolNotAllowed,
    WrongImageFormat,
)
from enomalism.jobs.runner import JobContext
from enomalism.services import (
    access,
    cloudinit,
    images,
    names,
    networks,
    placement,
    transactions,
    volumes,
)
from enomalism.services.context import Context, Principal
from enomalism.services.lookup import get_hypervisor
from enomalism.services.provisioning import _hypervisor_or_cluster, usable_network
from enomalism.store.models import Hypervisor, Image, Machine, Transaction, User, new_uuid
from enomalism.virt import builder, policy
from enomalism.virt.domxml import DomainXML, StaticNic, new_mac
from enomalism.virt.hypervisor import HypervisorConnection
from enomalism.virt.pool import StoragePool

GIB = 1 << 30
MIB = 1 << 20
VIRT_TYPES = ("kvm", "qemu")
FIRMWARES = ("bios", "uefi")


class Queued(NamedTuple):
    machine: Machine
    tx: Transaction


def _int(value: str | None, variable: str, default: int, lo: int, hi: int) -> int:
    if value is None or str(value).strip() == "":
        return default
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{variable} must be a whole number, not '{str(value)[:40]}'") from None
    if not lo <= n <= hi:
        raise InvalidInput(f"{variable} must be between {lo} and {hi}, not {n}")
    return n


def _choice(value: str | None, variable: str, choices: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in choices:
        raise InvalidInput(f"{variable} is one of {', '.join(choices)}, not '{value[:40]}'")
    return value


def _image(ctx: Context, ref: str | None, variable: str, formats: tuple[str, ...]) -> Image | None:
    if not ref:
        return None
    image = images.find(ctx, ref=ref, permission="read")
    if image.format not in formats:
        hint = "pass an ISO as cdrom" if image.format == "iso" else "pass a disk image as image"
        raise WrongImageFormat(f"{variable}: image {image.name} is {image.format}, not "
                               f"{' or '.join(formats)}; {hint}")
    if image.state != "ready":
        raise InvalidState(f"image {image.name} is {image.state}, not ready")
    return image


def _hypervisor(ctx: Context, hvmuuid: str | None, name: str, need: placement.Need,
                image_hv: str | None) -> Hypervisor:
    """The named hypervisor; the image's (placement follows the image); or the placer's."""
    scope = _hypervisor_or_cluster(ctx, hvmuuid)
    if image_hv is not None:
        hv = get_hypervisor(ctx.db, image_hv)
        if isinstance(scope, Hypervisor) and scope.uuid != hv.uuid:
            raise InvalidInput(f"the image is on hypervisor {hv.virt_url}, not on {scope.virt_url}:"
                               " a machine is created where its images are")
        if scope is not None and not isinstance(scope, Hypervisor) and \
                hv.machine_uuid not in {m.uuid for m in scope.machines}:
            raise InvalidInput(f"the image is on {hv.virt_url}, which is not in cluster "
                               f"{scope.name}")
        scope = hv
    if isinstance(scope, Hypervisor):
        access.require(ctx, scope, "control", "hypervisor")
        return scope
    if scope is not None:
        access.require(ctx, scope, "read", "cluster")
    return placement.place(ctx, need, cluster=scope, name=name).hypervisor


def _domain_type(hv: Hypervisor, virt_type: str | None) -> str:
    if hv.virt_class == "test":
        return "test"
    if virt_type == "kvm" and hv.virt_class != "kvm":
        raise InvalidInput(f"hypervisor {hv.virt_url} offers plain QEMU only: virt_type qemu")
    return virt_type or ("kvm" if hv.virt_class == "kvm" else "qemu")


def _pool(ctx: Context, conn: Any, name: str | None, image: Image | None) -> Any:
    """The pool of the new disks. A non-administrator may name only the hypervisor's default
    pool or the pool of the image used: pools carry no grants (yet)."""
    pool = conn.pick_pool(name or (image.pool if image else None))
    if name and not ctx.user.is_admin and name != (image.pool if image else None) \
            and name != conn.pick_pool().name():
        raise PoolNotAllowed(f"storage pool '{name}' is for administrators; leave pool out for "
                             "the hypervisor's default pool")
    return pool


def _check_space(pool: Any, size: int) -> None:
    """A new disk must fit the pool's free space by its full size (no single disk may
    overcommit the pool: a guest filling it would pause every guest in it)."""
    _state, capacity, _allocation, available = pool.info()
    if size > capacity:
        raise DiskTooLarge(f"a disk of {size // MIB} MiB is larger than storage pool "
                           f"{pool.name()} ({capacity // MIB} MiB)")
    if size > available:
        raise PoolFull(f"storage pool {pool.name()} has {available // MIB} MiB available, "
                       f"the disk needs {size // MIB} MiB")


def queue_create(ctx: Context, *, name: str | None, vcpus: str | None, memory: str | None,
                 disk: str | None, image: str | None, cdrom: str | None, network: list[str],
                 libvirt_network: str | None, hvmuuid: str | None, pool: str | None,
                 virt_type: str | None, firmware: str | None, cpu_mode: str | None,
                 user_data: str | None, ssh_key: list[str], hostname: str | None,
                 autostart: bool) -> Queued:
    """Check the parameters, record the machine and its leases, queue the `create` job."""
    name = names.check(names.MACHINE, name, why=" (the new machine's name)")
    n_vcpus = _int(vcpus, "vcpus", 1, 1, 512)
    memory_mib = _int(memory, "memory", 1024, 16, 16 << 20)
    disk_gib = _int(disk, "disk", 0, 1, 64 << 10) if disk else None
    virt_type = _choice(virt_type, "virt_type", VIRT_TYPES)
    firmware = _choice(firmware, "firmware", FIRMWARES) or "bios"
    cpu_mode = _choice(cpu_mode, "cpu_mode", builder.CPU_MODES)
    seed = cloudinit.check(user_data=user_data, ssh_keys=ssh_key, hostname=hostname, name=name)
    img = _image(ctx, image, "image", ("qcow2", "raw"))
    iso = _image(ctx, cdrom, "cdrom", ("iso",))
    if img is None and disk_gib is None and iso is None:
        raise MissingVariable("give disk (GiB of a blank disk), image (a disk image) or cdrom "
                              "(an installer ISO)")
    if img and iso and img.hypervisor_uuid != iso.hypervisor_uuid:
        raise InvalidInput("the image and the cdrom are on different hypervisors")
    hv = _hypervisor(ctx, hvmuuid, name, placement.Need(
        memory_kib=memory_mib * 1024, vcpus=n_vcpus, label=f"machine {name}"),
        on.hypervisor_uuid if (on := img or iso) else None)
    domain_type = _domain_type(hv, virt_type)
    if ctx.db.scalar(select(Machine.uuid).where(Machine.parent_uuid == hv.uuid,
                                                Machine.name == name)):
        raise Conflict(f"a machine named '{name}' already exists on {hv.virt_url}")
    statics = [networks.get(ctx, ref, "read") for ref in network]
    served = {n.uuid for n in networks.networks_for_host(ctx, hv.machine_uuid)}
    for n in statics:
        if n.uuid not in served:
            raise InvalidInput(f"network {n.name} does not serve the host of {hv.virt_url} "
                               "(it serves the hosts of its cluster)")
    conn = ctx.registry.connection(hv.uuid)
    if conn.name_taken(name):
        raise Conflict(f"the hypervisor already has a domain named '{name}'")
    if libvirt_network:
        usable_network(ctx, conn, libvirt_network)
    kinds = conn.firmware_kinds(domain_type) if firmware == "uefi" else None
    if kinds is not None and "efi" not in kinds:
        raise InvalidInput(f"hypervisor {hv.virt_url} has no UEFI firmware libvirt can pick "
                           "(install OVMF, e.g. the Debian package ovmf); use firmware bios")
    target_pool = _pool(ctx, conn, pool, img)
    size = max(disk_gib * GIB if disk_gib else 0, (img.virtual_size or 0) if img else 0)
    if img and disk_gib and disk_gib * GIB < (img.virtual_size or 0):
        raise InvalidInput(f"disk {disk_gib} GiB is smaller than image {img.name} "
                           f"({(img.virtual_size or 0) // MIB} MiB)")
    if size:
        _check_space(target_pool, size)
    newuuid = new_uuid()
    m = Machine(uuid=newuuid, kind="vm", name=name, parent_uuid=hv.uuid, managed=True,
                state="provisioning", owner_uuid=ctx.user.uuid, memory_kib=memory_mib * 1024,
                vcpus=n_vcpus, autostart=bool(autostart))
    ctx.db.add(m)
    ctx.db.flush()
    nics = []
    for n in statics:
        lease = networks.lease(ctx, n, machine_uuid=newuuid, note=f"created {name}")
        nics.append({"network": n.uuid, "source": n.bridge, "mac": lease.mac,
                     "address": lease.address, "prefix": n.prefix, "gateway": n.gateway})
    tx = transactions.enqueue(ctx, "create", target=newuuid, lock=[newuuid], params={
        "machine": newuuid, "hypervisor": hv.uuid, "name": name, "vcpus": n_vcpus,
        "memory_mib": memory_mib, "domain_type": domain_type, "firmware": firmware,
        "cpu_mode": cpu_mode or ("host-passthrough" if domain_type == "kvm" else None),
        "pool": target_pool.name(), "disk_bytes": size or None,
        "image": img and {"path": img.path, "format": img.format},
        "cdrom": iso and iso.path, "nics": nics, "libvirt_network": libvirt_network,
        "seed": seed,
        "autostart": autostart})
    tx.undo = [{"kind": "machine", "uuid": newuuid}]
    return Queued(m, tx)


# -- the job --------------------------------------------------------------------------------

def _check_policy(job: JobContext, hv_uuid: str, xml: DomainXML, ours: set[str],
                  nic_sources: list[str]) -> None:
    """The generated XML through the policy, whoever asked (defence in depth): its disks are
    the volumes this job makes and the images the request checked; its networks those the
    caller may use and those the request leased on."""
    with job.db.session(write=False) as s:
        user = s.get(User, job.owner_uuid) if job.owner_uuid else None
        who = Principal(user.uuid, user.username, user.is_admin) if user else \
            Principal("", "", False)
        ctx = Context(db=s, registry=job.registry, user=who)
        policy.check(xml, volumes.rights(ctx, get_hypervisor(s, hv_uuid),
                                         disk=lambda source: source.path in ours,
                                         networks=nic_sources, who="in a created machine"))


def _volume_names(name: str) -> tuple[str, str]:
    """The new machine's disk and cloud-init seed volumes."""
    return f"{name}-vda.qcow2", f"{name}-cidata.iso"


def _spec(conn: HypervisorConnection, pool: StoragePool, prm: dict[str, Any]) -> builder.Spec:
    """The domain the job defines, its disks at the paths they will have in `pool`."""
    nics = [builder.Nic(source=n["source"], mac=n["mac"],
                        libvirt_network=conn.has_network(n["source"]))
            for n in prm["nics"]]
    if prm["libvirt_network"]:
        nics.append(builder.Nic(source=prm["libvirt_network"], mac=new_mac(
            n.mac for n in nics)))
    disk_name, seed_name = _volume_names(prm["name"])
    disks: list[builder.Disk] = []
    if prm["disk_bytes"]:
        disks.append(builder.Disk(pool.planned_path(disk_name), "vda"))
    if prm["cdrom"]:
        disks.append(builder.Disk(prm["cdrom"], "sda", "raw", "cdrom"))
    if prm["seed"]:
        disks.append(builder.Disk(pool.planned_path(seed_name), "sdb", "raw", "cdrom",
                                   seed=True))
    return builder.Spec(name=prm["name"], uuid=prm["machine"], domain_type=prm["domain_type"],
                        vcpus=prm["vcpus"], memory_mib=prm["memory_mib"],
                        firmware=prm["firmware"], cpu_mode=prm["cpu_mode"], disks=disks,
                        nics=nics)


def _make_volumes(job: JobContext, pool: StoragePool) -> dict[str, str]:
    """The disk (blank, or an overlay on the image) and the seed: target -> path."""
    prm = job.params
    hv_uuid = prm["hypervisor"]
    disk_name, seed_name = _volume_names(prm["name"])
    made: dict[str, str] = {}
    if prm["disk_bytes"]:
        job.progress(10, "making the disk")
        job.will_create("pool_volume", hypervisor=hv_uuid, pool=pool.name(), name=disk_name)
        if prm["image"]:
            made["vda"] = pool.overlay(disk_name, prm["image"]["path"],
                                       prm["image"]["format"], prm["disk_bytes"])
        else:
            made["vda"] = pool.blank(disk_name, prm["disk_bytes"])
    if prm["seed"]:
        job.progress(40, "writing the cloud-init seed")
        data = cloudinit.seed_for(prm["machine"], prm["seed"], prm["nics"])
        job.will_create("pool_volume", hypervisor=hv_uuid, pool=pool.name(), name=seed_name)
        made["sdb"] = pool.upload(seed_name, io.BytesIO(data), size=len(data),
                                  fmt="raw")
    return made


def _add_dhcp_hosts(job: JobContext, conn: HypervisorConnection, statics: list[StaticNic],
                    name: str) -> None:
    """The leased addresses as DHCP host entries of the libvirt networks they are on."""
    for nic in statics:
        if nic.libvirt_network:  # the guest's DHCP client gets its leased address
            job.will_create("dhcp_host", hypervisor=job.params["hypervisor"],
                            network=nic.source, mac=nic.mac, ip=nic.address)
            conn.dhcp_host(nic.source, mac=nic.mac, ip=nic.address, name=name,
                           command="add")


def create(job: JobContext) -> dict[str, Any]:
    prm = job.params
    hv_uuid, newuuid, name = prm["hypervisor"], prm["machine"], prm["name"]
    with job.db.session(write=False) as s:
        if s.get(Machine, newuuid) is None:
            raise InvalidState("the machine record was removed; create it again")
    conn = job.registry.connection(hv_uuid)
    if conn.name_taken(name):
        raise Conflict(f"the hypervisor already has a domain named '{name}'")
    pool = conn.pick_pool(prm["pool"])
    spec = _spec(conn, pool, prm)
    statics = [StaticNic(libvirt_network=nic.libvirt_network, **n)
               for nic, n in zip(spec.nics, prm["nics"], strict=False)]

    def domain(paths: list[builder.Disk]) -> DomainXML:
        xml = DomainXML(builder.to_xml(dataclasses.replace(spec, disks=paths)))
        if statics:  # the addresses also in <metadata> and the SMBIOS OEM strings, as provision
            xml.set_static_addresses(statics)
        if prm["seed"]:
            xml.mark_seed(next(d.path for d in paths if d.target == "sdb"))
        _check_policy(job, hv_uuid, xml, {d.path for d in paths},
                      [n["source"] for n in prm["nics"]])
        return xml

    domain(spec.disks)  # refused before anything is made
    made = _make_volumes(job, pool)
    with job.db.session() as s:  # the new volumes are the machine's own
        volumes.record(s, hv_uuid, newuuid, made.values())
    xml = domain([dataclasses.replace(d, path=made.get(d.target, d.path)) for d in spec.disks])
    _add_dhcp_hosts(job, conn, statics, name)
    job.progress(80, "defining the domain")
    job.will_create("domain", hypervisor=hv_uuid, uuid=newuuid)
    conn.define(xml.to_string())
    if prm["autostart"]:
        conn.set_autostart(newuuid, True)
    job.registry.resync_machine(hv_uuid, newuuid)
    return {"machine": newuuid, "name": name, "disks": made,
            "addresses": [n["address"] for n in prm["nics"]]}
