"""What every service function works with: the request's database session, the hypervisor
registry and the user asking."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from enomalism.services.auth import CredentialCache, LoginThrottle
from enomalism.services.auth import Principal as Principal  # re-exported: who is asking
from enomalism.store import unit

if TYPE_CHECKING:
    from enomalism.jobs.runner import Runner
    from enomalism.runtime.registry import HypervisorRegistry
    from enomalism.store.secrets import SecretBox


@dataclass
class Context:
    db: Session
    registry: "HypervisorRegistry"
    user: Principal
    source: str | None = None  # the client's address, for the audit log and rate limits
    credentials: CredentialCache | None = None  # verified passwords, dropped on changes
    throttle: LoginThrottle | None = None  # failed logins (and wrong old passwords)
    jobs: "Runner | None" = None  # the transaction runner, woken when a job is queued
    secrets: "SecretBox | None" = None  # seals and opens stored feed passwords
    # The user's UUID and their groups' UUIDs, read once per request when first needed.
    principals: frozenset[str] | None = field(default=None, repr=False)
    # In a request the audit log records: what its services said they changed
    # (services/audit.py `record`); None elsewhere.
    audit: list | None = field(default=None, repr=False)


def commit_before_slow_work(ctx: Context) -> None:
    """The request's write locks let go before slow work: `store.unit.commit_before_slow_work`
    (what is durable from there, and what to check again after it)."""
    unit.commit_before_slow_work(ctx.db)
