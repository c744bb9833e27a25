"""The ASGI application: routers, error answers, the trailing-slash rule, start and stop."""

import logging
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from enomalism import __version__
from enomalism.api import (
    audit,
    cache,
    clusters,
    consoles,
    events,
    hypervisors,
    images,
    machines,
    metrics,
    networks,
    permissions,
    pools,
    session,
    snapshots,
    transactions,
    ui,
    users,
    vmfeed,
)
from enomalism.api.answers import error_answer
from enomalism.api.compat import MethodOverride, guard_literal_paths, readable_body
from enomalism.api.credentials import cached_user
from enomalism.api.deps import current_user, make_context
from enomalism.api.guard import BodyLimit, CrossSite
from enomalism.api.schemas import Readiness, Status
from enomalism.config import Settings
from enomalism.errors import (
    EnomalismError,
    InvalidInput,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    NotReady,
)
from enomalism.feeds import download as dl
from enomalism.jobs.runner import Runner
from enomalism.runtime import nodes
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.services import actions, auth, health, repositories
from enomalism.services import cache as cache_service
from enomalism.services import consoles as console_service
from enomalism.services import events as event_service
from enomalism.services.context import Principal
from enomalism.services.hypervisors import ensure_local_host
from enomalism.services.metrics import Collector, ServerMetrics
from enomalism.services.stats import Sampler
from enomalism.store import files
from enomalism.store.db import SETUP_LOCK, Database
from enomalism.store.secrets import SecretBox
from enomalism.wiring.job_table import JOBS

log = logging.getLogger("enomalism")


ROUTERS = (machines.router, hypervisors.router, clusters.router, users.router,
           permissions.router, transactions.router, vmfeed.router, networks.router,
            cache.router, metrics.router, images.router, consoles.router, pools.router,
            snapshots.router)
for _router in ROUTERS:  # once per process: create_app runs many times in the tests
    guard_literal_paths(_router)

FILES = (".xml", ".json")  # /rest/ paths naming a file (feed.xml) take no trailing slash


