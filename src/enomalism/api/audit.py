"""One audit entry per state-changing request, written by `deps.expose` once the outcome is
known (docs/access.md, The audit log).

Which requests change something, and what each is called, is the table `RULES` (method and
route path): a route missing from it that takes POST, PUT or DELETE is still recorded, under
its endpoint's name, and a test names it. A success is written in the request's own
transaction, just before its commit; a refusal or failure after that transaction was rolled
back, in a short write of its own; a request whose variables are refused before its endpoint
runs, by `refusals`, a dependency around the endpoint."""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from starlette.routing import compile_path

from enomalism.api import credentials
from enomalism.errors import EnomalismError
from enomalism.services import audit
from enomalism.services.context import Context, Principal

log = logging.getLogger("enomalism.audit")

ACTION = "{action}"  # the verb is the request's `action` variable


@dataclass(frozen=True)
class Rule:
    object_type: str | None  # None: any object (permissions)
    verb: str  # `ACTION`: the `action` variable names it
    # Without any of these variables the route answers like GET: nothing to record.
    reads_without: tuple[str, ...] = ()
    object_param: str = "uuid"  # the path variable naming the object
    created: str | None = None  # the answer's key naming a new object

    def action(self, variables: dict[str, Any]) -> str | None:
        verb = self.verb
        if verb == ACTION:
            verb = str(variables.get("action") or "")
            if not verb:
                return None
            if not re.fullmatch(r"[a-z_]{1,32}", verb):  # hostile text stays out of the log
                verb = "unknown_action"
        elif self.reads_without and not any(variables.get(k) not in (None, "", [])
                                            for k in self.reads_without):
            return None
        return f"{self.object_type or 'permission'}.{verb}"


