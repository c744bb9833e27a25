"""The client's errors: an error answer (its HTTP status, errno and message) or no answer
at all, by what a caller usually handles differently, with the `enomalism` command's exit
codes."""

from typing import Any

from enomalism.client.models import Transaction

EXIT_OTHER, EXIT_NOT_FOUND, EXIT_DENIED, EXIT_CONFLICT, EXIT_UNREACHABLE = 1, 3, 4, 5, 6


class ClientError(Exception):
    """An error answer (`status` its HTTP status, `errno` and `message` from its body), or no
    answer at all (`status` 0, `errno` 0)."""

    exit_code = EXIT_OTHER

    def __init__(self, status: int, errno: int, message: str, body: dict | None = None) -> None:
        super().__init__(f"{errno}: {message}" if errno else message)
        self.status, self.errno, self.message = status, errno, message
        self.body = body or {}
        self.partial: list[dict[str, Any]] = []  # a batch's results before it failed


class NotFoundError(ClientError):
    """404: no such object, or one the caller may not read."""

    exit_code = EXIT_NOT_FOUND


class DeniedError(ClientError):
    """401 (wrong or missing credentials), 403 (not allowed), 429 (too many failed logins)."""

    exit_code = EXIT_DENIED


class ConflictError(ClientError):
    """409: a name taken, an object in use, an action that does not fit the state."""

    exit_code = EXIT_CONFLICT


class LockedError(ConflictError):
    """423: a transaction holds the machine; `txid` names it."""

    @property
    def txid(self) -> str | None:
        return self.body.get("txid")


class UnreachableError(ClientError):
    """The server did not answer (connection refused, timed out, name unknown)."""

    exit_code = EXIT_UNREACHABLE


class WaitTimeout(ClientError):
    """`Client.wait` gave up before the transaction finished; `transaction` is the last seen."""

    def __init__(self, message: str, transaction: Transaction) -> None:
        super().__init__(0, 1, message)
        self.transaction = transaction


_BY_STATUS: dict[int, type[ClientError]] = {
    401: DeniedError, 403: DeniedError, 429: DeniedError, 404: NotFoundError,
    409: ConflictError, 423: LockedError,
}


def error_for(status: int, errno: int, message: str, body: dict | None = None) -> ClientError:
    """The fitting `ClientError` subclass for an error answer."""
    return _BY_STATUS.get(status, ClientError)(status, errno, message, body)


class AmbiguousError(ClientError):
    """A name or UUID prefix that matches several objects; `candidates` are their ids."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(0, 1000, message, {"candidates": candidates})
        self.candidates = candidates
