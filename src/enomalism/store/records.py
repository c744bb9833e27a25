"""The rows that record what happened, an event or an audit entry, built one way for every
layer that writes them: the services, the runtime's event workers and the job runner (which
imports nothing of services/: the contract "jobs does not import services")."""

from datetime import UTC, datetime
from typing import Any

from enomalism.store.models import AuditEntry, Event

EVENT_TEXT = 200  # longer text in an event is cut: one change is at most ~1 KB on the wire
AUDIT_MESSAGE = 500  # an audit entry's message is cut there


def _text(value: Any) -> Any:
    return value[:EVENT_TEXT] if isinstance(value, str) else value


def event(type_: str, object_uuid: str | None, owner_uuid: str | None, /, **data: Any) -> Event:
    """An `events` row (services/events.py: the stream's source), its text values cut."""
    return Event(type=type_, object_uuid=object_uuid, owner_uuid=owner_uuid,
                 at=datetime.now(UTC), data={k: _text(v) for k, v in data.items()})


def audit_entry(*, actor_uuid: str | None, actor_name: str | None, source: str | None,
                action: str, object_type: str | None, object_uuid: str | None,
                object_name: str | None, errno: int, message: str | None,
                detail: dict[str, Any]) -> AuditEntry:
    """An audit log row (services/audit.py), each text cut to its column."""
    return AuditEntry(actor_uuid=actor_uuid, actor_name=actor_name, source=source,
                      action=action[:64], object_type=object_type, object_uuid=object_uuid,
                      object_name=(object_name or None) and str(object_name)[:255],
                      errno=errno, message=(message or "")[:AUDIT_MESSAGE] or None,
                      detail=detail)


def values(row: AuditEntry | Event) -> dict[str, Any]:
    """A new row's columns for a Core insert (the quick action path, outside the ORM): its
    id is the database's, its time now unless set."""
    out = {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key != "id"}
    out["at"] = out["at"] or datetime.now(UTC)
    if isinstance(row, AuditEntry):
        out["detail"] = out["detail"] or {}
        out["errno"] = out["errno"] or 0
    return out
