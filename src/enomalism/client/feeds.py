"""Feeds (repositories) and their packages: retrieve, download, upload."""

import builtins
import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from enomalism.client.errors import ClientError, UnreachableError
from enomalism.client.models import Package, Repository
from enomalism.client.naming import pick
from enomalism.client.resource import Resource


class Repositories(Resource):
    """VMcast feeds, named by UUID, URL, title or unique UUID prefix."""

    def find(self, ref: str) -> Repository:
        return pick("feed", ref, self.list(), lambda r: r.uuid,
                    lambda r: (r.url, r.url.rstrip("/"), r.title or r.url),
                    lambda r: f"{r.uuid}  {r.url}")

    def list(self) -> builtins.list[Repository]:
        a = self._call("GET", "/rest/vmfeed/repo/")
        return [Repository.model_validate(r) for r in a["repositories"]]

    def get(self, uuid: str) -> tuple[Repository, builtins.list[Package]]:
        a = self._call("GET", f"/rest/vmfeed/repo/{self._ref(uuid)}/")
        return (Repository.model_validate(a["repository"]),
                [Package.model_validate(p) for p in a["packages"]])

    def add(self, url: str) -> tuple[Repository, builtins.list[Package]]:
        """Add a feed (fetched at once); credentials may be given in the URL."""
        a = self._call("PUT", "/rest/vmfeed/", url=url)
        return self.get(a["uuid"])

    def refresh(self, uuid: str) -> tuple[Repository, builtins.list[Package]]:
        a = self._call("POST", f"/rest/vmfeed/repo/{self._ref(uuid)}/", action="refresh")
        return (Repository.model_validate(a["repository"]),
                [Package.model_validate(p) for p in a["packages"]])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/vmfeed/repo/{self._ref(uuid)}/")["message"]


class Packages(Resource):
    def find(self, ref: str) -> Package:
        return pick("package", ref, self.list(), lambda p: p.uuid, lambda p: (p.name,),
                    lambda p: f"{p.uuid}  {p.name} {p.version or ''}  ({p.state})")

    def list(self, *, state: str | None = None) -> builtins.list[Package]:
        return [Package.model_validate(p) for p in self._call("GET", "/rest/vmfeed/",
                                                         state=state)["packages"]]

    def get(self, uuid: str) -> Package:
        a = self._call("GET", f"/rest/vmfeed/{self._ref(uuid)}/")
        return Package.model_validate(a["package"])

    def update(self, uuid: str, *, name: str | None = None,
               description: str | None = None) -> Package:
        return Package.model_validate(self._call("POST", f"/rest/vmfeed/{self._ref(uuid)}/",
                                            name=name, description=description)["package"])

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/vmfeed/{self._ref(uuid)}/")["message"]

    def retrieve(self, uuid: str) -> str | None:
        """Queue retrieval into the server's cache; the transaction id, or None when the
        package is cached already."""
        return self._call("POST", f"/rest/vmfeed/repo/package/{self._ref(uuid)}/")["tx"]

    def uncache(self, uuid: str) -> str:
        """Remove the server's local copy of a feed's package."""
        return self._call("DELETE", f"/rest/vmfeed/repo/package/{self._ref(uuid)}/")["message"]

    def download(self, uuid: str, dest: str | os.PathLike,
                 progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Download the package file to `dest` (a file, or a directory to put `<name>.xvm2`
        in), through `dest.part`; `progress(done, total)` as it goes. Returns the path."""
        r = self._conn.send("GET", f"/rest/vmfeed/{self._ref(uuid)}/download/", stream=True)
        try:
            if r.status_code != 200:
                r.read()
                self._conn.check(r)
                raise ClientError(r.status_code, 1, f"unexpected HTTP {r.status_code}")
            target = Path(dest)
            if target.is_dir():
                target = target / _filename(r.headers.get("content-disposition"), uuid)
            total = int(r.headers["content-length"]) if "content-length" in r.headers else None
            part = target.with_name(target.name + ".part")
            done = 0
            try:
                with open(part, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        f.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                if total is not None and done != total:
                    raise ClientError(200, 1, f"the download ended after {done} of {total} "
                                      "bytes")
                part.replace(target)
            except httpx.TransportError as e:
                part.unlink(missing_ok=True)
                raise UnreachableError(0, 0, f"the download broke off: {e}") from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            return target
        finally:
            r.close()


    def upload(self, path: str | os.PathLike, *, name: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> Package:
        """Upload a local `.xvm2` file as a new package (streamed from the file);
        `progress(done, total)` as it goes."""
        return Package.model_validate(self._conn.upload("/rest/vmfeed/upload/", path, progress,
                                                name=name)["package"])


def _filename(disposition: str | None, fallback: str) -> str:
    m = re.search(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', disposition or "")
    name = Path(m.group(1)).name if m else ""
    return name if name and name not in (".", "..") else f"{fallback}.xvm2"