class TrailingSlash:
    """`/rest/...` paths answer with and without their trailing slash, without a redirect
    (a redirected POST loses its form body in many clients)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            last = path.rsplit("/", 1)[-1]
            if path.startswith("/rest/") and last and not last.endswith(FILES):
                scope = dict(scope, path=path + "/",
                             raw_path=scope.get("raw_path", path.encode()) + b"/")
        await self.app(scope, receive, send)


_ACTION_PATH = re.compile(r"/rest/machine/([^/]+)/actions/([a-z_]+)/")


class ActionShortcut:
    """`POST /rest/machine/<UUID>/actions/<action>/` for the actions without variables
    (suspend, resume, create, poweroff, ...), answered without FastAPI's routing, dependency
    solving and answer validation, which cost more than the action's own work (see
    docs/performance.md). The same code does the action, in one worker thread: the common
    case of a lifecycle action on the DBAPI connection (`actions.perform_quick`, which writes
    the audit entry with the machine's state), anything else `machines.run_action` in a write
    session committed there, with the same checks, errors, answer and audit entry.

    Anything it is not sure of goes on to the route, which also stays for the OpenAPI
    description: a query string or a body (the route reads and checks its variables),
    credentials that are not in the credential cache (the route verifies them, refuses them
    and counts failures), any other path or method."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
            match = _ACTION_PATH.fullmatch(scope["path"])
            if match and match[2] in machines.NO_VARS_ACTIONS:
                headers = Headers(scope=scope)
                if headers.get("content-length", "0") == "0" and \
                        "transfer-encoding" not in headers:
                    state = scope["app"].state
                    user = cached_user(state, headers.get("authorization", ""))
                    if user is not None:
                        client = scope.get("client")
                        response = await self._act(state, user, client[0] if client else
                                                   "unknown", match[1], match[2])
                        scope[metrics.ROUTE] = f"/rest/machine/{{uuid}}/actions/{match[2]}/"
                        await response(scope, receive, send)
                        event_service.wake_all()  # the events the action wrote, if any
                        return
        await self.app(scope, receive, send)

    @staticmethod
    async def _act(state: Any, user: Principal, source: str, uuid: str,
                   action: str) -> JSONResponse:
        def act() -> dict:
            try:
                # audited in the transaction that writes the machine's state
                answer = actions.perform_quick(state.db, state.registry, user, uuid, action,
                                               source=source)
                if answer is None:
                    with state.db.session() as s:
                        ctx = make_context(state, s, user, source)
                        audit.begin(ctx)
                        answer = machines.run_action(ctx, uuid, action)
                        audit.succeeded(ctx, audit.Rule("machine", action), {"uuid": uuid},
                                        answer)
                return answer
            except Exception as e:
                audit.record_shortcut(state, user, source, uuid, action, e)
                raise
        try:
            return JSONResponse(await run_in_threadpool(act))
        except EnomalismError as e:
            return error_answer(e)
        except Exception as e:  # as the route would answer it: errno 1, logged
            return _unexpected(None, e)


def _http_error(_req: Request, e: HTTPException) -> JSONResponse:
    if e.status_code == 404:
        return error_answer(NotFound("no such path in the API"))
    if e.status_code == 405:
        return error_answer(MethodNotAllowed("this path does not take that HTTP method"))
    if e.status_code == 401:
        return error_answer(NotAuthenticated(auth.BAD_CREDENTIALS))
    err = InvalidInput(str(e.detail))
    err.status = e.status_code
    return error_answer(err)


def _unexpected(_req: Request | None, e: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=e)
    return JSONResponse({"errno": 1, "message": "internal error; see the server log"},
                        status_code=500)


def node_id(settings: Settings) -> str:
    """This server's stable identity (claims on transactions and hypervisors name it): the
    configured one, else one kept in the data dir."""
    if settings.node_id:
        return settings.node_id
    path = settings.data_dir / "node-id"
    if not path.exists():
        with open(path, "w", opener=files.private_opener) as f:
            f.write(f"{socket.gethostname()[:27]}-{uuid.uuid4()}\n")
    return path.read_text().strip()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    server_metrics = ServerMetrics()  # counted from the first request, by RequestMetrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        files.secure(settings)
        db = Database(settings.db_url)
        db.migrate()
        hub = event_service.Hub(db, poll=settings.events_poll,
                                retention=settings.events_retention, keep=settings.events_keep)
        auth.configure_hashing(time_cost=settings.argon2_time_cost,
                               memory_kib=settings.argon2_memory_kib,
                               parallelism=settings.argon2_parallelism)
        nodes.set_this_machine(settings.machine_name)
        node = node_id(settings)
        registry = HypervisorRegistry(db, node, lease=settings.owner_lease,
                                      renew=settings.owner_renew, metrics=server_metrics)
        secrets = SecretBox(settings.secret_key_path)
        # What the first start makes, made once even when several nodes start together.
        with db.exclusive(SETUP_LOCK):
            with db.session() as s:
                generated = auth.ensure_admin(s, settings.admin_password)
            ensure_local_host(db, registry, settings.hypervisors)
            repositories.seal_stored_passwords(db, secrets)
        if generated:
            print(f"enomalism: created user 'admin' with password: {generated}", flush=True)
        registry.start()
        dl.configure(dl.FetchPolicy.from_setting(settings.fetch_allow,
                                                 settings.fetch_total_timeout))
        runner = Runner(db, registry, node, settings.packages_path,
                        threads=settings.job_threads, timeout=settings.job_timeout,
                        secrets=secrets, metrics=server_metrics, handlers=JOBS)
        runner.start()
        collector = Collector(registry)
        sampler = Sampler(collector, interval=settings.stats_interval,
                          keep=max(1, round(3600 / settings.stats_interval)))
        sampler.start()
        sweeper = cache_service.Sweeper(db, runner, settings.cache_sweep_interval)
        sweeper.start()
        hub.start()
        app.state.events = hub
        app.state.settings = settings
        app.state.db = db
        app.state.registry = registry
        app.state.runner = runner
        app.state.secrets = secrets
        app.state.collector = collector
        app.state.sampler = sampler
        app.state.console_tickets = console_service.Tickets(db, settings.console_ticket_seconds)
        app.state.console_holders = console_service.Holders(db, node, lease=settings.owner_lease)
        app.state.credentials = auth.CredentialCache(settings.auth_cache_seconds)
        app.state.throttle = auth.SharedLoginThrottle(db)
        app.state.logins = auth.LoginGate(slots=settings.login_slots,
                                          per_address=settings.login_slots_per_address,
                                          wait=settings.login_wait_seconds)
        for warning in health.warnings(registry):
            log.warning("%s", warning)
        try:
            yield
        finally:
            hub.stop()
            sweeper.stop()
            sampler.stop()
            runner.stop()
            registry.stop()
            db.dispose()

    # Swagger UI (/docs) and ReDoc (/redoc) from files in the package, not from a CDN: a
    # private cloud is often offline.
    app = FastAPIOffline(
        title="enomalism", version=__version__, lifespan=lifespan,
        description="The Enomalism REST API 2.1 on libvirt. Every /rest/ path needs HTTP Basic "
                    "credentials and answers with and without its trailing slash. HTTP "
                    "variables may come as query string, form or JSON object.",
    )
    app.state.metrics = server_metrics
    app.add_exception_handler(EnomalismError, lambda _r, e: error_answer(e))
    # starlette types a handler as taking any Exception, not the class it is registered for
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(
        RequestValidationError, lambda _r, e: error_answer(InvalidInput(str(e.errors()[0]["msg"]))))
    app.add_exception_handler(Exception, _unexpected)

    @app.get("/healthz", tags=["health"], response_model=Status)
    def healthz() -> dict:
        """Liveness, without credentials."""
        return {"errno": 0, "message": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Readiness,
             responses={503: {"model": Readiness, "description": "not ready"}})
    def readyz(request: Request) -> Any:
        """Readiness, without credentials: 200 when the database, the job runner, this node's
        heartbeat and claims, and every hypervisor link are well; 503 naming what is not."""
        state = request.app.state
        ready, body = health.readiness(db=state.db, registry=state.registry,
                                       runner=state.runner)
        if ready:
            return {"errno": 0, "message": "ready", **body}
        wrong = ", ".join(f"{name}: {c['error']}" for name, c in body["checks"].items()
                          if not c["ok"])
        return error_answer(NotReady(f"not ready ({wrong})", **body))

    failures: dict[int | str, dict[str, Any]]  # FastAPI's type for `responses`
    failures = {s: {"model": Status, "description": d} for s, d in [
        (400, "bad input"), (401, "wrong or missing credentials"), (403, "denied"),
        (404, "not found"), (409, "conflict or wrong state"),
        (413, "a body or variable over the size limit"), (423, "locked"),
        (429, "too many failed logins, or logins in flight"), (502, "the hypervisor refused"),
        (503, "the hypervisor is unreachable")]}
    for r in ROUTERS:
        # straight onto the app: a router included twice builds every route twice
        app.include_router(r, dependencies=[Depends(current_user), Depends(readable_body)],
                           responses=failures)
    # Its own authentication (an API token may come as a query parameter: api/events.py).
    app.include_router(events.router, responses=failures)
    # WebSockets authenticate at the upgrade themselves (a ticket, a token: api/consoles.py).
    app.include_router(consoles.ws_router)
    app.include_router(session.router, responses=failures)  # its own: password or cookie
    ui.mount(app)  # the dashboard: / and /ui/ (docs/dashboard.md)
    app.add_middleware(ActionShortcut)  # inside TrailingSlash: it sees the slash added
    app.add_middleware(metrics.RequestMetrics)  # sees the route ActionShortcut or routing set
    app.add_middleware(MethodOverride)  # outside ActionShortcut: a POST standing for PUT is not one
    # outside MethodOverride, which holds a form body to read _method
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CrossSite, trusted_origins=settings.trusted_origins)
    app.add_middleware(TrailingSlash)

    def openapi() -> dict:
        """FastAPI's description without the 422 it adds to every route with parameters:
        invalid input answers 400 with errno and message (the RequestValidationError handler)."""
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented customisation
    return app
