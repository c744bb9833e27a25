"""Spec section 2.1 to 2.18: machines, their hypervisors, clusters and actions."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import Field

from enomalism.api import schemas
from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, NoVars, Vars, expose, http_vars
from enomalism.api.guard import refuse_cross_site
from enomalism.errors import Conflict
from enomalism.services import (
    access,
    actions,
    addresses,
    create,
    events,
    hypervisors,
    machines,
    moves,
    provisioning,
)
from enomalism.services.context import Context
from enomalism.services.shown import machines as shown

router = APIRouter(tags=["machines"])


class ListVars(Vars):
    detail: bool = Field(False, description="also return machine_objs (extension)")
    kind: str | None = Field(None, description="host or vm (extension)")
    hypervisor: str | None = Field(None, description="only machines on this hypervisor")
    state: str | None = Field(None, description="only machines in this state")
    search: str | None = Field(None, description="only machines whose name contains this "
                               "(case-insensitive; extension)")
    host: str | None = Field(None, description="only VMs on this host machine (extension)")
    cluster: str | None = Field(None, description="only machines in this cluster (id or name; "
                                "extension)")
    owner: str | None = Field(None, description="only machines this user owns (id or name; "
                              "extension)")
    limit: int | None = Field(None, ge=1, le=1000, description="at most this many (a page, "
                              "with offset; the answer then has `total`; extension)")
    offset: int = Field(0, ge=0, description="skip this many of the sorted list (extension)")
    fields: list[str] = Field(default_factory=list, description="with detail: only these keys "
                              "of each machine_objs entry, uuid always (repeat or separate with "
                              "commas; extension)")


class DefineVars(Vars):
    xmldesc: str | None = Field(None, description="libvirt domain XML of the new machine; "
                                "without it, the machine is created from the parameters below")
    hvmuuid: str | None = Field(None, description="the hypervisor to define it on; for a "
                                "create also a cluster, or left out for the placer")
    name: str | None = Field(None, description="create: the new machine's name")
    vcpus: str | None = Field(None, description="create: virtual CPUs (default 1)")
    memory: str | None = Field(None, description="create: memory in MiB (default 1024)")
    disk: str | None = Field(None, description="create: GiB of a blank disk; with image, the "
                             "size the overlay grows to")
    image: str | None = Field(None, description="create: a disk image's UUID or name; the disk "
                              "is a copy-on-write overlay on it")
    cdrom: str | None = Field(None, description="create: an ISO image's UUID or name")
    network: list[str] = Field(default_factory=list, description="create: static network "
                               "UUIDs (repeatable); each leases an address")
    libvirt_network: str | None = Field(None, description="create: a libvirt network to join "
                                        "(DHCP from libvirt)")
    pool: str | None = Field(None, description="create: the storage pool (default: the image's, "
                             "else the hypervisor's default)")
    virt_type: str | None = Field(None, description="create: kvm or qemu (TCG)")
    firmware: str | None = Field(None, description="create: bios (default) or uefi")
    cpu_mode: str | None = Field(None, description="create: host-passthrough (default on kvm), "
                                 "host-model or maximum")
    user_data: str | None = Field(None, description="create: cloud-init user data (a "
                                  "cloud-config), at most 64 KiB")
    ssh_key: list[str] = Field(default_factory=list, description="create: an OpenSSH public "
                               "key line (repeatable)", json_schema_extra={"x-repeat-only": True})
    hostname: str | None = Field(None, description="create: the guest's host name (default: "
                                 "the machine's name)")
    autostart: bool = Field(False, description="create: start with the host")


class MachineVars(Vars):
    action: str | None = Field(None, description=f"one of {', '.join(actions.ACTION_NAMES)}")
    name: str | None = Field(None, description="the new name, for rename")
    xmldesc: str | None = Field(None, description="the new XML description, for xmldesc")
    puuid: str | None = Field(None, description="the hypervisor to move to, for set_parent")
    bandwidth: str | None = Field(None, description="set_parent of a running machine: limit "
                                  "the live migration to this many MiB/s (extension)")
    vcpus: str | None = Field(None, description="for set: the machine's virtual CPUs")
    memory: str | None = Field(None, description="for set: the machine's memory in MiB")
    restart_policy: str | None = Field(None, description="for set: never or on-failure "
                                       "(started again after a crash or a kill)")
    autostart: str | None = Field(None, description="for set: true or false: start with "
                                  "the host")
    volume: str | None = Field(None, description="for attach_disk: a free volume of yours "
                               "(name or path)")
    size: str | None = Field(None, description="for attach_disk: GiB of a new blank disk; for "
                             "grow_disk: the disk's new size in GiB")
    target: str | None = Field(None, description="for detach_disk and grow_disk: the disk's "
                               "device name (vdb)")
    pkguuid: str | None = Field(None, description="the package to provision")
    hvmuuid: str | None = Field(None, description="for provision: the hypervisor, a cluster, or "
                                "left out (see ProvisionVars)")
    description: str | None = Field(None, description="the new package's description")
    version: str | None = Field(None, description="the new package's version")
    compression: str | None = Field(None, description="zstd (default) or gzip (strict XVM2)")
    pool: str | None = Field(None, description="the storage pool, for provision (extension)")
    user_data: str | None = Field(None, description="for provision: cloud-init user data (a "
                                  "cloud-config), at most 64 KiB: the machine gets a NoCloud seed")
    ssh_key: list[str] = Field(default_factory=list, description="an OpenSSH public key line "
                               "for the seed (repeatable)",
                               json_schema_extra={"x-repeat-only": True})
    hostname: str | None = Field(None, description="the guest's host name, for the seed")
    virt_type: str | None = Field(None, description="for provision: kvm or qemu (TCG)")
    libvirt_network: str | None = Field(None, description="for provision: the libvirt network "
                                        "of interfaces the package leaves to the target")


class ProvisionVars(Vars):
    pkguuid: str | None = Field(None, description="the package to provision")
    hvmuuid: str | None = Field(None, description=(
        "optional: the hypervisor that carries out the job (one of this host's); or a cluster: "
        "the server picks one of its hosts' hypervisors; left out: it picks among all the "
        "hypervisors the caller may control. The pick: connected, compatible with the package, "
        "enough free memory; the most free memory wins (docs/provisioning.md, Placement)"))
    name: str | None = Field(None, description="the new machine's name")
    pool: str | None = Field(None, description="the storage pool for its disks (extension; "
                             "default: the pool named 'default', else the first active one)")
    user_data: str | None = Field(None, description="cloud-init user data (a cloud-config), "
                                  "at most 64 KiB: the machine gets a NoCloud seed")
    ssh_key: list[str] = Field(default_factory=list, description="an OpenSSH public key line "
                               "for the seed (repeatable)",
                               json_schema_extra={"x-repeat-only": True})
    hostname: str | None = Field(None, description="the guest's host name, for the seed")
    virt_type: str | None = Field(None, description="kvm or qemu (TCG); default the "
                                  "hypervisor's class")
    libvirt_network: str | None = Field(None, description=(
        "a libvirt network of the hypervisor for the interfaces the package names no network "
        "for (an exported package's); default: a static network's, else the hypervisor's "
        "'default' network. Non-administrators: the bridges of networks they may read"))


class PackageVars(Vars):
    name: str | None = Field(None, description="the package's name (default: the machine's)")
    description: str | None = None
    version: str | None = None
    compression: str | None = Field(None, description="zstd (default) or gzip (strict XVM2)")


class RenameVars(Vars):
    name: str | None = Field(None, description="the new name")


class XmldescVars(Vars):
    xmldesc: str | None = Field(None, description="the new XML description")


class SetParentVars(Vars):
    puuid: str | None = Field(None, description="the hypervisor to move to")
    pool: str | None = Field(None, description="the target's storage pool for copied disks "
                             "(default: the pool of the same name, else its default pool)")
    bandwidth: str | None = Field(None, description="a live migration's limit in MiB/s")


class SetVars(Vars):
    vcpus: str | None = Field(None, description="the machine's virtual CPUs")
    memory: str | None = Field(None, description="the machine's memory in MiB")
    restart_policy: str | None = Field(None, description="never or on-failure")
    autostart: str | None = Field(None, description="true or false: start with the host")


class AttachDiskVars(Vars):
    volume: str | None = Field(None, description="a free volume of yours (name or path)")
    size: str | None = Field(None, description="or GiB of a new blank disk")


class DetachDiskVars(Vars):
    target: str | None = Field(None, description="the disk's device name (vdb)")


class GrowDiskVars(Vars):
    target: str | None = Field(None, description="the disk's device name (vda)")
    size: str | None = Field(None, description="its new size in GiB")


# The HTTP variables of /rest/machine/<UUID>/actions/<action>/; the other actions take none.
ACTION_VARS: dict[str, type[Vars]] = {
    "rename": RenameVars, "xmldesc": XmldescVars, "set_parent": SetParentVars,
    "set": SetVars, "attach_disk": AttachDiskVars, "detach_disk": DetachDiskVars,
    "grow_disk": GrowDiskVars}


class HypervisorVars(Vars):
    virt_class: str | None = Field(None, description="kvm, qemu, xen, lxc or test; "
                                   "derived from virt_url when left out")
    virt_url: str | None = Field(None, description="libvirt URI, e.g. qemu+ssh://host/system")


class ClustersVars(Vars):
    clusters: list[str] = Field(default_factory=list,
                                description="cluster UUIDs (repeat or separate with commas)")


def list_machines(ctx: Ctx, v: Annotated[ListVars, http_vars(ListVars)],
                  response: Response) -> dict:
    """List the ids of all machines (hosts and VMs); served from the inventory. A detailed
    list says in `X-Last-Event-ID` the newest event it includes: the events stream opened
    with it misses no change made after the list was read (docs/events.md)."""
    if not (v.detail or v.kind or v.hypervisor or v.state or v.search or v.host or v.limit
            or v.cluster or v.owner):
        return {"machines": machines.list_machine_ids(ctx)}
    if v.detail and (cursor := events.newest(ctx.db)) is not None:  # read before the rows
        response.headers["X-Last-Event-ID"] = str(cursor)
    filters: dict[str, Any] = {"kind": v.kind, "hypervisor": v.hypervisor, "state": v.state,
                               "search": v.search, "host": v.host, "cluster": v.cluster,
                               "owner": v.owner}
    keys = shown.list_keys(v.fields)  # refused before anything is read
    found = machines.list_machines(ctx, **filters, page=(v.offset, v.limit) if v.limit else None,
                                   xml="xmldesc" in keys)
    answer: dict = {"machines": [m.uuid for m in found]}
    if v.limit:
        answer["total"] = machines.count_machines(ctx, **filters)
    if v.detail:
        answer["machine_objs"] = shown.machine_objs(ctx, machines=found, keys=keys)
    return answer


def define_machine(ctx: Ctx, v: Annotated[DefineVars, http_vars(DefineVars)]) -> dict:
    """Define a new VM from libvirt domain XML on a hypervisor (extension, like virsh define);
    without `xmldesc`, create one from parameters (a `create` transaction: docs/api.md)."""
    if v.xmldesc is None:
        q = create.queue_create(
            ctx, name=v.name, vcpus=v.vcpus, memory=v.memory, disk=v.disk, image=v.image,
            cdrom=v.cdrom, network=v.network, libvirt_network=v.libvirt_network,
            hvmuuid=v.hvmuuid, pool=v.pool, virt_type=v.virt_type, firmware=v.firmware,
            cpu_mode=v.cpu_mode, user_data=v.user_data, ssh_key=v.ssh_key,
            hostname=v.hostname, autostart=v.autostart)
        return {"errno": 0, "message": "create queued", "machine": q.machine.uuid,
                "machine_obj": shown.machine_obj(q.machine), "txid": q.tx.uuid}
    m = machines.define_vm(ctx, xmldesc=v.xmldesc, hvmuuid=v.hvmuuid)
    return {"errno": 0, "message": f"machine {m.name} defined", "machine": m.uuid,
            "machine_obj": shown.machine_obj(m)}


def trigger_status_updates(uuid: str, ctx: Ctx) -> dict:
    """Resync the machine from libvirt now (a host: all its hypervisors)."""
    message = machines.trigger_status_updates(ctx, uuid)
    return {"errno": 0, "message": message, "machine": machines.get(ctx, uuid).uuid}


def _machine_answer(ctx: Ctx, uuid: str, message: str = "", *, live: bool = False) -> dict:
    m = machines.get(ctx, uuid)
    found = addresses.of_machine(ctx, m) if live else None
    paused = addresses.why_paused(ctx, m) if live else None
    return {"machine": m.uuid, "errno": 0, "message": message,
            "info": shown.machine_info(m, paused_reason=paused),
            "machine_obj": shown.machine_obj(m, addresses=found),
            "hypervisors": shown.machine_hypervisors(m)}


def get_machine_route(uuid: str, ctx: Ctx) -> dict:
    """The machine, its runtime information and its hypervisors; its addresses as stored and
    as libvirt reports them now."""
    return _machine_answer(ctx, uuid, live=True)


def update_machine(uuid: str, ctx: Ctx, v: Annotated[MachineVars, http_vars(MachineVars)]) -> dict:
    """Perform `action` on the machine (rename, xmldesc, set_parent, or any machine action).
    Without variables, answers like GET."""
    if posted_nothing(v, needs="action"):
        return _machine_answer(ctx, uuid, live=True)
    if v.action == "provision":
        return provision(uuid, ctx, ProvisionVars(
            pkguuid=v.pkguuid, hvmuuid=v.hvmuuid, name=v.name, pool=v.pool,
            user_data=v.user_data, ssh_key=v.ssh_key, hostname=v.hostname,
            virt_type=v.virt_type, libvirt_network=v.libvirt_network))
    if v.action == "package":
        return package(uuid, ctx, PackageVars(name=v.name, description=v.description,
                                              version=v.version, compression=v.compression))
    if v.action == "evacuate":
        tx = moves.queue_evacuation(ctx, uuid)
        return {"machine": uuid, "txid": tx.uuid, "errno": 0,
                "message": f"evacuation of {len(tx.params['moves'])} machine(s) queued"}
    message = actions.perform(ctx, uuid, v.action or "", actions.ActionVars(
        name=v.name, xmldesc=v.xmldesc, puuid=v.puuid, vcpus=v.vcpus, memory=v.memory,
        volume=v.volume, size=v.size, target=v.target, restart_policy=v.restart_policy,
        autostart=v.autostart, pool=v.pool, bandwidth=v.bandwidth))
    if v.action == "totaldelete":
        return {"machine": uuid, "errno": 0, "message": message}
    if isinstance(message, moves.Queued):  # set_parent as a transaction
        return {"machine": uuid, "txid": message.txid, "errno": 0, "message": str(message)}
    return _machine_answer(ctx, uuid, message)


def machine_hypervisors(uuid: str, ctx: Ctx) -> dict:
    """A host's hypervisors and candidates; a VM's hypervisor."""
    m = machines.get(ctx, uuid)
    cands = hypervisors.candidates(m) if m.kind == "host" else []
    return {"errno": 0, "message": "", "hypervisors": shown.machine_hypervisors(m),
            "candidates": cands}


def add_machine_hypervisor(uuid: str, ctx: Ctx,
                           v: Annotated[HypervisorVars, http_vars(HypervisorVars)]) -> dict:
    """Connect to virt_url and add it as a hypervisor of the host. Without variables,
    answers like GET."""
    if posted_nothing(v):
        return machine_hypervisors(uuid, ctx)
    m = machines.get(ctx, uuid)
    if m.kind != "host":
        raise Conflict(f"machine {m.name} is a virtual machine: hypervisors are added to a "
                       "host (GET lists the VM's own hypervisor)")
    hv = hypervisors.add_hypervisor(ctx, uuid, virt_url=v.virt_url, virt_class=v.virt_class)
    answer = machine_hypervisors(uuid, ctx)
    answer["message"] = f"hypervisor {hv.virt_url} added"
    return answer


def machine_clusters(uuid: str, ctx: Ctx) -> dict:
    """The clusters the machine belongs to."""
    m = machines.get(ctx, uuid)
    return {"errno": 0, "message": "", "clusters": [
        shown.cluster_obj(ctx, cluster=c) for c in m.clusters if access.holds(ctx, c, "read")]}


def add_machine_clusters(uuid: str, ctx: Ctx,
                         v: Annotated[ClustersVars, http_vars(ClustersVars)]) -> dict:
    """Add the machine to the clusters named in `clusters`. Without variables, answers like
    GET."""
    if posted_nothing(v):
        return machine_clusters(uuid, ctx)
    m = machines.add_to_clusters(ctx, uuid, v.clusters)
    return {"errno": 0, "message": f"machine {m.name} is in {len(m.clusters)} cluster(s)",
            "clusters": [shown.cluster_obj(ctx, cluster=c) for c in m.clusters]}


def remove_machine_clusters(uuid: str, ctx: Ctx,
                            v: Annotated[ClustersVars, http_vars(ClustersVars)]) -> dict:
    """Take the machine out of the clusters named in `clusters` (extension)."""
    m = machines.remove_from_clusters(ctx, uuid, v.clusters)
    return {"errno": 0, "message": f"machine {m.name} is in {len(m.clusters)} cluster(s)",
            "clusters": [shown.cluster_obj(ctx, cluster=c) for c in m.clusters]}


def machine_actions(uuid: str, ctx: Ctx) -> dict:
    """The actions valid for the machine in its current state."""
    return {"errno": 0, "message": "", "result": actions.available(machines.get(ctx, uuid))}


def provision(uuid: str, ctx: Ctx, v: Annotated[ProvisionVars, http_vars(ProvisionVars)]) -> dict:
    """Provision a package as a new machine on one of this host's hypervisors, or, with
    `hvmuuid` naming a cluster or left out, on the hypervisor placement picks. Answers at
    once with the new machine's id, the transaction doing the work and the hypervisor."""
    q = provisioning.queue_provision(ctx, uuid, pkguuid=v.pkguuid, hvmuuid=v.hvmuuid,
                                     name=v.name, pool=v.pool, user_data=v.user_data,
                                     ssh_keys=v.ssh_key, hostname=v.hostname,
                                     virt_type=v.virt_type,
                                     libvirt_network=v.libvirt_network)
    return {"newuuid": q.machine, "txid": q.tx.uuid, "hvmuuid": q.hypervisor, "errno": 0,
            "message": "provision queued"}


