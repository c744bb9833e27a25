"""`GET /rest/events/`: the changes a user may read, as Server-Sent Events (docs/api.md,
Events). The rows come from services/events.py; this is the wire and the authentication."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from enomalism.api import deps
from enomalism.errors import BadEventId, CrossSiteRefused, NotAuthenticated, UnknownEventType
from enomalism.services import events, tokens
from enomalism.services.context import Principal

router = APIRouter(tags=["events"])


def _refuse_cross_site(request: Request) -> None:
    """A page on another site must not read a logged-in user's events (the browser sends
    its credentials along with an EventSource's request)."""
    site = request.headers.get("sec-fetch-site", "")
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if site == "cross-site" or (origin and origin.split("://", 1)[-1] != host):
        raise CrossSiteRefused("the events stream refuses requests from pages of another "
                               "site (their Origin or Sec-Fetch-Site says so)")


async def _user(request: Request, access_token: str | None) -> Principal:
    """As the API: HTTP Basic or a bearer token; here also an API token as the query
    parameter `access_token` (a browser's EventSource cannot set headers)."""
    if access_token and not request.headers.get("authorization"):
        state = request.app.state
        who = tokens.cached(state.credentials, access_token)
        if who is not None:
            return who
        return await run_in_threadpool(deps._verify_token, request, access_token)
    if access_token:
        raise NotAuthenticated("give credentials once: the Authorization header or "
                               "access_token, not both")
    return await deps.current_user(request, None, None)


def _types(given: list[str]) -> frozenset[str]:
    names = {p.strip() for v in given for p in v.split(",") if p.strip()}
    families = {t.partition(".")[0] for t in events.TYPES}
    unknown = sorted(n for n in names if n not in events.TYPES and n not in families)
    if unknown:
        raise UnknownEventType(f"unknown event type {', '.join(map(repr, unknown))}: use one of "
                           f"{', '.join(events.TYPES)} or a family ({', '.join(sorted(families))})",
                           errno=1036)
    return frozenset(names)


def _last_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit() or len(value.strip()) > 19:
        raise BadEventId(f"Last-Event-ID '{value[:40]}' is not an event id (a whole number "
                         "this server sent as `id:`)")
    return int(value)


def _resync(cursor: int, why: str) -> str:
    body = json.dumps({"id": None, "type": "resync", "time": None,
                       "object": {"reason": why}}, separators=(",", ":"))
    return f"id: {cursor}\nevent: resync\ndata: {body}\n\n"


@router.get("/rest/events/", response_class=StreamingResponse, responses={200: {
    "content": {"text/event-stream": {}},
    "description": "an endless stream of events (text/event-stream)"}})
async def stream_events(
    request: Request,
    type: Annotated[list[str], Query(description="event types or families to receive "
                                                 "(repeatable or comma-separated); "
                                                 "default all")] = [],  # noqa: B006
    last_event_id: Annotated[str | None, Query(
        alias="last_event_id", description="as the Last-Event-ID header")] = None,
    access_token: Annotated[str | None, Query(description="an API token, for a browser's "
                                                          "EventSource (no headers)")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Server-Sent Events: machine state and inventory changes, transaction progress and
    ends, hypervisor links up and down, audit entries (administrators), each as
    `id`, `event` (its type) and `data` (JSON: id, type, time, object). Reconnect with
    `Last-Event-ID` to get what was missed within the retention window, else a `resync`
    event. A comment every `events_heartbeat` seconds keeps idle streams open."""
    _refuse_cross_site(request)
    user = await _user(request, access_token)
    wanted = _types(type)
    after = _last_id(last_event_id_header or last_event_id)
    state = request.app.state
    hub: events.Hub = state.events
    heartbeat = state.settings.events_heartbeat
    sub, cursor = await run_in_threadpool(hub.subscribe, user, wanted,
                                          asyncio.get_running_loop())
    try:
        missed = None if after is None else await run_in_threadpool(
            events.replay, state.db, user, wanted, after, cursor)
    except BaseException:
        hub.unsubscribe(sub)
        raise

    async def body() -> AsyncIterator[str]:
        try:
            yield f"retry: 2000\nid: {cursor}\n\n" if after is None else "retry: 2000\n\n"
            replayed: set[int] = set()
            if after is not None and missed is None:
                yield _resync(cursor, f"event {after} is older than the retention window "
                                      "(or not of this server): read the state afresh")
            for item in missed or []:
                replayed.add(item.id)
                yield item.message()
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), heartbeat)
                except TimeoutError:
                    yield f": keepalive\nid: {hub.cursor}\n\n"
                    continue
                if item is None:
                    yield _resync(hub.cursor, "this client fell too far behind, or the "
                                              "server is stopping: reconnect and read the "
                                              "state afresh")
                    return
                if item.id not in replayed:
                    yield item.message()
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(body(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

