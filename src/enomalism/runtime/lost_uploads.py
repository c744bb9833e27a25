"""Uploads whose API node went away: failed, and their partial volumes removed.

An upload's bytes arrive in one request on one node (services/images.py); if that node stops
or dies, nothing else would ever finish or fail it, and its image would stay `uploading` with
a partial volume. Every node's keeper (runtime/registry.py) looks for such uploads: the node
is gone (stopped, silent for longer than the ownership lease, or started again since the
upload began). Registrations from a URL are jobs, and the job runner recovers those.
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select, update

from enomalism.errors import EnomalismError
from enomalism.store import records
from enomalism.store.db import Database, changed
from enomalism.store.models import Image, Node, utcnow
from enomalism.virt.hypervisor import HypervisorConnection

log = logging.getLogger(__name__)


def reap(db: Database, connection: Callable[[str], HypervisorConnection], *,
         lease: float) -> list[str]:
    """Fail the uploads of nodes that are gone and delete what they wrote; returns the
    images failed. Each is claimed by a compare-and-swap first, so two nodes never both do it."""
    silent = utcnow() - timedelta(seconds=lease)
    with db.session(write=False) as s:
        lost = s.execute(
            select(Image.uuid, Image.hypervisor_uuid, Image.path, Image.name, Image.node_id)
            .outerjoin(Node, Node.id == Image.node_id)
            .where(Image.state == "uploading", Image.url.is_(None), Image.node_id.is_not(None),
                   or_(Node.id.is_(None), Node.stopped_at.is_not(None), Node.seen_at < silent,
                       Node.started_at > Image.created_at))).all()
    failed = []
    for uuid, hv_uuid, path, name, node in lost:
        with db.session() as s:
            if changed(s, update(Image).where(Image.uuid == uuid, Image.state == "uploading")
                       .values(state="failed")) != 1:
                continue  # finished, deleted or reaped meanwhile
            s.add(records.audit_entry(
                actor_uuid=None, actor_name="enomalism", source=None,
                action="image.upload_lost", object_type="image", object_uuid=uuid,
                object_name=name, errno=0, detail={"node": node},
                message=f"the upload was lost with API node {node}; the image failed"))
        failed.append(uuid)
        log.warning("the upload of image %s was lost with its API node; it is failed", uuid)
        if path:
            try:
                connection(hv_uuid).delete_volume(path)
            except EnomalismError as e:  # the image's DELETE removes the volume later
                log.warning("the partial volume %s of image %s stays for now: %s", path, uuid, e)
    return failed