def package(uuid: str, ctx: Ctx, v: Annotated[PackageVars, http_vars(PackageVars)]) -> dict:
    """Export the machine (domain XML and disks) into a new local package; a running machine
    is paused while its disks are read."""
    tx = provisioning.queue_package(ctx, uuid, name=v.name, description=v.description,
                                    version=v.version, compression=v.compression)
    return {"txid": tx.uuid, "errno": 0, "message": "packaging queued"}


def run_action(ctx: Context, uuid: str, action: str, v: Vars | None = None) -> dict:
    """The answer of `POST /rest/machine/<UUID>/actions/<action>/` (also given by
    `app.ActionShortcut` for the actions without variables)."""
    message = actions.perform(ctx, uuid, action, actions.ActionVars(
        name=getattr(v, "name", None), xmldesc=getattr(v, "xmldesc", None),
        puuid=getattr(v, "puuid", None), vcpus=getattr(v, "vcpus", None),
        memory=getattr(v, "memory", None), volume=getattr(v, "volume", None),
        size=getattr(v, "size", None), target=getattr(v, "target", None),
        restart_policy=getattr(v, "restart_policy", None),
        autostart=getattr(v, "autostart", None),
        pool=getattr(v, "pool", None), bandwidth=getattr(v, "bandwidth", None)))
    if isinstance(message, moves.Queued):  # set_parent as a transaction
        return {"errno": 0, "message": str(message), "txid": message.txid}
    return {"errno": 0, "message": message}


def _action_endpoint(action: str):  # noqa: ANN202
    model = ACTION_VARS.get(action, NoVars)

    def endpoint(uuid: str, ctx: Ctx, v: Annotated[Vars, http_vars(model)]) -> dict:
        return run_action(ctx, uuid, action, v)
    endpoint.__name__ = f"action_{action}"
    return endpoint


SPEC_ACTIONS = {
    "unlock": "Clear the machine's transaction lock (administrators).",
    "suspend": "Pause the running machine.",
    "resume": "Resume the paused machine.",
    "shutdown": "Ask the guest to power off (ACPI); returns at once.",
    "poweroff": "Stop the machine at once, like pulling the plug.",
    "reboot": "Ask the guest to reboot (ACPI); returns at once.",
    "create": "Start the machine.",
    "store_xml": "Define the stored XML description on the hypervisor.",
    "manage": "Adopt a discovered (unmanaged) domain.",
    "totaldelete": "Stop, undefine, delete the disk volumes no other domain uses, forget it.",
    "rename": "Rename (needs name; a VM must be shut off). Extension.",
    "xmldesc": "Replace the stored XML description (needs xmldesc). Extension.",
    "set_parent": "Move to another hypervisor (needs puuid): a running machine live, with "
                  "its disks, as a transaction (txid). Extension.",
    "set": "Resize: vcpus and/or memory (MiB); live up to the maximums; restart_policy "
           "(never, on-failure) and autostart (true, false). Extension.",
    "attach_disk": "Attach a volume of yours (volume) or a new blank disk (size, GiB). "
                   "Extension.",
    "detach_disk": "Detach the disk target (vdb); the volume stays yours. Extension.",
    "grow_disk": "Grow the disk target to size GiB (live by block resize). Extension.",
}

