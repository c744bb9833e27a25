"""Users, groups, access lists, API tokens and the audit log."""

import builtins
from collections.abc import Iterable
from typing import Any

from enomalism.client.connection import Connection
from enomalism.client.models import (
    AccessList,
    AuditEntry,
    Group,
    GroupRef,
    NewToken,
    Token,
    User,
    UserRef,
)
from enomalism.client.naming import is_uuid, path_id, pick
from enomalism.client.resource import Find, Resource


class Users(Resource):
    def find(self, ref: str) -> UserRef:
        return pick("user", ref, self.list(), lambda u: u.uuid, lambda u: (u.username,),
                    lambda u: f"{u.uuid}  {u.username}")

    def list(self) -> builtins.list[UserRef]:
        return [UserRef(uuid=i, username=n) for n, i in self._call("GET", "/rest/users/")["users"]]

    def get(self, uuid: str) -> User:
        return User.model_validate(self._call("GET", f"/rest/user/{self._ref(uuid)}/")["user"])

    def create(self, username: str, password: str, *, email: str | None = None,
               full_name: str | None = None, admin: bool = False,
               groups: Iterable[str] = ()) -> User:
        a = self._call("POST", "/rest/user/create/", username=username, password=password,
                       email=email, full_name=full_name, admin=admin, groups=list(groups) or None)
        return self.get(a["uuid"])

    def _act(self, uuid: str, action: str, **variables: Any) -> User:
        a = self._call("POST", f"/rest/user/{self._ref(uuid)}/", action=action, **variables)
        return User.model_validate(a["user"])

    def update(self, uuid: str, *, email: str | None = None,
               full_name: str | None = None) -> User:
        return self._act(uuid, "update", email=email, full_name=full_name)

    def set_password(self, uuid: str, password: str, old_password: str | None = None) -> User:
        """Your own password needs `old_password`, the current one; an administrator setting
        another user's does not."""
        return self._act(uuid, "set_password", password=password, old_password=old_password)

    def enable(self, uuid: str) -> User:
        return self._act(uuid, "enable")

    def disable(self, uuid: str) -> User:
        return self._act(uuid, "disable")

    def set_admin(self, uuid: str, admin: bool = True) -> User:
        return self._act(uuid, "set_admin", admin=admin)

    def add_group(self, uuid: str, group: str) -> User:
        return self._act(uuid, "add_group", group=group)

    def remove_group(self, uuid: str, group: str) -> User:
        return self._act(uuid, "remove_group", group=group)

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/user/{self._ref(uuid)}/")["message"]


class Groups(Resource):
    def find(self, ref: str) -> GroupRef:
        return pick("group", ref, self.list(), lambda g: g.uuid, lambda g: (g.name,),
                    lambda g: f"{g.uuid}  {g.name}")

    def list(self) -> builtins.list[GroupRef]:
        pairs = self._call("GET", "/rest/group/list/")["groups"]
        return [GroupRef(uuid=i, name=n) for n, i in pairs]

    def get(self, uuid: str) -> Group:
        return Group.model_validate(self._call("GET", f"/rest/group/{self._ref(uuid)}/")["group"])

    def create(self, name: str) -> Group:
        a = self._call("PUT", "/rest/group/create/", group_name=name)
        return Group.model_validate(a["group"])

    def _act(self, uuid: str, action: str, **variables: Any) -> Group:
        a = self._call("POST", f"/rest/group/{self._ref(uuid)}/", action=action, **variables)
        return Group.model_validate(a["group"])

    def rename(self, uuid: str, name: str) -> Group:
        return self._act(uuid, "rename", group_name=name)

    def add_user(self, uuid: str, user: str) -> Group:
        return self._act(uuid, "add_user", user=user)

    def remove_user(self, uuid: str, user: str) -> Group:
        return self._act(uuid, "remove_user", user=user)

    def delete(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/group/{self._ref(uuid)}/")["message"]


class Permissions(Resource):
    """Access lists of any object (needs `admin` on it), named as `Client.find` takes it."""

    def __init__(self, conn: Connection, find: Find) -> None:
        super().__init__(conn)
        self._find = find

    def _obj(self, obj: str) -> str:
        return path_id(obj if is_uuid(obj) else self._find(obj)[1])

    def _acl(self, method: str, obj: str, **variables: Any) -> AccessList:
        return AccessList.model_validate(
            self._call(method, f"/rest/permissions/{self._obj(obj)}/", **variables))

    def list(self, obj: str) -> AccessList:
        return self._acl("GET", obj)

    def grant(self, obj: str, permission: str, *, user: str | None = None,
              group: str | None = None) -> AccessList:
        return self._acl("PUT", obj, permission=permission, user=user, group=group)

    def revoke(self, obj: str, permission: str, *, user: str | None = None,
               group: str | None = None) -> AccessList:
        return self._acl("DELETE", obj, permission=permission, user=user, group=group)


class Tokens(Resource):
    def find(self, ref: str, owner: str | None = None) -> Token:
        return pick("token", ref, self.list(owner), lambda t: t.uuid, lambda t: (t.name,),
                    lambda t: f"{t.uuid}  {t.name}")

    def list(self, user: str | None = None) -> builtins.list[Token]:
        a = self._call("GET", "/rest/tokens/", user=user)
        return [Token.model_validate(t) for t in a["tokens"]]

    def create(self, name: str, expires_in_days: float | None = None) -> NewToken:
        a = self._call("PUT", "/rest/tokens/", name=name,
                       expires_in_days=None if expires_in_days is None else str(expires_in_days))
        return NewToken.model_validate(a)

    def revoke(self, uuid: str) -> str:
        return self._call("DELETE", f"/rest/tokens/{self._ref(uuid)}/")["message"]


class Audit(Resource):
    def __init__(self, conn: Connection, find: Find) -> None:
        super().__init__(conn)
        self._find = find

    def list(self, *, object: str | None = None, actor: str | None = None,
             failed: bool | None = None, limit: int = 100) -> builtins.list[AuditEntry]:
        """Newest first; `object`: a UUID or anything `Client.find` names; `failed`: True
        for refusals and failures only, False for changes done only."""
        if object is not None and not is_uuid(object):
            object = self._find(object)[1]
        a = self._call("GET", "/rest/audit/", object=object, actor=actor,
                       failed=None if failed is None else str(failed).lower(), limit=limit)
        return [AuditEntry.model_validate(e) for e in a["entries"]]
