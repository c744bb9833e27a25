"""Moving machines between two real libvirt hosts (the main one and tests/secondhost.py's):
`set_parent` of a running tiny guest migrates it live with its disk, its serial console
counting on across the move; a cancel in the middle leaves it running where it was; a stopped
machine moves with its disk; `evacuate` empties a host of three machines; and the moves that
cannot be are refused with nothing changed.

Slow tests are few: one guest serves the cancel, the refusal of a locked machine and the
migration itself. Guests are TCG (domain type qemu)."""

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import libvirt
import pytest

from enomalism.cli import console as term
from enomalism.client import Client
from enomalism.config import Settings
from tests import guest
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, Api, database_url, expect_error
from tests.integration.conftest import URI, Host, Qemu, Scratch, wait_for
from tests.integration.provision_helpers import log_lines, wait_tx
from tests.integration.test_consoles import Screen
from tests.integration.test_second_host import register
from tests.secondhost import SecondHost

pytestmark = [pytest.mark.integration, pytest.mark.multihost]

TICK = "enomalism-test-tick"  # the OEM string that makes the tiny guest count (TICK-n)


def ticking_xml(name: str, disk: str, log: Path) -> str:
    """The tiny guest, counting on its serial console, which is a pty (for consoles) logged
    to `log` (appended to: the target host's QEMU goes on writing it after a migration)."""
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>"
        "<sysinfo type='smbios'><oemStrings>"
        f"<entry>{TICK}</entry></oemStrings></sysinfo>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/>"
        "<smbios mode='sysinfo'/></os><features><acpi/><apic/></features>"
        "<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        f"<serial type='pty'><log file='{log}' append='on'/><target port='0'/></serial>"
        "<memballoon model='none'/></devices></domain>")


def ticks(serial: guest.Serial) -> list[int]:
    return [int(line[5:]) for line in serial.lines()
            if line.startswith("TICK-") and line[5:].isdigit()]


def counting_on(serial: guest.Serial, more: int = 4) -> list[int]:
    """Wait until the guest counted `more` ticks past what it had; returns them all."""
    seen = len(ticks(serial))
    return wait_for(lambda: ticks(serial), lambda t: len(t) >= seen + more,
                    "the guest to go on counting", timeout=120)


def newer_tick(screen: Screen, after: int, timeout: float = 120.0) -> int:
    """The first tick on the screen newer than `after`. Not `after + 1` itself: what the guest
    prints while no console is attached on the new host (between the switch-over and the
    client's reopening, a few seconds) is dropped by QEMU's pty and is only in the log file
    (docs/consoles.md), so the next tick on the screen may come a few numbers later."""
    def newer() -> list[int]:
        return [n for n in map(int, re.findall(rb"TICK-(\d+)\r", screen.data)) if n > after]
    with screen.changed:
        assert screen.changed.wait_for(newer, timeout), \
            f"no tick after TICK-{after} on the screen; it ends {screen.data[-300:]!r}"
        return newer()[0]


def tiny_volume(scratch: Scratch, tiny: Path) -> libvirt.virStorageVol:
    """A copy of the tiny guest's disk as a volume of the scratch pool."""
    name = f"{scratch.domain_name()}.qcow2"
    pool = scratch.pool
    shutil.copyfile(tiny, Path(scratch.dir) / name)
    pool.refresh(0)
    return scratch.pool.storageVolLookupByName(name)


def move(qemu: Qemu, uuid: str, hv: str, **extra: str) -> dict:
    return qemu.api.ok("POST", f"/rest/machine/{uuid}/",
                       data={"action": "set_parent", "puuid": hv, **extra})


def volumes_of(conn: libvirt.virConnect, pool: str) -> list[str]:
    p = conn.storagePoolLookupByName(pool)
    p.refresh(0)
    return sorted(v.name() for v in p.listAllVolumes(0))


class HttpApi(Api):
    """The tests' Api over HTTP to a served app (uvicorn: consoles need real WebSockets)."""

    def __init__(self, client: httpx.Client, app: object) -> None:
        self.client, self.app, self.auth = client, app, ("admin", ADMIN_PASSWORD)


