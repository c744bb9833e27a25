"""Who holds a serial console, seen by every node (services/consoles.py `Holders`): two nodes'
holders on one database (SQLite here, PostgreSQL with ENOMALISM_TEST_DATABASE=postgresql). A
viewer on the other node is refused naming the holder, or with force takes the console over,
and the first node then reads who took it and when; a row of a node that stopped renewing its
heartbeat is stale; a session's end deletes its own row only."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from enomalism.errors import ConsoleBusy
from enomalism.services.consoles import Holders, Target, Viewer
from enomalism.services.context import Principal
from enomalism.store.db import Database
from enomalism.store.models import ConsoleHolder, Node, User, utcnow
from tests.conftest import database_url

MACHINE = "6f0e5a4c-6d7e-4a51-9d43-2f6b1b8d2c11"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    d = Database(database_url(tmp_path) or f"sqlite:///{tmp_path / 'db.sqlite'}")
    d.migrate()
    with d.session() as s:
        for name in ("alice", "bob"):
            s.add(User(uuid=f"00000000-0000-4000-8000-0000000000{len(name):02d}",
                       username=name, password_hash="x"))
        for node in ("a", "b"):
            s.add(Node(id=node, hostname="here", seen_at=utcnow()))
    yield d
    d.dispose()


def viewer(name: str) -> Viewer:
    user = Principal(uuid=f"00000000-0000-4000-8000-0000000000{len(name):02d}", username=name,
                     is_admin=False)
    return Viewer(user=user, source="127.0.0.1", kind="serial",
                  target=Target(MACHINE, "vm", "hv", "test:///default"))


def rows(db: Database) -> list[tuple[str, str]]:
    with db.session(write=False) as s:
        return [(r.username, r.node_id) for r in s.scalars(select(ConsoleHolder))]


def test_a_viewer_on_another_node_is_refused_or_takes_over_and_the_first_node_learns_it(
        db: Database) -> None:
    a, b = Holders(db, "a"), Holders(db, "b")
    first, second = viewer("alice"), viewer("bob")
    a.enter(first, force=False)
    assert rows(db) == [("alice", "a")]
    with pytest.raises(ConsoleBusy, match="alice holds"):
        b.enter(second, force=False)
    assert rows(db) == [("alice", "a")] and not a.taken(first)
    b.enter(second, force=True)
    assert rows(db) == [("bob", "b")]
    assert a.taken(first)  # what node A asks when libvirt ended its stream
    assert (first.taken_by, first.taken_at) == ("bob", second.since)
    a.leave(first)  # the first session's end does not free the second's console
    assert rows(db) == [("bob", "b")] and not b.taken(second)
    b.leave(second)
    assert rows(db) == []


def test_a_row_of_a_node_gone_silent_is_stale_and_a_restart_drops_its_own(
        db: Database) -> None:
    a, b = Holders(db, "a", lease=20), Holders(db, "b", lease=20)
    b.enter(viewer("bob"), force=False)
    with pytest.raises(ConsoleBusy):
        a.enter(viewer("alice"), force=False)
    with db.session() as s:  # node B stopped renewing its heartbeat a while ago
        s.get(Node, "b").seen_at = utcnow() - timedelta(seconds=60)
    a.enter(viewer("alice"), force=False)
    assert rows(db) == [("alice", "a")]
    Holders(db, "a")  # node A starts again: its sessions before are gone
    assert rows(db) == []


def test_one_node_s_own_sessions_take_over_at_once(db: Database) -> None:
    a = Holders(db, "a")
    first, second = viewer("alice"), viewer("bob")
    told: list[str] = []
    first.on_taken = told.append
    a.enter(first, force=False)
    with pytest.raises(ConsoleBusy):
        a.enter(second, force=False)
    a.enter(second, force=True)
    assert told == ["bob"] and first.taken_by == "bob"
    assert rows(db) == [("bob", "a")]
