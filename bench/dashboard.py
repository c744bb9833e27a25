"""The dashboard's machine list with 1,000 machines, in headless Chromium, against a static
HTML file of the same rows (issue 18, "Speed").

The 1,000 machines come from a fake host for libvirt's test driver, as in `list_machines.py`.
The server runs in its own process (`enomalism serve`); the browser is Debian's chromium
through chromium-driver (Selenium), as the browser tests drive it, logged in once through the
page's form. Each load is cold (the browser's cache off) and measures:

- first meaningful paint: from the navigation's start until the first frame after the list's
  first row is in the DOM (a MutationObserver installed before the page's own scripts, then
  the next animation frame), in milliseconds;
- bytes transferred: the navigation's and every finished resource's `transferSize` (the events
  stream, which never finishes, is not counted);
- rows in the DOM: the list's `<tr>`s, and all elements of the page.

Baselines, in the same run and the same browser, loads interleaved one by one, served from a
temporary directory by uvicorn with the dashboard's own static files app (api/ui.py's
`CompressedFiles`: each text file compressed once and kept):

- `static page`: an HTML file with the same rows the dashboard shows (its first page), the
  same style sheets, no script;
- `static 1,000`: the same file with all 1,000 rows (what a page that shows everything costs).

Ratios are the dashboard's median over the baseline's. The issue's targets (first meaningful
paint under 300 ms, under 300 KB transferred, at most about 100 rows in the DOM) are printed
with whether they were met. Never asserts: a benchmark, not a test.
"""

import argparse
import html
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    ADMIN_PASSWORD,
    ROOT,
    Server,
    client,
    enomalism_server,
    exit_on_sigterm,
    free_port,
    load,
    median,
    table,
)
from list_machines import fake_host, wait_inventory  # noqa: E402

TARGET_MS, TARGET_KB, TARGET_ROWS = 300.0, 300.0, 100
STATIC = ROOT / "src" / "enomalism" / "ui" / "static"
ROW = "#machines tbody tr"

# Installed before any of the page's scripts: when the first row appears, wait for the next
# frame and note the time since the navigation started.
OBSERVER = """
window.__fmp = null;
new MutationObserver((_, obs) => {
  if (document.querySelector("ROW")) {
    obs.disconnect();
    requestAnimationFrame(() => setTimeout(() => { window.__fmp = performance.now(); }, 0));
  }
}).observe(document, {childList: true, subtree: true});
""".replace("ROW", ROW)

MEASURE = """
const nav = performance.getEntriesByType("navigation")[0];
const res = performance.getEntriesByType("resource").filter((r) => r.responseEnd > 0);
return {fmp: window.__fmp, bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
        requests: 1 + res.length, rows: document.querySelectorAll("ROW").length,
        elements: document.getElementsByTagName("*").length,
        chain: [["the page", nav.startTime, nav.responseEnd],
                ...res.map((r) => [new URL(r.name).pathname, r.startTime, r.responseEnd])]};
""".replace("ROW", ROW)


def browser():  # noqa: ANN201
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        sys.exit("bench/dashboard.py needs Debian's chromium and chromium-driver "
                 "(scripts/setup.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(arg)
    d = webdriver.Chrome(service=Service(driver), options=options)
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVER})
    return d


def static_page(rows: list[dict], hosts: dict, users: dict) -> str:
    """The machine list as the dashboard draws it, as plain HTML with the same style sheets."""
    def row(m: dict) -> str:
        e = html.escape
        return (f"<tr><td><input type=checkbox aria-label='Select {e(m['name'])}'></td>"
                f"<th scope=row><a href='#/machine/{m['uuid']}'>{e(m['name'])}</a></th>"
                f"<td><span class='state state-{m['state']}'>{m['state']}</span></td>"
                f"<td>{e(hosts.get(m['host'], '–'))}</td><td>{e(users.get(m['owner'], '–'))}</td>"
                f"<td>{m['vcpus']}</td><td>{round((m['memory_kib'] or 0) / 1024)} MiB</td>"
                f"<td>–</td><td>–</td><td>{len(m['clusters'])}</td></tr>")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>machines</title>"
            "<link rel=stylesheet href='/ui/static/vendor/pico/css/pico.min.css'>"
            "<link rel=stylesheet href='/ui/static/app/app.css'></head><body>"
            "<main class=container-fluid><h1>Machines</h1><div class=table-wrap>"
            "<table id=machines class=striped><thead><tr><th></th><th>Name</th><th>State</th>"
            "<th>Host</th><th>Owner</th><th>vCPUs</th><th>Memory</th><th>CPU use</th>"
            "<th>Memory use</th><th>Clusters</th></tr>"
            f"</thead><tbody>{''.join(row(m) for m in rows)}</tbody></table></div></main>"
            "</body></html>")


