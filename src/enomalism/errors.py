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
    │   ├── BadImage          1016  400  an uploaded image is not what it claims, or not safe
    │   ├── LengthRequired    1017  411  an upload without Content-Length (or `size`)
    │   ├── BadUserData       1026  400  cloud-init user data over the limit or not UTF-8 text
    │   ├── BadSSHKey         1027  400  an ssh_key that is no OpenSSH public key line
    │   ├── WrongImageFormat  1028  400  an ISO image as a disk, a disk image as a CD-ROM
    │   ├── DiskTooLarge      1029  400  a new disk larger than its whole storage pool
    │   ├── BadSize           1031  400  set: vcpus or memory not a size the machine can have
    │   ├── BadSnapshotName   1032  400  a snapshot name that is not letters, digits, . _ -
    │   ├── BadRestartPolicy  1033  400  set: restart_policy not never/on-failure, autostart no bool
    │   ├── FetchTimedOut     1030  400  a feed took longer than the total fetch time allowed
    │   ├── UnknownEventType  1036  400  GET /rest/events/: a `type` that is no event type
    │   ├── BadEventId        1037  400  GET /rest/events/: a Last-Event-ID that is no event id
    │   ├── BodyTooLarge      1040  413  the request body is over the size limit
    │   ├── FieldTooLong      1041  413  a variable is over the length limit
    │   ├── NestedTooDeep     1042  400  a JSON body nests deeper than allowed
    │   ├── NotUTF8           1043  400  a variable is not valid UTF-8
    │   ├── SubnetMismatch    1070  400  a static network's subnet is not its libvirt network's
    │   ├── NoSuchBridge      1071  400  the bridge is on no hypervisor that would use it
    │   ├── UnreadableBody    1081  415  a body whose Content-Type the server does not read
    │   └── BadMethodOverride 1082  400  _method / X-HTTP-Method-Override is not PUT or DELETE
    ├── NotAuthenticated      1100  401
    │   └── BadConsoleTicket  1103  401  a console ticket unknown, used, expired or not for this
    ├── Forbidden             1101  403
    │   ├── ElementNotAllowed 1110  403  domain XML carries what its sender may not ask for
    │   ├── VolumeNotAllowed  1111  403  a disk names a volume the caller may not attach
    │   ├── ForbiddenURI      1120  403  a hypervisor URI only an administrator may use
    │   ├── AddressNotAllowed 1130  403  a fetch would reach an internal address
    │   └── CrossSiteRefused  1136  403  GET /rest/events/ or a console from another site
    ├── TooManyRequests       1102  429  too many failed logins; wait and try again
    │   ├── LoginsInFlight    1141  429  too many logins in flight from this address
    │   └── LoginsBusy        1142  503  too many logins in flight on the server
    ├── CrossSiteRequest      1140  403  a browser sent a state-changing request from another site
    ├── NotFound              1200  404
    │   └── NoSnapshot        1210  404  the machine has no snapshot of that name
    ├── Conflict              1300  409  a name or URL already taken, objects still in use
    │   ├── InvalidState      1301  409  the action does not fit the machine's current state
    │   │   ├── ForeignDisk   1310  409  package: the machine has a disk it does not own
    │   │   └── AboveMaximum  1311  409  set: a running machine grown past its maximum
    │   ├── NoPlacement       1302  409  no hypervisor can take a new machine (placement)
    │   ├── SameHypervisor    1303  409  set_parent: the machine is on that hypervisor already
    │   ├── CannotRunThere    1304  409  set_parent: the target hypervisor cannot run the machine
    │   ├── ImageTooLarge     1316  413  an upload larger than its pool's free space
    │   ├── PoolFull          1326  409  the storage pool has less space left than a new disk
    │   ├── NetworksClash     1370  409  two static networks put one subnet twice on a segment
    │   ├── ConsoleBusy       1380  409  another viewer holds the serial console (force=1)
    │   ├── ConsoleUnavailable 1381 409  the machine has no such console now (stopped, none)
    │   │   └── ConsoleMoving  1382 409  the machine is migrating: open its console again soon
    │   ├── ClusterInUse      1371  409  static networks serve the cluster (delete: force)
    │   └── SnapshotExists    1390  409  the machine has a snapshot of that name already
    ├── Locked                1400  423  a transaction holds the machine
    ├── HypervisorError       1500  502  libvirt refused the operation
    ├── HypervisorUnreachable 1501  503  no connection to the hypervisor
    ├── NotReady              1550  503  GET /readyz: a check failed (database, jobs, ...)
    └── StatsElsewhere        1556  503  a machine's statistics are kept by another API node
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


class SubnetMismatch(InvalidInput):
    errno = 1070


class NoSuchBridge(InvalidInput):
    errno = 1071


class MethodNotAllowed(InvalidInput):
    errno, status, message = 1005, 405, "method not allowed"


class UsePost(MethodNotAllowed):
    errno, message = 1080, "GET does not change anything; send the change as POST"