@pytest.fixture
def served(scratch: Scratch, host: Host, tmp_path: Path) -> Iterator[tuple[Qemu, str]]:
    """A server on qemu:///system served over HTTP: (its Qemu helper, its URL)."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, hypervisors=[URI], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(data), console_ping=0.5, **FAST_HASHES)
    with running_server(settings) as (url, app), httpx.Client(base_url=url, timeout=120) as c:
        api = HttpApi(c, app)
        hv = next(h["uuid"] for h in api.hypervisors() if h["virt_url"] == URI)
        q = Qemu(api, hv, host, scratch)
        q.wait_hypervisor("connected")
        yield q, url


@pytest.mark.guest
def test_a_running_guest_migrates_live_and_keeps_counting(
        served, second_host: SecondHost, second_scratch, own, tiny_guest, tmp_path):
    """...and `enomalism machine console`, attached meanwhile, follows it to its new host."""
    qemu, url = served
    _, hv2 = register(qemu, second_host, own)
    pool2 = second_scratch.pool.name()
    vol = tiny_volume(qemu.scratch, tiny_guest)
    old, vol_name = vol.path(), vol.name()
    log = tmp_path / "serial.log"
    name = qemu.scratch.domain_name()
    uuid = qemu.api.ok("PUT", "/rest/machines/", data={
        "xmldesc": ticking_xml(name, old, log), "hvmuuid": qemu.hv})["machine"]
    qemu.scratch.track(uuid)
    second_scratch.track(uuid)
    qemu.action(uuid, "create")
    serial = guest.Serial(log)
    serial.wait("TICK-", 3)

    # A slow migration (1 MiB/s), cancelled in the middle: it goes on running here.
    body = move(qemu, uuid, hv2, pool=pool2, bandwidth="1")
    txid = body["txid"]
    assert body["machine"] == uuid and "live migration" in body["message"]
    wait_tx(qemu.api, txid, until=lambda b: any("remaining" in line for line in log_lines(b)))
    # meanwhile the machine is locked: another move, a poweroff are refused
    r = qemu.api.post(f"/rest/machine/{uuid}/", data={"action": "set_parent", "puuid": hv2})
    assert txid in expect_error(r, 423, 1400)["message"]
    expect_error(qemu.api.post(f"/rest/machine/{uuid}/actions/poweroff/"), 423, 1400)
    qemu.api.ok("POST", f"/rest/transaction/{txid}/", data={"action": "cancel"})
    done = wait_tx(qemu.api, txid)
    assert done["data"]["state"] == "cancelled", done
    assert qemu.host.state(uuid) == "running"
    assert second_scratch.host.domain(uuid) is None
    assert volumes_of(second_scratch.host.conn, pool2) == []  # the copies made there went
    counting_on(serial)
    assert qemu.api.machine(uuid)["machine_obj"]["parent"] == qemu.hv

    # Now for real, at full speed, with the CLI's console attached.
    keys_r, keys_w = os.pipe()
    screen, said, detached = Screen(), [], []
    with Client(url, "admin", ADMIN_PASSWORD) as c:
        t = threading.Thread(target=lambda: detached.append(term.attach(
            lambda: c.machines.console(uuid, force=True, notify=said.append), keys_r, screen,
            said.append)))
        t.start()
        try:
            screen.wait(b"TICK-")
            txid = move(qemu, uuid, hv2, pool=pool2)["txid"]
            done = wait_tx(qemu.api, txid)
            last = ticks(serial)[-1]
            shown = newer_tick(screen, last)  # printed on the new host, shown by the CLI
        finally:
            os.write(keys_w, b"\x1d")  # Ctrl-]
            t.join(60)
            os.close(keys_w)
            os.close(keys_r)
    assert detached == [0], said
    assert any("opening it again" in line for line in said), said
    assert done["data"]["state"] == "done", done
    result = done["data"]["result"]
    assert result["live"] is True and result["downtime_ms"] is not None
    assert second_scratch.host.state(uuid) == "running"
    assert qemu.host.domain(uuid) is None
    dom = second_scratch.host.conn.lookupByUUIDString(uuid)
    assert dom.isPersistent()
    new_path = result["disks"][old]
    assert new_path in dom.XMLDesc(0) and new_path.startswith(second_scratch.dir)
    assert vol_name not in qemu.scratch.volume_names()  # the old disk went
    m = qemu.api.machine(uuid)["machine_obj"]
    assert (m["parent"], m["state"]) == (hv2, "running")
    # the same guest, not booted again, counting on without a number missing
    counted = counting_on(serial)
    assert counted == list(range(1, len(counted) + 1))
    assert len([line for line in serial.lines() if line.startswith("GUEST-BOOTED")]) == 1
    assert shown > last


def test_a_stopped_machine_moves_with_its_disk(qemu, second_host, second_scratch, own):
    _, hv2 = register(qemu, second_host, own)
    pool2 = second_scratch.pool.name()
    uuid, name, vol = qemu.define()
    second_scratch.track(uuid)
    old, vol_name = vol.path(), vol.name()
    with open(old, "r+b") as f:  # a mark in the qcow2 file, past its header
        f.seek(0, 2)
        f.write(b"ENOMALISM-MOVED-DISK" * 10)
    body = move(qemu, uuid, hv2, pool=pool2)
    done = wait_tx(qemu.api, body["txid"])
    assert done["data"]["state"] == "done", done
    assert done["data"]["result"]["live"] is False
    dom = second_scratch.host.conn.lookupByUUIDString(uuid)
    assert (dom.name(), dom.isActive(), dom.isPersistent()) == (name, 0, 1)
    assert qemu.host.domain(uuid) is None
    new_path = done["data"]["result"]["disks"][old]
    assert b"ENOMALISM-MOVED-DISK" in Path(new_path).read_bytes()
    assert vol_name not in qemu.scratch.volume_names()
    assert volumes_of(second_scratch.host.conn, pool2) == [vol_name]
    m = qemu.api.machine(uuid)["machine_obj"]
    assert (m["parent"], m["state"]) == (hv2, "shutoff")
    # it starts there, and totaldelete removes its disk there (it is the machine's own)
    qemu.action(uuid, "create")
    assert second_scratch.host.state(uuid) == "running"
    qemu.api.ok("POST", f"/rest/machine/{uuid}/", data={"action": "totaldelete"})
    assert volumes_of(second_scratch.host.conn, pool2) == []


def test_evacuating_a_host_moves_its_three_machines(qemu, second_host, second_scratch, own):
    node2, hv2 = register(qemu, second_host, own)
    second_scratch.pool  # noqa: B018 (the second host's only pool: where the disks go)
    machines = [qemu.define()[0] for _ in range(3)]
    for uuid in machines:
        second_scratch.track(uuid)
    qemu.action(machines[0], "create")
    host = qemu.api.local_host()
    assert "evacuate" in qemu.api.machine(host)["machine_obj"]["actions"]
    body = qemu.api.ok("POST", f"/rest/machine/{host}/", data={"action": "evacuate"})
    assert body["machine"] == host and "3 machine(s)" in body["message"]
    done = wait_tx(qemu.api, body["txid"], deadline=300)
    assert done["data"]["state"] == "done", done
    children = done["data"]["result"]["children"]
    assert sorted(c["machine"] for c in children) == sorted(machines)
    assert {(c["target"], c["state"]) for c in children} == {(hv2, "done")}
    for uuid in machines:
        assert qemu.host.domain(uuid) is None
        assert qemu.api.machine(uuid)["machine_obj"]["parent"] == hv2
        # each child is a transaction of its own, naming its parent
        [child] = [t for t in qemu.api.ok("GET", "/rest/transactions/",
                                          params={"target": uuid})["transactions"]
                   if t["kind"] == "migrate"]
        assert (child["state"], child["parent"]) == ("done", body["txid"])
    assert second_scratch.host.state(machines[0]) == "running"
    assert {second_scratch.host.state(u) for u in machines[1:]} == {"shutoff"}
    # the empty host evacuates again at once, with nothing to move
    again = qemu.api.ok("POST", f"/rest/machine/{host}/", data={"action": "evacuate"})
    assert "0 machine(s)" in again["message"]
    assert wait_tx(qemu.api, again["txid"])["data"]["state"] == "done"
    assert node2


def test_moves_that_cannot_be_are_refused(scratch, make_api, own):
    """To the same hypervisor, to one of another kind (libvirt's test driver); a VM is no
    host to evacuate. Nothing changes."""
    with make_api(URI, "test:///default") as api:
        hvs = {h["virt_url"]: h["uuid"] for h in api.hypervisors()}
        q = Qemu(api, hvs[URI], scratch.host, scratch)
        q.wait_hypervisor("connected")
        uuid, _, _ = q.define()
        before = api.machine(uuid)["machine_obj"]
        expect_error(api.post(f"/rest/machine/{uuid}/",
                              data={"action": "set_parent", "puuid": hvs[URI]}), 409, 1303)
        r = api.post(f"/rest/machine/{uuid}/",
                     data={"action": "set_parent", "puuid": hvs["test:///default"]})
        assert "test" in expect_error(r, 409, 1304)["message"]
        expect_error(api.post(f"/rest/machine/{uuid}/", data={"action": "evacuate"}),
                     400, 1000)
        after = api.machine(uuid)["machine_obj"]
        assert (after["parent"], after["state"]) == (before["parent"], before["state"])
        assert scratch.host.state(uuid) == "shutoff"