# The actions whose path takes no HTTP variables: app.ActionShortcut may answer them.
NO_VARS_ACTIONS = frozenset(SPEC_ACTIONS.keys() - ACTION_VARS.keys())

expose(router, "/rest/machines/", ["GET"], list_machines, vars_model=ListVars,
       response_model=schemas.MachinesAnswer, response_model_exclude_unset=True,
       summary="List machines (2.2)", dependencies=[refuse_changes_on_get(DefineVars)])
expose(router, "/rest/machines/", ["POST"], list_machines, vars_model=ListVars,
       response_model=schemas.MachinesAnswer, response_model_exclude_unset=True,
       summary="List machines (2.2)")
expose(router, "/rest/machines/", ["PUT"], define_machine, vars_model=DefineVars,
       response_model=schemas.CreateAnswer | schemas.DefineAnswer,
       summary="Define a VM from XML, or create one from parameters (extension)")
expose(router, "/rest/machine/", ["GET", "POST"], list_machines, vars_model=ListVars,
       response_model=schemas.MachinesAnswer, response_model_exclude_unset=True,
       summary="List machines (2.3)")
expose(router, "/rest/machine/{uuid}/trigger_status_updates/", ["GET", "POST"],
       trigger_status_updates, response_model=schemas.TriggerAnswer,
       summary="Resync a machine from libvirt (2.1)",
       dependencies=[Depends(refuse_cross_site)])  # a GET that sets libvirt calls going
