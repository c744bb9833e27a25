"""Why libvirt paused a domain (`virDomainGetState`'s reason): a guest paused by an I/O error
(a full pool), a watchdog or a failed migration says so, rather than just "paused"."""

import libvirt

from enomalism.errors import NotFound
from enomalism.virt.driver import _lookup

REASONS = {getattr(libvirt, f"VIR_DOMAIN_PAUSED_{n.upper()}"): n for n in (
    "unknown", "user", "migration", "save", "dump", "ioerror", "watchdog", "from_snapshot",
    "shutting_down", "snapshot", "crashed", "starting_up", "postcopy", "postcopy_failed")}


def paused_reason(conn: libvirt.virConnect, uuid: str) -> str | None:
    """The reason of a paused domain (`ioerror`, `user`, ...); None when it is not paused."""
    try:
        state, reason = _lookup(conn, uuid).state()
    except (NotFound, libvirt.libvirtError):
        return None
    if state != libvirt.VIR_DOMAIN_PAUSED:
        return None
    return REASONS.get(reason, "unknown")
