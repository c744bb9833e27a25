"""`action=set`: a machine's vCPUs and memory (issue 16). The checks come first (whole numbers
in range, the machine's domain present), then the machine is locked while libvirt resizes it
(services/machine_work.py), and its new size and definition are stored from what libvirt
answers afterwards. Where the change goes (live, or the next boot) is virt/sizing.py's."""

from enomalism.errors import BadSize, InvalidState, MissingVariable
from enomalism.runtime import sync
from enomalism.services import machine_work
from enomalism.services.context import Context
from enomalism.store.models import Machine

MAX_VCPUS = 4096
MIN_MEMORY_MIB = 16


def _size(value: str | None, variable: str, lo: int, hi: int) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise BadSize(f"{variable} must be a whole number, not '{str(value)[:40]}'") from None
    if not lo <= n <= hi:
        raise BadSize(f"{variable} must be between {lo} and {hi}, not {n}")
    return n


def check(*, vcpus: str | None, memory: str | None) -> None:
    """BadSize unless the sizes given are whole numbers in range (before anything changes)."""
    _size(vcpus, "vcpus", 1, MAX_VCPUS)
    _size(memory, "memory", MIN_MEMORY_MIB, 1 << 30)


def set_size(ctx: Context, m: Machine, *, vcpus: str | None, memory: str | None) -> str:
    """Resize `m` (checked and unlocked by services/actions.py): `memory` in MiB."""
    n_vcpus = _size(vcpus, "vcpus", 1, MAX_VCPUS)
    mib = _size(memory, "memory", MIN_MEMORY_MIB, 1 << 30)
    if n_vcpus is None and mib is None:
        raise MissingVariable("action set needs vcpus and/or memory (MiB)")
    if m.state in sync.NO_DOMAIN_YET:
        raise InvalidState(f"machine {m.name} has no domain on its hypervisor to resize")
    conn = ctx.registry.connection(m.vm_parent_uuid)
    hv_uuid, uuid = m.vm_parent_uuid, m.uuid
    with machine_work.locked(ctx, m, "set"):
        live = conn.resize(uuid, vcpus=n_vcpus,
                             memory_kib=mib * 1024 if mib is not None else None)
        snap = conn.snapshot(uuid)
        if snap is not None:
            sync.store(ctx.db, hv_uuid, uuid, snap)
    what = " and ".join(x for x in (f"{n_vcpus} vCPUs" if n_vcpus else "",
                                    f"{mib} MiB" if mib else "") if x)
    return f"machine {m.name} now has {what}" + (" (live)" if live else "")
