"""Hosts, their hypervisors, the API nodes, the base-image cache."""

import builtins

from enomalism.client.connection import Connection
from enomalism.client.models import (
    BaseVolume,
    Candidate,
    HostRegistration,
    Hypervisor,
    Machine,
    Node,
)
from enomalism.client.naming import is_uuid, path_id, pick
from enomalism.client.resource import Resource

# A machine's hypervisors, and the local libvirt URIs its server found and did not add.
MachineHypervisors = tuple[list[Hypervisor], list[Candidate]]


class Hosts(Resource):
    def find(self, ref: str) -> Machine:
        """The host `ref` names (UUID, name, address or unique UUID prefix)."""
        return pick("host", ref, self.list(), lambda m: m.uuid,
                    lambda m: (m.name, m.address or m.name), lambda m: f"{m.uuid}  {m.name}")

    def list(self) -> builtins.list[Machine]:
        return [Machine.model_validate(h) for h in self._call("GET", "/rest/hosts/")["hosts"]]

    def register(self, name: str, *, virt_url: str | None = None, address: str | None = None,
                 virt_class: str | None = None) -> HostRegistration:
        """Register a host, connecting its hypervisor when `virt_url` is given (both or
        neither)."""
        a = self._call("PUT", "/rest/hosts/", name=name, virt_url=virt_url, address=address,
                       virt_class=virt_class)
        return HostRegistration.model_validate({**a, "machine": a["machine_obj"]})

    def evacuate(self, ref: str) -> tuple[str, str]:
        """Move every managed machine off the host (live where running), each where the
        placer puts it: one parent transaction. Returns its id and the message."""
        a = self._call("POST", f"/rest/machine/{path_id(self._uuid(ref))}/",
                       action="evacuate")
        return a["txid"], a["message"]


class Nodes(Resource):
    def list(self) -> builtins.list[Node]:
        """The API nodes sharing the server's database (administrators only)."""
        return [Node.model_validate(n) for n in self._call("GET", "/rest/nodes/")["nodes"]]


class Cache(Resource):
    """The base-image cache on the hypervisors (administrators only)."""

    def list(self, hypervisor: str | None = None
             ) -> tuple[builtins.list[BaseVolume], builtins.list[str]]:
        """The base volumes, and the problems met reading them (hypervisors not connected)."""
        a = self._call("GET", "/rest/cache/", hypervisor=hypervisor)
        return [BaseVolume.model_validate(b) for b in a["bases"]], a["problems"]

    def prune(self, hypervisor: str | None = None) -> str:
        """Queue removing the unused base volumes; the transaction id."""
        return self._call("POST", "/rest/cache/prune/", hypervisor=hypervisor)["txid"]


class Hypervisors(Resource):
    def __init__(self, conn: Connection, hosts: Hosts) -> None:
        super().__init__(conn)
        self._hosts = hosts

    def of_machine(self, uuid: str) -> MachineHypervisors:
        """A host's hypervisors (a VM's: the one it runs on), and the local libvirt URIs the
        server found and did not add."""
        a = self._call("GET", f"/rest/machine/{path_id(uuid)}/hypervisors/")
        return ([Hypervisor.model_validate(h) for h in a["hypervisors"]],
                [Candidate.model_validate(c) for c in a.get("candidates", [])])

    def find(self, ref: str, host: str | None = None) -> Hypervisor:
        """The hypervisor `ref` names (UUID, libvirt URI or unique UUID prefix), among
        `host`'s when given."""
        if is_uuid(ref) and not host:  # also one on a host the caller may not read
            return self.get(ref)
        return pick("hypervisor", ref, self.list(host), lambda h: h.uuid,
                    lambda h: (h.virt_url,), lambda h: f"{h.uuid}  {h.virt_url}  ({h.status})")

    def get(self, uuid: str) -> Hypervisor:
        return Hypervisor.model_validate(
            self._call("GET", f"/rest/hypervisor/{self._ref(uuid)}/")["hypervisor"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/hypervisor/{self._ref(uuid)}/")["message"]

    def list(self, host: str | None = None) -> builtins.list[Hypervisor]:
        """The hypervisors of one host, or of every host the caller may read."""
        hosts = [self._hosts._uuid(host)] if host else [h.uuid for h in self._hosts.list()]
        return [hv for h in hosts for hv in self.of_machine(h)[0]]

    def candidates(self, host: str) -> builtins.list[Candidate]:
        return self.of_machine(self._hosts._uuid(host))[1]

    def add(self, host: str, virt_url: str, virt_class: str | None = None) -> Hypervisor:
        """Connect and add a hypervisor to a host; returns it."""
        a = self._call("POST", f"/rest/machine/{self._hosts._ref(host)}/hypervisors/",
                       virt_url=virt_url, virt_class=virt_class)
        hvs = [Hypervisor.model_validate(h) for h in a["hypervisors"]]
        return next((h for h in hvs if h.virt_url == virt_url), hvs[-1])
