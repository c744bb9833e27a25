"""Event delivery: from libvirt's event to the clients of GET /rest/events/, with 100 clients.

One real QEMU domain on qemu:///system (as bench/lifecycle.py makes it), suspended and resumed
with `virsh`'s own calls on a libvirt connection of the benchmark's (behind the server's back).
The same process listens to libvirt's lifecycle events on that connection (what `virsh event`
shows) and stamps each; every client of the stream stamps the `machine.state` event that
follows. Latency = client's stamp - libvirt's stamp, over every client and round.

    .venv/bin/python bench/events.py [--clients 100] [--rounds 30]
"""

import argparse
import json
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from pathlib import Path

import httpx
import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ADMIN_PASSWORD, client, enomalism_server, exit_on_sigterm, load  # noqa: E402
from lifecycle import URI, cleanup, domain_xml, kvm_usable, wait_hypervisor  # noqa: E402

STATE = {libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "paused", libvirt.VIR_DOMAIN_EVENT_RESUMED: "running"}


def listen(url: str, uuid: str, got: dict, ready: threading.Barrier, stop: threading.Event
           ) -> None:
    """One client: stamp each machine.state event of the domain, keyed (state, round)."""
    seen: dict[str, int] = {}
    with httpx.stream("GET", f"{url}/rest/events/", params={"type": "machine.state"},
                      auth=("admin", ADMIN_PASSWORD), timeout=httpx.Timeout(10, read=60)) as r:
        ready.wait()
        for line in r.iter_lines():
            if stop.is_set():
                return
            if line.startswith("data: "):
                now = time.perf_counter()
                obj = json.loads(line[6:])["object"]
                if obj.get("uuid") == uuid:
                    n = seen[obj["state"]] = seen.get(obj["state"], 0) + 1
                    got.setdefault((obj["state"], n), []).append(now)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rounds", type=int, default=30, help="suspend/resume pairs")
    args = p.parse_args()
    exit_on_sigterm()
    name, uuid = f"enomalism-bench-{secrets.token_hex(4)}", str(uuidlib.uuid4())
    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    libvirt.virEventRegisterDefaultImpl()
    conn = libvirt.open(URI)
    stamps: dict = {}
    counts: dict[str, int] = {}

    def on_event(_c, dom, event: int, _detail: int, _opaque) -> None:  # noqa: ANN001
        if dom.UUIDString() == uuid and event in STATE:
            state = STATE[event]
            counts[state] = counts.get(state, 0) + 1
            stamps[(state, counts[state])] = time.perf_counter()

    loop_stop = threading.Event()

    def run_loop() -> None:
        while not loop_stop.is_set():
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=run_loop, daemon=True).start()
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None)
    server, stop, load_before = None, threading.Event(), load()
    try:
        server = enomalism_server(tmp / "data", [URI])
        server.wait_ready()
        with client(server.url) as api:
            hv = wait_hypervisor(api)
            r = api.put("/rest/machines/", data={"xmldesc": domain_xml(
                name, uuid, "kvm" if kvm_usable() else "qemu"), "hvmuuid": hv})
            assert r.status_code == 200 and not r.json().get("errno"), r.text
            api.post(f"/rest/machine/{uuid}/actions/create/").raise_for_status()
        time.sleep(1)
        got: dict = {}
        ready = threading.Barrier(args.clients + 1)
        for _ in range(args.clients):
            threading.Thread(target=listen, args=(server.url, uuid, got, ready, stop),
                             daemon=True).start()
        ready.wait(timeout=60)
        time.sleep(1)
        dom = conn.lookupByUUIDString(uuid)
        stamps.clear()  # the start's own events (started, resumed) are not counted
        counts.clear()
        for _ in range(args.rounds):
            dom.suspend()
            time.sleep(0.3)
            dom.resume()
            time.sleep(0.3)
        time.sleep(2)
        lat = sorted((t - stamps[k]) * 1000 for k, ts in got.items() if k in stamps for t in ts)
        expected = 2 * args.rounds * args.clients
        print(f"clients {args.clients}, rounds {args.rounds}: {len(lat)} of {expected} "
              f"deliveries; load {load_before} -> {load()}")
        if lat:
            print(f"libvirt event -> stream client: median {lat[len(lat) // 2]:.1f} ms, "
                  f"p95 {lat[int(len(lat) * 0.95)]:.1f} ms, max {lat[-1]:.1f} ms")
    finally:
        stop.set()
        loop_stop.set()
        cleanup(uuid)
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
