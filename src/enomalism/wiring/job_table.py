"""The job table: the function that runs each kind of queued transaction, in one place, so
that what the runner can run is read here rather than gathered from the side effects of
imports. The server hands it to its Runner; a kind not in it cannot be queued."""

from enomalism.jobs.runner import Handler
from enomalism.services import cache, create, images, moves, provisioning, snapshots

JOBS: dict[str, Handler] = {
    "retrieve": provisioning.retrieve,
    "provision": provisioning.provision,
    "package": provisioning.package,
    "create": create.create,
    "image_register": images.register_job,
    "image_package": images.package_job,
    cache.KIND: cache.prune,
    snapshots.CREATE: snapshots.create_job,
    snapshots.REVERT: snapshots.revert_job,
    snapshots.DELETE: snapshots.delete_job,
    moves.KIND: moves.migrate,
    moves.EVACUATE: moves.evacuate,
}
