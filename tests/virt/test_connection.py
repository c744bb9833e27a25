"""HypervisorLink and open_connection against a host that accepts TCP connections and never
answers (tests/integration/relay.py's BlackHole): libvirt's own open then waits for ever, so
the time limit is ours, and a link must not start one more such attempt at every retry (each
would leave a thread and a socket behind for good). Needs no libvirtd: the client side of
qemu+tcp:// is all that runs."""

import threading

import pytest

from enomalism.errors import HypervisorUnreachable
from enomalism.virt import connection
from enomalism.virt.connection import HypervisorLink, noninteractive, open_connection
from tests.integration.conftest import wait_for
from tests.integration.relay import BlackHole


class Listener:
    def __init__(self) -> None:
        self.disconnects: list[str] = []

    def connected(self, link, conn) -> None:  # noqa: ANN001
        raise AssertionError("a black hole never connects")

    def disconnected(self, link, reason: str) -> None:  # noqa: ANN001
        self.disconnects.append(reason)

    def domain_event(self, link, uuid: str, event: int, detail: int) -> None:  # noqa: ANN001
        pass


@pytest.fixture
def black_hole():
    b = BlackHole()
    yield b
    b.close()


def open_threads() -> int:
    return sum(t.name == "libvirt-open" and t.is_alive() for t in threading.enumerate())


def test_open_gives_up_after_its_time_limit(black_hole):
    before = open_threads()
    with pytest.raises(HypervisorUnreachable, match="did not answer within"):
        open_connection(black_hole.uri(), timeout=0.5)
    assert black_hole.held() == 1
    black_hole.release()  # the attempt left behind then fails and its thread ends
    wait_for(open_threads, lambda n: n <= before, "the abandoned attempt's thread to end")


def test_a_link_keeps_one_attempt_on_a_host_that_never_answers(black_hole, monkeypatch):
    monkeypatch.setattr(connection, "OPEN_TIMEOUT", 0.2)
    monkeypatch.setattr(connection, "BACKOFF_MAX", 0.5)
    link = HypervisorLink("0" * 36, black_hole.uri(), Listener())
    link.start()
    try:
        assert link.first_attempt.wait(30)
        assert link.status == "disconnected" and "did not answer" in link.last_error
        for _ in range(5):  # five more rounds, back-off skipped: each waits on the same attempt
            link.reconnect_now()
            wait_for(link._wake.is_set, lambda woken: not woken, "the link to wake")
        assert black_hole.accepted == 1 and black_hole.held() == 1

        black_hole.release()  # the attempt fails: a later round tries a new one
        link.reconnect_now()
        wait_for(lambda: black_hole.accepted, lambda n: n >= 2, "a new connect attempt")
    finally:
        link.stop()
    assert link.status == "disconnected"


@pytest.mark.parametrize(("uri", "opened"), [
    ("qemu+ssh://root@node2/system", "qemu+ssh://root@node2/system?no_tty=1"),
    ("qemu+ssh://node2/system?keyfile=/k", "qemu+ssh://node2/system?keyfile=/k&no_tty=1"),
    ("qemu+ssh://node2/system?no_tty=0", "qemu+ssh://node2/system?no_tty=0"),
    ("qemu+tcp://node2/system", "qemu+tcp://node2/system"),
    ("qemu:///system", "qemu:///system"),
])
def test_ssh_never_asks_for_a_password(uri, opened):
    assert noninteractive(uri) == opened
