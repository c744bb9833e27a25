"""Static networks, their ranges, cluster and leases as the answers show them."""

from enomalism.errors import MissingVariable
from enomalism.services import networks
from enomalism.services.context import Context
from enomalism.services.shown.machines import cluster_obj
from enomalism.store.models import IPRange, Lease, Network


def range_obj(r: IPRange) -> dict:
    """An IP range (`wire.RangeObj`), with how many addresses it spans."""
    start, end = networks._bounds(r)
    return {"uuid": r.uuid, "network": r.network_uuid, "start_ip": r.start_ip,
            "end_ip": r.end_ip, "size": int(end) - int(start) + 1}


def network_obj(ctx: Context, *, network: Network) -> dict:
    """A network (`wire.NetworkObj`) with its ranges and how many addresses are leased."""
    n = network
    net = networks.network_of(n)
    return {"uuid": n.uuid, "name": n.name, "description": n.description, "bridge": n.bridge,
            "cluster": n.cluster_uuid, "ip": n.address, "netmask": str(net.netmask),
            "prefix": n.prefix, "gateway": n.gateway, "version": net.version,
            "ranges": [range_obj(r) for r in n.ranges],
            "leased": len(networks.leases(ctx, n)), "created_at": n.created_at}


def lease_obj(lease: Lease) -> dict:
    """A lease (`wire.LeaseObj`)."""
    return {"uuid": lease.uuid, "network": lease.network_uuid, "address": lease.address,
            "machine": lease.machine_uuid, "mac": lease.mac, "note": lease.note,
            "created_at": lease.created_at}


def list_networks(ctx: Context) -> list[dict]:
    """The networks the caller may read."""
    return [network_obj(ctx, network=n) for n in networks.list_networks(ctx)]


def create(ctx: Context, *, name: str | None, description: str | None, bridge: str | None,
           cluster: str | None, ip: str | None, netmask: str | None, gateway: str | None
           ) -> tuple[dict, list[str]]:
    """Create a network; it and what could not be checked."""
    n, warnings = networks.create(ctx, name=name, description=description, bridge=bridge,
                                  cluster=cluster, ip=ip, netmask=netmask, gateway=gateway)
    return network_obj(ctx, network=n), warnings


def network(ctx: Context, *, uuid: str) -> dict:
    """One network the caller may read."""
    return network_obj(ctx, network=networks.get(ctx, uuid))


def update(ctx: Context, *, uuid: str, name: str | None, description: str | None,
           bridge: str | None, cluster: str | None) -> tuple[dict, list[str]]:
    """Change a network; it and what could not be checked."""
    n, warnings = networks.update(ctx, uuid, name=name, description=description,
                                  bridge=bridge, cluster=cluster)
    ctx.db.flush()
    return network_obj(ctx, network=n), warnings


def ranges(ctx: Context, *, uuid: str) -> tuple[dict, list[dict]]:
    """A network and its IP ranges."""
    n = networks.get(ctx, uuid)
    return network_obj(ctx, network=n), [range_obj(r) for r in n.ranges]


def add_range(ctx: Context, *, uuid: str, start_ip: str | None, end_ip: str | None) -> dict:
    """Add an IP range to a network."""
    return range_obj(networks.add_range(ctx, uuid, start_ip=start_ip, end_ip=end_ip))


def get_range(ctx: Context, *, uuid: str, range_uuid: str) -> dict:
    """One IP range of a network."""
    return range_obj(networks.get_range(ctx, uuid, range_uuid)[1])


def change_range(ctx: Context, *, uuid: str, range_uuid: str, start_ip: str | None,
                 end_ip: str | None) -> dict:
    """Move a range's start or end."""
    return range_obj(networks.change_range(ctx, uuid, range_uuid, start_ip=start_ip,
                                           end_ip=end_ip))


def cluster(ctx: Context, *, uuid: str) -> dict | None:
    """The cluster a network serves, if any."""
    c = networks.get(ctx, uuid).cluster
    return cluster_obj(ctx, cluster=c) if c is not None else None


def set_cluster(ctx: Context, *, uuid: str, cluster: str | None
                ) -> tuple[dict | None, list[str]]:
    """Assign a network to a cluster (empty: to none); the cluster now, and what could not be
    checked."""
    n = networks.get(ctx, uuid)
    if cluster is None:  # a missing variable is not "no cluster": that is an empty one
        raise MissingVariable("the variable 'cluster' is required (a cluster UUID; empty: "
                              "none)")
    warnings = networks.set_cluster(ctx, n, cluster)
    ctx.db.flush()
    ctx.db.refresh(n)
    c = n.cluster
    return (cluster_obj(ctx, cluster=c) if c is not None else None), warnings


def leases(ctx: Context, *, uuid: str) -> list[dict]:
    """Every address in use on a network and who holds it."""
    return [lease_obj(x) for x in networks.leases(ctx, networks.get(ctx, uuid))]


def reserve(ctx: Context, *, uuid: str, address: str | None, machine: str | None,
            mac: str | None, note: str | None) -> dict:
    """Reserve an address by hand."""
    return lease_obj(networks.reserve(ctx, uuid, address=address, machine=machine, mac=mac,
                                      note=note))


def release(ctx: Context, *, uuid: str, address: str) -> dict:
    """Release an address."""
    return lease_obj(networks.release(ctx, uuid, address))
