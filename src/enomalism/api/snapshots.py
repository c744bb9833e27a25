"""A machine's snapshots (issue 19, extension): list, create, show, revert, delete. The
changes are transactions (services/snapshots.py) answered at once with their `txid`."""

import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from enomalism.api.compat import posted_nothing, refuse_changes_on_get
from enomalism.api.deps import Ctx, Vars, expose, http_vars
from enomalism.api.schemas import Status
from enomalism.errors import InvalidInput, UnknownAction
from enomalism.services import snapshots
from enomalism.wire import SnapshotObj

router = APIRouter(tags=["snapshots"])


class SnapshotsAnswer(Status):
    machine: str
    snapshots: list[SnapshotObj] = Field(description="parents before their children")


class SnapshotAnswer(Status):
    machine: str
    snapshot: SnapshotObj


class SnapshotTxAnswer(Status):
    machine: str
    snapshot: str
    txid: str = Field(description="the transaction doing it")


class CreateVars(Vars):
    name: str | None = Field(None, description="1-64 letters, digits, '.', '_', '-'")
    description: str | None = Field(None, description="free text (at most 1000 characters)")
    memory: str | None = Field(None, description="true: the running machine's memory too "
                               "(a revert resumes it); false (default): disks only, of a "
                               "stopped machine")


class ActionVars(Vars):
    action: str | None = Field(None, description="revert")


def _obj(s: Any) -> dict:  # a virt.snapshots.Snapshot (api does not import virt)
    return {"name": s.name, "description": s.description, "parent": s.parent,
            "created": datetime.datetime.fromtimestamp(s.created, datetime.UTC),
            "state": s.state, "memory": s.memory}


def _flag(value: str | None) -> bool:
    word = (value or "").strip().lower()
    if word in ("", "false", "0", "no", "off"):
        return False
    if word in ("true", "1", "yes", "on"):
        return True
    raise InvalidInput(f"memory is true or false, not '{str(value)[:40]}'")


def list_snapshots(uuid: str, ctx: Ctx) -> dict:
    """The machine's snapshots as a tree (each names its parent), asked of its hypervisor."""
    found = snapshots.listed(ctx, uuid=uuid)
    return {"errno": 0, "message": "", "machine": uuid, "snapshots": [_obj(s) for s in found]}


def create_snapshot(uuid: str, ctx: Ctx, v: Annotated[CreateVars, http_vars(CreateVars)]
                    ) -> dict:
    """Take a snapshot (a transaction): disks only of a stopped machine, with `memory=true`
    its disks and memory of a running one."""
    tx = snapshots.queue_create(ctx, uuid=uuid, name=v.name, description=v.description,
                                memory=_flag(v.memory))
    return {"errno": 0, "message": "snapshot queued", "machine": uuid,
            "snapshot": tx.params["name"], "txid": tx.uuid}


def get_snapshot(uuid: str, name: str, ctx: Ctx) -> dict:
    """One snapshot."""
    return {"errno": 0, "message": "", "machine": uuid,
            "snapshot": _obj(snapshots.get(ctx, uuid=uuid, name=name))}


def delete_snapshot(uuid: str, name: str, ctx: Ctx) -> dict:
    """Delete the snapshot (a transaction); its children take its parent."""
    tx = snapshots.queue_change(ctx, uuid=uuid, name=name, kind=snapshots.DELETE)
    return {"errno": 0, "message": "snapshot deletion queued", "machine": uuid,
            "snapshot": name, "txid": tx.uuid}


def snapshot_action(uuid: str, name: str, ctx: Ctx,
                    v: Annotated[ActionVars, http_vars(ActionVars)]) -> dict:
    """`action=revert`: go back to the snapshot (a transaction). Without variables, answers
    like GET."""
    if posted_nothing(v, needs="action"):
        return get_snapshot(uuid, name, ctx)
    if v.action != "revert":
        raise UnknownAction(f"unknown snapshot action '{str(v.action)[:40]}'; the one there "
                            "is: revert")
    tx = snapshots.queue_change(ctx, uuid=uuid, name=name, kind=snapshots.REVERT)
    return {"errno": 0, "message": "revert queued", "machine": uuid, "snapshot": name,
            "txid": tx.uuid}


S = "/rest/machine/{uuid}/snapshots/"
expose(router, S, ["GET"], list_snapshots, response_model=SnapshotsAnswer,
       summary="A machine's snapshots (extension)",
       dependencies=[refuse_changes_on_get(CreateVars)])
expose(router, S, ["PUT"], create_snapshot, vars_model=CreateVars,
       response_model=SnapshotTxAnswer, summary="Take a snapshot (extension)")
expose(router, S + "{name}/", ["GET"], get_snapshot, response_model=SnapshotAnswer,
       summary="One snapshot (extension)", dependencies=[refuse_changes_on_get(ActionVars)])
expose(router, S + "{name}/", ["DELETE"], delete_snapshot, response_model=SnapshotTxAnswer,
       summary="Delete a snapshot (extension)")
expose(router, S + "{name}/", ["POST"], snapshot_action, vars_model=ActionVars,
       response_model=SnapshotTxAnswer | SnapshotAnswer,
       summary="action=revert: go back to the snapshot (extension)")
