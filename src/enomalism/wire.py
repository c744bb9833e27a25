"""The wire shapes: the objects the API's answers carry, as pydantic models. One source for
both ends: the server declares its answers with them (api/), and the Python client
(`enomalism.client`) returns them, so the two cannot drift apart (tests/cli/test_wire.py holds
the client to the server's OpenAPI description). Only pydantic is imported here: the client
does not load the server to read an answer."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class WireModel(BaseModel):
    """Base of the wire shapes: unknown keys are ignored (a newer server may add some), and
    `to_dict` gives back the JSON-ready form (what `enomalism --json` prints)."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- machines, hypervisors, nodes, clusters ------------------------------------------------

class AddressObj(WireModel):
    address: str
    prefix: int | None
    mac: str | None
    source: str = Field(description="lease (ours, a static network's), dhcp (libvirt's "
                        "network leases), agent (the guest agent) or arp (the host's table)")


class MachineObj(WireModel):
    uuid: str
    name: str
    kind: str = Field(description="'host' or 'vm'")
    state: str = Field(description="libvirt's state (running, paused, shutoff, ...), "
                       "'missing' when the domain left its hypervisor")
    managed: bool
    persistent: bool
    parent: str | None = Field(description="VMs: the hypervisor UUID (puuid)")
    host: str | None = Field(description="VMs: the host machine of the hypervisor")
    address: str | None
    is_local: bool
    clusters: list[str]
    locked_by: str | None = Field(description="the transaction holding the machine")
    owner: str | None
    actions: list[str]
    xmldesc: str | None
    xml_pending: bool = Field(description="xmldesc changed and not yet stored on the hypervisor")
    created_at: datetime
    updated_at: datetime
    synced_at: datetime | None
    vcpus: int | None = Field(None, description="VMs: virtual CPUs (extension)")
    memory_kib: int | None = Field(None, description="VMs: memory in KiB (extension)")
    addresses: list[AddressObj] = Field(
        default_factory=list, description="VMs: where the guest is reachable (extension). "
        "Lists and action answers carry the stored leases; GET of one machine also asks "
        "libvirt (dhcp, agent, arp)")
    restart_policy: str = Field("never", description="VMs: never, or on-failure: started "
                                "again after its guest crashed or was killed (extension)")
    autostart: bool = Field(False, description="VMs: started with its host, as set with "
                            "action=set (extension)")


class SnapshotObj(WireModel):
    """A snapshot of a machine (GET /rest/machine/<UUID>/snapshots/)."""

    name: str
    description: str
    parent: str | None = Field(description="the snapshot it was taken on top of (a tree)")
    created: datetime
    state: str = Field(description="the machine's state when it was taken")
    memory: bool = Field(description="holds the memory too: a revert resumes it running")


class MachineInfo(WireModel):
    state: str
    vcpus: int | None
    memory_kib: int | None
    max_memory_kib: int | None
    persistent: bool
    hypervisor_status: str | None = Field(description="connected, connecting or disconnected")
    synced_at: datetime | None
    leases: list[dict] = Field(description="addresses the machine holds on static networks: "
                               "network, network_name, address, prefix, gateway, mac, bridge")
    paused_reason: str | None = Field(
        None, description="a paused VM, in GET of the machine: libvirt's reason (user, "
        "ioerror, watchdog, migration, ...) (extension)")


class HypervisorObj(WireModel):
    uuid: str
    machine: str = Field(description="the host machine it belongs to")
    virt_class: str
    virt_url: str
    status: str
    last_error: str | None
    hostname: str | None
    driver: str | None
    libvirt_version: str | None
    cpus: int | None
    memory_kib: int | None
    arch: str | None
    connected_at: datetime | None
    local_to: str | None = Field(
        description="for a URI with no host part (qemu:///system): the machine it means; "
                    "API nodes on other machines cannot reach it")
    owner_node: str | None = Field(
        description="the API node whose event subscription keeps its machines true")


