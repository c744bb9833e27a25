"""The one shape of an error answer, `{errno, message, ...}` with its status, for the app's
handlers and for what answers before any route runs (api/guard.py, api/compat.py)."""

from starlette.responses import JSONResponse

from enomalism.errors import EnomalismError, NotAuthenticated


def error_answer(e: EnomalismError) -> JSONResponse:
    """`e` as the API answers it: a 401 names the Basic realm, a throttle its Retry-After."""
    headers = {}
    if isinstance(e, NotAuthenticated):
        headers["WWW-Authenticate"] = 'Basic realm="enomalism"'
    if "retry_after" in e.extra:
        headers["Retry-After"] = str(e.extra["retry_after"])
    body = {"errno": e.errno, "message": e.message, **e.extra}
    return JSONResponse(body, status_code=e.status, headers=headers)
