"""Machines (hosts and VMs): their actions, clusters, provisioning and packaging."""

import builtins
import typing
from collections.abc import Callable, Iterable
from typing import Any

from enomalism.client.clusters import Clusters
from enomalism.client.connection import Connection
from enomalism.client.console import Console, open_console
from enomalism.client.errors import NotFoundError
from enomalism.client.feeds import Packages
from enomalism.client.hosts import Hosts, Hypervisors, MachineHypervisors
from enomalism.client.models import (
    Cluster,
    Machine,
    MachineDetails,
    MachineStats,
    Queued,
    Snapshot,
)
from enomalism.client.naming import path_id, pick
from enomalism.client.resource import Resource


class Machines(Resource):
    """Machines (hosts and VMs), their actions, clusters, provisioning and packaging.
    Machines are named by UUID, name or unique UUID prefix."""

    def __init__(self, conn: Connection, *, hosts: Hosts, hypervisors: Hypervisors,
                 clusters: Clusters, packages: Packages) -> None:
        super().__init__(conn)
        self._hosts, self._hypervisors = hosts, hypervisors
        self._clusters, self._packages = clusters, packages

    def find(self, ref: str, *, kind: str | None = None) -> Machine:
        """The machine `ref` names (UUID, name or unique UUID prefix)."""
        items = self.list(kind=kind)
        return pick(kind or "machine", ref, items, lambda m: m.uuid, lambda m: (m.name,),
                    self._describe(items))

    def find_all(self, refs: Iterable[str]) -> builtins.list[Machine]:
        """Several machines, listing them once."""
        items = self.list()
        describe = self._describe(items)
        return [pick("machine", r, items, lambda m: m.uuid, lambda m: (m.name,), describe)
                for r in refs]

    def _describe(self, items: builtins.list[Machine]) -> Callable[[Machine], str]:
        """How a candidate is listed when a name is ambiguous: with its hypervisor's URI
        (read only then)."""
        hosts = {m.uuid: m.name for m in items if m.kind == "host"}
        uris: dict[str, str] = {}

        def describe(m: Machine) -> str:
            if m.kind == "host":
                return f"{m.uuid}  {m.name}  (host)"
            if not uris:
                uris.update({h.uuid: h.virt_url for h in self._hypervisors.list()} or
                            {"": ""})
            where = uris.get(m.parent or "", hosts.get(m.host or "", m.parent))
            return f"{m.uuid}  {m.name}  ({m.state}, on {where})"
        return describe

    def ids(self) -> builtins.list[str]:
        return self._call("GET", "/rest/machines/")["machines"]

    def list(self, *, kind: str | None = None, state: str | None = None,
             hypervisor: str | None = None) -> builtins.list[Machine]:
        answer = self._call("GET", "/rest/machines/", detail="true", kind=kind, state=state,
                            hypervisor=hypervisor)
        return [Machine.model_validate(o) for o in answer.get("machine_objs", [])]

    def get(self, uuid: str) -> MachineDetails:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/")
        return MachineDetails.model_validate({**a, "machine": a["machine_obj"]})

    def define(self, xmldesc: str, hypervisor: str) -> Machine:
        """Define a new VM from libvirt domain XML (like `virsh define`)."""
        a = self._call("PUT", "/rest/machines/", xmldesc=xmldesc,
                       hvmuuid=self._hypervisors._id(hypervisor))
        return Machine.model_validate(a["machine_obj"])

    def create(self, name: str, *, vcpus: int | None = None, memory: int | None = None,
               disk: int | None = None, image: str | None = None, cdrom: str | None = None,
               networks: typing.Sequence[str] = (), libvirt_network: str | None = None,
               hypervisor: str | None = None, cluster: str | None = None,
               pool: str | None = None, virt_type: str | None = None,
               firmware: str | None = None, cpu_mode: str | None = None,
               user_data: str | None = None, ssh_keys: typing.Sequence[str] = (),
               hostname: str | None = None, autostart: bool = False) -> Queued:
        """Queue the creation of a machine from parameters (docs/api.md, "Create a machine
        from parameters"): `memory` in MiB, `disk` in GiB; `image` and `cdrom` name images
        (UUID or name). Without `hypervisor` the server places it (among `cluster`'s hosts),
        or puts it where its image is. `Queued.machine` is the new machine."""
        if hypervisor and cluster:
            raise ValueError("name a hypervisor or a cluster, not both")
        target = self._hypervisors._id(hypervisor) or self._clusters._id(cluster)
        a = self._call("PUT", "/rest/machines/", name=name, vcpus=vcpus, memory=memory,
                       disk=disk, image=image, cdrom=cdrom, network=list(networks) or None,
                       libvirt_network=libvirt_network, hvmuuid=target, pool=pool,
                       virt_type=virt_type, firmware=firmware, cpu_mode=cpu_mode,
                       user_data=user_data, ssh_key=list(ssh_keys) or None,
                       hostname=hostname, autostart=autostart or None)
        return Queued(txid=a["txid"], machine=a["machine"], message=a.get("message", ""),
                      hypervisor=a["machine_obj"].get("parent"))

    def refresh(self, uuid: str) -> str:
        """Read the machine again from libvirt (a host: all its hypervisors)."""
        return self._call("POST", f"/rest/machine/{self._ref(uuid)}/trigger_status_updates/")[
            "message"]

    def stats(self, uuid: str) -> MachineStats:
        """The machine's current rates and its last hour (sampled by the node owning its
        hypervisor)."""
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/stats/")
        return MachineStats.model_validate(a)

    def console(self, uuid: str, kind: str = "serial", *, force: bool = False,
                reconnect: bool = True,
                notify: Callable[[str], None] | None = None) -> Console:
        """Open the machine's serial (or `vnc`) console; `force` takes a serial console over
        from its current viewer, who is told; it comes back by itself after a drop or a
        migration unless `reconnect` is False, `notify` hearing of it (docs/consoles.md)."""
        return open_console(self._conn, self._ref(uuid), kind, force=force,
                            reconnect=reconnect, notify=notify)

    def actions(self, uuid: str) -> builtins.list[str]:
        """The actions valid for the machine now."""
        return self._call("GET", f"/rest/machine/{self._ref(uuid)}/actions/")["result"]

    def action(self, uuid: str, action: str, **variables: Any) -> str:
        """POST /rest/machine/<UUID>/actions/<action>/; returns the answer's message."""
        return self._call("POST", f"/rest/machine/{self._ref(uuid)}/actions/{action}/",
                          **variables)["message"]

    def start(self, uuid: str) -> str:
        return self.action(uuid, "create")

    def shutdown(self, uuid: str) -> str:
        """Ask the guest to power off (ACPI); returns at once."""
        return self.action(uuid, "shutdown")

    stop = shutdown

    def poweroff(self, uuid: str) -> str:
        return self.action(uuid, "poweroff")

    def suspend(self, uuid: str) -> str:
        return self.action(uuid, "suspend")

    def resume(self, uuid: str) -> str:
        return self.action(uuid, "resume")

    def reboot(self, uuid: str) -> str:
        return self.action(uuid, "reboot")

    def manage(self, uuid: str) -> str:
        return self.action(uuid, "manage")

    def unlock(self, uuid: str) -> str:
        return self.action(uuid, "unlock")

    def rename(self, uuid: str, name: str) -> str:
        return self.action(uuid, "rename", name=name)

    def resize(self, uuid: str, *, vcpus: int | None = None,
               memory: int | None = None) -> str:
        """`action=set`: vCPUs and/or memory (MiB); live on a running machine up to its
        maximums, any size on a stopped one."""
        if vcpus is None and memory is None:
            raise ValueError("give vcpus and/or memory")
        return self.action(uuid, "set", vcpus=vcpus, memory=memory)

    def attach_disk(self, uuid: str, *, volume: str | None = None,
                    size_gib: int | None = None) -> str:
        """Attach a free volume of yours (name or path), or a new blank disk of `size_gib`."""
        return self.action(uuid, "attach_disk", volume=volume, size=size_gib)

    def detach_disk(self, uuid: str, target: str) -> str:
        return self.action(uuid, "detach_disk", target=target)

    def grow_disk(self, uuid: str, target: str, size_gib: int) -> str:
        return self.action(uuid, "grow_disk", target=target, size=size_gib)

    def set_xml(self, uuid: str, xmldesc: str) -> str:
        """Replace the stored definition (`xml_pending` until `store_xml`)."""
        return self.action(uuid, "xmldesc", xmldesc=xmldesc)

    def store_xml(self, uuid: str) -> str:
        return self.action(uuid, "store_xml")

    def move(self, uuid: str, hypervisor: str, *, pool: str | None = None,
             bandwidth: int | None = None) -> tuple[str, str | None]:
        """set_parent: move the machine to another hypervisor (a running one live, its
        disks copied where the target does not see them). Returns the message and the
        transaction's id when the move is one (None when it was done at once)."""
        variables: dict[str, Any] = {"puuid": self._hypervisors._id(hypervisor)}
        if pool:
            variables["pool"] = pool
        if bandwidth:
            variables["bandwidth"] = bandwidth
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/actions/set_parent/",
                       **variables)
        return a["message"], a.get("txid")

    def delete(self, uuid: str) -> str:
        """totaldelete: destroy, undefine, delete its unshared volumes, forget it."""
        return self.action(uuid, "totaldelete")

    def set_restart_policy(self, uuid: str, *, policy: str | None = None,
                           autostart: bool | None = None) -> str:
        """`action=set`: `policy` never or on-failure (started again after its guest crashed
        or was killed, with a back-off and a limit); `autostart`: start with the host."""
        if policy is None and autostart is None:
            raise ValueError("give policy and/or autostart")
        flag = None if autostart is None else ("true" if autostart else "false")
        return self.action(uuid, "set", restart_policy=policy, autostart=flag)

    # -- snapshots --

    def snapshots(self, uuid: str) -> builtins.list[Snapshot]:
        """The machine's snapshots, parents before their children."""
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/snapshots/")
        return [Snapshot.model_validate(x) for x in a["snapshots"]]

    def snapshot(self, uuid: str, name: str) -> Snapshot:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/snapshots/{path_id(name)}/")
        return Snapshot.model_validate(a["snapshot"])

    def take_snapshot(self, uuid: str, name: str, *, description: str | None = None,
                      memory: bool = False) -> Queued:
        """Queue a snapshot: disks only of a stopped machine, with `memory` of a running
        one (a revert resumes it)."""
        ref = self._ref(uuid)
        a = self._call("PUT", f"/rest/machine/{ref}/snapshots/", name=name,
                       description=description, memory="true" if memory else None)
        return Queued(txid=a["txid"], machine=a["machine"], message=a.get("message", ""))

    def revert_snapshot(self, uuid: str, name: str) -> Queued:
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/snapshots/{path_id(name)}/",
                       action="revert")
        return Queued(txid=a["txid"], machine=a["machine"], message=a.get("message", ""))

    def delete_snapshot(self, uuid: str, name: str) -> Queued:
        """Queue the snapshot's deletion; its children take its parent."""
        a = self._call("DELETE",
                       f"/rest/machine/{self._ref(uuid)}/snapshots/{path_id(name)}/")
        return Queued(txid=a["txid"], machine=a["machine"], message=a.get("message", ""))

    def hypervisors(self, uuid: str) -> MachineHypervisors:
        return self._hypervisors.of_machine(self._uuid(uuid))

    def clusters(self, uuid: str) -> builtins.list[Cluster]:
        a = self._call("GET", f"/rest/machine/{self._ref(uuid)}/clusters/")
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def add_to_clusters(self, uuid: str, clusters: Iterable[str]) -> builtins.list[Cluster]:
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/clusters/",
                       clusters=[self._clusters._id(x) for x in clusters])
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def remove_from_clusters(self, uuid: str, clusters: Iterable[str]) -> builtins.list[Cluster]:
        a = self._call("DELETE", f"/rest/machine/{self._ref(uuid)}/clusters/",
                       clusters=[self._clusters._id(x) for x in clusters])
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def provision(self, host: str | None = None, *, package: str, name: str,
                  hypervisor: str | None = None, cluster: str | None = None,
                  pool: str | None = None, virt_type: str | None = None,
                  libvirt_network: str | None = None, user_data: str | None = None,
                  ssh_keys: typing.Sequence[str] = (), hostname: str | None = None) -> Queued:
        """Queue a provision of `package` as a new machine `name`: on `hypervisor` (one of
        `host`'s) when given; otherwise the server places it (docs/provisioning.md,
        "Placement") among the hypervisors of `cluster`'s hosts, or among all the hypervisors
        the caller may control. `host`, the machine the request is addressed to, defaults to
        the hypervisor's host, else the first host (or machine) the caller may read.
        `Queued.machine` is the new machine, `Queued.hypervisor` where it goes, `Queued.txid`
        the transaction. `virt_type`: kvm or qemu (TCG); `libvirt_network`: where the
        interfaces the package names no network for go; `user_data`, `ssh_keys`, `hostname`:
        a cloud-init NoCloud seed."""
        if hypervisor and cluster:
            raise ValueError("name a hypervisor or a cluster, not both")
        hypervisor = self._hypervisors._id(hypervisor)
        cluster, package = self._clusters._id(cluster), self._packages._uuid(package)
        host = self._id(host)
        if host is None:
            host = self._hypervisors.get(hypervisor).machine if hypervisor else \
                self._any_machine()
        a = self._call("POST", f"/rest/machine/{path_id(host)}/actions/provision/",
                       pkguuid=package, hvmuuid=hypervisor or cluster, name=name, pool=pool,
                       virt_type=virt_type, libvirt_network=libvirt_network,
                       user_data=user_data, ssh_key=list(ssh_keys) or None,
                       hostname=hostname)
        return Queued(txid=a["txid"], machine=a["newuuid"], message=a.get("message", ""),
                      hypervisor=a.get("hvmuuid"))

    def _any_machine(self) -> str:
        """A machine to address a placed provision to (the spec's path needs one)."""
        hosts = self._hosts.list()
        found = [h.uuid for h in hosts] or self.ids()
        if not found:
            raise NotFoundError(404, 1200, "there is no machine you may read to address the "
                                "provision to")
        return found[0]

    def package(self, uuid: str, *, name: str | None = None, description: str | None = None,
                version: str | None = None, compression: str | None = None) -> Queued:
        """Queue packaging the machine; the transaction's `result["package"]` is the new
        package."""
        a = self._call("POST", f"/rest/machine/{self._ref(uuid)}/actions/package/", name=name,
                       description=description, version=version, compression=compression)
        return Queued(txid=a["txid"], machine=uuid, message=a.get("message", ""))
