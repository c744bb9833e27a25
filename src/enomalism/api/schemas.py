"""The spec's return formats as pydantic models (for the OpenAPI description), and the
functions that shape stored objects into them."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import object_session

from enomalism.runtime import nodes
from enomalism.services import clusters
from enomalism.services.actions import available
from enomalism.services.addresses import stored as stored_addresses
from enomalism.services.context import Context
from enomalism.services.machines import shown_xml
from enomalism.services.networks import machine_leases
from enomalism.store.models import Cluster, Hypervisor, Machine
from enomalism.wire import Candidate, ClusterObj, HypervisorObj, MachineInfo, MachineObj, NodeObj


def _errno_and_message_required(schema: dict, _model: type) -> None:
    """Every answer carries errno and message (handlers may leave them to the defaults)."""
    schema["required"] = ["errno", "message"] + [
        k for k in schema.get("required", []) if k not in ("errno", "message")]


class Status(BaseModel):
    model_config = ConfigDict(json_schema_extra=_errno_and_message_required)

    errno: int = Field(0, description="0 on success; see docs/errors.md")
    message: str = Field("", description="what happened, for a person")


class Readiness(Status):
    """`GET /readyz`: each check (database, jobs, leases, hypervisors) with `ok` and, when
    not ok, `error`; hypervisors not connected are listed in `checks.hypervisors.down`."""

    checks: dict[str, dict[str, Any]] = Field(description="check name -> {ok, error, ...}")
    warnings: list[str] = Field(description="what slows this node without stopping it")


class NodesAnswer(Status):
    node: str = Field(description="the node that answered")
    nodes: list[NodeObj]


class MachinesAnswer(BaseModel):
    machines: list[str]
    machine_objs: list[MachineObj] | None = Field(None, description="with detail=true only")
    total: int | None = Field(None, description="with limit only: how many match in all")


class DefineAnswer(Status):
    machine: str
    machine_obj: MachineObj


class CreateAnswer(DefineAnswer):
    txid: str = Field(description="the create transaction making the disks and the domain")


class MachineAnswer(Status):
    machine: str
    info: MachineInfo
    machine_obj: MachineObj
    hypervisors: list[HypervisorObj]


class MachineTxAnswer(Status):
    """set_parent queued as a transaction (a live migration, a move with the disks), or a
    host's evacuation."""

    machine: str
    txid: str = Field(description="the transaction doing the move")


class TxStatus(Status):
    txid: str | None = Field(None, description="set_parent: the transaction doing the move, "
                             "when it is one")


class TriggerAnswer(Status):
    machine: str


class HypervisorAnswer(Status):
    uuid: str
    hypervisor: HypervisorObj | None


class HypervisorsAnswer(Status):
    hypervisors: list[HypervisorObj]
    candidates: list[Candidate]


class ClustersAnswer(Status):
    clusters: list[ClusterObj]


class ActionsAnswer(Status):
    result: list[str]


class ClusterAnswer(Status):
    cluster: ClusterObj | list[ClusterObj]


class ProvisionAnswer(Status):
    newuuid: str = Field(description="the new machine's id")
    txid: str = Field(description="the provisioning transaction")
    hvmuuid: str | None = Field(None, description="the hypervisor that takes the machine "
                                "(extension; the one placement picked when none was named)")


class PackageTxAnswer(Status):
    txid: str = Field(description="the packaging transaction")


class HostsAnswer(Status):
    hosts: list[MachineObj]


class HostAnswer(Status):
    machine: str
    machine_obj: MachineObj
    hypervisors: list[HypervisorObj]


def machine_obj(m: Machine, addresses: list[dict] | None = None) -> dict:
    """`addresses`: the machine's, when the caller has them (a list reads all machines' leases
    in one query, one machine's GET asks libvirt too); else its stored leases."""
    if addresses is None:
        db = object_session(m)  # None only for a machine no session loaded: no leases then
        addresses = stored_addresses(db, [m.uuid])[m.uuid] \
            if m.kind == "vm" and db is not None else []
    return {
        "uuid": m.uuid, "name": m.name, "kind": m.kind, "state": m.state, "managed": m.managed,
        "persistent": m.persistent, "parent": m.parent_uuid,
        "host": m.parent.machine_uuid if m.parent is not None else None,
        "address": m.address, "is_local": m.is_local and m.local_to in (None, nodes.this_machine()),
        "clusters": [c.uuid for c in m.clusters], "locked_by": m.lock_txid,
        "owner": m.owner_uuid, "actions": available(m), "xmldesc": shown_xml(m),
        "xml_pending": m.xml_pending, "created_at": m.created_at,
        "updated_at": m.updated_at, "synced_at": m.synced_at, "vcpus": m.vcpus,
        "memory_kib": m.memory_kib, "addresses": addresses,
        "restart_policy": m.restart_policy or "never", "autostart": bool(m.autostart),
    }


def machine_info(m: Machine, paused_reason: str | None = None) -> dict:
    hv = m.parent
    return {"paused_reason": paused_reason,
        "state": m.state, "vcpus": m.vcpus, "memory_kib": m.memory_kib,
        "max_memory_kib": m.max_memory_kib, "persistent": m.persistent,
        "hypervisor_status": hv.status if hv is not None else None, "synced_at": m.synced_at,
        "leases": [
            {"network": n.uuid, "network_name": n.name, "address": lease.address,
             "prefix": n.prefix, "gateway": n.gateway, "mac": lease.mac, "bridge": n.bridge}
            for lease, n in machine_leases(object_session(m), m.uuid)],
    }


def hypervisor_obj(hv: Hypervisor) -> dict:
    return {
        "uuid": hv.uuid, "machine": hv.machine_uuid, "virt_class": hv.virt_class,
        "virt_url": hv.virt_url, "status": hv.status, "last_error": hv.last_error,
        "hostname": hv.hostname, "driver": hv.driver, "libvirt_version": hv.libvirt_version,
        "cpus": hv.cpus, "memory_kib": hv.memory_kib, "arch": hv.arch,
        "connected_at": hv.connected_at, "local_to": hv.local_to, "owner_node": hv.owner_node,
    }


def machine_hypervisors(m: Machine) -> list[dict]:
    """A host's hypervisors; for a VM, the one it runs on."""
    if m.kind == "host":
        return [hypervisor_obj(h) for h in m.hypervisors]
    return [hypervisor_obj(m.parent)] if m.parent is not None else []


def cluster_obj(c: Cluster, ctx: Context) -> dict:
    """Its machines: those the caller may read (a cluster does not share all it holds)."""
    return {"uuid": c.uuid, "name": c.name, "machines": clusters.members(ctx, c)}
