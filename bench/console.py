"""Consoles: a key's round trip (key in, its echo out) through the serial console WebSocket
against the same round trip through `virsh console`, side by side; and the time to the first
VNC frame through the VNC WebSocket against libvirt's own socket to QEMU opened in-process.

One tiny real guest (tests/guest, TCG) on qemu:///system, defined through the server (a
process of its own, `enomalism serve`) with a pty serial port and VNC on a unix socket; its
shell on ttyS0 echoes each key (the terminal's line discipline). Blocks of rounds alternate
between our WebSocket (the project's client, websockets) and `virsh console` (on a pty, as a
person runs it), so both see the same load. The domain and its files are removed whatever
happens.

    .venv/bin/python bench/console.py [--keys 200] [--blocks 4] [--frames 10]
"""

import argparse
import os
import pty
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import ADMIN_PASSWORD, client, enomalism_server, exit_on_sigterm, load  # noqa: E402
from lifecycle import URI, cleanup, wait_hypervisor  # noqa: E402
from tests import guest as tiny  # noqa: E402

from enomalism.client import Client  # noqa: E402
from enomalism.client.console import Console  # noqa: E402

KEY = b"k"
KILL = b"\x15"  # Ctrl-U: the shell's line is emptied between blocks


def guest_xml(name: str, disk: Path, log: Path) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>"
        "<features><acpi/><apic/></features><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        f"<serial type='pty'><log file='{log}' append='on'/><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console>"
        "<graphics type='vnc'><listen type='socket'/></graphics>"
        "<video><model type='vga'/></video><memballoon model='none'/></devices></domain>")


def ws_keys(c: Client, uuid: str, n: int) -> list[float]:
    """n key round trips through the serial WebSocket, in ms."""
    out = []
    with c.machines.console(uuid) as con:
        drain(con)
        for _ in range(n):
            t0 = time.perf_counter()
            con.send(KEY)
            got = b""
            while KEY not in got:
                got += con.recv(timeout=10)
            out.append((time.perf_counter() - t0) * 1000)
        con.send(KILL)
        drain(con)
    return out


def drain(con: Console) -> None:
    try:
        while True:
            con.recv(timeout=0.3)
    except TimeoutError:
        pass


def virsh_keys(uuid: str, n: int) -> list[float]:
    """n key round trips through `virsh console` on a pty."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("virsh", ["virsh", "-c", URI, "console", uuid])
    out = []
    try:
        read_for(fd, b"Escape character", 10)
        read_for(fd, b"", 0.3)
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, KEY)
            read_for(fd, KEY, 10)
            out.append((time.perf_counter() - t0) * 1000)
        os.write(fd, KILL)
        read_for(fd, b"", 0.3)
        os.write(fd, b"\x1d")
    finally:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os.close(fd)
    return out


def read_for(fd: int, wanted: bytes, timeout: float) -> bytes:
    got, deadline = b"", time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if (wanted and wanted in got) or left <= 0:
            if wanted and wanted not in got:
                raise RuntimeError(f"never saw {wanted!r}: {got[-200:]!r}")
            return got
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                got += os.read(fd, 4096)
            except OSError:
                return got


def rfb_first_frame(recv, send) -> None:  # noqa: ANN001
    """The RFB handshake (no authentication) up to the first FramebufferUpdate's first byte."""
    buf = bytearray()

    def take(n: int) -> bytes:
        while len(buf) < n:
            buf.extend(recv())
        data = bytes(buf[:n])
        del buf[:n]
        return data

    assert take(12) == b"RFB 003.008\n"
    send(b"RFB 003.008\n")
    take(take(1)[0])
    send(b"\x01")
    assert take(4) == b"\0\0\0\0"
    send(b"\x01")
    init = take(24)
    take(int.from_bytes(init[20:24]))
    send(b"\x03\x00\0\0\0\0" + init[0:2] + init[2:4])
    assert take(1) == b"\x00"


def ws_frame(c: Client, uuid: str) -> float:
    t0 = time.perf_counter()
    with c.machines.console(uuid, "vnc") as con:
        rfb_first_frame(lambda: con.recv(timeout=10), con.send)
        return (time.perf_counter() - t0) * 1000


def fd_frame(conn: libvirt.virConnect, uuid: str) -> float:
    t0 = time.perf_counter()
    fd = conn.lookupByUUIDString(uuid).openGraphicsFD(0, libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
    with socket.socket(fileno=fd) as s:
        s.settimeout(10)
        rfb_first_frame(lambda: s.recv(65536), s.sendall)
    return (time.perf_counter() - t0) * 1000


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {xs[len(xs) // 2]:.2f} ms, p90 {xs[int(len(xs) * 0.9)]:.2f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=200, help="keys per block")
    p.add_argument("--blocks", type=int, default=4, help="blocks of each, alternating")
    p.add_argument("--frames", type=int, default=10, help="first frames of each")
    args = p.parse_args()
    exit_on_sigterm()
    disk_src = tiny.image()
    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    os.chmod(tmp, 0o755)
    name, uuid = f"enomalism-bench-{secrets.token_hex(4)}", None
    server, load_before = None, load()
    try:
        disk = tmp / "tiny.qcow2"
        shutil.copyfile(disk_src, disk)
        os.chmod(disk, 0o644)
        server = enomalism_server(tmp / "data", [URI])
        server.wait_ready()
        with client(server.url) as api:
            hv = wait_hypervisor(api)
            r = api.put("/rest/machines/", data={"xmldesc": guest_xml(
                name, disk, tmp / "serial.log"), "hvmuuid": hv})
            assert r.status_code == 200 and not r.json().get("errno"), r.text
            uuid = r.json()["machine"]
            api.post(f"/rest/machine/{uuid}/actions/create/").raise_for_status()
        tiny.Serial(tmp / "serial.log").wait("GUEST-READY", timeout=300)
        ours, theirs = [], []
        with Client(server.url, "admin", ADMIN_PASSWORD) as c:
            for _ in range(args.blocks):
                ours += ws_keys(c, uuid, args.keys)
                theirs += virsh_keys(uuid, args.keys)
            ws_frames = [ws_frame(c, uuid) for _ in range(args.frames)]
        conn = libvirt.open(URI)
        fd_frames = [fd_frame(conn, uuid) for _ in range(args.frames)]
        print(f"{len(ours)} keys each way; load {load_before} -> {load()}")
        print(f"key -> echo, our WebSocket:   {stats(ours)}")
        print(f"key -> echo, virsh console:   {stats(theirs)}")
        diff = sorted(ours)[len(ours) // 2] - sorted(theirs)[len(theirs) // 2]
        print(f"difference of the medians:    {diff:+.2f} ms")
        print(f"first VNC frame, WebSocket (ticket, upgrade, libvirt, RFB): {stats(ws_frames)}")
        print(f"first VNC frame, openGraphicsFD in-process (RFB only):      {stats(fd_frames)}")
        conn.close()
    finally:
        if uuid:
            cleanup(uuid)
        if server is not None:
            server.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
