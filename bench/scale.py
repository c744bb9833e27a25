"""Scale-out: 10,000 machines, one node on SQLite, one and two nodes on one PostgreSQL database,
and requests about reachable hosts while another host hangs.

The inventory: 4 fake hosts for libvirt's test driver (`test:///<tmp>/hostN.xml`) of 2,500
domains each (a third each running, paused, shut off), given to `enomalism serve` as
`--hypervisor` URIs, so the server discovers them as it discovers a real hypervisor (bulk
`getAllDomainStats` resync, then each new domain's XML). The time until all 10,000 are stored
with their XML is printed as information.

Measured, against servers started as an operator does (`enomalism serve`, own process, own data
dir and free loopback port, HTTP Basic as admin; the credential is cached server-side):

1. latency, one client, one keep-alive connection, interleaved request by request with a bare
   ASGI app (uvicorn, no framework, no authentication, no database) answering the same JSON:
   `GET /rest/machines/` (the spec's list: 10,001 ids), `?detail=true` (every machine object)
   and `GET /rest/machine/<UUID>/` of random machines, for (a) one node on SQLite and (b) one
   node on PostgreSQL;
2. throughput and per-request latency with concurrent client processes (default 4, each with
   its own keep-alive connection), (b) every client on node 1, against (c) two nodes on the same
   database (separate processes, data dirs and ports, the same hosts), clients spread over both;
   rounds alternate b, c, c, b, ... and node 2 stays up (idle) during the b rounds;
3. a host that hangs: a TCP relay in this process to libvirtd's qemu+tcp://127.0.0.1:16509 is
   registered as one more host (`POST /rest/hosts/`; the server refuses to register a URI that
   does not answer, so a plain black hole cannot be registered), then frozen: it keeps every
   socket open and passes no more bytes, as a hung libvirtd or a black-holed route does. While it
   is frozen, a background client keeps asking for that host's resync
   (`trigger_status_updates`, which blocks until the keepalive gives up, then fails); the
   foreground measures a machine GET, the list and suspend + resume of a test-driver domain on a
   reachable host, against the same before the host was registered. Target ratio: about 1.0.
   On node 1 (PostgreSQL); with `--hang-sqlite` also on the SQLite node, where the frozen
   host's resync holds the database's write lock (an action waits for it: see the maxima).

Everything it starts is stopped on exit (servers, client processes, the relay), its temporary
dir removed and its PostgreSQL database dropped. Never asserts: a benchmark, not a test.
About 4 to 5 minutes on 2 cores.
"""

import argparse
import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (  # noqa: E402
    ADMIN_PASSWORD,
    Server,
    client,
    exit_on_sigterm,
    free_port,
    load,
    median,
    table,
    timed,
)
from list_machines import BARE_APP  # noqa: E402
from tests.fakehost import FakeDomain, write_host  # noqa: E402

TARGET_MS = 100.0
POSTGRES = os.environ.get("ENOMALISM_TEST_POSTGRES",
                          "postgresql+psycopg://enomalism:enomalism@127.0.0.1:5433")
LIBVIRTD_TCP = ("127.0.0.1", 16509)
STATES = ("running", "paused", "shutoff")


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


# -- the inventory -------------------------------------------------------------------------

def write_hosts(tmp: Path, hosts: int, per_host: int) -> list[str]:
    uris = []
    for h in range(hosts):
        doms = [FakeDomain(name=f"scale-{h}-{i:05d}", state=STATES[i % 3])
                for i in range(per_host)]
        uris.append(write_host(tmp / f"host{h}.xml", doms, cpus=64, memory_kib=1 << 30))
    return uris


def start_node(tmp: Path, name: str, uris: list[str], db_url: str | None) -> Server:
    data = tmp / name
    data.mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "enomalism.cli.main", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(data)]
    for uri in uris:
        argv += ["--hypervisor", uri]
    env = {"ENOMALISM_ADMIN_PASSWORD": ADMIN_PASSWORD}
    if db_url:
        env["ENOMALISM_DATABASE_URL"] = db_url
    return Server(argv, port, tmp / f"{name}.log", env)


