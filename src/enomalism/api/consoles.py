"""Consoles (docs/consoles.md): `POST /rest/machine/<UUID>/console/` issues a ticket; the
WebSockets `/rest/machine/<UUID>/console/serial/` and `.../console/vnc/` carry the console's
bytes as binary frames and JSON control messages as text frames.

Every refusal at the upgrade is an accepted WebSocket that gets `{"type":"closed"}` and a close
code (4401 ticket or credentials, 4403 permission or Origin, 4404 machine, 4409 busy, 4503
migrating: again in a moment, 4500 libvirt): a refused upgrade would reach a browser's script
as a bare 1006 with no reason."""

import asyncio
import contextlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Request, WebSocket
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from enomalism.api import deps, guard
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.errors import (
    BadConsoleTicket,
    ConsoleBusy,
    ConsoleMoving,
    CrossSiteRefused,
    EnomalismError,
    Forbidden,
    NotAuthenticated,
    NotFound,
)
from enomalism.services import consoles, tokens
from enomalism.services.context import Principal

log = logging.getLogger(__name__)
router = APIRouter(tags=["consoles"])
ws_router = APIRouter()
TOKEN_PROTOCOL = "enomalism.token."
MISSED_PONGS = 3  # pings without an answer before the server gives the session up
KEYS_QUEUED = 256  # client messages of keystrokes waiting for the guest
ENDED = "ended"  # the console's side ended (the pipe's end): why is asked of libvirt
AGAIN = 1012  # close code of a session worth opening again (machine moved, link dropped)


class TicketVars(Vars):
    kind: str | None = Field(None, description="serial or vnc")


class TicketAnswer(Status):
    ticket: str = Field(description="single use, bound to you, this machine and kind")
    url: str = Field(description="the WebSocket's path with the ticket")
    expires: int = Field(description="seconds the ticket lives")


def console_ticket(uuid: str, request: Request, ctx: Ctx,
                   v: Annotated[TicketVars, http_vars(TicketVars)]) -> dict:
    """A ticket for the machine's serial or VNC console WebSocket (needs `control`)."""
    answer = consoles.issue(ctx, request.app.state.console_tickets, uuid, v.kind)
    return {"errno": 0, "message": f"open the {v.kind} console within "
                                   f"{answer['expires']} s", **answer}


expose(router, "/rest/machine/{uuid}/console/", ["POST"], console_ticket,
       vars_model=TicketVars, response_model=TicketAnswer,
       summary="A ticket for a console WebSocket (extension)")


def close_code(e: EnomalismError) -> int:
    if isinstance(e, NotAuthenticated):
        return 4401
    if isinstance(e, Forbidden):
        return 4403
    if isinstance(e, NotFound):
        return 4404
    if isinstance(e, ConsoleBusy):
        return 4409
    if isinstance(e, ConsoleMoving):
        return 4503
    return 4500


async def _user(ws: WebSocket, ticket: str | None, token: str | None, uuid: str,
                kind: str) -> Principal:
    """The ticket's user, else the user of the Authorization header or of the
    `enomalism.token.<token>` subprotocol."""
    state = ws.app.state
    header = ws.headers.get("authorization", "")
    if ticket:
        user = await run_in_threadpool(state.console_tickets.redeem, ticket, machine=uuid,
                                       kind=kind)
        if header or token:  # credentials besides the ticket must be its user's
            other = await _credentials(ws, header, token)
            if other.uuid != user.uuid:
                raise BadConsoleTicket("the console ticket was issued to another user")
        return user
    if header or token:
        return await _credentials(ws, header, token)
    raise NotAuthenticated("a console needs a ticket (POST /rest/machine/<UUID>/console/), "
                           "an Authorization header or the enomalism.token.<token> "
                           "subprotocol")


async def _credentials(ws: WebSocket, header: str, token: str | None) -> Principal:
    if header:
        return await deps.current_user(ws, None, None)  # type: ignore[arg-type]
    who = tokens.cached(ws.app.state.credentials, token or "")
    if who is not None:
        return who
    return await run_in_threadpool(deps._verify_token, ws, token or "")


