"""Objects named on the command line: by UUID, by name (or URL, for feeds and hypervisors),
or by a unique UUID prefix. Unknown names exit 3; ambiguous ones list the candidates."""

from enomalism.cli.common import CLIError, is_uuid, pick
from enomalism.client import (
    Client,
    Cluster,
    GroupRef,
    Hypervisor,
    Machine,
    Network,
    NotFoundError,
    Package,
    Repository,
    Token,
    Transaction,
    UserRef,
)


def _describe_machines(c: Client, items: list[Machine]):  # noqa: ANN202
    """How a candidate machine is listed when a name is ambiguous: with its hypervisor's URI
    (read only then)."""
    hosts = {m.uuid: m.name for m in items if m.kind == "host"}
    uris: dict[str, str] = {}

    def describe(m: Machine) -> str:
        if m.kind == "host":
            return f"{m.uuid}  {m.name}  (host)"
        if not uris:
            uris.update({h.uuid: h.virt_url for h in c.hypervisors.list()} or {"": ""})
        where = uris.get(m.parent or "", hosts.get(m.host or "", m.parent))
        return f"{m.uuid}  {m.name}  ({m.state}, on {where})"
    return describe


def machine(c: Client, ref: str, *, kind: str | None = None) -> Machine:
    items = c.machines.list(kind=kind)
    return pick(kind or "machine", ref, items, lambda m: m.uuid, lambda m: (m.name,),
                _describe_machines(c, items))


def machines(c: Client, refs: list[str]) -> list[Machine]:
    """Several machines, listing them once."""
    items = c.machines.list()
    describe = _describe_machines(c, items)
    return [pick("machine", r, items, lambda m: m.uuid, lambda m: (m.name,), describe)
            for r in refs]


def host_name(c: Client, uuid: str | None) -> str | None:
    """A host's name for display, or its UUID when the caller may not read it."""
    if not uuid:
        return None
    try:
        return c.machines.get(uuid).machine.name
    except NotFoundError:
        return uuid


def host(c: Client, ref: str) -> Machine:
    return pick("host", ref, c.hosts.list(), lambda m: m.uuid,
                lambda m: (m.name, m.address or m.name), lambda m: f"{m.uuid}  {m.name}")


def hypervisor(c: Client, ref: str, host_uuid: str | None = None) -> Hypervisor:
    if is_uuid(ref) and not host_uuid:  # also one on a host the caller may not read
        return c.hypervisors.get(ref)
    return pick("hypervisor", ref, c.hypervisors.list(host_uuid), lambda h: h.uuid,
                lambda h: (h.virt_url,), lambda h: f"{h.uuid}  {h.virt_url}  ({h.status})")


def cluster(c: Client, ref: str) -> Cluster:
    return pick("cluster", ref, c.clusters.list(), lambda x: x.uuid, lambda x: (x.name,),
                lambda x: f"{x.uuid}  {x.name}")


def user(c: Client, ref: str) -> UserRef:
    return pick("user", ref, c.users.list(), lambda u: u.uuid, lambda u: (u.username,),
                lambda u: f"{u.uuid}  {u.username}")


def group(c: Client, ref: str) -> GroupRef:
    return pick("group", ref, c.groups.list(), lambda g: g.uuid, lambda g: (g.name,),
                lambda g: f"{g.uuid}  {g.name}")


def network(c: Client, ref: str) -> Network:
    return pick("network", ref, c.networks.list(), lambda n: n.uuid,
                lambda n: (n.name,), lambda n: f"{n.uuid}  {n.name}  ({n.ip}/{n.prefix})")


def package(c: Client, ref: str) -> Package:
    return pick("package", ref, c.packages.list(), lambda p: p.uuid, lambda p: (p.name,),
                lambda p: f"{p.uuid}  {p.name} {p.version or ''}  ({p.state})")


def repository(c: Client, ref: str) -> Repository:
    return pick("feed", ref, c.repositories.list(), lambda r: r.uuid,
                lambda r: (r.url, r.url.rstrip("/"), r.title or r.url),
                lambda r: f"{r.uuid}  {r.url}")


def transaction(c: Client, ref: str) -> Transaction:
    if is_uuid(ref):
        return c.transactions.get(ref)
    return pick("transaction", ref, c.transactions.list(limit=1000), lambda t: t.uuid,
                lambda t: (), lambda t: f"{t.uuid}  {t.kind} {t.state}")


def token(c: Client, ref: str, owner: str | None = None) -> Token:
    return pick("token", ref, c.tokens.list(owner), lambda t: t.uuid, lambda t: (t.name,),
                lambda t: f"{t.uuid}  {t.name}")


KINDS = ("machine", "host", "hypervisor", "cluster", "user", "group", "network", "package",
         "feed", "transaction")


def any_object(c: Client, ref: str) -> tuple[str, str, str]:
    """`KIND:REF` (machine:web, cluster:prod, user:bob, ...), a bare UUID, or a machine's
    name or prefix: (kind, uuid, label)."""
    kind, sep, name = ref.partition(":")
    if not sep or kind not in KINDS:
        if is_uuid(ref):
            return "object", ref, ref
        kind, name = "machine", ref
    if not name:
        raise CLIError(f"'{ref}' names nothing: use KIND:NAME, KIND one of {', '.join(KINDS)}")
    if kind in ("machine", "host"):
        m = machine(c, name, kind="host" if kind == "host" else None)
        return m.kind, m.uuid, m.name
    if kind == "hypervisor":
        h = hypervisor(c, name)
        return kind, h.uuid, h.virt_url
    if kind == "cluster":
        x = cluster(c, name)
        return kind, x.uuid, x.name
    if kind == "user":
        u = user(c, name)
        return kind, u.uuid, u.username
    if kind == "group":
        g = group(c, name)
        return kind, g.uuid, g.name
    if kind == "network":
        n = network(c, name)
        return kind, n.uuid, n.name
    if kind == "package":
        p = package(c, name)
        return kind, p.uuid, p.name
    if kind == "feed":
        r = repository(c, name)
        return "repository", r.uuid, r.url
    t = transaction(c, name)
    return kind, t.uuid, f"{t.kind} {t.uuid}"
