"""Spec section 6: repositories (VMcast feeds), packages, retrieval, download; and this
server's own packages published as a feed (extension)."""

from pathlib import Path
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import Field

from enomalism.api import audit as api_audit
from enomalism.api import images as image_api
from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, committed, expose, http_vars, writes_on_get
from enomalism.api.schemas import Status
from enomalism.errors import MissingVariable
from enomalism.feeds.feed import Feed, render_feed
from enomalism.services import images, repositories
from enomalism.services.shown import packages as shown
from enomalism.wire import PackageObj, RepositoryObj

router = APIRouter(tags=["repositories"])
XVM2_TYPE = shown.XVM2_TYPE


class VmfeedAnswer(Status):
    uuid: str | None = Field(None, description="the new repository (PUT only)")
    packages: list[PackageObj]


class PackageAnswer(Status):
    package: PackageObj | None


class TxAnswer(Status):
    tx: str | None = Field(description="the retrieval transaction; none when cached already "
                           "(the spec's key, 6.4)")
    txid: str | None = Field(None, description="the same, under the key every other answer "
                             "uses (extension)")


class RepositoryAnswer(Status):
    repository: RepositoryObj | None
    packages: list[PackageObj]


class RepositoriesAnswer(Status):
    repositories: list[RepositoryObj]


class FeedVars(Vars):
    url: str | None = Field(None, description="the feed's http(s) URL; user:password@ allowed")


class ListVars(Vars):
    state: str | None = Field(None, description="only packages in this state")


class PackageVars(Vars):
    name: str | None = Field(None, description="the package's new name")
    description: str | None = Field(None, description="its new description")


class RepoVars(Vars):
    action: str | None = Field(None, description="refresh or delete")


def list_packages(ctx: Ctx, v: Annotated[ListVars, http_vars(ListVars)]) -> dict:
    """Every package the caller may read, from every repository and made here."""
    return {"packages": shown.list_packages(ctx, state=v.state), "errno": 0, "message": ""}


def add_repository(ctx: Ctx, v: Annotated[FeedVars, http_vars(FeedVars)]) -> dict:
    """Add a VMcast feed: it is fetched now; a feed that does not answer or is not RSS is
    refused."""
    repo, packages = shown.add_repository(ctx, url=v.url)
    return {"uuid": repo["uuid"], "packages": packages, "errno": 0,
            "message": f"repository {repo['url']} added with {len(packages)} package(s)"}


def list_repositories(ctx: Ctx) -> dict:
    """Every repository the caller may read."""
    return {"repositories": shown.list_repositories(ctx), "errno": 0, "message": ""}


def published_feed(request: Request, ctx: Ctx) -> Response:
    """This server's cached packages (those the caller may download) as a VMcast feed, so another
    installation can add it as a repository."""
    base = str(request.base_url).rstrip("/")
    items = shown.feed_items(ctx, base=base)
    feed = Feed(title=f"enomalism packages at {request.url.hostname}", link=base,
                description="VM packages published by an enomalism server", uuid=None,
                items=items)
    return Response(render_feed(feed), media_type="application/rss+xml")


class UploadVars(Vars):
    name: str | None = Field(None, description="the package's name (default: its manifest's)")


async def upload_package(ctx: Ctx, up: Annotated[image_api.Upload,
                                                  image_api.file_vars(UploadVars)]) -> dict:
    """A local `.xvm2` file (the body, or a multipart part `file`) as a new cached package:
    checked as a feed's package is (structure, manifest, every disk's sha256)."""
    rule = api_audit.RULES[("PUT", "/rest/vmfeed/upload/")]
    v, source, size = up.vars, up.source, up.size
    given: dict[str, Any] = v.model_dump(exclude_unset=True)

    async def steps() -> dict:
        if source is None or size is None:  # (a file always comes with its size)
            raise MissingVariable("send the package as the request body or as a multipart "
                                  "part named 'file'")
        assert ctx.jobs is not None  # a server's requests always have its runner
        uuid = str(uuid4())
        path, sha, manifest = await run_in_threadpool(
            images.receive_package, Path(ctx.jobs.packages_dir), source, size=size, uuid=uuid)

        def record() -> dict:
            p = shown.add_uploaded(ctx, uuid=uuid, path=path, sha256=sha, manifest=manifest,
                                   name=v.name)
            answer = {"package": p, "errno": 0,
                      "message": f"package {p['name']} uploaded ({p['size']} bytes)"}
            api_audit.succeeded(ctx, rule, given, answer)
            return answer

        def record_or_remove() -> dict:
            try:
                return committed(ctx, record)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        return await run_in_threadpool(record_or_remove)

    return await image_api.audited(ctx, rule, given, steps)


def download_package(uuid: str, ctx: Ctx) -> FileResponse:
    """The package file itself (Range requests supported)."""
    path, filename = shown.download(ctx, uuid=uuid)
    return FileResponse(path, media_type=XVM2_TYPE, filename=filename)


def get_package(uuid: str, ctx: Ctx) -> dict:
    """The package."""
    return {"package": shown.package(ctx, uuid=uuid), "errno": 0, "message": ""}


