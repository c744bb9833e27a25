"""Credentials as the request carries them, read without I/O: an HTTP Basic pair, and the
user of credentials verified recently (the credential cache). For `deps.current_user`, which
verifies the rest, and for what runs before any route (the action shortcut, an audit entry
of a refusal: api/app.py, api/audit.py)."""

import base64
import binascii
from typing import Any

from enomalism.services import tokens
from enomalism.services.context import Principal


def basic_pair(value: str) -> tuple[str, str] | None:
    """(username, password) of an HTTP Basic value; None when it is not one."""
    try:
        username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def cached_user(state: Any, authorization: str) -> Principal | None:
    """The user of an Authorization header whose credentials were verified recently and are
    still in the credential cache (no I/O); None for anything else, which `current_user`
    then verifies, refuses or throttles."""
    scheme, _, value = authorization.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "basic" and value:
        pair = basic_pair(value)
        return state.credentials.get(*pair) if pair else None
    if scheme == "bearer" and value:
        return tokens.cached(state.credentials, value)
    return None
