"""Objects named on the command line: by UUID, by name (or URL, for feeds and hypervisors),
or by a unique UUID prefix. The rules are the Python client's (`find` on each resource, and
`Client.find` for any object), so both name things the same way; unknown names exit 3,
ambiguous ones exit 1 listing the candidates."""

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


def machine(c: Client, ref: str, *, kind: str | None = None) -> Machine:
    return c.machines.find(ref, kind=kind)


def machines(c: Client, refs: list[str]) -> list[Machine]:
    """Several machines, listing them once."""
    return c.machines.find_all(refs)


def host_name(c: Client, uuid: str | None) -> str | None:
    """A host's name for display, or its UUID when the caller may not read it."""
    if not uuid:
        return None
    try:
        return c.machines.get(uuid).machine.name
    except NotFoundError:
        return uuid


def host(c: Client, ref: str) -> Machine:
    return c.hosts.find(ref)


def hypervisor(c: Client, ref: str, host_uuid: str | None = None) -> Hypervisor:
    return c.hypervisors.find(ref, host_uuid)


def cluster(c: Client, ref: str) -> Cluster:
    return c.clusters.find(ref)


def user(c: Client, ref: str) -> UserRef:
    return c.users.find(ref)


def group(c: Client, ref: str) -> GroupRef:
    return c.groups.find(ref)


def network(c: Client, ref: str) -> Network:
    return c.networks.find(ref)


def package(c: Client, ref: str) -> Package:
    return c.packages.find(ref)


def repository(c: Client, ref: str) -> Repository:
    return c.repositories.find(ref)


def transaction(c: Client, ref: str) -> Transaction:
    return c.transactions.find(ref)


def token(c: Client, ref: str, owner: str | None = None) -> Token:
    return c.tokens.find(ref, owner)


KINDS = Client.KINDS


def any_object(c: Client, ref: str) -> tuple[str, str, str]:
    """`KIND:REF` (machine:web, cluster:prod, user:bob, ...), a bare UUID, or a machine's
    name or prefix: (kind, uuid, label)."""
    return c.find(ref)
