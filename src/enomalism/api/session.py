"""`/rest/session/`: the dashboard's login (docs/dashboard.md, Sessions). A session is an
API token in an HttpOnly cookie (services/sessions.py); these routes set, read and clear it.
They authenticate themselves: POST by name and password, GET and DELETE by the cookie."""

from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from enomalism.api import deps
from enomalism.api.schemas import Status
from enomalism.errors import NotAuthenticated
from enomalism.services import sessions
from enomalism.services.context import Principal

router = APIRouter(tags=["session"])


class LoginVars(deps.Vars):
    username: str | None = Field(None, description="the user's name")
    password: str | None = Field(None, description="the user's password")


class SessionAnswer(Status):
    username: str
    uuid: str
    is_admin: bool
    csrf_token: str = Field(description="send as the X-CSRF-Token header with every request "
                                         "that changes something")
    expires_in: int = Field(description="seconds until the session ends")


def _answer(who: Principal, secret: str, message: str) -> dict:
    return {"errno": 0, "message": message, "username": who.username, "uuid": who.uuid,
            "is_admin": who.is_admin, "csrf_token": sessions.csrf_token(secret),
            "expires_in": int(sessions.LIFETIME.total_seconds())}


def _set_cookie(request: Request, response: Response, secret: str) -> None:
    response.set_cookie(sessions.COOKIE, secret, max_age=int(sessions.LIFETIME.total_seconds()),
                        path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


@router.post("/rest/session/", response_model=SessionAnswer,
             openapi_extra=deps._vars_doc(LoginVars, "POST"))
async def login(request: Request, response: Response,
                given: Annotated[deps.Vars, deps.http_vars(LoginVars)]) -> dict:
    """Log in with `username` and `password`: sets the session cookie (HttpOnly,
    SameSite=Strict, Secure over HTTPS, 12 hours) and answers the session's CSRF token.
    Failed logins are throttled as HTTP Basic ones are."""
    assert isinstance(given, LoginVars)
    if not given.username or not given.password:
        raise NotAuthenticated("give username and password")
    who = await deps.password_user(request, given.username, given.password)
    state = request.app.state

    def open_() -> str:
        with deps.own_context(state, who, deps.client_address(request)) as ctx:
            _token, secret = sessions.open_session(ctx)
            return secret
    secret = await run_in_threadpool(open_)
    _set_cookie(request, response, secret)
    return _answer(who, secret, f"logged in as {who.username}")


def _cookie(request: Request) -> str:
    secret = request.cookies.get(sessions.COOKIE)
    if not secret:
        raise NotAuthenticated("not logged in")
    return secret


@router.get("/rest/session/", response_model=SessionAnswer)
async def whoami(request: Request) -> dict:
    """The session's user and CSRF token (a reloaded page reads it here); 401 without one."""
    secret = _cookie(request)
    who = await deps.session_user(request, secret)
    return _answer(who, secret, f"logged in as {who.username}")


@router.delete("/rest/session/", response_model=Status)
async def logout(request: Request, response: Response) -> dict:
    """Log out: the session is revoked on the server and its cookie cleared. Needs the CSRF
    token, like every change made with the cookie."""
    secret = _cookie(request)
    who = await deps.session_user(request, secret)
    state = request.app.state

    def close() -> None:
        with deps.own_context(state, who, deps.client_address(request)) as ctx:
            sessions.close_session(ctx, secret)
    await run_in_threadpool(close)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return {"errno": 0, "message": "logged out"}