def _rules() -> dict[tuple[str, str], Rule]:
    m, perm, user, group = "/rest/machine/{uuid}", "/rest/permissions/{uuid}/", \
        "/rest/user/{uuid}", "/rest/group/{uuid}"
    net, rng = "/rest/networks/{uuid}", "/rest/networks/{uuid}/iprange/{ruuid}/"
    table = {
        ("PUT", "/rest/machines/"): Rule("machine", "define", created="machine"),
        ("POST", f"{m}/"): Rule("machine", ACTION),
        ("POST", f"{m}/trigger_status_updates/"): Rule("machine", "resync"),
        ("POST", f"{m}/hypervisors/"): Rule("host", "add_hypervisor",
                                            reads_without=("virt_url", "virt_class")),
        ("POST", f"{m}/clusters/"): Rule("machine", "add_clusters"),
        ("DELETE", f"{m}/clusters/"): Rule("machine", "remove_clusters"),
        ("POST", f"{m}/actions/package/"): Rule("machine", "package"),
        ("POST", f"{m}/actions/provision/"): Rule("machine", "provision", created="newuuid"),
        ("PUT", f"{m}/actions/provision/"): Rule("machine", "provision", created="newuuid"),
        ("PUT", f"{m}/snapshots/"): Rule("machine", "snapshot"),
        ("DELETE", f"{m}/snapshots/{{name}}/"): Rule("machine", "snapshot_delete"),
        ("POST", f"{m}/snapshots/{{name}}/"): Rule("machine", "snapshot_revert",
                                                   reads_without=("action",)),
        ("DELETE", "/rest/hypervisor/{uuid}/"): Rule("hypervisor", "delete"),
        ("PUT", "/rest/hosts/"): Rule("host", "register", created="machine"),
        ("POST", "/rest/hosts/"): Rule("host", "register", created="machine"),
        ("PUT", "/rest/cluster/"): Rule("cluster", "create", created="cluster"),
        ("POST", "/rest/cluster/{uuid}/"): Rule("cluster", ACTION),
        ("DELETE", "/rest/cluster/{uuid}/"): Rule("cluster", "delete"),
        ("PUT", "/rest/networks/"): Rule("network", "create", created="network"),
        ("POST", f"{net}/"): Rule("network", "update"),
        ("DELETE", f"{net}/"): Rule("network", "delete"),
        ("POST", f"{net}/iprange/"): Rule("network", "add_range",
                                          reads_without=("start_ip", "end_ip")),
        ("PUT", rng): Rule("range", "update", object_param="ruuid"),
        ("DELETE", rng): Rule("range", "delete", object_param="ruuid"),
        ("PUT", f"{net}/cluster/"): Rule("network", "set_cluster"),
        ("PUT", f"{net}/leases/"): Rule("network", "reserve"),
        ("POST", f"{net}/leases/"): Rule("network", "reserve"),
        ("DELETE", f"{net}/leases/{{address}}/"): Rule("network", "release"),
        ("PUT", perm): Rule(None, "grant"),
        ("DELETE", perm): Rule(None, "revoke"),
        ("POST", perm): Rule(None, ACTION),
        ("POST", "/rest/transaction/{uuid}/"): Rule("transaction", ACTION),
        ("DELETE", "/rest/transaction/{uuid}/"): Rule("transaction", "cancel"),
        ("POST", "/rest/user/create/"): Rule("user", "create", created="uuid"),
        ("POST", f"{user}/"): Rule("user", ACTION),
        ("DELETE", f"{user}/"): Rule("user", "delete"),
        ("GET", f"{user}/delete/"): Rule("user", "delete"),
        ("POST", f"{user}/delete/"): Rule("user", "delete"),
        ("PUT", "/rest/group/create/"): Rule("group", "create"),
        ("POST", f"{group}/"): Rule("group", ACTION),
        ("DELETE", f"{group}/"): Rule("group", "delete"),
        ("GET", f"{group}/delete/"): Rule("group", "delete"),
        ("POST", f"{group}/delete/"): Rule("group", "delete"),
        ("PUT", "/rest/tokens/"): Rule("token", "create"),
        ("POST", "/rest/tokens/"): Rule("token", "create"),
        ("DELETE", "/rest/tokens/{uuid}/"): Rule("token", "revoke"),
        ("PUT", "/rest/vmfeed/"): Rule("repository", "add", created="uuid"),
        ("GET", "/rest/vmfeed/repo/package/{uuid}/"): Rule("package", "retrieve"),
        ("POST", "/rest/vmfeed/repo/package/{uuid}/"): Rule("package", "retrieve"),
        ("DELETE", "/rest/vmfeed/repo/package/{uuid}/"): Rule("package", "uncache"),
        ("POST", "/rest/vmfeed/repo/{uuid}/"): Rule("repository", ACTION),
        ("DELETE", "/rest/vmfeed/repo/{uuid}/"): Rule("repository", "delete"),
        ("POST", "/rest/vmfeed/{uuid}/"): Rule("package", "update",
                                              reads_without=("name", "description")),
        ("DELETE", "/rest/vmfeed/{uuid}/"): Rule("package", "delete"),
        ("PUT", "/rest/images/"): Rule("image", "upload", created="image"),
        ("POST", "/rest/images/{uuid}/"): Rule("image", ACTION),
        ("DELETE", "/rest/images/{uuid}/"): Rule("image", "delete"),
        ("PUT", "/rest/vmfeed/upload/"): Rule("package", "upload", created="package"),
        ("PUT", "/rest/pools/{uuid}/volumes/"): Rule("pool", "create_volume"),
        ("DELETE", "/rest/pools/{uuid}/volumes/{name}/"): Rule("pool", "delete_volume"),
        ("POST", "/rest/cache/prune/"): Rule("cache", "prune", object_param="hypervisor"),
    }
    return table


RULES = _rules()
# Each route path as starlette matches it: for requests refused before routing.
_PATHS = {key: (rule, compile_path(key[1])[0]) for key, rule in RULES.items()}

# POSTs that only read (the spec lets lists be POSTed) and GETs that change nothing.
READS = {("POST", p) for p in ("/rest/machines/", "/rest/machine/", "/rest/cluster/list/",
                               "/rest/users/", "/rest/users/list/", "/rest/group/list/",
                               "/rest/machine/{uuid}/actions/")}
_MACHINE_ACTION = re.compile(r"/rest/machine/\{uuid\}/actions/([a-z_]+)/")
WRITES = {"POST", "PUT", "DELETE", "PATCH"}


def rule_for(method: str, path: str, endpoint: Callable) -> Rule | None:
    """What a request to this route is recorded as; None when it changes nothing."""
    if (method, path) in RULES:
        return RULES[(method, path)]
    if (method, path) in READS or method not in WRITES:
        return None
    if match := _MACHINE_ACTION.fullmatch(path):
        return Rule("machine", match[1])
    parts = [p for p in path.split("/") if p and p != "rest" and not p.startswith("{")]
    return Rule(parts[0] if parts else None, endpoint.__name__)


def variables(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request's path and HTTP variables as given (pydantic models: the ones set)."""
    found: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, BaseModel):
            found.update(value.model_dump(exclude_unset=True))
        elif isinstance(value, str):
            found[name] = value
    return found