def wait_inventory(db_url: str, n: int, server: Server, timeout: float = 600.0) -> tuple:
    """Seconds until the database holds `n` VMs, and until every one has its XML."""
    engine = create_engine(db_url)
    t0 = time.monotonic()
    listed = None
    try:
        while time.monotonic() - t0 < timeout:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{server.tail()}")
            try:
                with engine.connect() as c:
                    vms, bare = c.execute(text(
                        "SELECT count(*), count(*) - count(xmldesc) FROM machines "
                        "WHERE kind = 'vm'")).one()
            except Exception:  # noqa: BLE001  (schema not there yet)
                vms, bare = 0, 0
            if vms >= n and listed is None:
                listed = time.monotonic() - t0
            if vms >= n and bare == 0:
                return listed, time.monotonic() - t0
            time.sleep(0.25)
    finally:
        engine.dispose()
    raise RuntimeError(f"the inventory did not reach {n} machines within {timeout:.0f} s")


class Postgres:
    """A database of this run's own on the tests' PostgreSQL cluster, dropped on exit."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.name = f"enomalism_scale_{secrets.token_hex(4)}"
        self.admin = create_engine(f"{self.base}/postgres", isolation_level="AUTOCOMMIT")
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = f"{self.base}/{self.name}"

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


# -- sequential latency against the bare app -------------------------------------------------

def latency(api: httpx.Client, base: httpx.Client, paths: dict, ids: list[str],
            n: dict, rng: random.Random) -> dict:
    """label -> (API ms, bare ms), interleaved request by request."""
    out = {}
    for label, (api_path, bare_path) in paths.items():
        count = n[label]
        a, b = [], []

        def api_get(p: str = api_path) -> None:
            url = p.replace("<UUID>", rng.choice(ids))
            api.get(url).raise_for_status()

        def bare_get(p: str = bare_path) -> None:
            base.get(p).raise_for_status()
        for _ in range(max(1, count // 10)):  # warm-up
            api_get()
            bare_get()
        for i in range(count):
            pair = ((api_get, a), (bare_get, b)) if i % 2 == 0 else ((bare_get, b), (api_get, a))
            for call, xs in pair:
                xs.append(timed(call))
        out[label] = (a, b)
    return out


# -- concurrent clients ---------------------------------------------------------------------

CLIENT = r'''
import json, random, sys, time
import httpx
urls, path, ids_file, schedule, password, seed = sys.argv[1:7]
urls, schedule = urls.split(","), json.loads(schedule)  # [[start_at, until, url index], ...]
ids = open(ids_file).read().split()
rng = random.Random(int(seed))
clients = [httpx.Client(base_url=u, auth=("admin", password), timeout=120.0,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
           for u in urls]
for c in clients:
    c.get("/rest/machines/").raise_for_status()  # connect and authenticate before the start
rounds = []
for start_at, until, which in schedule:
    c, lat = clients[which], []
    while time.time() < start_at:
        time.sleep(0.002)
    while True:
        p = path.replace("<UUID>", rng.choice(ids))
        t0 = time.perf_counter()
        r = c.get(p)
        t1 = time.perf_counter()
        if time.time() > until:
            break
        r.raise_for_status()
        lat.append((t1 - t0) * 1000.0)
    rounds.append(lat)
print(json.dumps(rounds))
'''


def concurrent(urls: list[str], path: str, ids_file: Path, clients: int, seconds: float,
               configs: list[str]) -> list[tuple[str, list[float], float]]:
    """`clients` processes, each with one keep-alive connection per node, running one round
    per entry of `configs`, back to back: in a "b" round every client asks node 1, in a "c"
    round client i asks node i % 2 + 1. Per round: its config, every latency, requests/s."""
    start = time.time() + 3.0  # after every client has started, connected, authenticated
    gap = 0.5
    procs = []
    for i in range(clients):
        schedule = [[start + r * (seconds + gap), start + r * (seconds + gap) + seconds,
                     0 if config == "b" else i % 2] for r, config in enumerate(configs)]
        procs.append(subprocess.Popen(
            [sys.executable, "-c", CLIENT, ",".join(urls), path, str(ids_file),
             json.dumps(schedule), ADMIN_PASSWORD, str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    per_round: list[list[float]] = [[] for _ in configs]
    try:
        for p in procs:
            out, err = p.communicate(timeout=len(configs) * (seconds + gap) + 180)
            if p.returncode != 0:
                raise RuntimeError(f"client failed:\n{err[-2000:]}")
            for r, lat in enumerate(json.loads(out)):
                per_round[r] += lat
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(config, lat, len(lat) / seconds) for config, lat in zip(configs, per_round,
                                                                       strict=True)]


# -- a host that hangs ----------------------------------------------------------------------

class FreezableRelay:
    """Forwards 127.0.0.1:<port> to libvirtd's TCP port until frozen; frozen, it accepts and
    reads but passes nothing on, in either direction, and closes nothing."""

    def __init__(self, upstream: tuple[str, int] = LIBVIRTD_TCP) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"qemu+tcp://127.0.0.1:{self.port}/system"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.socks.append(c)
            if self.frozen.is_set():
                threading.Thread(target=self._swallow, args=(c,), daemon=True).start()
                continue
            try:
                u = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks.append(u)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _swallow(self, src: socket.socket) -> None:
        try:
            while src.recv(65536):
                pass
        except OSError:
            pass

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.frozen.is_set():
                    self._swallow(src)  # read and drop: the peer sees silence
                    return
                dst.sendall(data)
        except OSError:
            pass
        if not self.frozen.is_set() and not self.stopped.is_set():
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass


def hang_rounds(api: httpx.Client, ids: list[str], vm: str, seconds: float,
                rng: random.Random) -> dict:
    """GET machine, GET list, suspend, resume of `vm`, in turns, for `seconds`."""
    out: dict[str, list[float]] = {"GET /rest/machine/<UUID>/": [], "GET /rest/machines/": [],
                                   "POST .../actions/suspend/": [],
                                   "POST .../actions/resume/": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        calls = [
            ("GET /rest/machine/<UUID>/", lambda: api.get(f"/rest/machine/{rng.choice(ids)}/")),
            ("GET /rest/machines/", lambda: api.get("/rest/machines/")),
            ("POST .../actions/suspend/", lambda: api.post(f"/rest/machine/{vm}/actions/suspend/")),
            ("POST .../actions/resume/", lambda: api.post(f"/rest/machine/{vm}/actions/resume/")),
        ]
        for label, call in calls:
            t0 = time.perf_counter()
            r = call()
            out[label].append((time.perf_counter() - t0) * 1000.0)
            if r.status_code != 200:
                raise RuntimeError(f"{label}: {r.status_code} {r.text[:300]}")
    return out


def hang_phase(url: str, ids: list[str], uri: str, relay: FreezableRelay,
               stop_poke: threading.Event, args: argparse.Namespace,
               rng: random.Random) -> dict:
    """Requests about a reachable host's machines without the relayed host, then with it
    registered and frozen while a background client asks for its resync."""
    with client(url) as api:
        vm = running_vm(api, ids, uri)
        api.post(f"/rest/machine/{vm}/actions/manage/").raise_for_status()
        hang_rounds(api, ids, vm, 2.0, rng)  # warm-up
        before = hang_rounds(api, ids, vm, args.hang_seconds / 2, rng)
        t0 = time.perf_counter()
        r = api.post("/rest/hosts/", data={"name": "scale-hanging-host", "virt_url": relay.uri})
        register_ms = (time.perf_counter() - t0) * 1000.0
        if r.status_code != 200:
            raise RuntimeError(f"registering the relayed host: {r.status_code} {r.text}")
        hang_host = r.json()["machine"]
        time.sleep(1.0)
        relay.frozen.set()
        poked: list = []
        poker = threading.Thread(target=poke, args=(url, hang_host, stop_poke, poked),
                                 daemon=True)
        poker.start()
        frozen = hang_rounds(api, ids, vm, args.hang_seconds, rng)
        stop_poke.set()
        status = api.get(f"/rest/machine/{hang_host}/hypervisors/").json()
        return {"before": before, "frozen": frozen, "poked": poked, "register_ms": register_ms,
                "status": [(h["status"], h["last_error"]) for h in status["hypervisors"]]}


def poke(api_url: str, host: str, stop: threading.Event, log: list) -> None:
    """Keep asking for the frozen host's resync, one request at a time."""
    with httpx.Client(base_url=api_url, auth=("admin", ADMIN_PASSWORD), timeout=120.0) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = c.post(f"/rest/machine/{host}/trigger_status_updates/")
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            log.append((status, (time.perf_counter() - t0) * 1000.0))
            stop.wait(0.5)