class NodeObj(WireModel):
    id: str
    hostname: str = Field(description="the machine the node runs on")
    pid: int | None
    started_at: datetime
    seen_at: datetime = Field(description="its last heartbeat")
    alive: bool = Field(description="it beat within the ownership lease and did not stop")
    hypervisors: list[str] = Field(description="the hypervisors it owns")


class Candidate(WireModel):
    virt_class: str
    virt_url: str
    reachable: bool


class ClusterObj(WireModel):
    uuid: str
    name: str
    machines: list[str]


# -- machine statistics --------------------------------------------------------------------

class Point(WireModel):
    t: float | None = Field(None, description="when (seconds since the epoch)")
    cpu: float | None = Field(None, description="CPU use, percent of the machine's vCPUs")
    mem_used: float | None = Field(None, description="memory in use, bytes")
    mem_total: float | None = Field(None, description="memory the machine has, bytes")
    disk_read: float | None = Field(None, description="bytes read per second, all disks")
    disk_write: float | None = Field(None, description="bytes written per second")
    net_rx: float | None = Field(None, description="bytes received per second, all NICs")
    net_tx: float | None = Field(None, description="bytes sent per second")


class MachineStats(WireModel):
    """GET /rest/machine/<UUID>/stats/ (the answer's errno and message aside)."""

    machine: str
    state: str | None = None
    interval: float = Field(description="seconds between points")
    stats: Point = Field(description="the latest point (all null unless it runs)")
    history: list[Point] = Field(description="the last hour, oldest first")



# -- the base-image cache ------------------------------------------------------------------

class BaseVolume(WireModel):
    hypervisor: str
    pool: str
    name: str
    path: str
    capacity: int = Field(description="bytes the guest sees")
    allocation: int = Field(description="bytes it takes in the pool")
    package: str | None = Field(description="the package it was uploaded from")
    package_name: str | None = Field(description="none when the package is gone")
    cached: bool = Field(description="its package is in this server's package cache")
    ours: bool = Field(description="made by this installation (only those are ever removed)")
    domains: list[str] = Field(description="domains whose disks back onto it (libvirt's word)")
    volumes: list[str] = Field(description="pool/name of the volumes backing onto it")
    unused: bool = Field(description="the next sweep removes it")
    kept: str | None = Field(description="why it is kept")


# -- users, groups, tokens, audit, permissions ---------------------------------------------

class UserRef(WireModel):
    uuid: str
    username: str


class GroupRef(WireModel):
    uuid: str
    name: str


class UserObj(WireModel):
    uuid: str
    username: str
    email: str | None
    full_name: str | None
    is_admin: bool
    enabled: bool
    groups: list[GroupRef]
    created_at: datetime
    password_changed_at: datetime | None


class GroupObj(WireModel):
    uuid: str
    name: str
    owner: str | None
    users: list[UserRef]
    created_at: datetime


class TokenObj(WireModel):
    uuid: str
    name: str
    user: str
    created_at: datetime
    expires_at: datetime | None


class AuditObj(WireModel):
    id: int
    at: datetime
    actor: str | None
    actor_name: str | None
    source: str | None
    action: str
    object: str | None
    object_type: str | None = Field(description="machine, host, hypervisor, cluster, network, "
                                    "range, user, group, token, repository, package, "
                                    "transaction; none: not known")
    object_name: str | None = Field(description="the object's name when the entry was written")
    errno: int = Field(description="the outcome: 0 done, else the refusal's or failure's errno")
    message: str | None = Field(description="the answer's message")
    detail: dict[str, Any] = Field(description="the variables given (secrets as ***, long "
                                   "values by their length) and what the service added")


class GrantObj(WireModel):
    uuid: str
    permission: str
    principal_type: str = Field(description="user or group")
    principal: str = Field(description="the user's or group's id")
    principal_name: str | None
    created_at: datetime