def _authorise(ws: WebSocket, user: Principal, uuid: str, kind: str) -> consoles.Target:
    state = ws.app.state
    with state.db.session(write=False) as s:
        ctx = deps.make_context(state, s, user, deps.client_address(ws))  # type: ignore[arg-type]
        return consoles.authorise(ctx, uuid, kind)


def _record(ws: WebSocket, **kw: Any) -> None:
    try:
        with ws.app.state.db.session() as s:
            consoles.record(s, source=deps.client_address(ws), **kw)  # type: ignore[arg-type]
    except Exception:  # the session's end must not fail on its log entry
        log.exception("could not write a console session's audit entry")


async def _refuse(ws: WebSocket, e: EnomalismError) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps({"type": "closed", "reason": e.message,
                                       "errno": e.errno}))
        await ws.close(close_code(e), e.message[:120])


async def console_socket(ws: WebSocket, uuid: str, kind: str) -> None:
    """The console WebSocket (see the module's docstring and docs/consoles.md)."""
    offered = ws.scope.get("subprotocols") or []
    token = next((p[len(TOKEN_PROTOCOL):] for p in offered if p.startswith(TOKEN_PROTOCOL)),
                 None)
    await ws.accept(subprotocol="binary" if "binary" in offered else None)
    state = ws.app.state
    params = ws.query_params
    force = params.get("force", "") in ("1", "true", "yes")
    user: Principal | None = None
    try:
        why = guard.cross_site(ws.scope, guard._origins(state.settings.trusted_origins))
        if why is not None:
            raise CrossSiteRefused(f"refused: a console opened from a page of another site "
                                   f"({why})")
        if kind not in consoles.KINDS:
            raise NotFound(f"no console kind '{kind}'; use serial or vnc")
        user = await _user(ws, params.get("ticket"), token, uuid, kind)
        target = await run_in_threadpool(_authorise, ws, user, uuid, kind)
        viewer = consoles.Viewer(user=user, source=deps.client_address(ws), target=target,
                                 kind=kind, forced=force)
        await run_in_threadpool(state.console_holders.enter, viewer, force=force)
    except EnomalismError as e:
        await run_in_threadpool(_record, ws, user=user, machine=uuid, kind=kind,
                                errno=e.errno, message=e.message)
        await _refuse(ws, e)
        return
    loop = asyncio.get_running_loop()
    try:
        pipe = await run_in_threadpool(consoles.open_pipe, state.registry, viewer, force=force,
                                       loop=loop)
    except EnomalismError as e:
        await run_in_threadpool(state.console_holders.leave, viewer)
        await run_in_threadpool(_record, ws, user=user, machine=uuid, kind=kind,
                                errno=e.errno, message=e.message)
        await _refuse(ws, e)
        return
    ended = await _session(ws, pipe, viewer, state)
    await run_in_threadpool(
        _record, ws, user=user, machine=uuid, kind=kind, errno=0, viewer=viewer, ended=ended,
        message=f"{kind} console session ({ended})")


async def _session(ws: WebSocket, pipe: consoles.Pipe, viewer: consoles.Viewer,
                   state: Any) -> str:
    """Carry bytes both ways until one side ends; why it ended. The console is let go
    before the viewer hears why, so a client opening it again is not refused as busy."""
    loop = asyncio.get_running_loop()
    taken: asyncio.Future[str] = loop.create_future()

    def on_taken(by: str) -> None:  # called by the session that takes the console over
        loop.call_soon_threadsafe(_settle, taken, by)

    viewer.on_taken = on_taken
    pumps = _Pumps(ws, pipe, viewer, state.settings.console_ping)
    tasks = [asyncio.create_task(c) for c in (pumps.guest_to_client(), pumps.client_to_guest(),
                                              pumps.keys_to_guest(), pumps.keepalive(),
                                              _taken_over(taken))]
    try:
        ended = await _first_ended(tasks)
    finally:
        for t in tasks:
            t.cancel()
        pipe.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # a row left behind goes stale with the node
            await run_in_threadpool(state.console_holders.leave, viewer)
    return await _tell_why(ws, viewer, ended, state)


