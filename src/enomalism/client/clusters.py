"""Clusters: named groups of machines."""

import builtins

from enomalism.client.models import Cluster
from enomalism.client.naming import pick
from enomalism.client.resource import Resource


class Clusters(Resource):
    def find(self, ref: str) -> Cluster:
        return pick("cluster", ref, self.list(), lambda x: x.uuid, lambda x: (x.name,),
                    lambda x: f"{x.uuid}  {x.name}")

    def list(self) -> builtins.list[Cluster]:
        a = self._call("GET", "/rest/cluster/list/")
        return [Cluster.model_validate(c) for c in a["clusters"]]

    def get(self, uuid: str) -> Cluster:
        a = self._call("GET", f"/rest/cluster/{self._ref(uuid)}/")
        return Cluster.model_validate(a["cluster"])

    def create(self, name: str) -> Cluster:
        a = self._call("PUT", "/rest/cluster/", cluster_name=name)
        return Cluster.model_validate(a["cluster"])

    def rename(self, uuid: str, name: str) -> Cluster:
        return Cluster.model_validate(self._call("POST", f"/rest/cluster/{self._ref(uuid)}/",
                                            action="rename", cluster_name=name)["cluster"])

    def delete(self, uuid: str, *, force: bool = False) -> str:
        """force: also when static networks serve it (they are left serving none)."""
        return self._call("DELETE", f"/rest/cluster/{self._ref(uuid)}/",
                          force="1" if force else None)["message"]
