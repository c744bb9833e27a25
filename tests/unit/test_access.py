"""The access rules (services/access.py) on a small world in a real database: `holds` for each
rule, `readable` (the SQL the lists use) agreeing with `holds` for every user and object, 404 and
403 from `require`; and the credential cache (services/auth.py)."""

import pytest
from sqlalchemy import select

from enomalism.errors import Forbidden, InvalidInput, MissingVariable, NotFound
from enomalism.services import access, auth, users
from enomalism.services.auth import CredentialCache
from enomalism.services.context import Context, Principal
from enomalism.store.db import Database
from enomalism.store.models import Cluster, Grant, Group, Hypervisor, Machine, User

MODELS = (Machine, Hypervisor, Cluster, User, Group)


@pytest.fixture(scope="module")
def world(tmp_path_factory):  # noqa: ANN001, ANN201
    """Users admin, alice (in team), bob (owns group other), carol; host1 (no owner) with hv1
    (team holds control) and hv2 (owned by carol, bob holds admin); VMs vm1 in cluster c1 (bob
    reads c1, granted by admin), vm2 in c2 (owned by alice), vm3 (alice reads), vm4 (team
    controls), vm5 on hv2, vm6 (owned by bob), vm7 (team holds admin); host2 owned by bob.
    The back door: alice's cluster c3 holds vm3, vm6 and vm7, and alice grants it to carol;
    bob's cluster c4 holds vm6, and bob grants it to carol."""
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('access') / 'a.db'}")
    db.migrate()
    o: dict[str, object] = {}
    with db.session() as s:
        for name in ("admin", "alice", "bob", "carol"):
            o[name] = User(username=name, password_hash="x", is_admin=name == "admin")
        o["team"] = Group(name="team", users=[o["alice"]])
        o["other"] = Group(name="other", owner_uuid=None)
        o["host1"] = Machine(kind="host", name="host1")
        s.add_all(o.values())
        s.flush()
        o["other"].owner_uuid = o["bob"].uuid
        o["host2"] = Machine(kind="host", name="host2", owner_uuid=o["bob"].uuid)
        o["hv1"] = Hypervisor(machine_uuid=o["host1"].uuid, virt_class="test", virt_url="t:1")
        o["hv2"] = Hypervisor(machine_uuid=o["host1"].uuid, virt_class="test", virt_url="t:2",
                              owner_uuid=o["carol"].uuid)
        s.add_all([o["host2"], o["hv1"], o["hv2"]])
        s.flush()
        for i in range(1, 8):
            o[f"vm{i}"] = Machine(kind="vm", name=f"vm{i}",
                                  parent_uuid=(o["hv2"] if i == 5 else o["hv1"]).uuid,
                                  owner_uuid=o["bob"].uuid if i == 6 else None)
        o["c1"] = Cluster(name="c1", machines=[o["vm1"]])
        o["c2"] = Cluster(name="c2", machines=[o["vm2"]], owner_uuid=o["alice"].uuid)
        o["c3"] = Cluster(name="c3", machines=[o["vm3"], o["vm6"], o["vm7"]],
                          owner_uuid=o["alice"].uuid)
        o["c4"] = Cluster(name="c4", machines=[o["vm6"]], owner_uuid=o["bob"].uuid)
        s.add_all([o[f"vm{i}"] for i in range(1, 8)] + [o[f"c{i}"] for i in range(1, 5)])
        s.flush()
        for obj, who, permission, by in [
                ("vm3", "alice", "read", "admin"), ("vm4", "team", "control", "admin"),
                ("hv1", "team", "control", "admin"), ("c1", "bob", "read", "admin"),
                ("hv2", "bob", "admin", "admin"), ("vm7", "team", "admin", "admin"),
                ("c3", "carol", "read", "alice"), ("c4", "carol", "read", "bob")]:
            s.add(Grant(object_uuid=o[obj].uuid, object_type="x",
                        principal_type="group" if who == "team" else "user",
                        principal_uuid=o[who].uuid, permission=permission,
                        created_by=o[by].uuid))
        ids = {k: v.uuid for k, v in o.items()}
    yield db, ids
    db.dispose()


def ctx_for(db: Database, ids: dict, name: str, s) -> Context:  # noqa: ANN001
    u = s.get(User, ids[name])
    return Context(db=s, registry=None, user=Principal(u.uuid, u.username, u.is_admin))


def obj(s, ids: dict, key: str):  # noqa: ANN001, ANN201
    return next(x for m in MODELS if (x := s.get(m, ids[key])) is not None)


