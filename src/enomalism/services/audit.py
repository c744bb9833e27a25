"""The audit log: every change, and every refused change, with who asked, from where, when, on
what, and the outcome (docs/access.md, The audit log).

The API layer writes one entry per state-changing request once its outcome is known
(`api/audit.py`): a change in the same transaction as the change itself, a refusal or failure
in a short write of its own after the request's transaction was rolled back. Services add
what only they know with `record` (the action's name, the object, a detail); outside a
request (`enomalism admin`) `record` writes its entry at once, in the caller's transaction."""

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.services.context import Context
from enomalism.store import records, unit
from enomalism.store.models import (
    ApiToken,
    AuditEntry,
    Cluster,
    Group,
    Hypervisor,
    IPRange,
    Machine,
    Network,
    Package,
    Repository,
    Transaction,
    User,
)

SECRET = re.compile(r"pass|secret|token|credential|private|key", re.IGNORECASE)
SHORT = 80  # longer values are recorded by their length only (XML, descriptions)
MESSAGE = records.AUDIT_MESSAGE

# The objects an entry may be about, with the column naming them.
NAMES: dict[str, tuple[Any, str]] = {
    "machine": (Machine, "name"), "host": (Machine, "name"), "cluster": (Cluster, "name"),
    "network": (Network, "name"), "range": (IPRange, "start_ip"), "user": (User, "username"),
    "group": (Group, "name"), "token": (ApiToken, "name"), "package": (Package, "name"),
    "repository": (Repository, "url"), "transaction": (Transaction, "kind"),
    "hypervisor": (Hypervisor, "virt_url"),
}


@dataclass
class Note:
    """What a service said about the change it made (`record`)."""

    action: str
    object_uuid: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def record(ctx: Context, action: str, object_uuid: str | None, **detail: object) -> None:
    """Name the change this request makes (and say what only the service knows)."""
    if ctx.audit is not None:
        ctx.audit.append(Note(action, object_uuid, short(detail)))
        return
    ctx.db.add(AuditEntry(actor_uuid=ctx.user.uuid, actor_name=ctx.user.username,
                          source=ctx.source, action=action, object_uuid=object_uuid,
                          object_type=action.partition(".")[0], detail=short(detail)))


def short(values: dict[str, Any]) -> dict[str, Any]:
    """Values fit for the log: secrets as '***', URLs without their credentials, long text
    by its length only."""
    return {k: "***" if SECRET.search(k) and v not in (None, "") else _short(v)
            for k, v in values.items()}


def _short(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_short(v) for v in value[:20]]
    if isinstance(value, dict):
        return short(value)
    if not isinstance(value, str):
        return value if isinstance(value, int | float | bool) or value is None else str(value)
    if "@" in value and "://" in value:
        value = _without_credentials(value)
    return value if len(value) <= SHORT else f"<{len(value)} characters>"


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"***@{host}")) if "@" in parts.netloc else url
    except ValueError:
        return "<a URL>"


def object_name(db: Session, object_type: str | None,
                object_uuid: str | None) -> tuple[str | None, str | None]:
    """The object's type and name, by its primary key (of any type when the type is not
    known: an access list's object); None when gone."""
    if not object_uuid:
        return object_type, None
    types = [object_type] if object_type else [t for t in NAMES if t != "host"]
    for t in types:
        if t not in NAMES:
            continue
        model, column = NAMES[t]
        name = db.scalar(select(getattr(model, column)).where(model.uuid == object_uuid))
        if name is not None:
            if model is Machine and not object_type:
                kind = db.scalar(select(Machine.kind).where(Machine.uuid == object_uuid))
                t = "host" if kind == "host" else "machine"
            return t, name
    return object_type, None


def write(db: Session, *, actor_uuid: str | None, actor_name: str | None, source: str | None,
          action: str, object_type: str | None, object_uuid: str | None, errno: int,
          message: str | None, detail: dict[str, Any], object_name_: str | None = None) -> None:
    """Add one entry to `db` (the caller commits)."""
    if object_name_ is None:
        object_type, object_name_ = object_name(db, object_type, object_uuid)
    db.add(records.audit_entry(actor_uuid=actor_uuid, actor_name=actor_name, source=source,
                               action=action, object_type=object_type, object_uuid=object_uuid,
                               object_name=object_name_, errno=errno, message=message,
                               detail=detail))


def write_after_rollback(ctx: Context, **entry: Any) -> None:
    """Roll the request's failed work back, then keep one entry (a refusal's, a failure's):
    written though the request's end rolls back again."""
    ctx.db.rollback()
    write(ctx.db, **entry)
    unit.keep_now(ctx.db)


def entries(ctx: Context, *, object_uuid: str | None = None, actor: str | None = None,
            failed: bool | None = None, limit: int = 100) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
    if object_uuid:
        q = q.where(AuditEntry.object_uuid == object_uuid)
    if actor:
        q = q.where((AuditEntry.actor_uuid == actor) | (AuditEntry.actor_name == actor))
    if failed is not None:
        q = q.where(AuditEntry.errno != 0 if failed else AuditEntry.errno == 0)
    return list(ctx.db.scalars(q))
