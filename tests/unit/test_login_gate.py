"""The bound on password verifications in flight (issue 12, class 9; `auth.LoginGate`): one
address holds at most its share, the server at most its slots, a login waits its turn for a
bounded time and is then refused with an errno; a refusal holds nothing."""

import anyio
import pytest

from enomalism.errors import LoginsBusy, LoginsInFlight
from enomalism.services.auth import LoginGate, address_key


async def _hold(gate: LoginGate, source: str, held: anyio.Event, release: anyio.Event) -> None:
    async with gate.admit(source):
        held.set()
        await release.wait()


async def _try(gate: LoginGate, source: str) -> str:
    """'in' when admitted, else the errno of the refusal."""
    try:
        async with gate.admit(source):
            return "in"
    except (LoginsInFlight, LoginsBusy) as e:
        assert e.extra["retry_after"] == 1 and e.message
        return str(e.errno)


def run(scenario) -> object:  # noqa: ANN001
    return anyio.run(scenario)


def holding(gate: LoginGate, sources: list[str]):  # noqa: ANN201
    """An async context: `sources` each hold a slot for the block."""
    class Holding:
        async def __aenter__(self) -> None:
            self.release = anyio.Event()
            self.tg = anyio.create_task_group()
            await self.tg.__aenter__()
            for s in sources:
                held = anyio.Event()
                self.tg.start_soon(_hold, gate, s, held, self.release)
                await held.wait()

        async def __aexit__(self, *exc: object) -> None:
            self.release.set()
            await self.tg.__aexit__(None, None, None)
    return Holding()


def test_one_address_holds_at_most_its_share():
    async def scenario() -> tuple:
        gate = LoginGate(slots=4, per_address=2, wait=0.1)
        async with holding(gate, ["10.0.0.1", "10.0.0.1"]):
            return await _try(gate, "10.0.0.1"), await _try(gate, "10.0.0.2")
    assert run(scenario) == ("1141", "in")


def test_the_server_holds_at_most_its_slots():
    async def scenario() -> tuple:
        gate = LoginGate(slots=2, per_address=2, wait=0.1)
        gate.succeeded("10.0.0.1")  # may take the slot kept for known addresses
        async with holding(gate, ["10.0.0.2", "10.0.0.1"]):
            busy = await _try(gate, "10.0.0.3")
        return busy, await _try(gate, "10.0.0.3")
    assert run(scenario) == ("1142", "in")


def test_a_login_waits_for_a_slot_that_frees():
    async def scenario() -> str:
        gate = LoginGate(slots=1, per_address=1, wait=30)
        release, held = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_hold, gate, "10.0.0.1", held, release)
            await held.wait()
            result = []

            async def waiter() -> None:
                result.append(await _try(gate, "10.0.0.2"))
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            assert result == []  # queued, not refused
            release.set()
        return result[0]
    assert run(scenario) == "in"


def test_refusals_hold_nothing():
    async def scenario() -> list[str]:
        gate = LoginGate(slots=2, per_address=1, wait=0.05)
        gate.succeeded("10.0.0.2")
        async with holding(gate, ["10.0.0.1", "10.0.0.2"]):
            refused = [await _try(gate, f"10.0.0.{i}") for i in (1, 2, 3)]
        assert refused == ["1141", "1141", "1142"]
        async with holding(gate, ["10.0.0.1", "10.0.0.2"]):  # both slots free again
            pass
        return sorted(gate._addresses)  # and no address is remembered
    assert run(scenario) == []


@pytest.mark.parametrize("a, b", [
    ("2001:db8::1", "2001:db8::ffff:1"),       # one IPv6 /64 is one host
    ("::ffff:192.0.2.7", "192.0.2.7"),         # IPv4-mapped is the IPv4 address
])
def test_addresses_that_are_one_host_share_a_bound(a, b):
    assert address_key(a) == address_key(b)
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")


def test_an_address_that_logged_in_goes_first():
    async def scenario() -> list[str]:
        gate = LoginGate(slots=1, per_address=2, wait=30)
        gate.succeeded("10.0.0.3")
        order: list[str] = []
        release, held = anyio.Event(), anyio.Event()

        async def login(source: str) -> None:
            async with gate.admit(source):
                order.append(source)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_hold, gate, "10.0.0.1", held, release)
            await held.wait()
            for source in ("10.0.0.2", "10.0.0.4", "10.0.0.3"):  # the known one arrives last
                tg.start_soon(login, source)
                await anyio.sleep(0.01)
            release.set()
        return order
    assert run(scenario) == ["10.0.0.3", "10.0.0.2", "10.0.0.4"]


def test_a_login_that_gives_up_passes_its_turn_on():
    async def scenario() -> str:
        gate = LoginGate(slots=1, per_address=1, wait=0.05)
        async with holding(gate, ["10.0.0.1"]):
            assert await _try(gate, "10.0.0.2") == "1142"  # gave up waiting
        return await _try(gate, "10.0.0.2")  # the slot came back, not lost to the quitter
    assert run(scenario) == "in"


def test_a_slot_is_kept_for_addresses_that_logged_in():
    async def scenario() -> tuple:
        gate = LoginGate(slots=2, per_address=2, wait=0.05)
        gate.succeeded("10.0.0.9")
        async with holding(gate, ["10.0.0.1"]):  # a spray holds what it may: one slot
            return await _try(gate, "10.0.0.2"), await _try(gate, "10.0.0.9")
    assert run(scenario) == ("1142", "in")
