"""The dashboard in a real browser: one server (uvicorn in a thread, a test-driver host) and
one headless Chromium (Debian's chromium and chromium-driver, through Selenium) for the whole
session; each test logs in as it needs. Screenshots the README shows are written to docs/."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from enomalism.config import Settings
from tests.cli.conftest import running_server
from tests.conftest import ADMIN_PASSWORD, FAST_HASHES, database_url
from tests.fakehost import FakeDomain, domain_xml, write_host

ADMIN = ("admin", ADMIN_PASSWORD)
WAIT = 15  # seconds the page may take to show what a test waits for
DOCS = Path(__file__).parents[2] / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.browser


class Server:
    def __init__(self, url: str, app) -> None:  # noqa: ANN001
        self.url, self.app = url, app
        self.http = httpx.Client(base_url=url, timeout=30)

    def ok(self, method: str, path: str, auth: tuple[str, str] = ADMIN, **kw) -> dict:
        r = self.http.request(method, path, auth=auth, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    @property
    def conn(self):  # noqa: ANN201
        """The server's own libvirt connection: what is done there is done behind its back."""
        registry = self.app.state.registry
        return registry.connection(registry.links()[0][0]).virconnect

    def new_vm(self, name: str, state: str = "running") -> str:
        """A domain made behind the server's back, then adopted (managed) through the API."""
        dom = self.conn.defineXML(domain_xml(name))
        if state == "running":
            dom.create()
        self.app.state.registry.wait_idle(30)
        self.ok("POST", f"/rest/machine/{dom.UUIDString()}/actions/manage/")
        return dom.UUIDString()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("ui")
    host = write_host(d / "h.xml", [FakeDomain("web", state="running", disks=["web.img"]),
                                    FakeDomain("db", state="paused")],
                      ["web.img", "base.qcow2"], "/default-pool")
    settings = Settings(data_dir=d / "data", hypervisors=[host], admin_password=ADMIN_PASSWORD,
                        database_url=database_url(d / "data"), events_heartbeat=2.0,
                        stats_interval=1.0, **FAST_HASHES)
    with running_server(settings) as (url, app):
        app.state.registry.wait_idle(30)
        s = Server(url, app)
        yield s
        s.http.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not (CHROMIUM and DRIVER):
        pytest.skip("no chromium and chromedriver (Debian: apt-get install chromium "
                    "chromium-driver; scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """A failed browser test says what the page showed and what its console logged."""
    report = yield
    driver = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and driver is not None:
        try:
            logs = [e["message"] for e in driver.get_log("browser")]
            body = driver.find_element("css selector", "body").text
            report.sections.append(("browser", f"url: {driver.current_url}\nconsole:\n"
                                    + "\n".join(logs) + f"\npage text:\n{body[:3000]}"))
        except Exception as e:  # the report stands without it
            report.sections.append(("browser", f"(could not read the page: {e})"))
    return report
