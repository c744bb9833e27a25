"""The dashboard kept open (issue 18, "Speed"): how soon a libvirt event shows in the page, what
an idle page costs on the wire, and the browser's heap through a stream of events.

Three parts (`--part`, default all), each in headless Chromium (Debian's chromium and
chromium-driver through Selenium, as the browser tests drive it), logged in once as admin,
against `enomalism serve` in its own process:

- `latency`: one real QEMU domain (64 MiB, no disk, no OS, as `lifecycle.py` makes it) on
  qemu:///system, shown in the machine list. The benchmark suspends and resumes it on its own
  libvirt connection, behind the server's back; `virsh event --loop --timestamp` on another
  connection is the baseline: when libvirt's event reached a client. The page's time is when a
  MutationObserver saw the row's state change (`Date.now()`, the same clock). Reported: from
  the libvirt call to virsh and to the page, and the page minus virsh per event (what the
  server, the events stream and the page add), median and p95. Target: 250 ms median, 500 ms
  p95 after libvirt's event.
- `idle`: the machine list with 1,000 machines (test driver) left alone for `--idle-seconds`:
  the bytes the page received (Chromium's network log: finished requests' encoded lengths, and
  the events stream's data as it arrives), against the events stream alone read by httpx over
  the same seconds (its heartbeats: the floor of a live page). Target: at most 1 KB/s.
- `heap`: the same list while the API suspends and resumes random machines of the 1,000
  (`--rate` events a second, a few of them among the rows shown) for `--minutes` (default 3):
  every 15 s a garbage collection, then the JavaScript heap in use, the DOM's nodes and the
  event listeners (DevTools protocol). Reported: first, last and largest, and the slope in
  MB an hour (least squares after the first minute); the baseline is the same page's heap
  before the first event. Target: under 150 MB through an hour.

The machine's load average is printed before and after. Never asserts: a benchmark.
"""

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from datetime import date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ADMIN_PASSWORD,
    client,
    enomalism_server,
    exit_on_sigterm,
    load,
    median,
    table,
)
from list_machines import fake_host, wait_inventory  # noqa: E402

URI = "qemu:///system"
ROW = "#machines tbody tr"
TARGETS = {"median_ms": 250.0, "p95_ms": 500.0, "idle_bps": 1024.0, "heap_mb": 150.0}

# Every change of a row's state cell, with the wall clock (the same clock as time.time()).
WATCH = """
window.__seen = [];
const tbody = document.querySelector("#machines tbody");
new MutationObserver(() => {
  for (const tr of tbody.querySelectorAll("tr")) {
    const s = tr.querySelector(".state");
    if (s && tr.dataset.last !== s.dataset.state) {
      if (tr.dataset.last) window.__seen.push([Date.now(), tr.dataset.uuid, s.dataset.state]);
      tr.dataset.last = s.dataset.state;
    }
  }
}).observe(tbody, {childList: true, subtree: true});
for (const tr of tbody.querySelectorAll("tr")) {
  const s = tr.querySelector(".state");
  if (s) tr.dataset.last = s.dataset.state;
}
"""


