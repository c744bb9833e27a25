"""Finding objects by the UUIDs clients send, with the errors a person can act on."""

import uuid as uuidlib

from sqlalchemy.orm import Session

from enomalism.errors import MalformedUUID, MissingVariable, NotFound
from enomalism.store.models import Cluster, Hypervisor, Machine


def parse_uuid(value: str | None, what: str) -> str:
    """The canonical lower-case form of a UUID, or a 400 naming what was expected."""
    if value is None or not str(value).strip():
        raise MissingVariable(f"the {what} UUID is missing")
    try:
        return str(uuidlib.UUID(str(value).strip()))
    except ValueError:
        raise MalformedUUID(f"'{value}' is not a valid {what} UUID") from None


def require(value: str | None, variable: str, why: str = "") -> str:
    if value is None or not str(value).strip():
        raise MissingVariable(f"the variable '{variable}' is required{why}")
    return str(value).strip()


def get_machine(db: Session, uuid: str, *, lock: bool = False) -> Machine:
    """The machine; with `lock`, its row stays locked until the session ends (PostgreSQL;
    SQLite's writers hold the whole database already)."""
    m = db.get(Machine, parse_uuid(uuid, "machine"), with_for_update=lock)
    if m is None:
        raise NotFound(f"no machine with UUID {uuid}")
    return m


def get_vm(db: Session, uuid: str) -> Machine:
    m = get_machine(db, uuid)
    if m.kind != "vm":
        raise NotFound(f"machine {uuid} is a host, not a virtual machine")
    return m


def get_host(db: Session, uuid: str) -> Machine:
    m = get_machine(db, uuid)
    if m.kind != "host":
        raise NotFound(f"machine {uuid} is a virtual machine, not a host")
    return m


def get_hypervisor(db: Session, uuid: str) -> Hypervisor:
    hv = db.get(Hypervisor, parse_uuid(uuid, "hypervisor"))
    if hv is None:
        raise NotFound(f"no hypervisor with UUID {uuid}")
    return hv


def get_cluster(db: Session, uuid: str) -> Cluster:
    c = db.get(Cluster, parse_uuid(uuid, "cluster"))
    if c is None:
        raise NotFound(f"no cluster with UUID {uuid}")
    return c
