"""What every handler reads the same way: HTTP variables, the session, the user, the context.

HTTP variables come from the query string, an urlencoded or multipart form, or a JSON object
body, whichever the client sends (body wins over query). Each endpoint names its variables in a
small pydantic model; `expose` documents them in the OpenAPI description and registers the
endpoint once per HTTP method, with and without the trailing slash handled by the app.
"""

import functools
import inspect
import json
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBasic, HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from enomalism.api import audit as api_audit
from enomalism.api import credentials, guard
from enomalism.api.compat import file_variable
from enomalism.errors import CsrfTokenMissing, InvalidInput, NotAuthenticated
from enomalism.services import auth, sessions, tokens
from enomalism.services.context import Context, Principal

T = TypeVar("T")
BODY_METHODS = {"POST", "PUT", "DELETE", "PATCH"}
FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}


class Vars(BaseModel):
    """Base of every endpoint's HTTP variables: unknown ones are ignored, numbers read as text."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class NoVars(Vars):
    pass


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation))


def _text_problem(value: Any) -> str | None:
    """Why a variable's text is unusable: a NUL character or a lone surrogate (JSON allows
    both; libvirt, the database drivers and the JSON answer itself fail on them)."""
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


async def _json_vars(request: Request) -> dict[str, list[Any]]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        obj = json.loads(body)
    except ValueError:
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidInput("a JSON body must be an object of HTTP variables")
    return {k: list(v) if isinstance(v, list) else [v] for k, v in obj.items()}


async def _form_vars(request: Request, model: type[Vars]) -> dict[str, list[Any]]:
    try:
        form = await request.form()
    except Exception:
        raise InvalidInput("the request body is not a readable form") from None
    body_vars: dict[str, list[Any]] = {}
    for k, v in form.multi_items():
        if not isinstance(v, str):  # a file part: the variable of its name
            if k not in model.model_fields:
                continue
            v = await file_variable(k, v)
        body_vars.setdefault(k, []).append(v)
    return body_vars


async def read_vars(request: Request, model: type[Vars]) -> Vars:
    await guard.check_input(
        request, request.headers.get("content-type", "").split(";")[0].strip().lower())
    raw: dict[str, list[Any]] = {}
    for k, v in request.query_params.multi_items():
        raw.setdefault(k, []).append(v)
    if request.method in BODY_METHODS:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json" or ctype.endswith("+json"):
            raw.update(await _json_vars(request))
        elif ctype in FORMS:
            raw.update(await _form_vars(request, model))
    guard.check_lengths(request, raw)
    data: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        values = raw.get(name)
        if not values:
            continue
        problem = next(filter(None, map(_text_problem, values)), None)
        if problem:
            raise InvalidInput(f"variable '{name}' {problem}")
        if _is_list(field.annotation):
            extra = field.json_schema_extra
            whole = isinstance(extra, dict) and extra.get("x-repeat-only")  # values with commas
            data[name] = [p.strip() for v in values
                          for p in ([str(v)] if whole else str(v).split(",")) if p.strip()]
        else:
            data[name] = values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(f"variable '{where}': {err['msg']}") from None


def _vars_doc(model: type[Vars], method: str) -> dict:
    if not model.model_fields:
        return {}
    schema = model.model_json_schema()
    if method in ("POST", "PUT"):
        content = {"schema": schema}
        return {"requestBody": {"required": False, "content": {
            "application/x-www-form-urlencoded": content, "application/json": content}}}
    return {"parameters": [
        {"name": name, "in": "query", "required": False,
         "schema": {k: v for k, v in schema["properties"][name].items() if k != "title"},
         "description": field.description or ""}
        for name, field in model.model_fields.items()]}


def commit_request(ctx: Context) -> None:
    """The end of a request: what it wrote is committed, the one commit of its session
    (store/unit.py names the few earlier ones). `expose` does it for the endpoints it wraps;
    the steps of a streamed upload (`committed`, `rolled_back`) and what a failed request
    writes after its rollback (its audit entry) call it."""
    ctx.db.commit()


def _in_one_thread(endpoint: Callable, rule: "api_audit.Rule | None" = None) -> Callable:
    """The (blocking) endpoint and the commit of its session, in one worker thread.

    FastAPI would hand a plain `def` endpoint to a worker thread, then its answer's validation
    to another, then the session's commit to a third: each hand-over waits for a thread to be
    scheduled. Wrapped, the endpoint is a coroutine to FastAPI: one hand-over runs the endpoint
    and commits, the answer (plain dicts) is validated on the event loop, and `get_session`
    finds nothing left to write. A commit that fails is still answered as the error it is.

    With an audit `rule`, the request's audit entry is added before the commit, or, when it
    fails, written after its rollback (api/audit.py)."""
    def call_and_commit(kwargs: dict[str, Any]) -> Any:
        ctx = next((v for v in kwargs.values() if isinstance(v, Context)), None)
        if ctx is None:
            return endpoint(**kwargs)
        if rule is None:
            result = endpoint(**kwargs)
            commit_request(ctx)
            return result
        api_audit.begin(ctx)
        try:
            result = endpoint(**kwargs)
            api_audit.succeeded(ctx, rule, api_audit.variables(kwargs), result)
            commit_request(ctx)
        except Exception as e:
            api_audit.failed(ctx, rule, api_audit.variables(kwargs), e)
            raise
        return result

    @functools.wraps(endpoint)
    async def run(**kwargs: Any) -> Any:
        return await run_in_threadpool(call_and_commit, kwargs)
    return run


def committed(ctx: Context, step: Callable[[], T]) -> T:
    """`step`, then the commit: one unit of work of an async endpoint that commits its
    steps itself (a streamed upload fills its volume with no write lock held)."""
    result = step()
    commit_request(ctx)
    return result


def rolled_back(ctx: Context, step: Callable[[], T]) -> T:
    """Roll the failed unit of work back, then `step` committed in a new one."""
    ctx.db.rollback()
    return committed(ctx, step)


def expose(router: APIRouter, path: str, methods: list[str], endpoint: Callable, *,
           vars_model: type[Vars] = NoVars, **kwargs: Any) -> None:
    """Register `endpoint` for each method, documenting `vars_model` as the method's HTTP
    variables (query parameters for GET and DELETE, a form or JSON body for POST and PUT).
    A method that changes something is recorded in the audit log, refused or not
    (api/audit.py; the outcome of a `def` endpoint, which is what every endpoint is)."""
    for method in methods:
        rule = api_audit.rule_for(method, path, endpoint)
        call = endpoint if inspect.iscoroutinefunction(endpoint) else \
            _in_one_thread(endpoint, rule)
        route_kwargs = dict(kwargs)
        if rule is not None:  # recorded in the audit log, refused variables too
            route_kwargs["dependencies"] = [*kwargs.get("dependencies", []),
                                            Depends(_audit_refusals(rule))]
        router.add_api_route(
            path, call, methods=[method], name=f"{endpoint.__name__}_{method.lower()}",
            openapi_extra=_vars_doc(vars_model, method), **route_kwargs)


def http_vars(model: type[Vars]) -> Any:
    async def dep(request: Request) -> Vars:
        return await read_vars(request, model)
    return Depends(dep)


def writes_on_get(request: Request) -> None:
    """A route dependency for the GETs that change something (the spec's GET .../delete/):
    their session takes the write lock like a POST's. A reader session that starts writing
    fails at once ('database is locked') when another writer committed since its first read.
    Like any request that changes something, it is refused from another site's page."""
    guard.refuse_cross_site(request)
    secret = request.cookies.get(sessions.COOKIE)
    if secret and not request.headers.get("authorization"):
        _check_csrf(request, secret)
    request.state.writes = True


def _check_csrf(request: Request, secret: str) -> None:
    if not sessions.csrf_matches(secret, request.headers.get(sessions.CSRF_HEADER)):
        raise CsrfTokenMissing(
            "refused: a request with the session cookie that changes something needs the "
            "session's CSRF token in the X-CSRF-Token header (GET /rest/session/ gives it)")


def _writes(request: Request) -> bool:
    return request.method not in ("GET", "HEAD") or getattr(request.state, "writes", False)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request; GETs take no write lock unless `writes_on_get`.

    Opening a session does no I/O (it connects at its first statement), so it is opened on the
    event loop rather than in a worker thread: one thread hop less on every request. Endpoints
    registered with `expose` commit in their own worker thread, so closing is no I/O either;
    otherwise commit or rollback and close run in a worker thread, with a limiter of their own
    (as FastAPI does for sync dependencies) so they never wait for a thread held by a request
    that waits for their connection."""
    cm = request.app.state.db.session(write=_writes(request))
    s = cm.__enter__()
    try:
        yield s
    except BaseException as e:
        with anyio.CancelScope(shield=True):
            suppressed = await anyio.to_thread.run_sync(
                cm.__exit__, type(e), e, e.__traceback__, limiter=anyio.CapacityLimiter(1))
        if not suppressed:
            raise
    else:
        if not s.in_transaction():  # committed by the endpoint (`expose`): closing is no I/O
            cm.__exit__(None, None, None)
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                cm.__exit__, None, None, None, limiter=anyio.CapacityLimiter(1))


_basic = HTTPBasic(auto_error=False, realm="enomalism")
_bearer = HTTPBearer(auto_error=False, description="an API token from PUT /rest/tokens/")


def client_address(request: HTTPConnection) -> str:
    return request.client.host if request.client else "unknown"


def _verify_password(request: Request, username: str, password: str) -> Principal:
    state = request.app.state
    with state.db.session(write=False) as s:
        return auth.authenticate(s, state.credentials, username, password)


def _verify_token(request: HTTPConnection, secret: str) -> Principal:
    state = request.app.state
    with state.db.session(write=False) as s:
        return tokens.authenticate(s, secret, state.credentials)


async def _basic_user(request: Request, value: str) -> Principal:
    pair = credentials.basic_pair(value)
    if pair is None:
        raise NotAuthenticated(auth.BAD_CREDENTIALS)
    return await password_user(request, *pair)


async def password_user(request: Request, username: str, password: str) -> Principal:
    """The user of a name and password, verified with the failed-login throttle and the
    login gate (HTTP Basic and `POST /rest/session/` alike)."""
    state = request.app.state
    who = state.credentials.get(username, password)
    if who is not None:
        return who
    source = client_address(request)
    # the throttle is in the database (shared by every node): its calls are I/O
    await run_in_threadpool(state.throttle.check, username, source)
    try:
        async with state.logins.admit(source):
            who = await run_in_threadpool(_verify_password, request, username, password)
    except NotAuthenticated:
        await run_in_threadpool(state.throttle.failed, username, source)
        raise
    await run_in_threadpool(state.throttle.succeeded, username, source)
    state.logins.succeeded(source)
    return who


async def current_user(
    request: Request,
    _basic_doc: Annotated[Any, Depends(_basic)],
    _bearer_doc: Annotated[Any, Depends(_bearer)],
) -> Principal:
    """The user behind the request's HTTP Basic credentials or bearer token, or 401."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        return await _basic_user(request, value)
    if scheme.lower() == "bearer" and value:
        who = tokens.cached(request.app.state.credentials, value)
        if who is not None:
            return who
        return await run_in_threadpool(_verify_token, request, value)
    cookie = request.cookies.get(sessions.COOKIE)
    if cookie:
        return await session_user(request, cookie)
    raise NotAuthenticated(auth.BAD_CREDENTIALS)


async def session_user(request: Request, secret: str) -> Principal:
    """The user of the dashboard's session cookie. The browser sends a cookie by itself, so
    a request that changes something must also name the session's CSRF token in a header
    (services/sessions.py); the GETs that change something check it (`writes_on_get`)."""
    if request.method not in guard.SAFE_METHODS:
        _check_csrf(request, secret)
    who = tokens.cached(request.app.state.credentials, secret)
    if who is not None:
        return who
    return await run_in_threadpool(_verify_token, request, secret)


async def _context(
    request: Request,
    db: Annotated[Session, Depends(get_session)],
    user: Annotated[Principal, Depends(current_user)],
) -> Context:
    return make_context(request.app.state, db, user, client_address(request))


def make_context(state: Any, db: Session, user: Principal, source: str) -> Context:
    return Context(db=db, registry=state.registry, user=user, source=source,
                   credentials=state.credentials, throttle=state.throttle, jobs=state.runner,
                   secrets=state.secrets)


@contextmanager
def own_context(state: Any, user: Principal, source: str) -> Iterator[Context]:
    """A context in a session of its own, committed when the block ends: for an endpoint that
    has no request session (logging in and out, `api/session.py`)."""
    with state.db.session() as s:
        yield make_context(state, s, user, source)


Ctx = Annotated[Context, Depends(_context)]


def _audit_refusals(rule: api_audit.Rule) -> Callable:
    """A route dependency: records the requests refused before their endpoint ran (their
    variables); the endpoint's own outcome is recorded around it (`_in_one_thread`)."""
    async def audit_refusals(request: Request, ctx: Ctx) -> AsyncIterator[None]:
        try:
            yield
        except Exception as e:
            if ctx.audit is None:  # the endpoint never ran
                await run_in_threadpool(api_audit.failed, ctx, rule, dict(request.path_params), e)
            raise
    return audit_refusals