def _taken(state: Any, viewer: consoles.Viewer) -> bool:
    try:
        return bool(state.console_holders.taken(viewer))
    except Exception:  # the database is away: libvirt is asked instead
        log.exception("could not read who holds a console")
        return False


def _settle(taken: asyncio.Future[str], by: str) -> None:
    if not taken.done():
        taken.set_result(by)


async def _taken_over(taken: asyncio.Future[str]) -> str:
    await taken
    return "taken"


class _Pumps:
    """The loops of a console session: bytes each way, and the keepalive pings whose pongs
    the client's loop counts. Keystrokes wait in a short queue for the guest, so that a slow
    write (libvirt taking the keys while the guest is busy) does not keep the client's pongs
    unread: that ended sessions as "no answer to 3 pings" with the client answering every
    one. A full queue holds the client's reading back, as a slow guest should."""

    def __init__(self, ws: WebSocket, pipe: consoles.Pipe, viewer: consoles.Viewer,
                 ping: float) -> None:
        self.ws, self.pipe, self.viewer, self.ping = ws, pipe, viewer, ping
        self.unanswered = 0
        self.keys: asyncio.Queue[bytes] = asyncio.Queue(maxsize=KEYS_QUEUED)

    async def guest_to_client(self) -> str:
        while True:
            data = await self.pipe.read()
            if not data:
                return "taken" if self.viewer.taken_by else ENDED
            self.viewer.bytes_out += len(data)
            await self.ws.send_bytes(data)

    async def client_to_guest(self) -> str:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return "the viewer left"
            if message.get("bytes"):
                self.viewer.bytes_in += len(message["bytes"])
                await self.keys.put(message["bytes"])
            elif message.get("text"):
                self._control(message["text"])

    async def keys_to_guest(self) -> str:
        while True:
            await self.pipe.write(await self.keys.get())

    def _control(self, text: str) -> None:
        try:
            control = json.loads(text)
        except ValueError:
            return
        if isinstance(control, dict) and control.get("type") == "pong":
            self.unanswered = 0  # resize and anything else: not supported, ignored

    async def keepalive(self) -> str:
        while True:
            await asyncio.sleep(self.ping)
            if self.unanswered >= MISSED_PONGS:
                return f"no answer to {MISSED_PONGS} pings"
            self.unanswered += 1
            await self.ws.send_text('{"type":"ping"}')


async def _first_ended(tasks: list[asyncio.Task[str]]) -> str:
    """Why the first of the session's loops to end ended."""
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    try:
        return next(iter(done)).result()
    except WebSocketDisconnect:
        return "the viewer left"
    except EnomalismError as e:
        return e.message
    except Exception as e:  # a send on a socket the viewer closed, say
        return f"the connection failed ({type(e).__name__})"


async def _tell_why(ws: WebSocket, viewer: consoles.Viewer, ended: str, state: Any) -> str:
    """Close the socket with the reason the session ended (none to a viewer who left); when
    the console's side ended, the holders are asked whether another viewer took it (through
    another node: libvirt ended our stream for its forced open), else libvirt why it ended
    and whether the client should come back."""
    if ended == ENDED and await run_in_threadpool(_taken, state, viewer):
        ended = "taken"
    if viewer.taken_by or ended == "taken":
        at = viewer.taken_at.isoformat(timespec="seconds") if viewer.taken_at else None
        ended = f"taken over by {viewer.taken_by}" + (f" at {at}" if at else "")
        await _close(ws, {"type": "taken", "by": viewer.taken_by, "at": at}, 4409, ended)
    elif ended == ENDED:
        ended, again = await run_in_threadpool(consoles.why_ended, state.registry, viewer)
        await _close(ws, {"type": "closed", "reason": ended, "reconnect": again},
                     AGAIN if again else 1000, ended)
    elif ended != "the viewer left":
        await _close(ws, {"type": "closed", "reason": ended}, 1000, ended)
    return ended


async def _close(ws: WebSocket, message: dict, code: int, reason: str) -> None:
    if ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await ws.send_text(json.dumps(message))
        await ws.close(code, reason[:120])


for _path in ("/rest/machine/{uuid}/console/{kind}/", "/rest/machine/{uuid}/console/{kind}"):
    ws_router.add_api_websocket_route(_path, console_socket)
