"""Static networks: their IP ranges, cluster and leases."""

import builtins

from enomalism.client.clusters import Clusters
from enomalism.client.connection import Connection
from enomalism.client.machines import Machines
from enomalism.client.models import Cluster, IPRange, Lease, Network
from enomalism.client.naming import path_id, pick
from enomalism.client.resource import Resource


class Networks(Resource):
    """Static networks, their IP ranges, cluster and leases."""

    def __init__(self, conn: Connection, *, clusters: Clusters, machines: Machines) -> None:
        super().__init__(conn)
        self._clusters, self._machines = clusters, machines

    def find(self, ref: str) -> Network:
        return pick("network", ref, self.list(), lambda n: n.uuid,
                    lambda n: (n.name,), lambda n: f"{n.uuid}  {n.name}  ({n.ip}/{n.prefix})")

    def list(self) -> builtins.list[Network]:
        return [Network.model_validate(n) for n in self._call("GET", "/rest/networks/")["networks"]]

    def get(self, uuid: str) -> Network:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/")
        return Network.model_validate(a["network"])

    def create(self, name: str, *, bridge: str, ip: str, netmask: str,
               gateway: str | None = None, cluster: str | None = None,
               description: str | None = None) -> Network:
        a = self._call("PUT", "/rest/networks/", name=name, bridge=bridge, ip=ip,
                       netmask=netmask, gateway=gateway, cluster=self._clusters._id(cluster),
                       description=description)
        return Network.model_validate(a["network"])

    def update(self, uuid: str, *, name: str | None = None, description: str | None = None,
               bridge: str | None = None, cluster: str | None = None) -> Network:
        a = self._call("POST", f"/rest/networks/{self._ref(uuid)}/", name=name,
                       description=description, bridge=bridge,
                       cluster=self._clusters._id(cluster) if cluster else cluster)
        return Network.model_validate(a["network"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/")["message"]

    def ranges(self, uuid: str) -> builtins.list[IPRange]:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/iprange/")
        return [IPRange.model_validate(r) for r in a["ranges"]]

    def add_range(self, uuid: str, start_ip: str, end_ip: str) -> IPRange:
        a = self._call("POST", f"/rest/networks/{self._ref(uuid)}/iprange/", start_ip=start_ip,
                       end_ip=end_ip)
        ranges = [IPRange.model_validate(r) for r in a["ranges"]]
        return next((r for r in ranges if r.start_ip == start_ip), ranges[-1])

    def get_range(self, uuid: str, range_uuid: str) -> IPRange:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/iprange/{path_id(range_uuid)}/")
        return IPRange.model_validate(a["iprange"])

    def change_range(self, uuid: str, range_uuid: str, *, start_ip: str | None = None,
                     end_ip: str | None = None) -> IPRange:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/iprange/{path_id(range_uuid)}/",
                       start_ip=start_ip, end_ip=end_ip)
        return IPRange.model_validate(a["iprange"])

    def delete_range(self, uuid: str, range_uuid: str) -> str:
        return self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/iprange/"
                                    f"{path_id(range_uuid)}/")["message"]

    def cluster(self, uuid: str) -> Cluster | None:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/cluster/")
        return Cluster.model_validate(a["cluster"]) if a.get("cluster") else None

    def set_cluster(self, uuid: str, cluster: str | None) -> Cluster | None:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/cluster/",
                       cluster=self._clusters._id(cluster) or "")
        return Cluster.model_validate(a["cluster"]) if a.get("cluster") else None

    def leases(self, uuid: str) -> builtins.list[Lease]:
        a = self._call("GET", f"/rest/networks/{self._ref(uuid)}/leases/")
        return [Lease.model_validate(x) for x in a["leases"]]

    def reserve(self, uuid: str, *, address: str | None = None, machine: str | None = None,
                mac: str | None = None, note: str | None = None) -> Lease:
        a = self._call("PUT", f"/rest/networks/{self._ref(uuid)}/leases/", address=address,
                       machine=self._machines._id(machine), mac=mac, note=note)
        return Lease.model_validate(a["lease"])

    def release(self, uuid: str, address: str) -> Lease:
        a = self._call("DELETE", f"/rest/networks/{self._ref(uuid)}/leases/{path_id(address)}/")
        return Lease.model_validate(a["lease"])
