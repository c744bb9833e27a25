"""Readiness (`GET /readyz`): whether this node can do its work now, check by check, and the
warnings an operator should see at start (a host where libvirt works slowly).

/readyz answers without credentials (as Kubernetes' probes ask), so it names hypervisors by
their URI without user name, password or parameters, and says nothing a caller sent."""

import grp
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Any

from sqlalchemy import text

from enomalism.jobs.runner import Runner
from enomalism.runtime.registry import HypervisorRegistry
from enomalism.store.db import Database
from enomalism.virt import uri as uris

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
KVM = Path("/dev/kvm")
# Debian's libvirt runs QEMU as this user (in group kvm) when qemu.conf names none.
QEMU_USER = "libvirt-qemu"


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def _database(db: Database) -> str | None:
    try:
        with db.session(write=False) as s:
            s.execute(text("SELECT 1"))
    except Exception as e:
        return f"the database does not answer: {_first_line(e)}"
    return None


def _hypervisors(registry: HypervisorRegistry) -> list[dict[str, Any]]:
    """The supervised hypervisors that are not connected, by redacted URI."""
    down = []
    for hv_uuid, uri, status, error in registry.links():
        if status != "connected":
            shown = uris.redact(uri)
            down.append({"uuid": hv_uuid, "uri": shown, "status": status,
                         "error": (error or "").replace(uri, shown) or None})
    return down


def readiness(*, db: Database, registry: HypervisorRegistry,
              runner: Runner) -> tuple[bool, dict[str, Any]]:
    """(ready, body): each check with `ok` and, when not ok, `error`; `warnings` for what
    slows the node without stopping it."""
    checks: dict[str, dict[str, Any]] = {}
    for name, problem in (("database", _database(db)), ("jobs", runner.problem()),
                          ("leases", registry.keep_problem())):
        checks[name] = {"ok": problem is None, **({"error": problem} if problem else {})}
    down = _hypervisors(registry)
    checks["hypervisors"] = {"ok": not down, "connected": len(registry.links()) - len(down),
                             **({"error": "not connected: " + "; ".join(
                                 f"{d['uri']} ({d['error'] or d['status']})" for d in down),
                                 "down": down} if down else {})}
    ready = all(c["ok"] for c in checks.values())
    return ready, {"checks": checks, "warnings": warnings(registry)}


def warnings(registry: HypervisorRegistry) -> list[str]:
    """What makes libvirt slow here: /dev/kvm not usable by the QEMU user (when this node
    supervises the local QEMU), hypervisors slow to answer for their capabilities."""
    uris_of = {hv_uuid: uri for hv_uuid, uri, _, _ in registry.links()}
    local_qemu = any(uris.is_local(u) and u.startswith("qemu") for u in uris_of.values())
    kvm = kvm_problem() if local_qemu else None
    said = [kvm] if kvm else []
    for hv_uuid, took in sorted(registry.slow.items()):
        said.append(f"hypervisor {uris.redact(uris_of.get(hv_uuid, hv_uuid))} took "
                    f"{took:.1f} s to answer for its capabilities: libvirt probes QEMU again "
                    f"on every call and every define takes as long")
    return said


def _qemu_identity(conf: Path) -> tuple[str, str | None]:
    """The user and group libvirt's system instance runs QEMU as (qemu.conf's `user` and
    `group`; the user's own group when no group is named)."""
    values = {}
    if conf.exists():
        for m in re.finditer(r'^\s*(user|group)\s*=\s*"([^"]*)"', conf.read_text(), re.M):
            values[m[1]] = m[2]
    return values.get("user", QEMU_USER), values.get("group")


def kvm_problem(conf: Path = QEMU_CONF, device: Path = KVM) -> str | None:
    """What is wrong when `device` exists but libvirt's QEMU user may not read and write it
    (a machine where no udev rule made it root:kvm 0660); None when all is well, or there is
    no such device or user to judge by."""
    if not device.exists():
        return None
    user, group = _qemu_identity(conf)
    try:
        pw = pwd.getpwuid(int(user[1:])) if user.startswith("+") else pwd.getpwnam(user)
    except (KeyError, ValueError):
        return None  # libvirt's QEMU user is not on this machine: nothing local to judge
    if pw.pw_uid == 0:
        return None
    gids = set(os.getgrouplist(pw.pw_name, pw.pw_gid))
    if group:
        try:
            gids.add(int(group[1:]) if group.startswith("+") else grp.getgrnam(group).gr_gid)
        except (KeyError, ValueError):
            pass
    st = device.stat()
    mode = stat.S_IMODE(st.st_mode)
    if (st.st_uid == pw.pw_uid and mode & 0o600 == 0o600) or mode & 0o006 == 0o006 \
            or (st.st_gid in gids and mode & 0o060 == 0o060):
        return None
    return (f"{device} is {_name(st.st_uid, pwd.getpwuid)}:{_name(st.st_gid, grp.getgrgid)} "
            f"{mode:04o}, not usable by libvirt's QEMU user {pw.pw_name}: libvirt probes QEMU "
            f"again on every call (each define takes seconds); make it root:kvm 0660 as "
            f"Debian's udev rule does (scripts/kvm-device.sh)")


def _name(num: int, lookup: Any) -> str:
    try:
        return lookup(num)[0]
    except KeyError:
        return str(num)
