"""Repositories (VMcast feeds) and the packages they list (spec section 6).

Adding a feed fetches and parses it at once (a feed that does not answer or is not RSS is
refused and nothing is stored). Adding and refreshing fetch with no database transaction open
(a feed that trickles must not hold the write lock every other writer waits for), then write
in a short transaction that checks again what may have changed meanwhile.

Credentials in a feed URL are split off and stored apart, the password sealed
(store/secrets.py); they are sent to the feed's own origin only, never to an enclosure or a
redirect elsewhere. Answers and logs only ever show the URL without them and with secret query
values masked (`redact`). Packages listed by a feed are readable by whoever may read the
repository.
"""

import logging
from pathlib import Path

from sqlalchemy import select

from enomalism.errors import Conflict, InvalidInput, InvalidState, NotFound, UnknownAction
from enomalism.feeds import download as dl
from enomalism.feeds.feed import Feed, parse_feed
from enomalism.services import access
from enomalism.services.context import Context, commit_before_slow_work
from enomalism.services.lookup import parse_uuid, require
from enomalism.store.db import Database
from enomalism.store.models import NamedLock, Package, Repository, Transaction, utcnow
from enomalism.store.secrets import SecretBox, is_sealed

MAX_PASSWORD = 512  # characters; sealed, it fits the column
log = logging.getLogger(__name__)

REPO_ACTIONS = ("refresh", "delete")


def auth_of(secrets: SecretBox | None, repo: Repository | None,
            url: str) -> tuple[str, str] | None:
    """The feed's credentials for fetching `url`: None unless `url` is on the feed's own
    origin (scheme, host and port), so an enclosure elsewhere never receives them."""
    if repo is None or repo.username is None or dl.origin(url) != dl.origin(repo.url):
        return None
    if not repo.password:
        return (repo.username, "")
    if secrets is None:
        raise InvalidState("this server has no key to open stored feed passwords")
    return (repo.username, secrets.open(repo.password))


def _fetch(url: str, auth: tuple[str, str] | None) -> Feed:
    return parse_feed(dl.fetch(url, auth=auth), base_url=url)


def _apply(ctx: Context, repo: Repository, feed: Feed) -> None:
    """Bring the repository's package list in line with the feed. Packages no longer listed
    are forgotten unless they are cached here."""
    repo.title, repo.description, repo.feed_uuid = feed.title, feed.description, feed.uuid
    repo.refreshed_at, repo.last_error = utcnow(), None
    known = {p.guid: p for p in repo.packages}
    seen = set()
    for item in feed.items:
        seen.add(item.guid)
        p = known.get(item.guid)
        if p is None:
            p = Package(repository=repo, guid=item.guid, owner_uuid=repo.owner_uuid,
                        state="remote", name=item.title or item.guid)
            ctx.db.add(p)
        elif p.state == "cached" and p.sha256 and item.sha256 and p.sha256 != item.sha256:
            _remove_file(p)  # a new build under the same guid: the old file is stale
            p.state, p.path, p.size = "remote", None, None
        if not p.name_set:  # what a user set with 6.3 stays
            p.name = item.title or p.name
        if not p.description_set:
            p.description = item.description
        p.version = item.version
        p.virt_class, p.arch = item.virt_class, item.arch
        p.url, p.length, p.sha256 = item.url, item.length, item.sha256
    for guid, p in known.items():
        if guid not in seen and p.state != "cached":
            repo.packages.remove(p)  # else the answer still lists it
            ctx.db.delete(p)


def _already_added(ctx: Context, url: str) -> None:
    if ctx.db.scalar(select(Repository.uuid).where(Repository.url == url)):
        raise Conflict(f"the repository {dl.redact(url)} is already added")


def add(ctx: Context, url: str | None) -> Repository:
    raw = require(url, "url", " (the feed's http or https URL)")
    dl.check_url(raw)
    clean, auth = dl.split_credentials(raw)
    if auth and (len(auth[0]) > 255 or len(auth[1]) > MAX_PASSWORD):
        raise InvalidInput(f"the feed's user name has at most 255 characters and its password "
                           f"at most {MAX_PASSWORD}")
    _already_added(ctx, clean)
    commit_before_slow_work(ctx)  # nothing written yet: fetch with no lock held
    feed = _fetch(clean, auth)
    password = None
    if auth:
        if ctx.secrets is None:
            raise InvalidState("this server has no key to seal feed passwords")
        password = ctx.secrets.seal(auth[1])
    _already_added(ctx, clean)  # added by someone else while this one was fetching
    repo = Repository(url=clean, username=auth[0] if auth else None, password=password,
                      owner_uuid=ctx.user.uuid)
    ctx.db.add(repo)
    ctx.db.flush()
    _apply(ctx, repo, feed)
    ctx.db.flush()
    return repo


def get(ctx: Context, uuid: str, permission: str = "read") -> Repository:
    repo = ctx.db.get(Repository, parse_uuid(uuid, "repository"))
    if repo is None:
        raise NotFound(f"no repository with UUID {uuid}")
    access.require(ctx, repo, permission, "repository")
    return repo


def refresh(ctx: Context, repo: Repository) -> str:
    access.require(ctx, repo, "modify", "repository")
    uuid, url, auth = repo.uuid, repo.url, auth_of(ctx.secrets, repo, repo.url)
    commit_before_slow_work(ctx)  # nothing written yet: fetch with no lock held
    feed = _fetch(url, auth)
    ctx.db.expire_all()  # read again what others may have changed while this one fetched
    repo = get(ctx, uuid, "modify")
    _apply(ctx, repo, feed)
    ctx.db.flush()
    return f"repository refreshed: {len(feed.items)} package(s) listed"


