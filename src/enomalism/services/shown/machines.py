"""Machines, hypervisors and clusters as the answers show them (`wire.MachineObj`, ...)."""

from typing import Any

from sqlalchemy.orm import object_session

from enomalism.runtime import nodes
from enomalism.services import clusters, hypervisors
from enomalism.services.actions import available
from enomalism.services.addresses import stored as stored_addresses
from enomalism.services.context import Context
from enomalism.services.machines import shown_xml
from enomalism.services.networks import machine_leases
from enomalism.store.models import Cluster, Hypervisor, Machine


def machine_obj(m: Machine, *, addresses: list[dict] | None = None) -> dict:
    """A machine; `addresses` when the caller has them, else its stored leases."""
    if addresses is None:
        db = object_session(m)  # None only for a machine no session loaded: no leases then
        addresses = stored_addresses(db, [m.uuid])[m.uuid] \
            if m.kind == "vm" and db is not None else []
    return {
        "uuid": m.uuid, "name": m.name, "kind": m.kind, "state": m.state, "managed": m.managed,
        "persistent": m.persistent, "parent": m.parent_uuid,
        "host": m.parent.machine_uuid if m.parent is not None else None,
        "address": m.address, "is_local": m.is_local and m.local_to in (None, nodes.this_machine()),
        "clusters": [c.uuid for c in m.clusters], "locked_by": m.lock_txid,
        "owner": m.owner_uuid, "actions": available(m), "xmldesc": shown_xml(m),
        "xml_pending": m.xml_pending, "created_at": m.created_at,
        "updated_at": m.updated_at, "synced_at": m.synced_at, "vcpus": m.vcpus,
        "memory_kib": m.memory_kib, "addresses": addresses,
        "restart_policy": m.restart_policy or "never", "autostart": bool(m.autostart),
    }


def machine_objs(ctx: Context, *, machines: list[Machine]) -> list[dict]:
    """A list of machines, every VM's stored leases read in one query."""
    held = stored_addresses(ctx.db, [m.uuid for m in machines if m.kind == "vm"])
    return [machine_obj(m, addresses=held.get(m.uuid, [])) for m in machines]


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