class UnreadableBody(InvalidInput):
    errno, status, message = 1081, 415, "the request body's Content-Type is not read"


class BadImage(InvalidInput):
    """The bytes are not the format named, or name other files (services/images.py)."""
    errno = 1016


class LengthRequired(InvalidInput):
    errno, status, message = 1017, 411, "an upload needs a Content-Length header"


class BadMethodOverride(InvalidInput):
    errno, message = 1082, "a method override names PUT or DELETE"


class FetchTimedOut(InvalidInput):
    errno = 1030


class BodyTooLarge(InvalidInput):
    errno, status, message = 1040, 413, "the request body is too large"


class FieldTooLong(InvalidInput):
    errno, status, message = 1041, 413, "a variable is too long"


class NestedTooDeep(InvalidInput):
    errno, message = 1042, "the JSON body nests too deeply"


class NotUTF8(InvalidInput):
    errno, message = 1043, "a variable is not valid UTF-8"


class BadUserData(InvalidInput):
    errno = 1026


class BadSSHKey(InvalidInput):
    errno = 1027


class WrongImageFormat(InvalidInput):
    errno = 1028


class DiskTooLarge(InvalidInput):
    errno = 1029


class BadSize(InvalidInput):
    errno = 1031


class BadSnapshotName(InvalidInput):
    errno = 1032


class BadRestartPolicy(InvalidInput):
    errno = 1033


class NotAuthenticated(EnomalismError):
    errno, status, message = 1100, 401, "authentication required"


class BadConsoleTicket(NotAuthenticated):
    """Single use, 30 s, bound to user, machine and console kind (services/consoles.py)."""
    errno, message = 1103, "no valid console ticket"


class Forbidden(EnomalismError):
    errno, status, message = 1101, 403, "permission denied"


class ForbiddenURI(Forbidden):
    errno, message = 1120, "only an administrator may use this hypervisor URI"


class AddressNotAllowed(Forbidden):
    errno, message = 1130, "the address is not on the public internet"


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


class LoginsInFlight(TooManyRequests):
    errno, message = 1141, "too many logins in flight from your address; try again"


class LoginsBusy(TooManyRequests):
    errno, status, message = 1142, 503, "too many logins in flight; try again"


class CrossSiteRequest(EnomalismError):
    errno, status, message = 1140, 403, "refused: a request from another site"


class PoolNotAllowed(Forbidden):
    errno = 1126


class CsrfTokenMissing(EnomalismError):
    """A request authenticated by the session cookie changes something without the
    session's CSRF token in the X-CSRF-Token header (services/sessions.py)."""
    errno, status, message = 1143, 403, "refused: the session's CSRF token is missing or wrong"


class NotFound(EnomalismError):
    errno, status, message = 1200, 404, "not found"


class NoSnapshot(NotFound):
    errno, message = 1210, "the machine has no snapshot of that name"


class Conflict(EnomalismError):
    errno, status, message = 1300, 409, "conflict"


class InvalidState(Conflict):
    errno = 1301


class NoPlacement(Conflict):
    errno, message = 1302, "no hypervisor can take the new machine"


class SameHypervisor(Conflict):
    errno, message = 1303, "the machine is on that hypervisor already"


class CannotRunThere(Conflict):
    errno, message = 1304, "the target hypervisor cannot run the machine"


class ImageTooLarge(Conflict):
    errno, status = 1316, 413


class PoolFull(Conflict):
    errno = 1326


class ForeignDisk(InvalidState):
    errno = 1310


class AboveMaximum(InvalidState):
    errno = 1311


class NetworksClash(Conflict):
    errno = 1370


class ConsoleBusy(Conflict):
    errno, message = 1380, "another viewer holds the serial console"


class ConsoleUnavailable(Conflict):
    errno, message = 1381, "the machine has no such console now"


class ConsoleMoving(ConsoleUnavailable):
    errno, message = 1382, "the machine is migrating; open its console again in a moment"


class ClusterInUse(Conflict):
    errno = 1371


class SnapshotExists(Conflict):
    errno, message = 1390, "the machine has a snapshot of that name already"


class Locked(EnomalismError):
    errno, status, message = 1400, 423, "locked by a transaction"


class HypervisorError(EnomalismError):
    errno, status, message = 1500, 502, "the hypervisor refused the operation"


class HypervisorUnreachable(EnomalismError):
    errno, status, message = 1501, 503, "the hypervisor is not reachable"


class NotReady(EnomalismError):
    errno, status, message = 1550, 503, "not ready"


class StatsElsewhere(EnomalismError):
    """The machine's hypervisor is owned by another API node, which samples its statistics."""
    errno, status, message = 1556, 503, "another API node keeps this machine's statistics"


def all_errors() -> list[type[EnomalismError]]:
    """Every error class, for the docs and the OpenAPI description."""
    seen, todo = [], [EnomalismError]
    while todo:
        cls = todo.pop(0)
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen
