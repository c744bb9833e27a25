"""Machines, hypervisors and clusters as the answers show them (`wire.MachineObj`, ...)."""

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import object_session

from enomalism.errors import InvalidInput
from enomalism.runtime import nodes
from enomalism.services import clusters, hypervisors
from enomalism.services.actions import available
from enomalism.services.addresses import stored as stored_addresses
from enomalism.services.context import Context
from enomalism.services.machines import shown_xml
from enomalism.services.networks import machine_leases
from enomalism.store.models import Cluster, Hypervisor, Machine


def _host(m: Machine) -> str | None:
    return m.parent.machine_uuid if m.parent is not None else None


def _is_local(m: Machine) -> bool:
    return m.is_local and m.local_to in (None, nodes.this_machine())


# Each key of a machine object and how it is read; `addresses` aside (read for many at once).
_KEYS: dict[str, Callable[[Machine], Any] | None] = {
    "uuid": lambda m: m.uuid, "name": lambda m: m.name, "kind": lambda m: m.kind,
    "state": lambda m: m.state, "managed": lambda m: m.managed,
    "persistent": lambda m: m.persistent, "parent": lambda m: m.parent_uuid, "host": _host,
    "address": lambda m: m.address, "is_local": _is_local,
    "clusters": lambda m: [c.uuid for c in m.clusters], "locked_by": lambda m: m.lock_txid,
    "owner": lambda m: m.owner_uuid, "actions": available, "xmldesc": shown_xml,
    "xml_pending": lambda m: m.xml_pending, "created_at": lambda m: m.created_at,
    "updated_at": lambda m: m.updated_at, "synced_at": lambda m: m.synced_at,
    "vcpus": lambda m: m.vcpus, "memory_kib": lambda m: m.memory_kib, "addresses": None,
    "restart_policy": lambda m: m.restart_policy or "never",
    "autostart": lambda m: bool(m.autostart),
}
MACHINE_KEYS = tuple(_KEYS)


def machine_obj(m: Machine, *, addresses: list[dict] | None = None,
                keys: Iterable[str] = MACHINE_KEYS) -> dict:
    """A machine (its `keys` only, in their usual order); `addresses` when the caller has
    them, else its stored leases."""
    if addresses is None and "addresses" in keys:
        db = object_session(m)  # None only for a machine no session loaded: no leases then
        addresses = stored_addresses(db, [m.uuid])[m.uuid] \
            if m.kind == "vm" and db is not None else []
    return {k: addresses if read is None else read(m) for k, read in _KEYS.items() if k in keys}


def list_keys(given: list[str]) -> tuple[str, ...]:
    """The keys a list's `fields` asks for (uuid always), or every key when none is named;
    an unknown name is refused, naming the known ones."""
    if not given:
        return MACHINE_KEYS
    unknown = sorted(set(given) - set(_KEYS))
    if unknown:
        raise InvalidInput(f"fields: no machine key {', '.join(unknown)}; "
                           f"the keys are {', '.join(MACHINE_KEYS)}")
    return tuple(k for k in MACHINE_KEYS if k == "uuid" or k in given)


def machine_objs(ctx: Context, *, machines: list[Machine],
                 keys: tuple[str, ...] = MACHINE_KEYS) -> list[dict]:
    """A list of machines (their `keys`), every VM's stored leases read in one query when
    they are asked for."""
    held = stored_addresses(ctx.db, [m.uuid for m in machines if m.kind == "vm"]) \
        if "addresses" in keys else {}
    return [machine_obj(m, addresses=held.get(m.uuid, []), keys=keys) for m in machines]


def machine_info(m: Machine, *, paused_reason: str | None = None) -> dict:
    """A machine's runtime information (`wire.MachineInfo`), its leases included."""
    hv = m.parent
    return {"paused_reason": paused_reason,
        "state": m.state, "vcpus": m.vcpus, "memory_kib": m.memory_kib,
        "max_memory_kib": m.max_memory_kib, "persistent": m.persistent,
        "hypervisor_status": hv.status if hv is not None else None, "synced_at": m.synced_at,
        "leases": [
            {"network": n.uuid, "network_name": n.name, "address": lease.address,
             "prefix": n.prefix, "gateway": n.gateway, "mac": lease.mac, "bridge": n.bridge}
            for lease, n in machine_leases(object_session(m), m.uuid)],
    }


def hypervisor_obj(hv: Hypervisor) -> dict:
    """A hypervisor (`wire.HypervisorObj`)."""
    return {
        "uuid": hv.uuid, "machine": hv.machine_uuid, "virt_class": hv.virt_class,
        "virt_url": hv.virt_url, "status": hv.status, "last_error": hv.last_error,
        "hostname": hv.hostname, "driver": hv.driver, "libvirt_version": hv.libvirt_version,
        "cpus": hv.cpus, "memory_kib": hv.memory_kib, "arch": hv.arch,
        "connected_at": hv.connected_at, "local_to": hv.local_to, "owner_node": hv.owner_node,
    }


def machine_hypervisors(m: Machine) -> list[dict]:
    """A host's hypervisors; for a VM, the one it runs on."""
    if m.kind == "host":
        return [hypervisor_obj(h) for h in m.hypervisors]
    return [hypervisor_obj(m.parent)] if m.parent is not None else []


def cluster_obj(ctx: Context, *, cluster: Cluster) -> dict:
    """A cluster; its machines those the caller may read (a cluster does not share all it
    holds)."""
    return {"uuid": cluster.uuid, "name": cluster.name,
            "machines": clusters.members(ctx, cluster)}


def register_host(ctx: Context, *, name: str | None, address: str | None,
                  virt_url: str | None, virt_class: str | None) -> dict[str, Any]:
    """Register a host (`hypervisors.register_host`); the host and its hypervisors as
    stored now."""
    host = hypervisors.register_host(ctx, name=name, address=address, virt_url=virt_url,
                                     virt_class=virt_class)
    ctx.db.refresh(host)  # its hypervisors, added in other statements
    return {"machine": host.uuid, "name": host.name, "machine_obj": machine_obj(host),
            "hypervisors": machine_hypervisors(host)}
