"""Helpers for the tests of users, groups, tokens and permissions (issue 4): making users and
groups through the API, granting, and reading what the database holds to prove nothing changed."""

import itertools
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select

from enomalism.store.models import ApiToken, AuditEntry, Grant, Group, GroupMember, User

PASSWORD = "correct-horse-battery"
_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test in this process uses."""
    return f"{prefix}{next(_serial)}"


@dataclass(frozen=True)
class Account:
    uuid: str
    name: str
    password: str = PASSWORD

    @property
    def auth(self) -> tuple[str, str]:
        return (self.name, self.password)


def new_user(api, name: str | None = None, *, password: str = PASSWORD,  # noqa: ANN001
             **variables: object) -> Account:
    """Create a user as the admin; returns its id, name and password."""
    name = name or unique("user")
    body = api.ok("POST", "/rest/user/create/",
                  data={"username": name, "password": password, **variables})
    return Account(body["uuid"], name, password)


def new_group(api, name: str | None = None, members: tuple[Account, ...] = (),  # noqa: ANN001
              auth: object = "admin") -> str:
    """Create a group (as `auth`) with these members; returns its id."""
    body = api.ok("PUT", "/rest/group/create/", data={"group_name": name or unique("group")},
                  auth=auth)
    uuid = body["group"]["uuid"]
    for m in members:
        api.ok("POST", f"/rest/group/{uuid}/", data={"action": "add_user", "user": m.uuid})
    return uuid


def grant(api, obj: str, permission: str, *, user: str | None = None,  # noqa: ANN001
          group: str | None = None, auth: object = "admin") -> dict:
    """PUT /rest/permissions/<obj>/ permission=... user=... (or group=...)."""
    data = {"permission": permission}
    data.update({"user": user} if user else {"group": group})
    return api.ok("PUT", f"/rest/permissions/{obj}/", data=data, auth=auth)


def set_owner(api, model: type, uuid: str, owner: str | None) -> None:  # noqa: ANN001
    """Make `owner` the owner of an object, straight in the database (there is no endpoint
    for it; creators own what they create, tested through the API elsewhere)."""
    with api.app.state.db.session() as s:
        s.get(model, uuid).owner_uuid = owner


def db_rows(api) -> dict:  # noqa: ANN001
    """Every row of the tables issue 4 added, as plain tuples: users (with their password hash),
    groups, memberships, grants, tokens and the audit log's changes (a refusal is recorded
    too, with its errno: tests/api/test_audit_changes.py)."""
    tables = {
        "users": (User, ("uuid", "username", "password_hash", "email", "full_name", "is_admin",
                         "enabled", "password_changed_at")),
        "groups": (Group, ("uuid", "name", "owner_uuid")),
        "members": (GroupMember, ("group_uuid", "user_uuid")),
        "grants": (Grant, ("object_uuid", "principal_uuid", "permission")),
        "tokens": (ApiToken, ("uuid", "user_uuid", "name", "secret_hash", "expires_at")),
        "audit": (AuditEntry, ("id",)),
    }
    with api.app.state.db.session(write=False) as s:
        return {key: sorted(tuple(getattr(r, c) for c in cols) for r in s.scalars(
                    select(model).where(AuditEntry.errno == 0) if model is AuditEntry
                    else select(model)))
                for key, (model, cols) in tables.items()}


@contextmanager
def no_change(api):  # noqa: ANN001, ANN201
    """`with no_change(api): ...` asserts the block left users, groups, memberships, grants,
    tokens and the audit log exactly as they were."""
    before = db_rows(api)
    yield
    assert db_rows(api) == before


def audit(api, object_uuid: str | None = None) -> list[dict]:  # noqa: ANN001
    """The audit log, newest first (as the admin)."""
    params = {"limit": "1000", **({"object": object_uuid} if object_uuid else {})}
    return api.ok("GET", "/rest/audit/", params=params)["entries"]


# -- machines and hypervisors to hold permissions on -----------------------------------------

def define_vm(api, hv: str, name: str | None = None, auth: object = "admin") -> str:  # noqa: ANN001
    """Define a new (stopped, managed) VM on a hypervisor through the API; returns its id."""
    from tests.fakehost import domain_xml

    body = api.ok("PUT", "/rest/machines/", auth=auth,
                  data={"xmldesc": domain_xml(name or unique("vm")), "hvmuuid": hv})
    return body["machine"]


def add_hypervisor(api, host: str, path, domains: list = (),  # noqa: ANN001
                   auth: object = "admin") -> str:
    """Write a fake host file at `path` and add it to `host` as a hypervisor; its domains
    are discovered, unmanaged. Returns the hypervisor's id."""
    from tests.fakehost import write_host

    uri = write_host(path, list(domains))
    body = api.ok("POST", f"/rest/machine/{host}/hypervisors/", data={"virt_url": uri},
                  auth=auth)
    return next(h["uuid"] for h in body["hypervisors"] if h["virt_url"] == uri)