def delete(ctx: Context, repo: Repository) -> str:
    """Forget the repository and its packages, cached copies included, unless a transaction
    is fetching one of them."""
    access.require(ctx, repo, "delete", "repository")
    busy = [p.name for p in repo.packages if p.state == "retrieving"]
    if busy:
        raise InvalidState(f"packages are being retrieved: {', '.join(busy)}; cancel first")
    for p in list(repo.packages):
        _remove_file(p)
        ctx.db.delete(p)  # the relationship does not cascade: it would orphan them
    ctx.db.delete(repo)
    return f"repository {dl.redact(repo.url)} deleted"


def act(ctx: Context, uuid: str, action: str | None) -> str:
    repo = get(ctx, uuid)
    if action == "refresh":
        return refresh(ctx, repo)
    if action == "delete":
        return delete(ctx, repo)
    raise UnknownAction(f"unknown repository action '{action}'; use one of "
                        f"{', '.join(REPO_ACTIONS)}")


def seal_stored_passwords(db: Database, secrets: SecretBox) -> None:
    """At start: seal feed passwords stored in plain text (before they were encrypted)."""
    with db.session() as s:
        repos = [(r, r.password) for r in s.scalars(select(Repository).where(
            Repository.password.is_not(None))) if r.password and not is_sealed(r.password)]
        for r, plain in repos:
            r.password = secrets.seal(plain)
    if repos:
        log.info("sealed %d feed password(s) stored in plain text", len(repos))


def list_repositories(ctx: Context) -> list[Repository]:
    q = select(Repository).order_by(Repository.url)
    if (clause := access.readable(ctx, Repository)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


# -- packages ------------------------------------------------------------------------------

PACKAGE_STATES = ("remote", "retrieving", "cached")


def list_packages(ctx: Context, *, state: str | None = None) -> list[Package]:
    q = select(Package).order_by(Package.name, Package.version, Package.uuid)
    if state and state not in PACKAGE_STATES:
        raise InvalidInput(f"state must be one of {', '.join(PACKAGE_STATES)}, not '{state}'")
    if state:
        q = q.where(Package.state == state)
    if (clause := access.readable(ctx, Package)) is not None:
        q = q.where(clause)
    return list(ctx.db.scalars(q))


def get_package(ctx: Context, uuid: str, permission: str = "read") -> Package:
    p = ctx.db.get(Package, parse_uuid(uuid, "package"))
    if p is None:
        raise NotFound(f"no package with UUID {uuid}")
    access.require(ctx, p, permission, "package")
    return p


def download_permission(p: Package) -> str:
    """A package made by `package` (no repository) is a copy of a machine's disks: taking it
    away needs `export` on it; a feed's package needs `read`."""
    return "export" if p.repository_uuid is None else "read"


def list_downloadable(ctx: Context) -> list[Package]:
    """The cached packages the caller may download (this server's published feed)."""
    return [p for p in list_packages(ctx, state="cached")
            if access.holds(ctx, p, download_permission(p))]


def get_download(ctx: Context, uuid: str) -> Package:
    """A package the caller may download (404 unreadable, 403 readable only)."""
    p = get_package(ctx, uuid)
    access.require(ctx, p, download_permission(p), "package")
    return p


def update_package(ctx: Context, uuid: str, *, name: str | None,
                   description: str | None) -> Package:
    p = get_package(ctx, uuid, "modify")
    if name is None and description is None:
        raise InvalidInput("give name or description to change")
    if name is not None:
        if not name.strip() or len(name) > 255:
            raise InvalidInput("a package name has 1 to 255 characters")
        p.name, p.name_set = name.strip(), True
    if description is not None:
        p.description, p.description_set = description, True
    return p


def _remove_file(p: Package) -> None:
    if p.path:
        Path(p.path).unlink(missing_ok=True)
        Path(p.path + ".part").unlink(missing_ok=True)


def active_transaction(ctx: Context, p: Package) -> Transaction | None:
    return ctx.db.scalar(select(Transaction).where(
        Transaction.target_uuid == p.uuid, Transaction.state.in_(("queued", "running"))))


def retrieving_transaction(ctx: Context, p: Package) -> Transaction | None:
    """The running transaction fetching the package now: the holder of its fetch lock (a
    retrieval, or a provision fetching it first, whose transaction targets the new machine)."""
    return ctx.db.scalar(select(Transaction).join(
        NamedLock, NamedLock.holder == Transaction.uuid).where(
        NamedLock.name == f"package:{p.uuid}", Transaction.state == "running"))


def _busy(ctx: Context, p: Package) -> bool:
    """A retrieval queued or running, or a provision fetching the package (its transaction
    targets the new machine, not the package)."""
    return p.state == "retrieving" or active_transaction(ctx, p) is not None


def delete_package(ctx: Context, uuid: str) -> str:
    """Delete a package: its cached file, and the record (a feed's refresh lists it again)."""
    p = get_package(ctx, uuid, "delete")
    if _busy(ctx, p):
        raise InvalidState(f"package {p.name} is busy with a transaction; cancel it first")
    _remove_file(p)
    ctx.db.delete(p)
    return f"package {p.name} deleted"


def uncache(ctx: Context, uuid: str) -> str:
    """Drop the local copy of a package that a feed lists (it can be retrieved again)."""
    p = get_package(ctx, uuid, "modify")
    if p.repository_uuid is None:
        raise InvalidState(f"package {p.name} was made here; delete it instead")
    if _busy(ctx, p):
        raise InvalidState(f"package {p.name} is busy with a transaction; cancel it first")
    _remove_file(p)
    p.state, p.path, p.size, p.unsynced = "remote", None, None, None
    return f"local copy of {p.name} removed"
