"""services/auth.py CredentialCache: verified credentials remembered for a while, keyed by an
HMAC so that the cache never holds a password."""

from enomalism.services.auth import CredentialCache
from enomalism.services.context import Principal

ALICE = Principal(uuid="u-alice", username="alice", is_admin=False)
BOB = Principal(uuid="u-bob", username="bob", is_admin=True)


def test_remembers_a_verified_credential():
    cache = CredentialCache(ttl=3600)
    cache.put("alice", "s3cret", ALICE)
    assert cache.get("alice", "s3cret") == ALICE


def test_another_password_or_user_misses():
    cache = CredentialCache(ttl=3600)
    cache.put("alice", "s3cret", ALICE)
    assert cache.get("alice", "s3cret ") is None
    assert cache.get("alice", "S3cret") is None
    assert cache.get("bob", "s3cret") is None
    assert cache.get("alice\0s3cret", "") is None


def test_user_and_password_cannot_be_shifted_across_the_separator():
    cache = CredentialCache(ttl=3600)
    cache.put("ali", "ce:pw", ALICE)
    assert cache.get("alice", ":pw") is None
    assert cache.get("ali:ce", "pw") is None


def test_an_expired_entry_misses_and_is_dropped():
    cache = CredentialCache(ttl=-1)  # expired as soon as it is written
    cache.put("alice", "s3cret", ALICE)
    assert cache.get("alice", "s3cret") is None
    assert cache._entries == {}


def test_forget_drops_every_credential_of_one_user():
    cache = CredentialCache(ttl=3600)
    cache.put("alice", "old", ALICE)
    cache.put("alice", "new", ALICE)
    cache.put("bob", "pw", BOB)
    cache.forget("u-alice")
    assert cache.get("alice", "old") is None and cache.get("alice", "new") is None
    assert cache.get("bob", "pw") == BOB


def test_never_holds_a_password():
    cache = CredentialCache(ttl=3600)
    cache.put("alice", "correct horse battery", ALICE)
    [(key, value)] = cache._entries.items()
    assert len(key) == 32 and b"correct" not in key and b"alice" not in key
    assert "correct" not in repr(value)


def test_keys_differ_between_processes():
    a, b = CredentialCache(ttl=3600), CredentialCache(ttl=3600)
    a.put("alice", "pw", ALICE)
    b.put("alice", "pw", ALICE)
    assert set(a._entries) != set(b._entries)


def test_size_is_bounded():
    cache = CredentialCache(ttl=3600)
    for i in range(10_050):
        cache.put(f"user{i}", "pw", ALICE)
    assert len(cache._entries) <= 10_001
    assert cache.get("user10049", "pw") == ALICE  # the newest survives
