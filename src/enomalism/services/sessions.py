"""Browser sessions for the dashboard: an API token (services/tokens.py) held in an HttpOnly
cookie instead of a header, so a session is listed, expires and is revoked like any token.

A cookie is sent by the browser on its own, so a request that changes something must also
carry the session's CSRF token in a header, which only the server's own pages can read (from
the answer of `POST` or `GET /rest/session/`). The CSRF token is derived from the session
secret (one-way), so nothing more is stored and a stolen CSRF token alone is worthless."""

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy.orm import Session

from enomalism.services import audit, tokens
from enomalism.services.auth import CredentialCache
from enomalism.services.context import Context, Principal
from enomalism.store.models import ApiToken, utcnow

COOKIE = "enomalism_session"
CSRF_HEADER = "x-csrf-token"
LIFETIME = timedelta(hours=12)


def csrf_token(secret: str) -> str:
    return hashlib.sha256(b"enomalism-csrf\0" + secret.encode()).hexdigest()


def csrf_matches(secret: str, given: str | None) -> bool:
    return bool(given) and secrets.compare_digest(csrf_token(secret), given or "")


def open_session(ctx: Context) -> tuple[ApiToken, str]:
    """A new session token for the user just verified (their password checked by the caller,
    with the API's throttle and login gate); returns it with its secret."""
    secret = tokens.PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + LIFETIME
    token = ApiToken(user_uuid=ctx.user.uuid, name=f"session {secrets.token_hex(6)}",
                     secret_hash=tokens._digest(secret), expires_at=expires,
                     is_session=True)
    ctx.db.add(token)
    ctx.db.flush()
    audit.record(ctx, "session.create", token.uuid, expires_at=expires.isoformat())
    return token, secret


def close_session(ctx: Context, secret: str) -> None:
    """Revoke the session (logout): its token is deleted and dropped from the cache."""
    token = ctx.db.query(ApiToken).filter_by(secret_hash=tokens._digest(secret)).one_or_none()
    if token is not None:
        ctx.db.delete(token)
        audit.record(ctx, "session.delete", token.uuid)
        if ctx.credentials is not None:  # this node's cache forgets it at once
            ctx.credentials.forget(token.user_uuid)


def user_of(db: Session, secret: str, cache: CredentialCache | None) -> Principal:
    """The session's user (NotAuthenticated when it is unknown, expired or revoked)."""
    return tokens.cached(cache, secret) or tokens.authenticate(db, secret, cache)