def browser(perf_log: bool = False):  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        sys.exit("bench/dashboard_live.py needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(arg)
    if perf_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def log_in(d, url: str, fragment: str = "#/machines") -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d.get(url + "/")
    form = WebDriverWait(d, 60).until(lambda x: x.find_element(By.ID, "login"))
    form.find_element(By.NAME, "username").send_keys("admin")
    form.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(d, 60).until(lambda x: x.find_elements(By.CSS_SELECTOR, ROW))
    if fragment != "#/machines":
        d.get(url + "/" + fragment)
        WebDriverWait(d, 60).until(lambda x: x.find_elements(By.CSS_SELECTOR, ROW))
    WebDriverWait(d, 60).until(
        lambda x: x.execute_script("return window.enomalismStream.last !== null"))


def p95(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


# -- latency ----------------------------------------------------------------------------------

class VirshEvents:
    """`virsh event --loop --timestamp` for one domain: each lifecycle event with the time virsh
    stamped it when it arrived (its own clock, parsed; a pipe's buffering does not count)."""

    def __init__(self, name: str) -> None:
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            ["virsh", "-c", URI, "event", "--domain", name, "--event", "lifecycle", "--loop",
             "--timestamp"], stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # 2026-12-07 01:20:03.123+0000: event 'lifecycle' for domain 'x': Suspended Paused
            stamp, _, rest = line.partition(": ")
            try:
                at = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f%z").timestamp()
            except ValueError:
                continue
            self.lines.append((at, rest.strip()))

    def after(self, t0: float, word: str, timeout: float = 10.0) -> float | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, text in self.lines:
                if at >= t0 - 0.005 and word in text:
                    return at
            time.sleep(0.005)
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def latency(args: argparse.Namespace, tmp: Path) -> list[str]:
    import libvirt
    from lifecycle import cleanup, domain_xml, kvm_usable, wait_hypervisor

    name = f"enomalism-bench-{secrets.token_hex(4)}"
    uuid = str(uuidlib.uuid4())
    conn = libvirt.open(URI)
    server = enomalism_server(tmp / "lat-data", [URI])
    d = virsh = None
    try:
        server.wait_ready(timeout=240)
        with client(server.url) as api:
            hv = wait_hypervisor(api)
            r = api.put("/rest/machines/", data={
                "xmldesc": domain_xml(name, uuid, "kvm" if kvm_usable() else "qemu"),
                "hvmuuid": hv})
            if r.status_code != 200 or r.json().get("errno"):
                raise RuntimeError(f"defining the domain failed: {r.status_code} {r.text}")
            api.post(f"/rest/machine/{uuid}/actions/create/").raise_for_status()
        dom = conn.lookupByUUIDString(uuid)
        d = browser()
        log_in(d, server.url, f"#/machines?search={name}")
        d.execute_script(WATCH)
        virsh = VirshEvents(name)
        time.sleep(1.0)  # virsh registered
        page_ms, virsh_ms, added = [], [], []
        for i in range(args.events + 4):
            call, word, state = ((dom.suspend, "Suspended", "paused") if i % 2 == 0
                                 else (dom.resume, "Resumed", "running"))
            t0 = time.time()
            call()
            seen = None
            deadline = time.time() + 10
            while seen is None and time.time() < deadline:
                for at, u, s in d.execute_script("return window.__seen"):
                    if u == uuid and s == state and at / 1000 >= t0 - 0.005:
                        seen = at / 1000
                time.sleep(0.01)
            v = virsh.after(t0, word)
            d.execute_script("window.__seen = []")
            if i < 4 or seen is None or v is None:  # the first rounds warm up
                continue
            page_ms.append((seen - t0) * 1000)
            virsh_ms.append((v - t0) * 1000)
            added.append((seen - v) * 1000)
            time.sleep(args.gap)
        rows = [[what, str(len(xs)), f"{median(xs):.0f}", f"{p95(xs):.0f}"]
                for what, xs in (("libvirt call -> virsh event", virsh_ms),
                                 ("libvirt call -> row in the page", page_ms),
                                 ("virsh event -> row in the page", added))]
        out = [f"event to page: {name} on {URI}, suspend/resume from the benchmark's own "
               f"connection, {args.gap:.1f} s apart",
               table(["from -> to", "n", "median ms", "p95 ms"], rows)]
        for label, value, target in (("median", median(added), TARGETS["median_ms"]),
                                     ("p95", p95(added), TARGETS["p95_ms"])):
            out.append(f"target: {label} after libvirt's event at most {target:.0f} ms: "
                       f"{'met' if value <= target else 'MISSED'} ({value:.0f} ms)")
        return out
    finally:
        if virsh is not None:
            virsh.stop()
        if d is not None:
            d.quit()
        cleanup(uuid)
        conn.close()
        server.stop()


# -- idle and heap: 1,000 machines on the test driver -----------------------------------------

def wire_bytes(entries: list[dict]) -> int:
    """Bytes received in Chromium's network log: a finished request's encoded length, and for
    one not finished (the events stream) the data as it arrived."""
    finished: dict[str, int] = {}
    streamed: dict[str, int] = {}
    for e in entries:
        m = json.loads(e["message"])["message"]
        p = m.get("params", {})
        if m.get("method") == "Network.loadingFinished":
            finished[p["requestId"]] = int(p.get("encodedDataLength", 0))
        elif m.get("method") == "Network.dataReceived":
            streamed[p["requestId"]] = streamed.get(p["requestId"], 0) + \
                int(p.get("encodedDataLength", 0))
    return sum(finished.values()) + sum(v for k, v in streamed.items() if k not in finished)


def stream_alone(url: str, seconds: float, out: list[int]) -> None:
    """The events stream read by a plain client for `seconds`: its bytes into `out`."""
    import httpx

    n = 0
    deadline = time.monotonic() + seconds
    try:
        with httpx.Client(base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=30) as c, \
                c.stream("GET", "/rest/events/", headers={"Accept": "text/event-stream"}) as r:
            for chunk in r.iter_raw():
                n += len(chunk)
                if time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass
    out.append(n)


def idle(args: argparse.Namespace, server_url: str) -> list[str]:
    d = browser(perf_log=True)
    try:
        log_in(d, server_url)
        time.sleep(5)  # the first page's requests are done
        d.get_log("performance")  # drained: only what follows counts
        alone: list[int] = []
        t = threading.Thread(target=stream_alone, args=(server_url, args.idle_seconds, alone))
        t0 = time.monotonic()
        t.start()
        time.sleep(args.idle_seconds)
        page = wire_bytes(d.get_log("performance"))
        took = time.monotonic() - t0
        t.join(timeout=30)
    finally:
        d.quit()
    floor = alone[0] if alone else 0
    rate = page / took
    return [f"idle page: #/machines with {args.machines:,} machines, {took:.0f} s untouched",
            table(["reader", "bytes", "bytes/s", "ratio"],
                  [["the dashboard", str(page), f"{rate:.0f}",
                    f"{page / floor:.2f}" if floor else "–"],
                   ["the events stream alone (httpx)", str(floor), f"{floor / took:.0f}",
                    "1.00"]]),
            f"target: at most {TARGETS['idle_bps']:.0f} B/s: "
            f"{'met' if rate <= TARGETS['idle_bps'] else 'MISSED'} ({rate:.0f} B/s)"]


def churn(url: str, uuids: list[str], rate: float, stop: threading.Event,
          count: list[int]) -> None:
    """Suspend and resume random running machines through the API, `rate` events a second."""
    with client(url) as api:
        paused: list[str] = []
        while not stop.is_set():
            t = time.monotonic()
            if paused and (len(paused) > 20 or random.random() < 0.5):
                u = paused.pop(random.randrange(len(paused)))
                action = "resume"
            else:
                u = random.choice(uuids)
                action = "suspend"
            r = api.post(f"/rest/machine/{u}/actions/{action}/")
            if r.status_code == 200 and action == "suspend":
                paused.append(u)
            elif r.status_code != 200 and len(count) < 2:
                print(f"churn: {action} refused: {r.text[:300]}", file=sys.stderr)
                count.append(0)
            count[0] += r.status_code == 200
            stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - t)))
        for u in paused:
            api.post(f"/rest/machine/{u}/actions/resume/")