def update_package(uuid: str, ctx: Ctx, v: Annotated[PackageVars, http_vars(PackageVars)]) -> dict:
    """Rename or describe the package; what is set here stays across feed refreshes."""
    if posted_nothing(v):
        return get_package(uuid, ctx)
    p = shown.update_package(ctx, uuid=uuid, name=v.name, description=v.description)
    return {"package": p, "errno": 0, "message": f"package {p['name']} updated"}


def delete_package(uuid: str, ctx: Ctx) -> dict:
    """Delete the package and its cached file."""
    return {"package": None, "errno": 0, "message": repositories.delete_package(ctx, uuid)}


def retrieve_package(uuid: str, ctx: Ctx) -> dict:
    """Queue retrieval of the package into the local cache."""
    txid = shown.retrieve(ctx, uuid=uuid)
    if txid is None:
        return {"tx": None, "txid": None, "errno": 0, "message": "the package is cached already"}
    return {"tx": txid, "txid": txid, "errno": 0, "message": "retrieval queued"}


def uncache_package(uuid: str, ctx: Ctx) -> dict:
    """Remove the local copy of a feed's package."""
    return {"tx": None, "errno": 0, "message": repositories.uncache(ctx, uuid)}


def _repository_answer(ctx: Ctx, uuid: str, message: str = "") -> dict:
    repo, packages = shown.repository(ctx, uuid=uuid)
    return {"repository": repo, "errno": 0, "message": message, "packages": packages}


def get_repository(uuid: str, ctx: Ctx) -> dict:
    """The repository and its packages."""
    return _repository_answer(ctx, uuid)


def act_on_repository(uuid: str, ctx: Ctx, v: Annotated[RepoVars, http_vars(RepoVars)]) -> dict:
    """action=refresh (fetch the feed again) or action=delete; without variables, like GET."""
    if posted_nothing(v, needs="action"):
        return get_repository(uuid, ctx)
    message = shown.act_on_repository(ctx, uuid=uuid, action=v.action)
    if v.action == "delete":
        return {"repository": None, "errno": 0, "message": message, "packages": []}
    return _repository_answer(ctx, uuid, message)


def delete_repository(uuid: str, ctx: Ctx) -> dict:
    """Delete the repository, its packages and their cached files."""
    message = shown.delete_repository(ctx, uuid=uuid)
    return {"repository": None, "errno": 0, "message": message, "packages": []}


expose(router, "/rest/vmfeed/", ["GET"], list_packages, vars_model=ListVars,
       response_model=VmfeedAnswer, response_model_exclude_unset=True,
       summary="List packages (6.1)", dependencies=[refuse_changes_on_get(FeedVars)])
expose(router, "/rest/vmfeed/", ["PUT"], add_repository, vars_model=FeedVars,
       response_model=VmfeedAnswer, summary="Add a feed repository (6.1)")
expose(router, "/rest/vmfeed/feed.xml", ["GET"], published_feed,
       response_class=Response, summary="This server's packages as a VMcast feed (extension)",
       responses={200: {"content": {"application/rss+xml": {}}}})
expose(router, "/rest/vmfeed/repo/", ["GET"], list_repositories,
       response_model=RepositoriesAnswer, summary="List repositories (extension)")
expose(router, "/rest/vmfeed/repo/package/{uuid}/", ["GET", "POST"], retrieve_package,
       response_model=TxAnswer, summary="Queue retrieval of a package (6.4)",
       dependencies=[Depends(writes_on_get)])
expose(router, "/rest/vmfeed/repo/package/{uuid}/", ["DELETE"], uncache_package,
       response_model=TxAnswer, summary="Remove a package's local copy (6.4)")
expose(router, "/rest/vmfeed/repo/{uuid}/", ["GET"], get_repository,
       response_model=RepositoryAnswer, summary="Get a repository (6.5)",
       dependencies=[refuse_changes_on_get(RepoVars)])
expose(router, "/rest/vmfeed/repo/{uuid}/", ["POST"], act_on_repository, vars_model=RepoVars,
       response_model=RepositoryAnswer, summary="Refresh or delete a repository (6.5)")
expose(router, "/rest/vmfeed/repo/{uuid}/", ["DELETE"], delete_repository,
       response_model=RepositoryAnswer, summary="Delete a repository (6.5)")
expose(router, "/rest/vmfeed/upload/", ["PUT"], upload_package, vars_model=UploadVars,
       response_model=PackageAnswer, summary="Upload a .xvm2 file as a package (extension)")
expose(router, "/rest/vmfeed/{uuid}/download/", ["GET"], download_package,
       response_class=FileResponse, summary="Download a package file (6.2)",
       responses={200: {"content": {XVM2_TYPE: {}}}})
expose(router, "/rest/vmfeed/{uuid}/", ["GET"], get_package, response_model=PackageAnswer,
       summary="Get a package (6.3)", dependencies=[refuse_changes_on_get(PackageVars)])
expose(router, "/rest/vmfeed/{uuid}/", ["POST"], update_package, vars_model=PackageVars,
       response_model=PackageAnswer, summary="Rename or describe a package (6.3)")
expose(router, "/rest/vmfeed/{uuid}/", ["DELETE"], delete_package,
       response_model=PackageAnswer, summary="Delete a package (6.3)")
