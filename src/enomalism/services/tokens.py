"""API tokens: named bearer secrets a user creates, shown once, stored as SHA-256 (the secret is
random, so a fast hash is safe), with an optional expiry. A verified token is cached like a
password (`authenticate`); revoking it drops the cache entry at once on this node."""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from enomalism.services import audit
from enomalism.services.auth import BAD_CREDENTIALS, CredentialCache
from enomalism.services.context import Context, Principal
from enomalism.services.lookup import parse_uuid, require
from enomalism.services.users import find_user, forget_credentials
from enomalism.store.models import ApiToken, User, utcnow

PREFIX = "enm_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(ctx: Context, *, name: str | None, expires_in_days: str | None = None
           ) -> tuple[ApiToken, str]:
    """A new token for the calling user; returns it with its secret (shown only now)."""
    name = require(name, "name", " (a name for the token)")
    if len(name) > 64:
        raise InvalidInput("a token name has at most 64 characters")
    if ctx.db.scalar(select(ApiToken.uuid).where(ApiToken.user_uuid == ctx.user.uuid,
                                                 ApiToken.name == name)):
        raise Conflict(f"you already have a token named '{name}'")
    expires = None
    if expires_in_days:
        try:
            days = float(expires_in_days)
        except ValueError:
            raise InvalidInput("expires_in_days is a number of days") from None
        if not 0 < days <= 3650:
            raise InvalidInput("expires_in_days is between 0 and 3650")
        expires = utcnow() + timedelta(days=days)
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_uuid=ctx.user.uuid, name=name, secret_hash=_digest(secret),
                     expires_at=expires)
    ctx.db.add(token)
    ctx.db.flush()
    audit.record(ctx, "token.create", token.uuid, name=name,
                 expires_at=expires.isoformat() if expires else None)
    return token, secret


def list_tokens(ctx: Context, user_uuid: str | None = None) -> list[ApiToken]:
    """The caller's tokens; an administrator may name another user (by id or name). Dashboard
    sessions are not among them: they end with a logout or their expiry, not here."""
    owner = ctx.user.uuid
    if user_uuid:
        owner = find_user(ctx, user_uuid).uuid
        if owner != ctx.user.uuid and not ctx.user.is_admin:
            raise NotFound(f"no user '{user_uuid}'")
    return list(ctx.db.scalars(select(ApiToken).where(ApiToken.user_uuid == owner,
                                                      ApiToken.is_session.is_(False))
                               .order_by(ApiToken.created_at)))


def revoke(ctx: Context, uuid: str) -> str:
    token = ctx.db.get(ApiToken, parse_uuid(uuid, "token"))
    if token is None or token.is_session or \
            (token.user_uuid != ctx.user.uuid and not ctx.user.is_admin):
        raise NotFound(f"no token {uuid}")
    ctx.db.delete(token)
    forget_credentials(ctx, token.user_uuid)
    audit.record(ctx, "token.revoke", token.uuid, name=token.name, user=token.user_uuid)
    return f"token {token.name} revoked"


CACHE_NAME = "\0token"  # the credential cache's user name for tokens: no user has a NUL


def cached(cache: CredentialCache | None, secret: str) -> Principal | None:
    return cache.get(CACHE_NAME, secret) if cache is not None else None


def authenticate(db: Session, secret: str, cache: CredentialCache | None = None) -> Principal:
    """The token's user. Verified tokens are cached like passwords, until their expiry at the
    latest; revoking one, or any change to its user, drops the cache entry at once."""
    token = db.scalar(select(ApiToken).where(ApiToken.secret_hash == _digest(secret)))
    if token is None:
        raise NotAuthenticated(BAD_CREDENTIALS)
    expires = token.expires_at
    left = None
    if expires is not None:
        left = (expires.replace(tzinfo=expires.tzinfo or UTC) - datetime.now(UTC)).total_seconds()
        if left <= 0:
            raise NotAuthenticated("the token has expired")
    user = db.get(User, token.user_uuid)
    if user is None or not user.enabled:
        raise NotAuthenticated(BAD_CREDENTIALS)
    who = Principal(uuid=user.uuid, username=user.username, is_admin=user.is_admin)
    if cache is not None:
        cache.put(CACHE_NAME, secret, who, valid_for=left)
    return who
