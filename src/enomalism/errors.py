"""The one table of errors the API answers with.

Every failure is an `EnomalismError` subclass carrying a stable `errno` and an HTTP `status`;
the API layer turns any of them into `{"errno": N, "message": "..."}` with that status.

    EnomalismError
    ├── InvalidInput          1000  400  a variable is missing, malformed or out of range
    │   ├── MissingVariable   1001  400
    │   ├── MalformedUUID     1002  400
    │   ├── UnknownAction     1003  400
    │   ├── InvalidXML        1004  400  xmldesc is not a usable domain definition
    │   ├── MethodNotAllowed  1005  405  the path does not take that HTTP method
    │   │   └── UsePost       1080  405  a GET carried an action or the variables of a change
    │   ├── UnreadableBody    1081  415  a body whose Content-Type the server does not read
    │   ├── UnknownEventType  1036  400  GET /rest/events/: a `type` that is no event type
    │   ├── BadEventId        1037  400  GET /rest/events/: a Last-Event-ID that is no event id
    │   └── BadMethodOverride 1082  400  _method / X-HTTP-Method-Override is not PUT or DELETE
    ├── NotAuthenticated      1100  401
    ├── Forbidden             1101  403
    │   ├── ElementNotAllowed 1110  403  domain XML carries what its sender may not ask for
    │   ├── VolumeNotAllowed  1111  403  a disk names a volume the caller may not attach
    │   ├── ForbiddenURI      1120  403  a hypervisor URI only an administrator may use
    │   └── CrossSiteRefused  1136  403  GET /rest/events/ from a page of another site
    ├── TooManyRequests       1102  429  too many failed logins; wait and try again
    ├── NotFound              1200  404
    ├── Conflict              1300  409  a name or URL already taken, objects still in use
    │   ├── InvalidState      1301  409  the action does not fit the machine's current state
    │   │   └── ForeignDisk   1310  409  package: the machine has a disk it does not own
    │   └── NoPlacement       1302  409  no hypervisor can take a new machine (placement)
    ├── Locked                1400  423  a transaction holds the machine
    ├── HypervisorError       1500  502  libvirt refused the operation
    ├── HypervisorUnreachable 1501  503  no connection to the hypervisor
    └── NotReady              1550  503  GET /readyz: a check failed (database, jobs, ...)
"""


class EnomalismError(Exception):
    errno = 1
    status = 500
    message = "internal error"

    def __init__(self, message: str | None = None, **extra: object) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.extra = extra


class InvalidInput(EnomalismError):
    errno, status, message = 1000, 400, "invalid input"


class MissingVariable(InvalidInput):
    errno = 1001


class MalformedUUID(InvalidInput):
    errno = 1002


class UnknownAction(InvalidInput):
    errno = 1003


class InvalidXML(InvalidInput):
    errno = 1004


class MethodNotAllowed(InvalidInput):
    errno, status, message = 1005, 405, "method not allowed"


class UsePost(MethodNotAllowed):
    errno, message = 1080, "GET does not change anything; send the change as POST"


class UnreadableBody(InvalidInput):
    errno, status, message = 1081, 415, "the request body's Content-Type is not read"


class BadMethodOverride(InvalidInput):
    errno, message = 1082, "a method override names PUT or DELETE"


class NotAuthenticated(EnomalismError):
    errno, status, message = 1100, 401, "authentication required"


class Forbidden(EnomalismError):
    errno, status, message = 1101, 403, "permission denied"


class ForbiddenURI(Forbidden):
    errno, message = 1120, "only an administrator may use this hypervisor URI"


class UnknownEventType(InvalidInput):
    errno = 1036


class BadEventId(InvalidInput):
    errno = 1037


class CrossSiteRefused(Forbidden):
    errno, message = 1136, "refused: a request from a page of another site"


class TooManyRequests(EnomalismError):
    errno, status, message = 1102, 429, "too many failed logins; try again later"


class ElementNotAllowed(Forbidden):
    """Domain XML outside the policy (virt/policy.py): the message names the element."""
    errno = 1110


class VolumeNotAllowed(Forbidden):
    errno = 1111


class NotFound(EnomalismError):
    errno, status, message = 1200, 404, "not found"


class Conflict(EnomalismError):
    errno, status, message = 1300, 409, "conflict"


class InvalidState(Conflict):
    errno = 1301


class NoPlacement(Conflict):
    errno, message = 1302, "no hypervisor can take the new machine"


class ForeignDisk(InvalidState):
    errno = 1310


class Locked(EnomalismError):
    errno, status, message = 1400, 423, "locked by a transaction"


class HypervisorError(EnomalismError):
    errno, status, message = 1500, 502, "the hypervisor refused the operation"


class HypervisorUnreachable(EnomalismError):
    errno, status, message = 1501, 503, "the hypervisor is not reachable"


class NotReady(EnomalismError):
    errno, status, message = 1550, 503, "not ready"


def all_errors() -> list[type[EnomalismError]]:
    """Every error class, for the docs and the OpenAPI description."""
    seen, todo = [], [EnomalismError]
    while todo:
        cls = todo.pop(0)
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen
