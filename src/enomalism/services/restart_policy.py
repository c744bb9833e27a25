"""`action=set` with `restart_policy` (never, on-failure) and `autostart` (issue 19): what
happens to a machine when its guest fails (runtime/restarts.py) and when its host starts.
Checked first (nothing changes on bad input); autostart is libvirt's flag on the domain, set
with the machine locked and no database transaction open (services/machine_work.py), and
stored as set, for the machine's answers."""

from enomalism.errors import BadRestartPolicy, InvalidState
from enomalism.runtime import sync
from enomalism.runtime.restarts import POLICIES
from enomalism.services import machine_work
from enomalism.services.context import Context
from enomalism.store.models import Machine

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse(restart_policy: str | None, autostart: str | None) -> tuple[str | None, bool | None]:
    """The values given, checked; None where a variable was left out."""
    policy = (restart_policy or "").strip().lower() or None
    if policy is not None and policy not in POLICIES:
        raise BadRestartPolicy(f"restart_policy is one of {', '.join(POLICIES)}, not "
                               f"'{str(restart_policy)[:40]}'")
    flag = None
    if autostart is not None and str(autostart).strip() != "":
        word = str(autostart).strip().lower()
        if word not in _TRUE + _FALSE:
            raise BadRestartPolicy(f"autostart is true or false, not '{str(autostart)[:40]}'")
        flag = word in _TRUE
    return policy, flag


def set_policy(ctx: Context, m: Machine, *, restart_policy: str | None,
               autostart: bool | None) -> str:
    """Store the policy; set libvirt's autostart flag (checked and unlocked by actions.py)."""
    said = []
    if autostart is not None:
        if m.state in sync.NO_DOMAIN_YET:
            raise InvalidState(f"machine {m.name} has no domain on its hypervisor")
        conn = ctx.registry.connection(m.vm_parent_uuid)
        uuid = m.uuid
        with machine_work.locked(ctx, m, "set"):
            conn.set_autostart(uuid, autostart)
            m.autostart = autostart
            if restart_policy is not None:
                m.restart_policy = restart_policy
        said.append(f"autostart {'on' if autostart else 'off'}")
    elif restart_policy is not None:
        m.restart_policy = restart_policy
    if restart_policy is not None:
        if restart_policy == "never":
            m.restarts = None  # a later on-failure counts afresh
        said.append(f"restart policy {restart_policy}")
    return f"machine {m.name}: " + ", ".join(said)
