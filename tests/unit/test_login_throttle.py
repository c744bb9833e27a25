"""LoginThrottle on a clock the tests move: the window, Retry-After, what is keyed apart, and a
success clearing the count. No sleeping."""

import pytest

from enomalism.errors import TooManyRequests
from enomalism.services import auth
from enomalism.services.auth import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(auth.time, "monotonic", c)
    return c


def fail(t: LoginThrottle, n: int, user: str = "alice", source: str = "10.0.0.1") -> None:
    for _ in range(n):
        t.check(user, source)
        t.failed(user, source)


def refused(t: LoginThrottle, user: str = "alice", source: str = "10.0.0.1") -> int:
    """Assert the throttle refuses; return its retry_after."""
    with pytest.raises(TooManyRequests) as e:
        t.check(user, source)
    assert e.value.errno == 1102 and e.value.status == 429
    assert user in e.value.message and source in e.value.message
    return e.value.extra["retry_after"]


def test_four_failures_are_allowed_the_fifth_refuses_the_next(clock):
    t = LoginThrottle()
    fail(t, 4)
    t.check("alice", "10.0.0.1")
    t.failed("alice", "10.0.0.1")
    assert 60 <= refused(t) <= 61  # until the oldest failure is a minute old


def test_retry_after_counts_down_from_the_oldest_failure(clock):
    t = LoginThrottle()
    fail(t, 1)
    clock.now += 20
    fail(t, 4)
    assert 40 <= refused(t) <= 41
    clock.now += 30
    assert 10 <= refused(t) <= 11
    clock.now += 10.5  # the first failure is now older than the window
    t.check("alice", "10.0.0.1")


def test_failures_older_than_the_window_do_not_count(clock):
    t = LoginThrottle()
    fail(t, 4)
    clock.now += 60
    fail(t, 4)
    t.check("alice", "10.0.0.1")
    t.failed("alice", "10.0.0.1")
    refused(t)


def test_after_a_minute_the_user_may_try_again(clock):
    t = LoginThrottle()
    fail(t, 5)
    refused(t)
    clock.now += 59.9
    refused(t)
    clock.now += 0.2
    t.check("alice", "10.0.0.1")


@pytest.mark.parametrize("user, source", [("bob", "10.0.0.1"), ("alice", "10.0.0.2"),
                                          ("Alice", "10.0.0.1")])
def test_another_user_name_or_address_is_not_affected(clock, user, source):
    t = LoginThrottle()
    fail(t, 5)
    refused(t)
    t.check(user, source)
    fail(t, 4, user, source)
    t.check(user, source)


def test_a_success_clears_the_count(clock):
    t = LoginThrottle()
    fail(t, 4)
    t.succeeded("alice", "10.0.0.1")
    fail(t, 4)
    t.check("alice", "10.0.0.1")


def test_a_success_elsewhere_does_not_clear_it(clock):
    t = LoginThrottle()
    fail(t, 5)
    t.succeeded("alice", "10.0.0.2")
    t.succeeded("bob", "10.0.0.1")
    refused(t)


def test_limit_and_window_are_settable(clock):
    t = LoginThrottle(limit=2, window=10)
    fail(t, 2)
    assert 10 <= refused(t) <= 11
    clock.now += 10
    t.check("alice", "10.0.0.1")


def test_memory_is_bounded(clock):
    t = LoginThrottle()
    for i in range(100_002):
        t.failed(f"user{i}", "10.0.0.1")
    assert len(t._failures) <= 100_001