expose(router, "/rest/machine/{uuid}/", ["GET"], get_machine_route,
       response_model=schemas.MachineAnswer, summary="Get a machine (2.4)",
       dependencies=[refuse_changes_on_get(MachineVars)])
expose(router, "/rest/machine/{uuid}/", ["POST"], update_machine, vars_model=MachineVars,
       response_model=schemas.MachineAnswer | schemas.MachineTxAnswer | schemas.TriggerAnswer
       | schemas.ProvisionAnswer | schemas.PackageTxAnswer,
       summary="Act on a machine (2.4)")
expose(router, "/rest/machine/{uuid}/hypervisors/", ["GET"], machine_hypervisors,
       response_model=schemas.HypervisorsAnswer, summary="A machine's hypervisors (2.6)",
       dependencies=[refuse_changes_on_get(HypervisorVars)])
expose(router, "/rest/machine/{uuid}/hypervisors/", ["POST"], add_machine_hypervisor,
       vars_model=HypervisorVars, response_model=schemas.HypervisorsAnswer,
       summary="Add a hypervisor to a host (2.6)")
expose(router, "/rest/machine/{uuid}/clusters/", ["GET"], machine_clusters,
       response_model=schemas.ClustersAnswer, summary="A machine's clusters (2.7)",
       dependencies=[refuse_changes_on_get(ClustersVars)])
