"""Images (issue 16): upload a qcow2, raw or ISO file, register one from a URL, list, show,
delete. The upload's body is streamed into its volume (api/guard.py `STREAMED_BODIES`)."""

import asyncio
import collections
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO, cast

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from starlette.requests import ClientDisconnect

from enomalism.api import audit as api_audit
from enomalism.api.compat import refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, committed, expose, http_vars, read_vars, rolled_back
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
    """The request's body as a blocking file, for a worker thread, never held whole. A task
    on the event loop pumps the body's pieces into a buffer of up to `LIMIT` bytes while the
    worker writes: the worker takes them without a hop to the loop (on a loaded machine each
    hop waited for both threads to be scheduled, and the socket stood still meanwhile); the
    loop is woken only when the buffer was full and has room again. A read gives back the
    pieces as received (fewer bytes than asked for, as a file may), never joined: a copy of
    every byte cost as much CPU as writing it."""

    LIMIT = 8 << 20

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._request, self._loop = request, loop
        self._cond = threading.Condition()
        self._parts: collections.deque[bytes] = collections.deque()
        self._have, self._ended = 0, False
        self._error: Exception | None = None
        self._room = asyncio.Event()  # made on the loop (upload_vars)
        self._waiting = False  # the pump waits for room
        self._pump_future: concurrent.futures.Future | None = None

    async def _pump(self) -> None:
        try:
            async for chunk in self._request.stream():
                if not chunk:
                    continue
                with self._cond:
                    self._parts.append(chunk)
                    self._have += len(chunk)
                    self._cond.notify()
                    full = self._have >= self.LIMIT
                    if full:
                        self._waiting = True
                        self._room.clear()
                if full:
                    await self._room.wait()
        except ClientDisconnect:
            self._error = InvalidInput("the client went away during the upload")
        except Exception as e:  # handed to the reader, raised there
            self._error = e
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        if n < 0:  # the rest, whole
            parts = []
            while data := self.read(1 << 30):
                parts.append(data)
            return b"".join(parts)
        if n == 0:
            return b""
        if self._pump_future is None:
            self._pump_future = asyncio.run_coroutine_threadsafe(self._pump(), self._loop)
        with self._cond:
            while not self._parts and not self._ended:
                self._cond.wait()
            if not self._parts:
                if self._error is not None:
                    raise self._error
                return b""
            piece = self._parts.popleft()
            if len(piece) > n:  # split: only this piece is copied
                piece, rest = piece[:n], piece[n:]
                self._parts.appendleft(rest)
            self._have -= len(piece)
            if self._waiting and self._have <= self.LIMIT // 2:
                self._waiting = False
                self._loop.call_soon_threadsafe(self._room.set)
        return piece

    def close(self) -> None:
        """Stop the pump (an upload refused halfway leaves the rest of the body unread)."""
        if self._pump_future is not None:
            self._pump_future.cancel()


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
        # what reads it uses only read(n): a file as far as they can tell
        source = cast(BinaryIO, BodyReader(request, asyncio.get_running_loop()))
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
    async def dep(request: Request) -> AsyncIterator[Upload]:
        up = Upload(*await upload_vars(request, model))
        try:
            yield up
        finally:
            if isinstance(up.source, BodyReader):
                up.source.close()
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
            return await run_in_threadpool(committed, ctx,
                                           lambda: _register(ctx, rule, given, v))
        if source is None or size is None:  # (a file always comes with its size)
            raise MissingVariable("send the image as the request body, as a multipart part "
                                  "named 'file', or give a 'url'")

        def start() -> images.Plan:
            return images.begin_upload(ctx, name=v.name, fmt=v.format, size=size,
                                       hvmuuid=v.hvmuuid, pool=v.pool, sha256=v.sha256)

        # committed before the volume is filled, so that no write lock is held meanwhile
        plan = await run_in_threadpool(committed, ctx, start)
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
            return answer
        return await run_in_threadpool(committed, ctx, done)

    return await audited(ctx, rule, given, steps)


def _abandon(ctx: Context, uuid: str) -> None:
    rolled_back(ctx, lambda: images.abandon(ctx, uuid=uuid))


def _register(ctx: Context, rule: api_audit.Rule, given: dict, v: UploadVars) -> dict:
    image, tx = images.register(ctx, url=v.url, name=v.name, fmt=v.format, hvmuuid=v.hvmuuid,
                                pool=v.pool, sha256=v.sha256)
    answer = {"image": images.image_obj(image), "txid": tx.uuid, "errno": 0,
              "message": f"image {image.name} is being downloaded"}
    api_audit.succeeded(ctx, rule, given, answer)
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
