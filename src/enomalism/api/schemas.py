"""The spec's return formats as pydantic models (for the OpenAPI description); the
functions that shape stored objects into them are `services/shown/`."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from enomalism.wire import (
    AddressObj,
    Candidate,
    ClusterObj,
    HypervisorObj,
    MachineInfo,
    MachineObj,
    NodeObj,
)


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


class MachineFields(BaseModel):
    """A machine of a list asked for with `fields` (extension): its uuid and the keys named,
    each as in MachineObj; the keys not named are left out of the answer."""

    uuid: str
    name: str | None = None
    kind: str | None = None
    state: str | None = None
    managed: bool | None = None
    persistent: bool | None = None
    parent: str | None = None
    host: str | None = None
    address: str | None = None
    is_local: bool | None = None
    clusters: list[str] | None = None
    locked_by: str | None = None
    owner: str | None = None
    actions: list[str] | None = None
    xmldesc: str | None = None
    xml_pending: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    synced_at: datetime | None = None
    vcpus: int | None = None
    memory_kib: int | None = None
    addresses: list[AddressObj] | None = None
    restart_policy: str | None = None
    autostart: bool | None = None


class MachinesAnswer(BaseModel):
    machines: list[str]
    machine_objs: list[MachineObj] | list[MachineFields] | None = Field(
        None, union_mode="left_to_right",
        description="with detail=true only; with fields, only the keys named (and uuid)")
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
