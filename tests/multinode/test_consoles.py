"""A serial console held through one node and taken over through another (issue 17: "a second
viewer either shares the session or takes it over with a message to the first, never a silent
drop"). Two `enomalism serve` nodes on one PostgreSQL database and the real libvirtd, the tiny
guest (tests/guest) printing to its pty serial port: who holds a console is a row every node
reads (`console_holders`), so the viewer on node A is told `taken` with who and when when a
viewer on node B forces it, and a viewer on B without force is refused naming the holder. A
node killed while it holds a console does not hold it for ever: past the lease its row is
stale and the console is free again."""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from enomalism.client import Client
from enomalism.client.console import Console, ConsoleClosed
from tests.conftest import NEEDS_POSTGRES
from tests.guest import Serial
from tests.integration.conftest import tiny_guest  # noqa: F401  (a fixture)
from tests.integration.test_consoles import guest_xml
from tests.multinode.conftest import QEMU_URI, Cluster, Node, wait_for

pytestmark = [NEEDS_POSTGRES, pytest.mark.integration, pytest.mark.guest]
WAIT = 60.0
LEASE = 4  # seconds: a killed node's holder row goes stale quickly here


def read_until(con: Console, wanted: bytes, timeout: float = WAIT) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"never saw {wanted!r}; the console sent {seen[-500:]!r}")
        try:
            seen += con.recv(timeout=min(left, 1.0))
        except TimeoutError:
            continue
    return seen


def shell(con: Console, command: str, answer: bytes) -> bytes:
    con.send(command.encode() + b"\r")
    return read_until(con, answer)


def start(nodes: Cluster) -> tuple[Node, Node, str]:
    a = nodes.node("node-a", hypervisors=(QEMU_URI,), owner_lease=LEASE, owner_renew=1)
    b = nodes.node("node-b", hypervisors=(QEMU_URI,), owner_lease=LEASE, owner_renew=1)
    nodes.start_together(a, b)
    hv = wait_for(lambda: a.hypervisor(QEMU_URI), lambda h: h["status"] == "connected",
                  "qemu:///system to be connected")["uuid"]
    return a, b, hv


def tiny(node: Node, scratch, tiny_image: Path, hv: str) -> tuple[str, Serial]:  # noqa: ANN001
    """The tiny guest, running and at its prompt."""
    pool = scratch.pool  # made first: it makes the scratch directory
    disk = Path(scratch.dir) / f"{scratch.domain_name()}.qcow2"
    shutil.copyfile(tiny_image, disk)
    os.chmod(disk, 0o644)
    pool.refresh(0)
    log = Path(scratch.dir) / "serial.log"
    uuid = node.ok("PUT", "/rest/machines/", data={
        "xmldesc": guest_xml(scratch.domain_name(), disk, log), "hvmuuid": hv})["machine"]
    scratch.track(uuid)
    node.ok("POST", f"/rest/machine/{uuid}/actions/create/")
    serial = Serial(log)
    serial.wait("GUEST-READY", timeout=180)
    return uuid, serial


def user_with_control(node: Node, uuid: str, name: str) -> tuple[str, str]:
    password = "correct-horse-battery"
    body = node.ok("POST", "/rest/user/create/", data={"username": name, "password": password})
    node.ok("PUT", f"/rest/permissions/{uuid}/",
            data={"permission": "control", "user": body["uuid"]})
    return name, password


def url(node: Node) -> str:
    return f"http://127.0.0.1:{node.port}"


def holder(nodes: Cluster, uuid: str) -> tuple | None:
    rows = nodes.rows("SELECT username, node_id FROM console_holders WHERE machine_uuid = :u",
                      u=uuid)
    return tuple(rows[0]) if rows else None


def test_a_console_taken_over_through_another_node_tells_the_first_viewer(
        qemu_nodes: Cluster, scratch, tiny_guest) -> None:  # noqa: ANN001, F811
    nodes = qemu_nodes
    a, b, hv = start(nodes)
    uuid, _ = tiny(a, scratch, tiny_guest, hv)
    bob = user_with_control(a, uuid, "bob")
    said: list[str] = []
    with Client(url(a), "admin", nodes.password) as admin, Client(url(b), *bob) as c:
        first = admin.machines.console(uuid, notify=said.append)
        shell(first, "echo FIRST-$((1+1))", b"FIRST-2")
        assert holder(nodes, uuid) == ("admin", "node-a")

        # Without force, node B refuses, naming the holder it read in the database.
        with pytest.raises(ConsoleClosed) as refused:
            c.machines.console(uuid).recv(timeout=WAIT)
        assert refused.value.code == 4409
        assert "admin holds" in str(refused.value) and "force" in str(refused.value)
        shell(first, "echo STILL-$((2+2))", b"STILL-4")  # the first viewer kept it

        # With force, node B takes it; node A tells its viewer who and when: no silent drop,
        # no "console lost" and no attempt to open it again.
        before = time.time()
        second = c.machines.console(uuid, force=True)
        with pytest.raises(ConsoleClosed) as taken:
            read_until(first, b"never printed")
        assert (taken.value.code, taken.value.taken_by) == (4409, "bob"), taken.value
        assert taken.value.reconnect is False
        assert taken.value.taken_at and "bob took the console over at" in str(taken.value)
        when = time.mktime(time.strptime(taken.value.taken_at[:19], "%Y-%m-%dT%H:%M:%S"))
        assert abs(when - time.timezone - before) < 120  # UTC, about now (not a speed check)
        assert said == [], said
        assert first.reconnects == 0
        shell(second, "echo SECOND-$((3+3))", b"SECOND-6")
        assert holder(nodes, uuid) == ("bob", "node-b")

        # Node A's audit entry of the first session says who took it.
        wait_for(lambda: taken_entries(nodes, uuid), lambda e: len(e) == 1,
                 "node A's audit entry of the session taken over")

        # Node B's viewer dies with its node: past the lease, the console is free again.
        b.kill()
        wait_for(lambda: _opens(admin, uuid), lambda con: con is not None,
                 "the console to be free once node B's holder row went stale", timeout=WAIT)
        second.close()


def taken_entries(nodes: Cluster, uuid: str) -> list:
    rows = nodes.rows("SELECT actor_name, detail FROM audit_log WHERE action = "
                      "'machine.console' AND object_uuid = :u", u=uuid)
    return [r for r in rows if r[0] == "admin" and _detail(r[1]).get("taken_by") == "bob"]


def _detail(value: object) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


def _opens(admin: Client, uuid: str) -> Console | None:
    """The console, opened without force, answering a command; None while it is refused."""
    try:
        con = admin.machines.console(uuid, reconnect=False)
        shell(con, "echo THIRD-$((4+5))", b"THIRD-9")
    except ConsoleClosed as e:
        if e.code != 4409:
            raise
        return None
    con.close()
    return con
