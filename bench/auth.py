"""What authentication costs: `GET /rest/machines/` (100 machines) through HTTP Basic (the
credential cache after the first request), through a bearer token, and the same request with
authentication taken out, all in one run.

Three server processes on the same data dir's copy, each `create_app` of this project served by
uvicorn; the third replaces the authentication dependency with the admin user (FastAPI's
`dependency_overrides`), so it answers the very same request minus authentication. Each is
driven for the same number of requests on one keep-alive connection, interleaved in rounds;
throughput is requests per second. Target (issue 4): authenticated throughput at least 0.8 of
the unauthenticated one.

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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ADMIN_PASSWORD,
    Server,
    exit_on_sigterm,
    free_port,
    load,
    table,
)
from list_machines import fake_host  # noqa: E402

TARGET = 0.8

SERVE = '''
import sys
import uvicorn
from enomalism.api.app import create_app
from enomalism.api.deps import current_user
from enomalism.config import Settings
from enomalism.services.context import Principal

port, data, uri, noauth = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
app = create_app(Settings(data_dir=data, hypervisors=[uri], admin_password=sys.argv[5]))
if noauth:
    known = []

    async def admin() -> Principal:
        if not known:  # looked up once: the baseline does no authentication work at all
            from enomalism.store.models import User
            with app.state.db.session(write=False) as s:
                u = s.query(User).filter_by(username="admin").one()
                known.append(Principal(uuid=u.uuid, username=u.username, is_admin=True))
        return known[0]
    app.dependency_overrides[current_user] = admin
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


def serve(tmp: Path, name: str, data: Path, uri: str, noauth: bool) -> Server:
    port = free_port()
    return Server([sys.executable, "-c", SERVE, str(port), str(data), uri, "1" if noauth else "0",
                   ADMIN_PASSWORD], port, tmp / f"{name}.log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--machines", type=int, default=100)
    p.add_argument("-n", type=int, default=2000, help="requests per variant")
    args = p.parse_args()
    exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    servers: list[Server] = []
    load_before = load()
    try:
        uri = fake_host(tmp / "host.xml", args.machines)
        # one data dir made first (admin user, a token), then copied for each server
        first = serve(tmp, "setup", tmp / "data", uri, False)
        first.wait_ready()
        with httpx.Client(base_url=first.url, auth=("admin", ADMIN_PASSWORD)) as c:
            deadline = time.monotonic() + 120
            while len(c.get("/rest/machines/").json()["machines"]) < args.machines + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("inventory not synced")
                time.sleep(0.2)
            token = c.put("/rest/tokens/", data={"name": "bench"}).json()["secret"]
        first.stop()
        variants = {}
        for name, noauth in (("basic", False), ("bearer", False), ("none", True)):
            data = tmp / f"data-{name}"
            shutil.copytree(tmp / "data", data)
            s = serve(tmp, name, data, uri, noauth)
            servers.append(s)
            s.wait_ready()
            auth = {"basic": ("admin", ADMIN_PASSWORD), "bearer": None, "none": None}[name]
            headers = {"Authorization": f"Bearer {token}"} if name == "bearer" else {}
            variants[name] = httpx.Client(
                base_url=s.url, auth=auth, headers=headers, timeout=60,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
        for c in variants.values():  # warm-up (fills the credential cache)
            for _ in range(50):
                c.get("/rest/machines/").raise_for_status()
        spent = dict.fromkeys(variants, 0.0)
        rounds = 20
        for _ in range(rounds):
            for name, c in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.n // rounds):
                    c.get("/rest/machines/").raise_for_status()
                spent[name] += time.perf_counter() - t0
        for c in variants.values():
            c.close()
        rps = {name: (args.n // rounds * rounds) / t for name, t in spent.items()}
        rows = [[name, f"{rps[name]:.0f}", f"{1000 / rps[name]:.2f}",
                 f"{rps[name] / rps['none']:.2f}"] for name in variants]
        print(f"\nGET /rest/machines/ with {args.machines} machines, {args.n} requests per "
              f"variant, {date.today()}, {os.cpu_count()} CPUs, load average {load_before} "
              f"before, {load()} after")
        print(table(["authentication", "req/s", "ms/req", "ratio to none"], rows))
        worst = min(rps["basic"], rps["bearer"]) / rps["none"]
        print(f"\ntarget: authenticated at least {TARGET} of unauthenticated throughput: "
              f"{'met' if worst >= TARGET else 'MISSED'} ({worst:.2f})")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
