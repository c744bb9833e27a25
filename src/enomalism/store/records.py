"""The rows that record what happened, an event or an audit entry, built one way for every
layer that writes them: the services, the runtime's event workers and the job runner (which
imports nothing of services/: the contract "jobs does not import services")."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from enomalism.store.models import AuditEntry, Event

EVENT_TEXT = 200  # longer text in an event is cut: one change is at most ~1 KB on the wire
AUDIT_MESSAGE = 500  # an audit entry's message is cut there


def _text(value: Any) -> Any:
    return value[:EVENT_TEXT] if isinstance(value, str) else value


def event_values(type_: str, object_uuid: str | None, owner_uuid: str | None, /,
                 **data: Any) -> dict[str, Any]:
    """An `events` row's columns (services/events.py: the stream's source), its text values
    cut, its id the database's: what the quick action path inserts outside the ORM."""
    return {"type": type_, "object_uuid": object_uuid, "owner_uuid": owner_uuid,
            "at": datetime.now(UTC), "data": {k: _text(v) for k, v in data.items()}}


def event(type_: str, object_uuid: str | None, owner_uuid: str | None, /, **data: Any) -> Event:
    """An `events` row as `event_values` gives it."""
    return Event(**event_values(type_, object_uuid, owner_uuid, **data))


def audit_values(*, actor_uuid: str | None, actor_name: str | None, source: str | None,
                 action: str, object_type: str | None, object_uuid: str | None,
                 object_name: str | None, errno: int, message: str | None,
                 detail: dict[str, Any]) -> dict[str, Any]:
    """An audit log row's columns (services/audit.py), each text cut to its column."""
    return {"at": datetime.now(UTC), "actor_uuid": actor_uuid, "actor_name": actor_name,
            "source": source, "action": action[:64], "object_type": object_type,
            "object_uuid": object_uuid,
            "object_name": (object_name or None) and str(object_name)[:255],
            "errno": errno or 0, "message": (message or "")[:AUDIT_MESSAGE] or None,
            "detail": detail or {}}


def audit_entry(**columns: Any) -> AuditEntry:
    """An audit log row as `audit_values` gives it."""
    return AuditEntry(**audit_values(**columns))


def audit_event_values(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The `audit` event that tells of a new audit entry (given by its columns)."""
    return event_values("audit", None, None, action=entry["action"], actor=entry["actor_name"],
                        source=entry["source"], object_type=entry["object_type"],
                        object_uuid=entry["object_uuid"], object_name=entry["object_name"],
                        errno=entry["errno"] or 0, message=entry["message"])
