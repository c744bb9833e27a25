"""A transaction's states and the transitions between them, checked in one place.

    queued ──> running ──> done
       │          ├──────> failed ────┐
       └──────────┴──────> cancelled ─┴──> queued   (retry)
"""

from enomalism.errors import InvalidState

TRANSITIONS = {
    "queued": {"running", "cancelled"},
    "running": {"done", "failed", "cancelled"},
    "failed": {"queued"},
    "cancelled": {"queued"},
    "done": set(),
}
FINISHED = {"done", "failed", "cancelled"}


def check(old: str, new: str) -> None:
    if new not in TRANSITIONS.get(old, set()):
        raise InvalidState(f"a {old} transaction cannot become {new}")
