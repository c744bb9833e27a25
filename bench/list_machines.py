"""`GET /rest/machines/` with 1,000 machines in the inventory, against a bare ASGI app.

The 1,000 machines come from a fake host for libvirt's test driver (`test:///<dir>/host.xml`
holding 1,000 domains, a third each running, paused and shut off): the server discovers them
the way it discovers a real hypervisor's domains (bulk `getAllDomainStats` resync, then each new
domain's XML), so the rows, their XML and their sizes are what the server's own sync code writes
and not a guess at it. The time that discovery takes is printed too.

Measured over real HTTP on one keep-alive connection, server in its own process
(`enomalism serve`, uvicorn, temporary data dir), medians of many requests:

- `GET /rest/machines/`            (the spec's list: 1,001 ids, the host included)
- `GET /rest/machines/?detail=true` (extension: every machine_obj, XML included)
- `GET /rest/machine/<UUID>/`       (one machine)

Baseline, in the same run and interleaved request by request: a bare ASGI app (no framework,
no authentication, no database) served by uvicorn the same way, answering each path with
`json.dumps` of the very object the API answered. The ratio is what the framework, the
authentication, the database and the shaping of the answer cost on top of HTTP and JSON.

Never asserts: a benchmark, not a test.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid as uuidlib
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Server,
    bare_server,
    client,
    enomalism_server,
    exit_on_sigterm,
    load,
    median,
    p90,
    table,
    timed,
)

TARGET_MS = 30.0
TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
RUNSTATES = (1, 3, 5)  # running, paused, shut off


def fake_host(path: Path, n: int) -> str:
    """Write a test-driver host with `n` domains; returns its URI."""
    doms = []
    for i in range(n):
        doms.append(
            f"<domain type='test' xmlns:test='{TEST_NS}'><name>bench-vm-{i:04d}</name>"
            f"<uuid>{uuidlib.uuid4()}</uuid><memory unit='KiB'>524288</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices/>"
            f"<test:runstate>{RUNSTATES[i % 3]}</test:runstate></domain>")
    path.write_text(
        "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads>"
        "<active>4</active><mhz>2000</mhz><model>x86_64</model></cpu>"
        f"<memory>16777216</memory>{''.join(doms)}</node>")
    return f"test://{path}"




def wait_inventory(api, n: int, timeout: float = 300.0) -> float:  # noqa: ANN001
    """Seconds until the server lists `n` machines, every VM with its XML stored."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = api.get("/rest/machines/", params={"detail": "true"})
        if r.status_code == 200:
            objs = r.json().get("machine_objs") or []
            if len(objs) >= n and all(o["xmldesc"] for o in objs if o["kind"] == "vm"):
                return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"the inventory did not reach {n} machines within {timeout:.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("-n", type=int, default=300, help="requests per path (default 300; "
                   "detail=true gets a tenth of it)")
    args = p.parse_args()
    exit_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    servers: list[Server] = []
    load_before = load()
    try:
        uri = fake_host(tmp / "host.xml", args.machines)
        server = enomalism_server(tmp / "data", [uri])
        servers.append(server)
        server.wait_ready()
        with client(server.url) as api:
            sync_s = wait_inventory(api, args.machines + 1)
            ids = api.get("/rest/machines/").json()["machines"]
            vm = ids[-1]
            paths = {
                "GET /rest/machines/": "/rest/machines/",
                "GET /rest/machines/?detail=true": "/rest/machines/?detail=true",
                "GET /rest/machine/<UUID>/": f"/rest/machine/{vm}/",
            }
            files = []
            for i, path in enumerate(paths.values()):
                r = api.get(path)
                r.raise_for_status()
                f = tmp / f"body{i}.json"
                f.write_bytes(r.content)
                files.append(f"{path}={f}")
            sizes = {label: len(api.get(path).content) for label, path in paths.items()}

            bare = bare_server(tmp / "bare.log", files)
            servers.append(bare)
            bare.wait_ready()
            with client(bare.url, auth=False) as base:
                results = {}
                for label, path in paths.items():
                    n = args.n // 10 if "detail" in path else args.n
                    for _ in range(max(3, n // 10)):  # warm-up
                        api.get(path)
                        base.get(path)
                    a, b = [], []
                    for i in range(n):
                        pair = ((api, a), (base, b)) if i % 2 == 0 else ((base, b), (api, a))
                        for c, out in pair:
                            out.append(timed(lambda c=c, p=path: c.get(p).raise_for_status()))
                    results[label] = (a, b)
        report(results, sizes, args.machines, sync_s, load_before)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: dict, sizes: dict, n: int, sync_s: float, load_before: str) -> None:
    rows = []
    for label, (a, b) in results.items():
        rows.append([label, str(len(a)), f"{sizes[label] / 1024:.0f}", f"{median(a):.2f}",
                     f"{median(b):.2f}", f"{median(a) - median(b):+.2f}",
                     f"{median(a) / median(b):.2f}", f"{p90(a):.2f}"])
    print(f"\n{n:,} machines in the inventory (test driver), {date.today()}, "
          f"{os.cpu_count()} CPUs, load average {load_before} before, {load()} after; "
          f"discovered and stored in {sync_s:.1f} s")
    print(table(["request", "n", "KiB", "API med ms", "bare med ms", "diff ms", "ratio",
                 "API p90"], rows))
    listed = median(results["GET /rest/machines/"][0])
    verdict = "met" if listed < TARGET_MS else "MISSED"
    print(f"\ntarget: GET /rest/machines/ under {TARGET_MS:.0f} ms at the median: {verdict} "
          f"({listed:.2f} ms)")


if __name__ == "__main__":
    main()