class AccessList(WireModel):
    """An object's owner and grants (GET /rest/permissions/<UUID>/, errno and message aside)."""

    object: str
    object_type: str
    object_name: str | None = Field(None, description="the object's name (extension)")
    owner: str | None
    owner_name: str | None = Field(None, description="the owner's user name (extension)")
    permissions: list[GrantObj]



# -- transactions --------------------------------------------------------------------------

class TransactionData(WireModel):
    uuid: str
    kind: str = Field(description="provision, package or retrieve")
    state: str = Field(description="queued, running, done, failed or cancelled")
    target: str | None = Field(description="the machine or package it works on")
    completion: int
    result: dict[str, Any]
    error: str | None
    log: list[list[str]] = Field(description="[time, level, message] entries, oldest first")
    owner: str | None
    owner_name: str | None = Field(None, description="the user who started it (extension)")
    target_name: str | None = Field(None, description="the target's name (extension)")
    cancel_requested: bool
    parent: str | None = Field(None, description="the transaction this one is a child of "
                               "(an evacuation's moves; extension)")
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


# -- feeds, packages, images ---------------------------------------------------------------

class PackageObj(WireModel):
    uuid: str
    name: str
    description: str | None
    version: str | None
    virt_class: str | None
    arch: str | None
    state: str = Field(description="remote (listed by a feed), retrieving, or cached (here)")
    repository: str | None = Field(description="the feed it comes from; none: made here")
    url: str | None = Field(description="where it is downloaded from (never with credentials)")
    length: int | None
    sha256: str | None
    size: int | None = Field(description="size of the cached file")
    disks: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class RepositoryObj(WireModel):
    uuid: str
    url: str = Field(description="the feed URL, never with credentials or secret query values")
    has_credentials: bool
    title: str | None
    description: str | None
    feed_uuid: str | None
    refreshed_at: datetime | None
    last_error: str | None
    packages: int


class PoolObj(WireModel):
    name: str
    uuid: str = Field(description="libvirt's UUID of the pool")
    hypervisor: str
    active: bool
    capacity: int = Field(description="bytes")
    allocation: int = Field(description="bytes")
    available: int = Field(description="bytes")


class VolumeObj(WireModel):
    name: str
    path: str
    capacity: int = Field(description="bytes the guest sees")
    allocation: int | None = Field(None, description="bytes used on the host")
    format: str | None = None
    owner: str | None = Field(description="the user who owns it (a machine's volume: the "
                              "machine's owner)")
    machine: str | None = Field(description="the machine whose disk it is")


class ImageObj(WireModel):
    uuid: str
    name: str
    format: str = Field(description="qcow2, raw or iso")
    size: int | None = Field(description="bytes of the file")
    virtual_size: int | None = Field(description="bytes the guest sees")
    sha256: str | None
    owner: str | None
    hypervisor: str
    pool: str
    path: str | None = Field(description="the volume's path on the hypervisor")
    state: str = Field(description="uploading, ready or failed")
    url: str | None = Field(description="where it was registered from (without credentials)")
    created_at: datetime


# -- networks ------------------------------------------------------------------------------

class RangeObj(WireModel):
    uuid: str
    network: str
    start_ip: str
    end_ip: str
    size: int = Field(description="how many addresses the range holds")


class NetworkObj(WireModel):
    uuid: str
    name: str
    description: str | None
    bridge: str = Field(description="the host bridge, or a libvirt network, guests join")
    cluster: str | None
    ip: str = Field(description="the network address")
    netmask: str
    prefix: int
    gateway: str | None
    version: int = Field(description="4 or 6")
    ranges: list[RangeObj]
    leased: int = Field(description="addresses in use")
    created_at: datetime


class LeaseObj(WireModel):
    uuid: str
    network: str
    address: str
    machine: str | None = Field(description="the machine holding it; none: reserved by hand")
    mac: str | None
    note: str | None
    created_at: datetime
