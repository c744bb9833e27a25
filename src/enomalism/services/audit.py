"""The audit log: every change of users, groups, tokens and permissions, with who made it,
when and from where. Written in the same transaction as the change it describes."""

from sqlalchemy import select

from enomalism.services.context import Context
from enomalism.store.models import AuditEntry


def record(ctx: Context, action: str, object_uuid: str | None, **detail: object) -> None:
    ctx.db.add(AuditEntry(actor_uuid=ctx.user.uuid, actor_name=ctx.user.username,
                          source=ctx.source, action=action, object_uuid=object_uuid,
                          detail=detail))


def entries(ctx: Context, *, object_uuid: str | None = None, limit: int = 100) -> list[AuditEntry]:
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
    if object_uuid:
        q = q.where(AuditEntry.object_uuid == object_uuid)
    return list(ctx.db.scalars(q))