def heap_sample(d) -> tuple[float, int, int]:  # noqa: ANN001
    d.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    used = d.execute_cdp_cmd("Runtime.getHeapUsage", {})["usedSize"] / 1e6
    m = {x["name"]: x["value"] for x in d.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    return used, int(m.get("Nodes", 0)), int(m.get("JSEventListeners", 0))


def slope(points: list[tuple[float, float]]) -> float:
    """Least squares slope of (seconds, MB), in MB an hour."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den \
        else 0.0


def heap(args: argparse.Namespace, server_url: str, running: list[str]) -> list[str]:
    d = browser()
    stop = threading.Event()
    count = [0]
    try:
        log_in(d, server_url)
        d.execute_cdp_cmd("Performance.enable", {})
        base = heap_sample(d)
        t = threading.Thread(target=churn, args=(server_url, running, args.rate, stop, count),
                             daemon=True)
        t0 = time.monotonic()
        t.start()
        samples = []
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(15)
            samples.append((time.monotonic() - t0, *heap_sample(d)))
        stop.set()
        t.join(timeout=60)
    finally:
        d.quit()
    mb = [s[1] for s in samples]
    late = [(s[0], s[1]) for s in samples if s[0] >= 60] or [(s[0], s[1]) for s in samples]
    per_hour = slope(late)
    hour = mb[-1] + per_hour * max(0.0, 1 - args.minutes / 60) if mb else 0.0
    return [f"heap: #/machines with {args.machines:,} machines, {count[0]} state changes "
            f"through the API over {args.minutes:g} min ({args.rate:g} a second), "
            "after a garbage collection every 15 s",
            table(["sample", "heap MB", "nodes", "listeners"],
                  [["before the events (baseline)", f"{base[0]:.1f}", str(base[1]),
                    str(base[2])],
                   ["first", f"{mb[0]:.1f}", str(samples[0][2]), str(samples[0][3])],
                   ["last", f"{mb[-1]:.1f}", str(samples[-1][2]), str(samples[-1][3])],
                   ["largest", f"{max(mb):.1f}", "", ""]]),
            f"slope after the first minute: {per_hour:+.2f} MB an hour; last/baseline "
            f"{mb[-1] / base[0]:.2f}; an hour at that slope: {hour:.1f} MB",
            f"target: under {TARGETS['heap_mb']:.0f} MB through an hour: "
            f"{'met' if max(max(mb), hour) < TARGETS['heap_mb'] else 'MISSED'}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", nargs="+", choices=["latency", "idle", "heap", "all"],
                   default=["all"], help="which parts (default all)")
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("--events", type=int, default=40, help="latency: events timed (default 40)")
    p.add_argument("--gap", type=float, default=0.3, help="latency: seconds between events")
    p.add_argument("--idle-seconds", type=float, default=60.0)
    p.add_argument("--minutes", type=float, default=3.0, help="heap: minutes of events")
    p.add_argument("--rate", type=float, default=5.0, help="heap: state changes a second")
    p.add_argument("--managed", type=int, default=100,
                   help="heap: running machines managed and changed (default 100)")
    args = p.parse_args()
    args.part = {"latency", "idle", "heap"} if "all" in args.part else set(args.part)
    exit_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    load_before = load()
    out: list[str] = []
    try:
        if "latency" in args.part:
            out += latency(args, tmp) + [""]
        if args.part & {"idle", "heap"}:
            server = enomalism_server(tmp / "data", [fake_host(tmp / "host.xml", args.machines)])
            try:
                server.wait_ready(timeout=240)
                with client(server.url) as api:
                    wait_inventory(api, args.machines + 1)
                    objs = api.get("/rest/machines/", params={"kind": "vm", "detail": 1}
                                   ).json()["machine_objs"]
                    # the fake host's domains are found, not managed: the churn manages some
                    # of those that run, the list's first rows among them
                    running = [m["uuid"] for m in sorted(objs, key=lambda m: m["name"])
                               if m["state"] == "running"][:args.managed]
                    if "heap" in args.part:
                        for u in running:
                            api.post(f"/rest/machine/{u}/actions/manage/").raise_for_status()
                if "idle" in args.part:
                    out += idle(args, server.url) + [""]
                if "heap" in args.part:
                    out += heap(args, server.url, running) + [""]
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nthe dashboard kept open, {date.today()}, {os.cpu_count()} CPUs, load average "
          f"{load_before} before, {load()} after\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
