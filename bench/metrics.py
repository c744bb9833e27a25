"""`GET /metrics` with 1,000 machines, against a bare ASGI app answering the same bytes.

The machines are the domains of a fake host for libvirt's test driver (bench/list_machines.py
makes it: 1,000 domains, a third each running, paused and shut off), discovered by the server
as it discovers a real hypervisor's. The server (`enomalism serve`, own process, temporary data
dir) is scraped over real HTTP on one keep-alive connection, as the administrator:

- cached: scrapes within 5 s share one collection (one bulk `getAllDomainStats` per
  hypervisor); what is measured is the inventory read, the access filter and the rendering;
- fresh: one scrape every 5.5 s, so each makes a new collection (the bulk call included).

Baseline, interleaved request by request: a bare ASGI app on uvicorn answering the bytes the
server answered. The test driver reports only each domain's state, so a scrape here carries
two series a machine (info and state); a QEMU guest has about fifteen (CPU, memory, disks,
interfaces): the rendering of those is measured separately from the scrape's (`render` line:
`services.metrics` families for 1,000 synthetic QEMU-like records, in-process).

Never asserts: a benchmark, not a test.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Server,
    client,
    enomalism_server,
    exit_on_sigterm,
    free_port,
    load,
    median,
    p90,
    table,
    timed,
)
from list_machines import fake_host, wait_inventory  # noqa: E402

TARGET_MS = 100.0

BARE_TEXT_APP = '''
import sys
import uvicorn

body = open(sys.argv[2], "rb").read()

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
'''


def render_qemu_like(n: int, rounds: int = 20) -> float:
    """Median ms to render the machine families of `n` QEMU-like records (CPU, memory, a
    disk, an interface): the part of a scrape that grows with real guests' counters."""
    from enomalism.services import metrics
    from enomalism.virt.driver import DeviceIO, DomainStats

    doms = tuple(DomainStats(
        uuid=f"00000000-0000-4000-8000-{i:012d}", name=f"vm-{i:04d}", state="running",
        cpu_ns=i * 10**9, vcpus=2, balloon_kib=524288, max_memory_kib=524288, rss_kib=300000,
        disks=(DeviceIO("vda", 1, 2, 3, 4),), nics=(DeviceIO("vnet0", 5, 6, 7, 8),))
        for i in range(n))
    sample = metrics.Sample("hv", 0.0, 0.0, 0.0, doms)
    inventory = {d.uuid: ("alice", True) for d in doms}
    out = []
    for _ in range(rounds):
        out.append(timed(lambda: "".join(f.text() for f in metrics._machine_families(
            [sample], inventory, everyone=True)).encode()))
    return median(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("-n", type=int, default=200, help="cached scrapes (default 200)")
    p.add_argument("--fresh", type=int, default=6, help="fresh scrapes, 5.5 s apart")
    args = p.parse_args()
    exit_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    servers: list[Server] = []
    load_before = load()
    try:
        server = enomalism_server(tmp / "data", [fake_host(tmp / "host.xml", args.machines)])
        servers.append(server)
        server.wait_ready()
        with client(server.url) as api:
            sync_s = wait_inventory(api, args.machines + 1)
            body = api.get("/metrics").content
            (tmp / "metrics.txt").write_bytes(body)
            port = free_port()
            bare = Server([sys.executable, "-c", BARE_TEXT_APP, str(port),
                           str(tmp / "metrics.txt")], port, tmp / "bare.log")
            servers.append(bare)
            bare.wait_ready()
            with client(bare.url, auth=False) as base:
                for _ in range(10):
                    api.get("/metrics")
                    base.get("/metrics")
                a, b = [], []
                for i in range(args.n):
                    pair = ((api, a), (base, b)) if i % 2 == 0 else ((base, b), (api, a))
                    for c, out in pair:
                        out.append(timed(lambda c=c: c.get("/metrics").raise_for_status()))
                fresh = []
                for _ in range(args.fresh):
                    time.sleep(5.5)
                    fresh.append(timed(lambda: api.get("/metrics").raise_for_status()))
        render = render_qemu_like(args.machines)
        print(f"\nGET /metrics, {args.machines:,} machines (test driver), {date.today()}, "
              f"{os.cpu_count()} CPUs, load average {load_before} before, {load()} after; "
              f"discovered in {sync_s:.1f} s; {len(body) / 1024:.0f} KiB a scrape")
        print(table(["scrape", "n", "API med ms", "bare med ms", "ratio", "API p90"], [
            ["cached (within 5 s)", str(len(a)), f"{median(a):.2f}", f"{median(b):.2f}",
             f"{median(a) / median(b):.2f}", f"{p90(a):.2f}"],
            ["fresh (bulk call)", str(len(fresh)), f"{median(fresh):.2f}", "", "",
             f"{max(fresh):.2f}"]]))
        print(f"render of {args.machines:,} QEMU-like machines (~15 series each), "
              f"in-process: {render:.1f} ms")
        worst = max(median(a), median(fresh))
        print(f"\ntarget: under {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'MISSED'} "
              f"({worst:.2f} ms, the slower of cached and fresh)")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
