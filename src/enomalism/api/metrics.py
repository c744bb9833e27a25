"""GET /metrics (Prometheus text), GET /rest/machine/<UUID>/stats/, and the middleware that
counts and times every request by its route template."""

import time
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.services import metrics, stats
from enomalism.wire import MachineStats, Point

router = APIRouter(tags=["metrics"])

ROUTE = "enomalism.route"  # scope key: the route template of an answer given without routing


class RequestMetrics:
    """Counts and times each HTTP request by method, route template (never the raw path: one
    series per route, not per machine) and status: two dictionary look-ups and a clock read.
    It sits inside MethodOverride and outside ActionShortcut, whose answers set `ROUTE`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            template = route.path if route is not None else scope.get(ROUTE, metrics.UNMATCHED)
            scope["app"].state.metrics.request(scope["method"], template, status,
                                               time.perf_counter() - started)


def prometheus(request: Request, ctx: Ctx) -> Response:
    """This node's metrics in the Prometheus text format: its machines and hypervisors (for a
    non-administrator, those they may read) and, for administrators, the server's own."""
    state = request.app.state
    body = metrics.exposition(ctx, collector=state.collector, server=state.metrics,
                              db=state.db)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)


class StatsAnswer(Status, MachineStats):
    pass


def machine_stats(uuid: str, request: Request, ctx: Ctx) -> dict:
    """The machine's current CPU, memory, disk and network rates and its last hour at 10 s
    resolution (extension)."""
    return stats.machine_stats(ctx, uuid, sampler=request.app.state.sampler)


class StatsListVars(Vars):
    machines: list[str] = Field(default_factory=list, description="machine UUIDs (repeat or "
                                f"separate with commas; at most {stats.LIST_MAX})")


class StatsListAnswer(Status):
    stats: dict[str, Point | None] = Field(description="each machine the caller may read: its "
                                           "latest point, null when it does not run")


def list_stats(request: Request, ctx: Ctx,
               v: Annotated[StatsListVars, http_vars(StatsListVars)]) -> dict:
    """The current CPU, memory, disk and network rates of several machines (extension: the
    dashboard's list columns)."""
    return {"errno": 0, "message": "",
            "stats": stats.current_stats(ctx, v.machines, sampler=request.app.state.sampler)}


expose(router, "/metrics", ["GET"], prometheus, response_class=PlainTextResponse,
       summary="Prometheus metrics of this node (extension)")
expose(router, "/rest/machine/{uuid}/stats/", ["GET"], machine_stats,
       response_model=StatsAnswer, summary="A machine's rates and last hour (extension)")
expose(router, "/rest/stats/", ["GET"], list_stats, vars_model=StatsListVars,
       response_model=StatsListAnswer, summary="Several machines' current rates (extension)")