# The baseline's server: the same files compressed the same way (api/ui.py's CompressedFiles,
# as the dashboard serves them), by uvicorn, with nothing else.
STATIC_APP = """
import sys
import uvicorn
from pathlib import Path
from enomalism.api.ui import CompressedFiles

app = CompressedFiles(Path(sys.argv[2]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def static_server(tmp: Path, pages: dict[str, str]) -> Server:
    root = tmp / "static"
    shutil.copytree(STATIC, root / "ui" / "static")
    for name, text in pages.items():
        (root / name).write_text(text)
    port = free_port()
    return Server([sys.executable, "-c", STATIC_APP, str(port), str(root)], port,
                  tmp / "static.log")


def measure(d, url: str) -> dict:  # noqa: ANN001
    from selenium.webdriver.support.ui import WebDriverWait

    d.get("about:blank")
    d.get(url)
    WebDriverWait(d, 60, poll_frequency=0.02).until(
        lambda x: x.execute_script("return window.__fmp !== null"))
    return d.execute_script(MEASURE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--machines", type=int, default=1000)
    p.add_argument("-n", type=int, default=15, help="cold loads of each page (default 15)")
    args = p.parse_args()
    exit_on_sigterm()

    tmp = Path(tempfile.mkdtemp(prefix="enomalism-bench-"))
    servers: list[Server] = []
    d = None
    load_before = load()
    try:
        server = enomalism_server(tmp / "data", [fake_host(tmp / "host.xml", args.machines)])
        servers.append(server)
        server.wait_ready()
        with client(server.url) as api:
            wait_inventory(api, args.machines + 1)
            every = api.get("/rest/machines/", params={"kind": "vm", "detail": 1}).json()
            hosts = {h["uuid"]: h["name"] for h in api.get("/rest/hosts/").json()["hosts"]}
        objs = every["machine_objs"]
        users = {objs[0]["owner"]: "admin"} if objs and objs[0]["owner"] else {}
        static = static_server(tmp, {"page.html": static_page(objs[:50], hosts, users),
                                     "all.html": static_page(objs, hosts, users)})
        servers.append(static)
        static.wait_ready("/page.html")

        d = browser()
        d.get(server.url + "/")
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        form = WebDriverWait(d, 30).until(lambda x: x.find_element(By.ID, "login"))
        form.find_element(By.NAME, "username").send_keys("admin")
        form.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(d, 30).until(lambda x: x.find_elements(By.CSS_SELECTOR, ROW))

        pages = {"dashboard": server.url + "/#/machines", "static page": static.url + "/page.html",
                 "static 1,000": static.url + "/all.html"}
        for url in pages.values():  # warm-up: the servers' and the browser's first loads
            measure(d, url)
        runs: dict[str, list[dict]] = {k: [] for k in pages}
        for _ in range(args.n):
            for name, url in pages.items():
                runs[name].append(measure(d, url))
        report(runs, args.machines, load_before)
    finally:
        if d is not None:
            d.quit()
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def chain(runs: list[dict]) -> str:
    """Where the dashboard's first paint goes: each request's start and end since the
    navigation began (medians over the loads), in the order they start, and the paint."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        for name, start, end in r["chain"]:
            spans.setdefault(name, []).append((start, end))
    rows = sorted(([name, str(len(xs)), f"{median([a for a, _ in xs]):.0f}",
                    f"{median([b for _, b in xs]):.0f}",
                    f"{median([b - a for a, b in xs]):.0f}"] for name, xs in spans.items()),
                  key=lambda r: float(r[2]))
    rows.append(["first meaningful paint", str(len(runs)), "",
                 f"{median([r['fmp'] for r in runs]):.0f}", ""])
    return "\nthe dashboard's requests (ms since the navigation began, medians):\n" + \
        table(["request", "n", "start", "end", "took"], rows)


def report(runs: dict[str, list[dict]], n: int, load_before: str) -> None:
    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs[name]])

    base = "static page"
    rows = []
    for name in runs:
        rows.append([name, str(len(runs[name])), f"{med(name, 'fmp'):.0f}",
                     f"{med(name, 'fmp') / med(base, 'fmp'):.2f}",
                     f"{med(name, 'bytes') / 1024:.0f}",
                     f"{med(name, 'bytes') / med(base, 'bytes'):.2f}",
                     f"{med(name, 'requests'):.0f}", f"{med(name, 'rows'):.0f}",
                     f"{med(name, 'elements'):.0f}"])
    print(f"\nthe machine list with {n:,} machines (test driver), {date.today()}, "
          f"{os.cpu_count()} CPUs, load average {load_before} before, {load()} after; "
          "cold loads in headless Chromium, medians")
    print(table(["page", "n", "FMP ms", "ratio", "KiB", "ratio", "requests", "rows",
                 "elements"], rows))
    print(chain(runs["dashboard"]))
    fmp, kb, shown = med("dashboard", "fmp"), med("dashboard", "bytes") / 1024, \
        med("dashboard", "rows")
    for what, value, target, unit in (("first meaningful paint", fmp, TARGET_MS, "ms"),
                                      ("transferred", kb, TARGET_KB, "KiB"),
                                      ("rows in the DOM", shown, TARGET_ROWS, "")):
        verdict = "met" if value <= target else "MISSED"
        print(f"target: {what} at most {target:.0f} {unit}: {verdict} ({value:.0f} {unit})")


if __name__ == "__main__":
    main()
