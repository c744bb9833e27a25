"""What every service function works with: the request's database session, the hypervisor
registry and the user asking."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from enomalism.services.registry import HypervisorRegistry


@dataclass(frozen=True)
class Principal:
    uuid: str
    username: str
    is_admin: bool


@dataclass
class Context:
    db: Session
    registry: "HypervisorRegistry"
    user: Principal