HOLDS = [
    # explicit grants, and any grant implies read
    ("alice", "vm3", "read", True), ("alice", "vm3", "control", False),
    # a group grant applies to its members
    ("alice", "vm4", "control", True), ("alice", "vm4", "read", True),
    ("alice", "vm4", "delete", False), ("bob", "vm4", "read", False),
    # control on a hypervisor lets its machines be read, not controlled
    ("alice", "hv1", "control", True), ("alice", "vm5", "read", False),
    ("alice", "vm1", "read", True), ("alice", "vm6", "read", True),
    ("alice", "vm1", "control", False), ("alice", "hv1", "delete", False),
    # read on a cluster lets its machines be read, nothing more
    ("bob", "vm1", "read", True), ("bob", "vm1", "modify", False), ("bob", "vm2", "read", False),
    ("bob", "c1", "modify", False),
    # a grant on a cluster shares a machine only when its granter may share the machine:
    # alice only reads vm3, so her grant of c3 gives carol nothing of it; she holds admin on
    # vm7 through team, and bob owns vm6 (which c4, granted by him, shares)
    ("carol", "c3", "read", True), ("carol", "vm3", "read", False),
    ("carol", "vm7", "read", True), ("carol", "vm7", "control", False),
    ("carol", "vm6", "read", True), ("carol", "vm6", "control", False),
    # owners may do everything with what they own
    ("alice", "c2", "delete", True), ("alice", "c2", "admin", True),
    ("alice", "vm2", "control", False), ("bob", "vm6", "delete", True),
    ("bob", "host2", "admin", True), ("carol", "hv2", "delete", True),
    ("carol", "vm5", "read", True), ("carol", "vm5", "control", False),
    # admin granted on an object implies every permission on it
    ("bob", "hv2", "delete", True), ("bob", "hv2", "control", True), ("bob", "vm5", "read", True),
    # users read and modify themselves, nothing more
    ("alice", "alice", "read", True), ("alice", "alice", "modify", True),
    ("alice", "alice", "delete", False), ("alice", "alice", "admin", False),
    ("alice", "bob", "read", False),
    # members read their group; owners do everything with it
    ("alice", "team", "read", True), ("alice", "team", "modify", False),
    ("bob", "team", "read", False), ("bob", "other", "delete", True),
    ("alice", "other", "read", False),
    # nobody owns host1: nobody but the administrator reads it
    ("alice", "host1", "read", False), ("carol", "host1", "read", False),
    # administrators may do everything
    *[("admin", k, p, True) for k in ("vm5", "hv2", "c1", "alice", "team", "host1")
      for p in access.PERMISSIONS],
]


@pytest.mark.parametrize("user, key, permission, expected", HOLDS,
                         ids=[f"{u}-{k}-{p}" for u, k, p, _ in HOLDS])
def test_holds(world, user, key, permission, expected):
    db, ids = world
    with db.session(write=False) as s:
        assert access.holds(ctx_for(db, ids, user, s), obj(s, ids, key), permission) is expected


@pytest.mark.parametrize("user", ["admin", "alice", "bob", "carol"])
@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_readable_agrees_with_holds(world, user, model):
    """The lists (SQL) show exactly what the rule (Python) lets the user read."""
    db, ids = world
    with db.session(write=False) as s:
        ctx = ctx_for(db, ids, user, s)
        everything = list(s.scalars(select(model)))
        clause = access.readable(ctx, model)
        listed = everything if clause is None else list(s.scalars(select(model).where(clause)))
        assert {x.uuid for x in listed} == \
            {x.uuid for x in everything if access.holds(ctx, x, "read")}
        if user != "admin":
            assert len(listed) < len(everything)


def test_require_answers_404_when_unreadable_and_403_when_readable(world):
    db, ids = world
    with db.session(write=False) as s:
        ctx = ctx_for(db, ids, "alice", s)
        with pytest.raises(NotFound) as e:
            access.require(ctx, obj(s, ids, "vm5"), "read", "machine")
        assert e.value.status == 404 and ids["vm5"] in e.value.message
        with pytest.raises(NotFound):  # not 403: nothing is said about what cannot be read
            access.require(ctx, obj(s, ids, "vm5"), "delete", "machine")
        with pytest.raises(Forbidden) as e:
            access.require(ctx, obj(s, ids, "vm3"), "modify", "machine")
        assert (e.value.status, e.value.errno) == (403, 1101) and "'modify'" in e.value.message
        access.require(ctx, obj(s, ids, "vm4"), "control", "machine")


def test_require_admin(world):
    db, ids = world
    with db.session(write=False) as s:
        access.require_admin(ctx_for(db, ids, "admin", s), "do it")
        with pytest.raises(Forbidden, match="only an administrator may do it"):
            access.require_admin(ctx_for(db, ids, "bob", s), "do it")


