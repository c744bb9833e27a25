"""What every resource shares: its requests, and naming its objects by UUID, name or prefix."""

from collections.abc import Callable
from typing import Any

from enomalism.client.connection import Connection
from enomalism.client.naming import is_uuid, path_id

# `Client.find`: any object, `KIND:NAME` or a machine's name, as (kind, uuid, label).
Find = Callable[[str], tuple[str, str, str]]


class Resource:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _call(self, method: str, path: str, **variables: Any) -> dict:
        return self._conn.call(method, path, **variables)

    def find(self, ref: str) -> Any:
        raise NotImplementedError

    def _uuid(self, ref: str) -> str:
        """The UUID of what `ref` names: a UUID as it is (no request), a name or a unique
        UUID prefix looked up (`find`)."""
        return ref if is_uuid(ref) else self.find(ref).uuid

    def _id(self, ref: str | None) -> str | None:
        """`_uuid` of an optional reference."""
        return None if ref is None else self._uuid(ref)

    def _ref(self, ref: str) -> str:
        """`ref` resolved (`_uuid`), as one path segment."""
        return path_id(self._uuid(ref))
