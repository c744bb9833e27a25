"""Disk and ISO images: upload, register from a URL, turn into a package."""

import builtins
import os
from collections.abc import Callable

from enomalism.client.models import Image
from enomalism.client.naming import path_id, pick
from enomalism.client.resource import Resource


class Images(Resource):
    """Disk and ISO images, named by UUID, name or unique UUID prefix."""

    def find(self, ref: str) -> Image:
        return pick("image", ref, self.list(), lambda i: i.uuid, lambda i: (i.name,),
                    lambda i: f"{i.uuid}  {i.name}  ({i.format}, {i.state})")

    def list(self) -> builtins.list[Image]:
        return [Image.model_validate(i) for i in self._call("GET", "/rest/images/")["images"]]

    def get(self, ref: str) -> Image:
        return Image.model_validate(self._call("GET", f"/rest/images/{path_id(ref)}/")["image"])

    def delete(self, ref: str) -> str:
        return self._call("DELETE", f"/rest/images/{path_id(ref)}/")["message"]

    def upload(self, path: str | os.PathLike, *, name: str, format: str,
               hypervisor: str | None = None, pool: str | None = None,
               sha256: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Image:
        """Upload a local qcow2, raw or ISO file, streamed from the file (the server checks
        and streams it into a volume); `progress(done, total)` as it goes."""
        return Image.model_validate(self._conn.upload(
            "/rest/images/", path, progress, name=name, format=format, hvmuuid=hypervisor,
            pool=pool, sha256=sha256)["image"])

    def package(self, ref: str, *, name: str | None = None,
                description: str | None = None) -> str:
        """Queue `package import`: the image as a new package; the transaction's id."""
        return self._call("POST", f"/rest/images/{path_id(ref)}/", action="package",
                          name=name, description=description)["txid"]

    def register(self, url: str, *, name: str, format: str, hypervisor: str | None = None,
                 pool: str | None = None, sha256: str | None = None) -> tuple[Image, str]:
        """Register an image from an http(s) URL: the server downloads it in a transaction.
        Returns the image (uploading) and the transaction's id."""
        body = self._call("PUT", "/rest/images/", url=url, name=name, format=format,
                          hvmuuid=hypervisor, pool=pool, sha256=sha256)
        return Image.model_validate(body["image"]), body["txid"]
