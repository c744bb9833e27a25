"""The client's typed results. The objects answers carry are the server's own models
(enomalism/wire.py), under the names this client has always given them; its views of whole
answers are built from them. tests/cli/test_wire.py holds them to the server's OpenAPI."""

from enomalism import wire
from enomalism.wire import WireModel

FINAL_STATES = frozenset({"done", "failed", "cancelled"})

Machine = wire.MachineObj  # a host or a VM (the API's `machine_obj`)
MachineInfo = wire.MachineInfo
Address = wire.AddressObj  # where a VM is reachable, and the source that said so
Hypervisor = wire.HypervisorObj
Node = wire.NodeObj  # an API server process sharing the database
Candidate = wire.Candidate  # a local libvirt URI the server found and did not add
Cluster = wire.ClusterObj
StatsPoint = wire.Point  # a machine's rates at one time; None: not known
MachineStats = wire.MachineStats
BaseVolume = wire.BaseVolume  # a base volume of the cache on a hypervisor
UserRef = wire.UserRef
GroupRef = wire.GroupRef
User = wire.UserObj
Group = wire.GroupObj
Token = wire.TokenObj
AuditEntry = wire.AuditObj
Grant = wire.GrantObj
AccessList = wire.AccessList  # an object's owner and grants
Repository = wire.RepositoryObj
Package = wire.PackageObj
Pool = wire.PoolObj  # a storage pool of a hypervisor
Snapshot = wire.SnapshotObj  # a machine's snapshot (its parent names the tree)
Volume = wire.VolumeObj  # a storage volume, its owner and the machine using it
Image = wire.ImageObj  # a disk or ISO image kept in a hypervisor's storage pool
IPRange = wire.RangeObj
Network = wire.NetworkObj
Lease = wire.LeaseObj


class Transaction(wire.TransactionData):
    """A transaction (the server's `TransactionData`), with what a progress display asks."""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def last_message(self) -> str:
        """The newest log line, what a progress display shows beside the bar."""
        return self.log[-1][2] if self.log and len(self.log[-1]) > 2 else ""


# The client's views of whole answers: their objects under the names the client uses.

class MachineDetails(WireModel):
    """GET /rest/machine/<UUID>/: the machine, its runtime information, its hypervisors."""

    machine: Machine
    info: MachineInfo
    hypervisors: list[Hypervisor]


class HostRegistration(WireModel):
    machine: Machine
    hypervisors: list[Hypervisor]
    message: str = ""


class NewToken(WireModel):
    """A token just created; `secret` is shown only once."""

    token: Token
    secret: str


class Queued(WireModel):
    """A transaction just queued; `machine` is the new machine of a provision, `hypervisor`
    the hypervisor it goes to."""

    txid: str
    machine: str
    message: str = ""
    hypervisor: str | None = None
