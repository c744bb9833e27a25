"""Transactions: follow, cancel, retry."""

import builtins

from enomalism.client.connection import Connection
from enomalism.client.models import Transaction
from enomalism.client.naming import is_uuid, pick
from enomalism.client.resource import Find, Resource


class Transactions(Resource):
    def __init__(self, conn: Connection, find: Find) -> None:
        super().__init__(conn)
        self._find = find

    def find(self, ref: str) -> Transaction:
        """The transaction `ref` names: its UUID or a unique UUID prefix."""
        if is_uuid(ref):
            return self.get(ref)
        return pick("transaction", ref, self.list(limit=1000), lambda t: t.uuid,
                    lambda t: (), lambda t: f"{t.uuid}  {t.kind} {t.state}")

    def list(self, *, state: str | None = None, target: str | None = None,
             limit: int = 100) -> builtins.list[Transaction]:
        """Newest first; `target`: a UUID, or anything `Client.find` names."""
        if target is not None and not is_uuid(target):
            target = self._find(target)[1]
        a = self._call("GET", "/rest/transactions/", state=state, target=target, limit=limit)
        return [Transaction.model_validate(t) for t in a["transactions"]]

    def get(self, uuid: str) -> Transaction:
        return Transaction.model_validate(
            self._call("GET", f"/rest/transaction/{self._ref(uuid)}/")["data"])

    def cancel(self, uuid: str) -> tuple[Transaction, str]:
        a = self._call("POST", f"/rest/transaction/{self._ref(uuid)}/", action="cancel")
        return Transaction.model_validate(a["data"]), a.get("message", "")

    def retry(self, uuid: str) -> tuple[Transaction, str]:
        a = self._call("POST", f"/rest/transaction/{self._ref(uuid)}/", action="retry")
        return Transaction.model_validate(a["data"]), a.get("message", "")
