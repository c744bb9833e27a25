"""Images (issue 16): upload a qcow2, raw or ISO file, register one from a URL, list, show,
delete. The upload's body is streamed into its volume (api/guard.py `STREAMED_BODIES`)."""

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from starlette.requests import ClientDisconnect

from enomalism.api import audit as api_audit
from enomalism.api.compat import refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars, read_vars
from enomalism.api.schemas import Status
from enomalism.errors import InvalidInput, LengthRequired, MissingVariable, UnknownAction
from enomalism.services import images
from enomalism.services.context import Context
from enomalism.wire import ImageObj

router = APIRouter(tags=["images"])
VARIABLES_LIMIT = 64 << 10  # a form or JSON body here carries variables only


class ImageAnswer(Status):
    image: ImageObj | None
    txid: str | None = Field(None, description="the registration's transaction (url only)")


class ImagesAnswer(Status):
    images: list[ImageObj]


class UploadVars(Vars):
    name: str | None = Field(None, description="the image's name (unique among yours)")
    format: str | None = Field(None, description="qcow2, raw or iso")
    url: str | None = Field(None, description="register from this http(s) URL instead")
    sha256: str | None = Field(None, description="the file's expected sha256 (verified)")
    hvmuuid: str | None = Field(None, description="the hypervisor (you need `control`)")
    pool: str | None = Field(None, description="the storage pool (default: as provision)")


class BodyReader:
    """The request's body as a blocking file, for a worker thread: each read waits for the
    next pieces from the event loop, so the body is never held whole. A read gives back the
    pieces as the server received them (fewer bytes than asked for, as a file may): joining
    them into the size asked for cost a copy of every byte, a third of an upload's CPU."""

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = request.stream().__aiter__()
        self._loop, self._ended = loop, False
        self._parts: collections.deque[bytes] = collections.deque()
        self._have = 0

    async def _gather(self, n: int) -> None:
        """Pieces until `n` bytes are buffered or the body ends: one hop from the thread per
        MiB or so, not one per piece the server received (64 to 256 KiB)."""
        try:
            while self._have < n:
                chunk = await self._chunks.__anext__()
                if chunk:
                    self._parts.append(chunk)
                    self._have += len(chunk)
        except StopAsyncIteration:
            self._ended = True
        except ClientDisconnect:
            raise InvalidInput("the client went away during the upload") from None

    def read(self, n: int = -1) -> bytes:
        if n < 0:  # the rest, whole
            parts = []
            while data := self.read(1 << 30):
                parts.append(data)
            return b"".join(parts)
        if not self._parts and not self._ended and n > 0:
            asyncio.run_coroutine_threadsafe(self._gather(max(n, GATHER)), self._loop).result()
        if not self._parts or n == 0:
            return b""
        first = self._parts.popleft()
        if len(first) > n:  # split: only this piece is copied
            first, rest = first[:n], first[n:]
            self._parts.appendleft(rest)
        self._have -= len(first)
        return first


GATHER = 1 << 20  # bytes fetched from the event loop per hop


def _length(request: Request) -> int:
    value = request.headers.get("content-length", "").strip()
    if not value:
        raise LengthRequired("send the file with a Content-Length header (curl -T does), or "
                             "as a multipart part named 'file'")
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("Content-Length is not a number") from None


async def upload_vars(request: Request, model: type[Vars]) -> tuple[Vars, BinaryIO | None,
                                                                     int | None]:
    """The variables (query string, and a multipart form's fields), the file and its size:
    the body itself, or the form's part named `file` (kept on disk, not in memory, by the
    form parser); None when there is no file."""
    raw: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    source, size = None, None
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1)
        for k, v in form.multi_items():
            if isinstance(v, str):
                raw[k] = v
            elif k == "file":
                source, size = v.file, v.size
        if source is None:
            raise MissingVariable("the multipart form has no part named 'file'")
    elif ctype in ("application/x-www-form-urlencoded", "application/json"):
        # variables only (a registration from `url`): small, read as every route reads them
        if _length(request) > VARIABLES_LIMIT:
            raise InvalidInput("send the file itself as the body (any other Content-Type), or "
                               "as a multipart part named 'file'")
        return await read_vars(request, model), None, None
    elif request.headers.get("content-length", "0").strip() not in ("", "0") \
            or "transfer-encoding" in request.headers:
        size = _length(request)
        source = BodyReader(request, asyncio.get_running_loop())
    try:
        return model.model_validate({k: v for k, v in raw.items() if k in model.model_fields}), \
            source, size
    except ValueError as e:
        raise InvalidInput(f"bad variables: {e}") from None


@dataclass
class Upload:
    """A streamed upload's variables, its file (None: none was sent) and the file's size."""

    vars: Any
    source: BinaryIO | None
    size: int | None


def file_vars(model: type[Vars]) -> Any:
    """A dependency: `upload_vars` of the request (documented as `model`, like `http_vars`)."""
    async def dep(request: Request) -> Upload:
        return Upload(*await upload_vars(request, model))
    return Depends(dep)