def test_principals_are_read_once_per_request(world):
    db, ids = world
    with db.session(write=False) as s:
        ctx = ctx_for(db, ids, "alice", s)
        assert access.principals(ctx) == {ids["alice"], ids["team"]}
        assert access.principals(ctx) is access.principals(ctx)


@pytest.mark.parametrize("name, error", [(None, MissingVariable), ("", MissingVariable),
                                         ("write", InvalidInput), ("Read", InvalidInput)])
def test_check_permission(name, error):
    with pytest.raises(error):
        access.check_permission(name)
    for p in access.PERMISSIONS:
        assert access.check_permission(p) == p


def test_find_object_knows_every_kind(world):
    db, ids = world
    with db.session(write=False) as s:
        ctx = ctx_for(db, ids, "admin", s)
        for key, kind in [("vm1", "machine"), ("host1", "machine"), ("hv1", "hypervisor"),
                          ("c1", "cluster"), ("alice", "user"), ("team", "group")]:
            assert access.find_object(ctx, ids[key])[0] == kind
        with pytest.raises(NotFound):
            access.find_object(ctx, "12345678-1234-1234-1234-123456789abc")


# -- the credential cache ------------------------------------------------------------------------

ALICE = Principal("u-alice", "alice", False)
BOB = Principal("u-bob", "bob", False)


def test_a_cached_credential_is_found_only_with_its_password():
    cache = CredentialCache(ttl=60)
    assert cache.get("alice", "pw-one-two") is None
    cache.put("alice", "pw-one-two", ALICE)
    assert cache.get("alice", "pw-one-two") == ALICE
    assert cache.get("alice", "pw-one-twO") is None
    assert cache.get("Alice", "pw-one-two") is None
    # name and password are not simply joined: ("a", "b\0c") is not ("a\0b", "c")
    cache.put("a", "b\0c", ALICE)
    assert cache.get("a\0b", "c") is None


def test_entries_expire(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    cache = CredentialCache(ttl=60)
    cache.put("alice", "pw-one-two", ALICE)
    now[0] += 59
    assert cache.get("alice", "pw-one-two") == ALICE
    now[0] += 2
    assert cache.get("alice", "pw-one-two") is None
    assert cache._entries == {}


def test_forget_drops_every_entry_of_one_user_only():
    cache = CredentialCache(ttl=60)
    cache.put("alice", "old-password", ALICE)
    cache.put("alice", "new-password", ALICE)
    cache.put("bob", "bobs-password", BOB)
    cache.forget(ALICE.uuid)
    assert cache.get("alice", "old-password") is None
    assert cache.get("alice", "new-password") is None
    assert cache.get("bob", "bobs-password") == BOB


def test_the_cache_never_holds_a_password():
    cache, other = CredentialCache(ttl=60), CredentialCache(ttl=60)
    cache.put("alice", "hunter2-hunter2", ALICE)
    other.put("alice", "hunter2-hunter2", ALICE)
    [key] = cache._entries
    assert b"hunter2" not in key and len(key) == 32
    assert set(other._entries) != {key}  # keyed by a per-process random key


def test_the_cache_is_bounded():
    cache = CredentialCache(ttl=60)
    for i in range(10_002):
        cache.put(f"u{i}", "pw", ALICE)
    assert len(cache._entries) <= 10_001


def test_forgetting_again_after_commit(world):
    """A request that verified the old password while the change was being committed must not
    leave it cached: the user's entries are dropped again once the change commits."""
    db, ids = world
    cache = CredentialCache(ttl=60)
    with db.session() as s:
        alice = s.get(User, ids["alice"])
        ctx = Context(db=s, registry=None, user=Principal(ids["admin"], "admin", True),
                      credentials=cache)
        who = Principal(alice.uuid, "alice", False)
        cache.put("alice", "old-password", who)
        users.forget_credentials(ctx, alice.uuid)
        assert cache.get("alice", "old-password") is None
        cache.put("alice", "old-password", who)  # verified meanwhile, against the old hash
    assert cache.get("alice", "old-password") is None


@pytest.mark.parametrize("password, ok", [
    ("ten-chars!", True), ("nine-char", False), ("alice", False), ("ALICE-is-me", True),
    ("xy" * 512, True), ("xy" * 512 + "z", False), ("ab" * 5, True), ("cccccccccccc", False)])
def test_password_rules(password, ok):
    if ok:
        assert users.check_password(password, "alice") == password
    else:
        with pytest.raises(InvalidInput):
            users.check_password(password, "alice")


def test_password_may_not_be_the_user_name_in_any_case():
    with pytest.raises(InvalidInput, match="user name"):
        users.check_password("Long-Username", "long-username")