def _detail(rule: Rule, given: dict[str, Any], answer: dict | None) -> dict[str, Any]:
    detail = audit.short({k: v for k, v in given.items() if k not in (rule.object_param,
                                                                      "action")})
    for key in ("txid", "tx"):
        if answer and isinstance(answer.get(key), str):
            detail["txid"] = answer[key]
    return detail


def _created(rule: Rule, answer: dict | None) -> str | None:
    value = (answer or {}).get(rule.created or "")
    if isinstance(value, dict):
        value = value.get("uuid")
    return value if isinstance(value, str) else None


def begin(ctx: Context) -> None:
    """The request's services may now name their changes (`services.audit.record`)."""
    ctx.audit = []


def succeeded(ctx: Context, rule: Rule, given: dict[str, Any], answer: Any) -> None:
    """Add the request's entries to its transaction (the caller commits)."""
    action = rule.action(given)
    notes = ctx.audit or []
    if action is None and not notes:
        return
    answer = answer if isinstance(answer, dict) else None
    message = answer.get("message") if answer else None
    detail = _detail(rule, given, answer)
    if not notes:
        obj = _created(rule, answer) or given.get(rule.object_param)
        notes = [audit.Note(action or "", obj)]
    prefix = (action or "").partition(".")[0]
    for note in notes:
        object_type = rule.object_type if note.action.partition(".")[0] == prefix \
            else note.action.partition(".")[0]
        audit.write(ctx.db, actor_uuid=ctx.user.uuid, actor_name=ctx.user.username,
                    source=ctx.source, action=note.action, object_type=object_type,
                    object_uuid=_uuid(note.object_uuid), errno=0, message=message,
                    detail={**detail, **note.detail})


def failed(ctx: Context, rule: Rule, given: dict[str, Any], error: BaseException) -> None:
    """Write the refusal or failure in a transaction of its own: the request's was rolled
    back. Never raises: the request's own error is the answer."""
    action = rule.action(given)
    if action is None:
        return
    errno, message = (error.errno, error.message) if isinstance(error, EnomalismError) \
        else (1, f"internal error: {type(error).__name__}")
    try:
        audit.write_after_rollback(
            ctx, actor_uuid=ctx.user.uuid, actor_name=ctx.user.username, source=ctx.source,
            action=action, object_type=rule.object_type,
            object_uuid=_uuid(given.get(rule.object_param)), errno=errno, message=message,
            detail=_detail(rule, given, None))
    except Exception:
        log.exception("could not write the audit entry of a refused %s", action)
        ctx.db.rollback()


def _uuid(value: Any) -> str | None:
    return str(value)[:36] if value else None


def record_shortcut(state: Any, user: Principal, source: str, uuid: str, action: str,
                    outcome: dict | EnomalismError | Exception) -> None:
    """The entry of a lifecycle action answered by `app.ActionShortcut` (no session of its
    own to share): a short write. Its quick path writes its own success with the machine's
    state (`actions.perform_quick`); a failure is written here."""
    rule, given = Rule("machine", action), {"uuid": uuid}
    with state.db.session() as s:
        ctx = Context(db=s, registry=state.registry, user=user, source=source)
        if isinstance(outcome, dict):
            succeeded(ctx, rule, given, outcome)
        else:
            failed(ctx, rule, given, outcome)


async def refused_before_routing(scope: Any, error: EnomalismError) -> None:
    """Write a change refused before any route ran (a cross-site request, a body over the
    limit: api/guard.py) as the route's action, under the user whose credentials are in the
    credential cache (nothing is verified for a refused request; otherwise no actor). Never
    raises: the refusal is the answer."""
    from starlette.datastructures import Headers, QueryParams

    app = scope.get("app")
    try:
        found = next(((rule, m.groupdict()) for (method, _path), (rule, regex) in _PATHS.items()
                      if method == scope["method"] and (m := regex.match(scope["path"]))),
                     None)
        if found is None:
            return
        rule, params = found
        given = dict(QueryParams(scope.get("query_string", b"")))
        action = rule.action(given) or f"{rule.object_type or 'permission'}.change"
        who = credentials.cached_user(app.state, Headers(scope=scope).get("authorization", ""))
        client = scope.get("client")

        def write() -> None:
            with app.state.db.session() as s:
                audit.write(s, actor_uuid=who.uuid if who else None,
                            actor_name=who.username if who else None,
                            source=client[0] if client else "unknown", action=action,
                            object_type=rule.object_type,
                            object_uuid=_uuid(params.get(rule.object_param)),
                            errno=error.errno, message=error.message,
                            detail={**_detail(rule, given, None), "refused": "before routing"})
        await run_in_threadpool(write)
    except Exception:
        log.exception("could not write the audit entry of a request refused before routing")
