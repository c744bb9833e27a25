"""Where a machine is reachable: its addresses with the source each came from (issue 16).

`lease` addresses are ours (static networks, services/networks.py) and come from the
database, so a list of machines pays one query for all of them and never waits on a
hypervisor. One machine's answer (`GET /rest/machine/<UUID>/`) also asks libvirt
(virt/addresses.py): its network's DHCP leases, the guest agent, the host's ARP table; for at
most `registry.ASK_WITHIN` seconds, so a hung host's machine still answers from the database.
"""

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from enomalism.services.context import Context
from enomalism.store.models import Lease, Machine, Network

_ACTIVE = ("running", "blocked", "paused")


def stored(db: Session, machine_uuids: Iterable[str]) -> dict[str, list[dict]]:
    """The `lease` addresses of these machines, in one query."""
    uuids = list(machine_uuids)
    out: dict[str, list[dict]] = defaultdict(list)
    if not uuids:
        return out
    rows = db.execute(select(Lease.machine_uuid, Lease.address, Lease.mac, Network.prefix)
                      .join(Network).where(Lease.machine_uuid.in_(uuids))
                      .order_by(Network.name, Lease.address))
    for machine, address, mac, prefix in rows:
        assert machine is not None  # one of `uuids`
        out[machine].append({"address": address, "prefix": prefix, "mac": mac,
                             "source": "lease"})
    return out


def of_machine(ctx: Context, m: Machine) -> list[dict]:
    """The machine's leases, then what libvirt reports for it now (each address once per
    source). A hypervisor that is not connected adds nothing: the leases still answer."""
    out = stored(ctx.db, [m.uuid])[m.uuid] if m.kind == "vm" else []
    if m.kind != "vm" or m.state not in _ACTIVE or m.parent_uuid is None:
        return out
    uuid = m.uuid
    seen = set()
    for a in ctx.registry.ask(m.parent_uuid, lambda c: c.guest_addresses(uuid)) or []:
        if (a.address, a.source) not in seen:
            seen.add((a.address, a.source))
            out.append({"address": a.address, "prefix": a.prefix, "mac": a.mac,
                        "source": a.source})
    return out


def why_paused(ctx: Context, m: Machine) -> str | None:
    """libvirt's reason for a paused VM (ioerror: its pool is full...); None otherwise, or
    when its hypervisor is not connected or does not answer in time."""
    if m.kind != "vm" or m.state != "paused" or m.parent_uuid is None:
        return None
    uuid = m.uuid
    return ctx.registry.ask(m.parent_uuid, lambda c: c.paused_reason(uuid))
