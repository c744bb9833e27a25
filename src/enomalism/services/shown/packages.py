"""Feed repositories and packages as the answers show them (`wire.PackageObj`, ...)."""

from pathlib import Path

from enomalism.errors import InvalidState
from enomalism.feeds import download as dl
from enomalism.feeds.archive import Manifest
from enomalism.feeds.feed import FeedItem
from enomalism.services import images, provisioning, repositories
from enomalism.services.context import Context
from enomalism.store.models import Package, Repository

XVM2_TYPE = "application/enomalism2-xvm2"


def package_obj(p: Package) -> dict:
    """A package; a feed's URL without its credentials."""
    disks = list((p.manifest or {}).get("disks", []))
    return {"uuid": p.uuid, "name": p.name, "description": p.description, "version": p.version,
            "virt_class": p.virt_class, "arch": p.arch, "state": p.state,
            "repository": p.repository_uuid, "url": dl.redact(p.url) if p.url else None,
            "length": p.length, "sha256": p.sha256, "size": p.size, "disks": disks,
            "created_at": p.created_at, "updated_at": p.updated_at}


def repository_obj(r: Repository) -> dict:
    """A repository; its URL without credentials, and how many packages it lists."""
    return {"uuid": r.uuid, "url": dl.redact(r.url), "has_credentials": r.username is not None,
            "title": r.title, "description": r.description, "feed_uuid": r.feed_uuid,
            "refreshed_at": r.refreshed_at, "last_error": r.last_error,
            "packages": len(r.packages)}


def list_packages(ctx: Context, *, state: str | None) -> list[dict]:
    """Every package the caller may read."""
    return [package_obj(p) for p in repositories.list_packages(ctx, state=state)]


def add_repository(ctx: Context, *, url: str | None) -> tuple[dict, list[dict]]:
    """Add a VMcast feed (fetched now); the repository and its packages."""
    repo = repositories.add(ctx, url)
    return repository_obj(repo), [package_obj(p) for p in repo.packages]


def list_repositories(ctx: Context) -> list[dict]:
    """Every repository the caller may read."""
    return [repository_obj(r) for r in repositories.list_repositories(ctx)]


def feed_items(ctx: Context, *, base: str) -> list[FeedItem]:
    """This server's packages the caller may download, as a feed's items under `base`."""
    return [FeedItem(
        guid=p.uuid, title=p.name, description=p.description or "",
        url=f"{base}/rest/vmfeed/{p.uuid}/download/", length=p.size, type=XVM2_TYPE,
        sha256=p.sha256, version=p.version, virt_class=p.virt_class, arch=p.arch, uuid=p.uuid)
        for p in repositories.list_downloadable(ctx)]


def add_uploaded(ctx: Context, *, uuid: str, path: Path, sha256: str, manifest: Manifest,
                 name: str | None) -> dict:
    """Record a received package file as a cached package of the caller's."""
    return package_obj(images.add_package(ctx, uuid=uuid, path=path, sha256=sha256,
                                          manifest=manifest, name=name))


def download(ctx: Context, *, uuid: str) -> tuple[str, str]:
    """A package file the caller may download: its path and the name to save it under."""
    p = repositories.get_download(ctx, uuid)
    if p.state != "cached" or not p.path or not Path(p.path).exists():
        raise InvalidState(f"package {p.name} is not in the local cache; retrieve it first")
    return p.path, f"{p.name}.xvm2"


def package(ctx: Context, *, uuid: str) -> dict:
    """One package the caller may read."""
    return package_obj(repositories.get_package(ctx, uuid))


def update_package(ctx: Context, *, uuid: str, name: str | None,
                   description: str | None) -> dict:
    """Rename or describe a package."""
    p = repositories.update_package(ctx, uuid, name=name, description=description)
    ctx.db.flush()
    return package_obj(p)


def retrieve(ctx: Context, *, uuid: str) -> str | None:
    """Queue a package's retrieval into the cache: the transaction's id, None when cached."""
    tx = provisioning.queue_retrieval(ctx, uuid)
    return tx.uuid if tx is not None else None


def repository(ctx: Context, *, uuid: str) -> tuple[dict, list[dict]]:
    """One repository the caller may read, and its packages."""
    repo = repositories.get(ctx, uuid)
    return repository_obj(repo), [package_obj(p) for p in repo.packages]


def act_on_repository(ctx: Context, *, uuid: str, action: str | None) -> str:
    """action=refresh or action=delete on a repository; what was done."""
    message = repositories.act(ctx, uuid, action)
    if action != "delete":
        ctx.db.flush()
    return message


def delete_repository(ctx: Context, *, uuid: str) -> str:
    """Delete a repository, its packages and their cached files."""
    return repositories.delete(ctx, repositories.get(ctx, uuid))