expose(router, "/rest/machine/{uuid}/clusters/", ["POST"], add_machine_clusters,
       vars_model=ClustersVars, response_model=schemas.ClustersAnswer,
       summary="Add a machine to clusters (2.7)")
expose(router, "/rest/machine/{uuid}/clusters/", ["DELETE"], remove_machine_clusters,
       vars_model=ClustersVars, response_model=schemas.ClustersAnswer,
       summary="Remove a machine from clusters (extension)")
expose(router, "/rest/machine/{uuid}/actions/", ["GET", "POST"], machine_actions,
       response_model=schemas.ActionsAnswer, summary="Actions valid now (2.8)")
expose(router, "/rest/machine/{uuid}/actions/package/", ["POST"], package,
       vars_model=PackageVars, response_model=schemas.PackageTxAnswer,
       summary="Package the machine (2.19)")
expose(router, "/rest/machine/{uuid}/actions/provision/", ["POST", "PUT"], provision,
       vars_model=ProvisionVars, response_model=schemas.ProvisionAnswer,
       summary="Provision a package on this host, or where placement puts it (2.20)")
for _name, _doc in SPEC_ACTIONS.items():
    expose(router, f"/rest/machine/{{uuid}}/actions/{_name}/", ["POST"], _action_endpoint(_name),
           vars_model=ACTION_VARS.get(_name, NoVars),
           response_model=schemas.TxStatus if _name == "set_parent" else schemas.Status,
           summary=_doc)
