"""The database schema. Machines, hypervisors and clusters are the inventory; VM rows mirror
libvirt domains (their uuid is the domain's UUID) and are kept true by events."""

import uuid as uuidlib
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timestamps come back timezone-aware (UTC) from every database, SQLite included."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, _dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column()

    groups: Mapped[list["Group"]] = relationship(
        secondary="group_members", back_populates="users", order_by="Group.name"
    )


class Group(Base):
    __tablename__ = "groups"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(
        secondary="group_members", back_populates="groups", order_by="User.username"
    )


class GroupMember(Base):
    __tablename__ = "group_members"

    group_uuid: Mapped[str] = mapped_column(
        ForeignKey("groups.uuid", ondelete="CASCADE"), primary_key=True
    )
    user_uuid: Mapped[str] = mapped_column(
        ForeignKey("users.uuid", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    """A named bearer token; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_tokens"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    user_uuid: Mapped[str] = mapped_column(ForeignKey("users.uuid", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    # a dashboard session (services/sessions.py): not in the user's token list
    is_session: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Grant(Base):
    """One access-list entry: a user or group holds a permission on an object."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("object_uuid", "principal_uuid", "permission"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    object_uuid: Mapped[str] = mapped_column(String(36), index=True)
    object_type: Mapped[str] = mapped_column(String(16))
    principal_type: Mapped[str] = mapped_column(String(8))  # "user" or "group"
    principal_uuid: Mapped[str] = mapped_column(String(36), index=True)
    permission: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(36))


class AuditEntry(Base):
    """Every change, and every refused change: who, from where, when, on what, the outcome
    (errno 0: done). See docs/access.md, The audit log."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_uuid: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_name: Mapped[str | None] = mapped_column(String(255))
    errno: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    message: Mapped[str | None] = mapped_column(Text)


class Machine(Base):
    """A host (physical node) or a VM (libvirt domain)."""

    __tablename__ = "machines"
    # Lists are ordered by kind, name, uuid: read in index order rather than sorted (at 10,000
    # machines the sort was most of a list's time on PostgreSQL).
    __table_args__ = (Index("ix_machines_kind_name_uuid", "kind", "name", "uuid"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(8))  # "host" or "vm"
    # VMs: the hypervisor the domain is defined on.
    parent_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("hypervisors.uuid", ondelete="RESTRICT"), index=True
    )
    # Hosts: the address other nodes reach it at; True for the host this server runs on.
    address: Mapped[str | None] = mapped_column(String(255))
    is_local: Mapped[bool] = mapped_column(Boolean, default=False)
    # Hosts a server created for the machine it runs on: that machine's hostname. Every API
    # node on that machine shares the host; a node on another machine makes its own.
    local_to: Mapped[str | None] = mapped_column(String(255))
    candidates: Mapped[list] = mapped_column(JSON, default=list)
    managed: Mapped[bool] = mapped_column(Boolean, default=True)
    # libvirt state name, or "missing" when the domain disappeared from its hypervisor.
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    persistent: Mapped[bool] = mapped_column(Boolean, default=True)
    vcpus: Mapped[int | None] = mapped_column(Integer)
    memory_kib: Mapped[int | None] = mapped_column(Integer)
    max_memory_kib: Mapped[int | None] = mapped_column(Integer)
    xmldesc: Mapped[str | None] = mapped_column(Text)
    # True when xmldesc was changed through the API and not yet stored on the hypervisor.
    xml_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_txid: Mapped[str | None] = mapped_column(String(36))
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    # VMs (issue 19): "never" or "on-failure" (started again after a crash or a kill from
    # outside, runtime/restarts.py); autostart as last set through the API (libvirt keeps
    # the flag itself); the times (epoch seconds) of the automatic restarts still counted.
    restart_policy: Mapped[str] = mapped_column(String(16), default="never",
                                                server_default="never")
    autostart: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    restarts: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column()

    parent: Mapped["Hypervisor | None"] = relationship(
        foreign_keys=[parent_uuid], back_populates="machines"
    )
    hypervisors: Mapped[list["Hypervisor"]] = relationship(
        foreign_keys="Hypervisor.machine_uuid", back_populates="host",
        order_by="Hypervisor.virt_url",
    )
    clusters: Mapped[list["Cluster"]] = relationship(
        secondary="cluster_members", back_populates="machines", order_by="Cluster.name"
    )

    @property
    def vm_parent_uuid(self) -> str:
        """A VM's hypervisor UUID: `parent_uuid` is None only for a host."""
        if self.parent_uuid is None:
            raise ValueError(f"machine {self.uuid} is a host: it has no hypervisor")
        return self.parent_uuid

    @property
    def vm_parent(self) -> "Hypervisor":
        """A VM's hypervisor row (see `vm_parent_uuid`)."""
        if self.parent is None:
            raise ValueError(f"machine {self.uuid} is a host: it has no hypervisor")
        return self.parent


class Hypervisor(Base):
    """A libvirt connection belonging to a host machine."""

    __tablename__ = "hypervisors"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    machine_uuid: Mapped[str] = mapped_column(
        ForeignKey("machines.uuid", ondelete="CASCADE", name="fk_hypervisors_machine_uuid",
                   use_alter=True),
        index=True,
    )
    virt_class: Mapped[str] = mapped_column(String(16))
    virt_url: Mapped[str] = mapped_column(String(1024), unique=True)
    # connected, connecting or disconnected; last_error says why it is not connected.
    status: Mapped[str] = mapped_column(String(16), default="connecting")
    last_error: Mapped[str | None] = mapped_column(Text)
    hostname: Mapped[str | None] = mapped_column(String(255))
    driver: Mapped[str | None] = mapped_column(String(32))
    libvirt_version: Mapped[str | None] = mapped_column(String(32))
    cpus: Mapped[int | None] = mapped_column(Integer)
    memory_kib: Mapped[int | None] = mapped_column(Integer)
    arch: Mapped[str | None] = mapped_column(String(32))
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    connected_at: Mapped[datetime | None] = mapped_column()
    # A URI with no host part (qemu:///system) means the machine it was registered on: that
    # machine's hostname. Nodes on other machines do not connect to it.
    local_to: Mapped[str | None] = mapped_column(String(255))
    # The API node whose event subscription keeps this hypervisor's machines true, and until
    # when its claim holds without being renewed (runtime/nodes.py).
    owner_node: Mapped[str | None] = mapped_column(String(64))
    owner_until: Mapped[datetime | None] = mapped_column()

    host: Mapped[Machine] = relationship(foreign_keys=[machine_uuid], back_populates="hypervisors")
    machines: Mapped[list[Machine]] = relationship(
        foreign_keys=[Machine.parent_uuid], back_populates="parent"
    )


class Cluster(Base):
    __tablename__ = "clusters"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    machines: Mapped[list[Machine]] = relationship(
        secondary="cluster_members", back_populates="clusters", order_by="Machine.name"
    )


class ClusterMember(Base):
    __tablename__ = "cluster_members"

    cluster_uuid: Mapped[str] = mapped_column(
        ForeignKey("clusters.uuid", ondelete="CASCADE"), primary_key=True
    )
    machine_uuid: Mapped[str] = mapped_column(
        ForeignKey("machines.uuid", ondelete="CASCADE"), primary_key=True, index=True
    )


class Transaction(Base):
    """A durable asynchronous job (spec section 5): provision, package, package retrieval.

    `undo` is the job's log of what it created, written before each thing is created, so a
    failed, cancelled or interrupted job can remove exactly that (see jobs/undo.py)."""

    __tablename__ = "transactions"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(32))
    target_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    # queued, running, done, failed, cancelled (transitions: jobs/states.py)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    completion: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[list] = mapped_column(JSON, default=list)
    undo: Mapped[list] = mapped_column(JSON, default=list)
    locks: Mapped[list] = mapped_column(JSON, default=list)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Node(Base):
    """An API server process sharing this database; several run behind a load balancer."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Written every few seconds while the node runs; a node silent for longer than the
    # ownership lease has gone away and its hypervisors are taken over.
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column()


class NamedLock(Base):
    """A lock shared by every server process: held by a running transaction, so that two
    jobs fetching one package, or uploading one base volume, take turns across nodes. A lock
    whose transaction is no longer running is free."""

    __tablename__ = "named_locks"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(36), index=True)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaseVolume(Base):
    """A base volume provisioning uploaded (`enomalism-base-*`, services/cache.py): this
    installation's to remove once nothing uses it. Base volumes another installation sharing
    the hypervisor made are never touched."""

    __tablename__ = "base_volumes"

    hypervisor_uuid: Mapped[str] = mapped_column(
        ForeignKey("hypervisors.uuid", ondelete="CASCADE"), primary_key=True)
    pool: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    package_uuid: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Repository(Base):
    """A VMcast feed of packages. Credentials from the feed URL are kept apart from it and
    never shown back."""

    __tablename__ = "repositories"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    url: Mapped[str] = mapped_column(String(2048))
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(String(1024))
    title: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    feed_uuid: Mapped[str | None] = mapped_column(String(64))
    refreshed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    packages: Mapped[list["Package"]] = relationship(back_populates="repository",
                                                     order_by="Package.name")


class Package(Base):
    """A VM package: listed by a feed (`remote`), being fetched (`retrieving`), or in the local
    cache (`cached`, with `path`). Packages made by the `package` action have no repository."""

    __tablename__ = "packages"
    __table_args__ = (UniqueConstraint("repository_uuid", "guid"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    repository_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("repositories.uuid", ondelete="CASCADE"), index=True)
    guid: Mapped[str | None] = mapped_column(String(1024))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(64))
    virt_class: Mapped[str | None] = mapped_column(String(16))
    arch: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(2048))
    length: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="remote")
    path: Mapped[str | None] = mapped_column(String(1024))
    size: Mapped[int | None] = mapped_column(Integer)
    manifest: Mapped[dict | None] = mapped_column(JSON)
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    # "<node> <boot id> <txid>" while the retrieved file may still be in that machine's
    # memory only (runtime/package_sync.py); None once it is on the disk.
    unsynced: Mapped[str | None] = mapped_column(String(200))
    # set by a user (6.3): a refresh of the feed (6.5) keeps it
    name_set: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    description_set: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    repository: Mapped[Repository | None] = relationship(back_populates="packages")


class Network(Base):
    """A static network (spec section 7): addresses handed out from its ranges to machines
    provisioned on hosts of its cluster."""

    __tablename__ = "networks"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    bridge: Mapped[str] = mapped_column(String(255), index=True)
    cluster_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("clusters.uuid", ondelete="SET NULL"), index=True)
    address: Mapped[str] = mapped_column(String(64))  # the network address, e.g. 10.0.0.0
    prefix: Mapped[int] = mapped_column(Integer)
    gateway: Mapped[str | None] = mapped_column(String(64))
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    ranges: Mapped[list["IPRange"]] = relationship(
        back_populates="network", cascade="all, delete-orphan", order_by="IPRange.created_at")
    cluster: Mapped[Cluster | None] = relationship()


class IPRange(Base):
    __tablename__ = "ip_ranges"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    network_uuid: Mapped[str] = mapped_column(ForeignKey("networks.uuid", ondelete="CASCADE"),
                                              index=True)
    start_ip: Mapped[str] = mapped_column(String(64))
    end_ip: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    network: Mapped[Network] = relationship(back_populates="ranges")


class Lease(Base):
    """An address of a network held by a machine (or reserved by hand). The unique constraint
    is what makes an address impossible to lease twice, whatever runs concurrently."""

    __tablename__ = "leases"
    __table_args__ = (UniqueConstraint("network_uuid", "address"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    network_uuid: Mapped[str] = mapped_column(ForeignKey("networks.uuid", ondelete="RESTRICT"),
                                              index=True)
    address: Mapped[str] = mapped_column(String(64))
    machine_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("machines.uuid", ondelete="CASCADE"), index=True)
    mac: Mapped[str | None] = mapped_column(String(17))
    note: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Volume(Base):
    """A storage volume that is a machine's own: the project created it for the machine
    (provision) or an administrator adopted it with the machine (define, manage). Only its
    own volumes are deleted with the machine or exported by `package`; a non-administrator
    may attach a volume only through a machine they may modify (services/volumes.py)."""

    __tablename__ = "volumes"

    hypervisor_uuid: Mapped[str] = mapped_column(
        ForeignKey("hypervisors.uuid", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)  # the volume's, libvirt's
    # a machine's own volume; or (machine None) a user's, made by them and attached to nothing
    machine_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("machines.uuid", ondelete="CASCADE"), index=True)
    owner_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("users.uuid", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Image(Base):
    """A disk or ISO image a user uploaded or registered from a URL, held as a volume in a
    hypervisor's pool: what create and provision copy (qcow2, raw) or attach (iso). `state` is
    uploading while its bytes arrive (the volume may be partial), ready, or failed."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("owner_uuid", "name"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(8))  # qcow2, raw or iso
    size: Mapped[int | None] = mapped_column(BigInteger)  # bytes of the file
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)  # bytes the guest sees
    sha256: Mapped[str | None] = mapped_column(String(64))
    owner_uuid: Mapped[str | None] = mapped_column(ForeignKey("users.uuid", ondelete="SET NULL"),
                                                   index=True)
    hypervisor_uuid: Mapped[str] = mapped_column(
        ForeignKey("hypervisors.uuid", ondelete="CASCADE"), index=True)
    pool: Mapped[str] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(String(1024))  # the volume's, once it exists
    state: Mapped[str] = mapped_column(String(16), default="uploading")
    url: Mapped[str | None] = mapped_column(String(2048))  # registered from (redacted)
    # The API node an upload's bytes arrive at: if it stops or dies first, the upload is
    # failed by whichever node notices (runtime/lost_uploads.py).
    node_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """One change a client of `GET /rest/events/` hears of, kept for the retention window so
    a client that reconnects gets what it missed, on any node (services/events.py)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    type: Mapped[str] = mapped_column(String(32))
    # What decides who reads it: the object (a machine, transaction, hypervisor; None for
    # audit entries, read by administrators), and its owner when the event was written (a
    # deleted object is no longer there to ask).
    object_uuid: Mapped[str | None] = mapped_column(String(36))
    owner_uuid: Mapped[str | None] = mapped_column(String(36))
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class ConsoleTicket(Base):
    """A console ticket not used yet (services/consoles.py): kept here, not in one node's
    memory, so that the WebSocket it opens may reach any node. Only the SHA-256 of its secret
    is stored; using it deletes the row (single use), and expired rows are swept."""

    __tablename__ = "console_tickets"

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_uuid: Mapped[str] = mapped_column(ForeignKey("users.uuid", ondelete="CASCADE"))
    machine_uuid: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class LoginFailure(Base):
    """One failed login (services/auth.py `LoginThrottle`), shared by every node so that
    guesses spread over the nodes count together. `key` is a SHA-256 of the user name and
    source address (a user name typed wrong is often a password: it is not kept)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ConsoleHolder(Base):
    """Who holds a machine's serial console, seen by every node (services/consoles.py
    `Holders`): a second viewer reaching another node is refused or takes it over, and the
    node whose session was taken reads here who took it and when, to tell its viewer."""

    __tablename__ = "console_holders"

    machine_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    session: Mapped[str] = mapped_column(String(32))
    node_id: Mapped[str] = mapped_column(String(64))
    user_uuid: Mapped[str] = mapped_column(ForeignKey("users.uuid", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(255))
    since: Mapped[datetime] = mapped_column(default=utcnow)