async def audited(ctx: Context, rule: api_audit.Rule, given: dict[str, Any],
                  steps: Callable[[], Any]) -> Any:
    """Run the (async) `steps` of a streamed upload, its audit entry written as `expose`
    does for the others: with the last step's commit, or after a failure on its own."""
    api_audit.begin(ctx)
    try:
        return await steps()
    except Exception as e:
        await run_in_threadpool(api_audit.failed, ctx, rule, given, e)
        raise


async def upload_image(ctx: Ctx, up: Annotated[Upload, file_vars(UploadVars)]) -> dict:
    """Upload an image (the body, or a multipart part `file`) or register one from `url`."""
    rule = api_audit.RULES[("PUT", "/rest/images/")]
    v, source, size = up.vars, up.source, up.size
    given: dict[str, Any] = v.model_dump(exclude_unset=True)

    async def steps() -> dict:
        if v.url:
            if source is not None:
                raise InvalidInput("send a file or a 'url', not both")
            return await run_in_threadpool(_register, ctx, rule, given, v)
        if source is None:
            raise MissingVariable("send the image as the request body, as a multipart part "
                                  "named 'file', or give a 'url'")

        def start() -> images.Plan:
            plan = images.begin_upload(ctx, name=v.name, fmt=v.format, size=size,
                                       hvmuuid=v.hvmuuid, pool=v.pool, sha256=v.sha256)
            ctx.db.commit()  # the volume is filled with no write lock held
            return plan

        plan = await run_in_threadpool(start)
        try:
            written = await run_in_threadpool(images.write, registry=ctx.registry, plan=plan,
                                              source=source, size=size)
        except BaseException:
            await run_in_threadpool(_abandon, ctx, plan.uuid)
            raise

        def done() -> dict:
            image = images.finish(ctx, plan=plan, written=written)
            answer = {"image": images.image_obj(image), "errno": 0,
                      "message": f"image {image.name} uploaded ({written.size} bytes)"}
            api_audit.succeeded(ctx, rule, given, answer)
            ctx.db.commit()
            return answer
        return await run_in_threadpool(done)

    return await audited(ctx, rule, given, steps)


def _abandon(ctx: Context, uuid: str) -> None:
    ctx.db.rollback()
    images.abandon(ctx, uuid=uuid)
    ctx.db.commit()


def _register(ctx: Context, rule: api_audit.Rule, given: dict, v: UploadVars) -> dict:
    image, tx = images.register(ctx, url=v.url, name=v.name, fmt=v.format, hvmuuid=v.hvmuuid,
                                pool=v.pool, sha256=v.sha256)
    answer = {"image": images.image_obj(image), "txid": tx.uuid, "errno": 0,
              "message": f"image {image.name} is being downloaded"}
    api_audit.succeeded(ctx, rule, given, answer)
    ctx.db.commit()
    return answer


class ImageActionVars(Vars):
    action: str | None = Field(None, description="package: turn the image into a package")
    name: str | None = Field(None, description="the package's name (default: the image's)")
    description: str | None = Field(None, description="the package's description")
    version: str | None = Field(None, description="the package's version (default 1)")


class TxAnswer(Status):
    txid: str | None


def act_on_image(uuid: str, ctx: Ctx,
                 v: Annotated[ImageActionVars, http_vars(ImageActionVars)]) -> dict:
    """action=package (`package import`): a transaction writes the image into a new
    package."""
    if v.action != "package":
        raise UnknownAction(f"unknown action '{v.action or ''}' on an image; use: package")
    tx = images.queue_package(ctx, ref=uuid, name=v.name, description=v.description,
                              version=v.version)
    return {"txid": tx.uuid, "errno": 0, "message": "packaging queued"}


def list_images(ctx: Ctx) -> dict:
    """Every image the caller may read."""
    return {"images": [images.image_obj(i) for i in images.list_images(ctx)], "errno": 0,
            "message": ""}


def get_image(uuid: str, ctx: Ctx) -> dict:
    """The image (by UUID, name or a unique UUID prefix)."""
    return {"image": images.image_obj(images.show(ctx, ref=uuid)), "errno": 0, "message": ""}


def delete_image(uuid: str, ctx: Ctx) -> dict:
    """Delete the image and its volume."""
    return {"image": None, "errno": 0, "message": images.delete(ctx, ref=uuid)}


expose(router, "/rest/images/", ["GET"], list_images, response_model=ImagesAnswer,
       summary="List images (extension)", dependencies=[refuse_changes_on_get(UploadVars)])
expose(router, "/rest/images/", ["PUT"], upload_image, vars_model=UploadVars,
       response_model=ImageAnswer, response_model_exclude_unset=True,
       summary="Upload an image, or register one from a URL (extension)")
expose(router, "/rest/images/{uuid}/", ["GET"], get_image, response_model=ImageAnswer,
       response_model_exclude_unset=True, summary="Get an image (extension)")
expose(router, "/rest/images/{uuid}/", ["POST"], act_on_image, vars_model=ImageActionVars,
       response_model=TxAnswer, summary="Turn an image into a package (extension)")
expose(router, "/rest/images/{uuid}/", ["DELETE"], delete_image, response_model=ImageAnswer,
       response_model_exclude_unset=True, summary="Delete an image (extension)")