# -- the run --------------------------------------------------------------------------------

def main() -> None:  # noqa: PLR0915, C901
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--per-host", type=int, default=2500)
    p.add_argument("-n", type=int, default=50, help="sequential list requests per server "
                   "(machine GETs: 4 times as many)")
    p.add_argument("--detail", type=int, default=3, help="sequential ?detail=true requests "
                   "(PostgreSQL only; 0: none; each takes seconds)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0, help="per concurrent round")
    p.add_argument("--rounds", type=int, default=4, help="concurrent rounds per workload, "
                   "half on one node, half on two")
    p.add_argument("--hang-seconds", type=float, default=25.0)
    p.add_argument("--skip-sqlite", action="store_true")
    p.add_argument("--skip-hang", action="store_true")
    p.add_argument("--hang-sqlite", action="store_true", help="also run the hanging-host "
                   "measurement on the SQLite node (about 40 s more)")
    args = p.parse_args()
    exit_on_sigterm()

    total = args.hosts * args.per_host
    rng = random.Random(7)
    tmp = Path(tempfile.mkdtemp(prefix="enomalism-scale-"))
    servers: list[Server] = []
    pg: Postgres | None = None
    relay: FreezableRelay | None = None
    stop_poke = threading.Event()
    results: dict = {"load_before": load(), "total": total}
    t_run = time.monotonic()
    try:
        uris = write_hosts(tmp, args.hosts, args.per_host)
        list_paths = {
            "GET /rest/machines/": ("/rest/machines/", "/rest/machines/"),
            "GET /rest/machines/?detail=true": ("/rest/machines/?detail=true",
                                                "/rest/machines/?detail=true"),
            "GET /rest/machine/<UUID>/": ("/rest/machine/<UUID>/", "/rest/machine/one/"),
        }
        n = {"GET /rest/machines/": args.n, "GET /rest/machines/?detail=true": args.detail,
             "GET /rest/machine/<UUID>/": 4 * args.n}
        bare = None
        ids: list[str] = []

        def start_bare(api: httpx.Client) -> Server:
            files = []
            for i, (path, bare_path) in enumerate(list_paths.values()):
                r = api.get(path.replace("<UUID>", ids[-1]))
                r.raise_for_status()
                f = tmp / f"body{i}.json"
                f.write_bytes(r.content)
                files.append(f"{bare_path}={f}")
                results.setdefault("kib", {})[list(list_paths)[i]] = len(r.content) / 1024
            port = free_port()
            s = Server([sys.executable, "-c", BARE_APP, str(port), *files], port,
                       tmp / "bare.log")
            servers.append(s)
            s.wait_ready()
            return s

        # The two first resyncs run at once (the SQLite one alone takes minutes), then
        # (a) is measured with node 1 idle, then (b) with the SQLite node stopped.
        pg = Postgres(POSTGRES)
        node1 = start_node(tmp, "node1", uris, pg.url)
        servers.append(node1)
        syncing = [("sync_pg", pg.url, node1)]
        if not args.skip_sqlite:
            lite = start_node(tmp, "sqlite", uris, None)
            servers.append(lite)
            syncing.append(("sync_sqlite", f"sqlite:///{tmp / 'sqlite' / 'enomalism.db'}", lite))
        errors: list[BaseException] = []

        def sync(key: str, url: str, node: Server) -> None:
            try:
                node.wait_ready()
                results[key] = wait_inventory(url, total, node)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=sync, args=a) for a in syncing]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for key, what in (("sync_pg", "PostgreSQL"), ("sync_sqlite", "SQLite")):
            if key in results:
                print(f"{what}: {total:,} machines listed after {results[key][0]:.1f} s, "
                      f"with their XML after {results[key][1]:.1f} s", flush=True)

        # (a) one node on SQLite
        if not args.skip_sqlite:
            with client(lite.url) as api:
                ids = api.get("/rest/machines/").json()["machines"]
                bare = start_bare(api)
                with client(bare.url, auth=False) as base:
                    results["a"] = latency(api, base, {k: v for k, v in list_paths.items()
                                                       if "detail" not in k}, ids, n, rng)
            if args.hang_sqlite:
                lite_relay = FreezableRelay()
                try:
                    results["hang_sqlite"] = hang_phase(lite.url, ids, uris[0], lite_relay,
                                                        threading.Event(), args, rng)
                finally:
                    lite_relay.stop()
            lite.stop()
            servers.remove(lite)

        # (b) one node on PostgreSQL
        with client(node1.url) as api:
            ids = api.get("/rest/machines/").json()["machines"]
            if bare is None:
                bare = start_bare(api)
            with client(bare.url, auth=False) as base:
                results["b"] = latency(api, base, {k: v for k, v in list_paths.items()
                                                   if args.detail or "detail" not in k},
                                       ids, n, rng)
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids))

        # (c) a second node on the same database, the same hosts
        node2 = start_node(tmp, "node2", uris, pg.url)
        servers.append(node2)
        t0 = time.monotonic()
        node2.wait_ready()
        results["node2_ready"] = time.monotonic() - t0
        with client(node2.url) as api2:
            assert len(api2.get("/rest/machines/").json()["machines"]) == len(ids)
        conc: dict = {}
        configs = ["b" if r % 4 in (0, 3) else "c" for r in range(args.rounds)]  # b c c b ...
        for label, path in (("GET /rest/machines/", "/rest/machines/"),
                            ("GET /rest/machine/<UUID>/", "/rest/machine/<UUID>/")):
            for config, lat, rps in concurrent([node1.url, node2.url], path, ids_file,
                                               args.clients, args.seconds, configs):
                entry = conc.setdefault((label, config), {"lat": [], "rps": []})
                entry["lat"] += lat
                entry["rps"].append(rps)
                print(f"  {label} ({config}): {rps:.0f} req/s, median {median(lat):.1f} ms",
                      flush=True)
        results["conc"] = conc

        # a host that hangs, on node 1 (node 2 up too)
        if not args.skip_hang:
            relay = FreezableRelay()
            results["hang"] = hang_phase(node1.url, ids, uris[0], relay, stop_poke, args, rng)
        results["load_after"] = load()
        results["run_s"] = time.monotonic() - t_run
        report(results, args)
    finally:
        stop_poke.set()
        if relay is not None:
            relay.stop()  # first: a node's pending connect to it then fails at once
        for s in reversed(servers):
            s.stop()
        if pg is not None:
            try:
                pg.drop()
            except Exception as e:  # noqa: BLE001
                print(f"could not drop {pg.name}: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def running_vm(api: httpx.Client, ids: list[str], uri: str) -> str:
    """A running VM on the test host `uri`."""
    hvs = api.get("/rest/machines/", params={"kind": "host", "detail": "true"}).json()
    host = hvs["machine_objs"][0]["uuid"]
    hv = next(h["uuid"] for h in api.get(f"/rest/machine/{host}/hypervisors/").json()
              ["hypervisors"] if h["virt_url"] == uri)
    found = api.get("/rest/machines/", params={"hypervisor": hv, "state": "running"}).json()
    return found["machines"][0]


def report(res: dict, args: argparse.Namespace) -> None:
    print(f"\n{res['total']:,} machines ({args.hosts} test-driver hosts x {args.per_host:,}), "
          f"{date.today()}, {os.cpu_count()} CPUs, load average {res['load_before']} before, "
          f"{res['load_after']} after; whole run {res['run_s']:.0f} s")
    for key, what in (("sync_sqlite", "SQLite"), ("sync_pg", "PostgreSQL")):
        if key in res:
            listed, full = res[key]
            print(f"first full resync on {what}: all listed after {listed:.1f} s, "
                  f"every XML stored after {full:.1f} s (from the server's start)")

    rows = []
    for config, what in (("a", "SQLite, 1 node"), ("b", "PostgreSQL, 1 node")):
        for label, (a, b) in res.get(config, {}).items():
            rows.append([f"{label} ({what})", str(len(a)), f"{res['kib'][label]:.0f}",
                         f"{median(a):.2f}", f"{p95(a):.2f}", f"{median(b):.2f}",
                         f"{median(a) / median(b):.2f}"])
    print("\nOne client, one connection, against the bare app (same JSON), interleaved:")
    print(table(["request", "n", "KiB", "API med ms", "API p95", "bare med ms", "ratio"], rows))

    print(f"\n{args.clients} concurrent client processes, {args.seconds:.0f} s rounds "
          f"(b: all on node 1; c: spread over nodes 1 and 2), node 2 ready "
          f"{res['node2_ready']:.1f} s after its start:")
    rows = []
    conc = res["conc"]
    for label in ("GET /rest/machines/", "GET /rest/machine/<UUID>/"):
        for config in ("b", "c"):
            e = conc[(label, config)]
            rows.append([f"{label} ({config})", str(len(e["lat"])),
                         f"{statistics.mean(e['rps']):.0f}", f"{median(e['lat']):.2f}",
                         f"{p95(e['lat']):.2f}"])
        b, c = conc[(label, "b")], conc[(label, "c")]
        ratio = statistics.mean(c["rps"]) / statistics.mean(b["rps"])
        rows.append(["  ratio c / b", "", f"{ratio:.2f}",
                     f"{median(c['lat']) / median(b['lat']):.2f}",
                     f"{p95(c['lat']) / p95(b['lat']):.2f}"])
    print(table(["request (config)", "n", "req/s", "med ms", "p95 ms"], rows))

    for key, where in (("hang_sqlite", "the SQLite node"), ("hang", "node 1 (PostgreSQL)")):
        if key not in res:
            continue
        h = res[key]
        print(f"\nA host that hangs (relay to libvirtd, registered in {h['register_ms']:.0f} ms, "
              f"then frozen for {args.hang_seconds:.0f} s), requests on {where} about reachable "
              "hosts, without that host and with it frozen:")
        rows = []
        for label, b in h["before"].items():
            a = h["frozen"][label]
            rows.append([label, f"{len(b)}/{len(a)}", f"{median(b):.2f}", f"{median(a):.2f}",
                         f"{median(a) / median(b):.2f}", f"{p95(b):.2f}", f"{p95(a):.2f}",
                         f"{max(b):.0f}", f"{max(a):.0f}"])
        print(table(["request", "n before/frozen", "before med ms", "frozen med ms", "ratio",
                     "before p95", "frozen p95", "before max", "frozen max"], rows))
        shown = ", ".join(f"{s} in {ms / 1000:.1f} s" for s, ms in h["poked"][:4])
        print(f"meanwhile, resyncs of the frozen host: {len(h['poked'])} ({shown}"
              f"{', ...' if len(h['poked']) > 4 else ''}); its hypervisor afterwards: "
              f"{h['status']}")

    verdicts = []
    for config, what in (("a", "SQLite"), ("b", "PostgreSQL")):
        if config in res:
            ms = median(res[config]["GET /rest/machines/"][0])
            verdicts.append(f"{what} {ms:.1f} ms: {'met' if ms < TARGET_MS else 'MISSED'}")
    print(f"\ntarget: GET /rest/machines/ under {TARGET_MS:.0f} ms at the median: "
          + "; ".join(verdicts))


if __name__ == "__main__":
    main()
