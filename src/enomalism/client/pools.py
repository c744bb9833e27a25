"""Storage pools and their volumes (a machine's disks change through `Machines`)."""

import builtins

from enomalism.client.models import Pool, Volume
from enomalism.client.naming import path_id, pick
from enomalism.client.resource import Resource


class Pools(Resource):
    """Storage pools, named by name (when unique), UUID or unique UUID prefix."""

    def list(self) -> builtins.list[Pool]:
        return [Pool.model_validate(p) for p in self._call("GET", "/rest/pools/")["pools"]]

    def find(self, ref: str) -> Pool:
        return pick("pool", ref, self.list(), lambda p: p.uuid, lambda p: (p.name,),
                    lambda p: f"{p.uuid}  {p.name}  (hypervisor {p.hypervisor})")

    def volumes(self, pool: str) -> builtins.list[Volume]:
        a = self._call("GET", f"/rest/pools/{path_id(self.find(pool).uuid)}/volumes/")
        return [Volume.model_validate(v) for v in a["volumes"]]

    def create_volume(self, pool: str, name: str, size_gib: int) -> Volume:
        """A blank volume of your own (attach it with `Machines.attach_disk`)."""
        a = self._call("PUT", f"/rest/pools/{path_id(self.find(pool).uuid)}/volumes/",
                       name=name, size=size_gib)
        return Volume.model_validate(a["volume"])

    def delete_volume(self, pool: str, name: str) -> str:
        return self._call("DELETE", f"/rest/pools/{path_id(self.find(pool).uuid)}/volumes/"
                          f"{path_id(name)}/")["message"]
