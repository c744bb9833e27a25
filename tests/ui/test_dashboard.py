"""The dashboard in headless Chromium (issue 18): log in and out, the machine list kept live by
the events stream, actions by clicks, create from an image with its progress, a user with a
grant, and a cross-site form post refused."""

from selenium.webdriver.common.by import By

from tests.conftest import ADMIN_PASSWORD
from tests.ui.pages import css, go, js_errors, login, logout, screenshot, text_in, wait


def test_login_shows_the_machines_and_logout_ends_the_session(server, browser) -> None:
    logout(browser, server.url)  # the shared browser may hold an earlier test's session
    css(browser, "form#login")
    assert browser.find_element(By.CSS_SELECTOR, "main#main")  # landmarks
    screenshot(browser, "login")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    text_in(browser, "#machines tbody", "web")
    cookie = browser.get_cookie("enomalism_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # not readable by scripts
    screenshot(browser, "machines")
    browser.find_element(By.ID, "logout").click()
    css(browser, "form#login")
    browser.get(server.url + "/")
    css(browser, "form#login")  # the session is gone on the server too
    assert not js_errors(browser), js_errors(browser)


def test_a_logged_in_visit_takes_the_answers_its_page_asked_for_early(server, browser) -> None:
    """The page of a logged-in visit names the session and the list's first rows as
    preloads: the browser asks for each once, while it loads the files, and the page takes
    those answers (a fetch that did not match its preload would ask a second time)."""
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    browser.get("about:blank")
    browser.get(server.url + "/#/machines")
    text_in(browser, "#machines tbody", "web")
    asked = browser.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map((r) => [new URL(r.name).pathname, r.initiatorType])"
        ".filter(([p]) => p === '/rest/session/' || p === '/rest/machines/')")
    assert sorted(asked) == [["/rest/machines/", "link"], ["/rest/session/", "link"]]
    assert not js_errors(browser), js_errors(browser)


# Before the page's scripts: each fetch's URL, the headers it sent, and the event cursor its
# answer named (X-Last-Event-ID).
FETCHES = """
window.__fetches = [];
const real = window.fetch;
window.fetch = async (url, init) => {
  const seen = { url: String(url), sent: (init && init.headers) || {} };
  window.__fetches.push(seen);
  const r = await real(url, init);
  seen.cursor = r.headers.get("X-Last-Event-ID");
  return r;
};
"""


def test_the_stream_starts_where_the_early_rows_were_read(server, browser) -> None:
    """The list's first rows are read before the events stream opens: the stream is opened
    with the rows' X-Last-Event-ID, so a change made in between still reaches the page."""
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                     {"source": FETCHES})
    try:
        browser.get("about:blank")
        browser.get(server.url + "/#/machines")
        text_in(browser, "#machines tbody", "web")
        fetches = wait(browser, lambda d: d.execute_script(
            "return window.__fetches.some((f) => f.url.includes('/rest/events/'))"
            " && window.__fetches"))
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                                {"identifier": script["identifier"]})
    rows = next(f for f in fetches if "/rest/machines/?" in f["url"])
    first_stream = next(f for f in fetches if f["url"].endswith("/rest/events/"))
    assert rows["cursor"] and first_stream["sent"].get("Last-Event-ID") == rows["cursor"]


def test_the_list_follows_a_change_behind_the_servers_back_and_clicks_suspend_resume(
        server, browser) -> None:
    uuid = server.new_vm("live1")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    row = f"#machines tr[data-uuid='{uuid}'] .state-cell"
    text_in(browser, row, "running")
    server.conn.lookupByUUIDString(uuid).suspend()  # libvirt, not the API
    text_in(browser, row, "paused")  # applied from the events stream, no reload
    server.conn.lookupByUUIDString(uuid).resume()
    text_in(browser, row, "running")
    go(browser, server.url, f"#/machine/{uuid}")
    css(browser, "#actions button[data-action=suspend]").click()
    text_in(browser, "#machine-state", "paused")
    assert server.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]["state"] == "paused"
    css(browser, "#actions button[data-action=resume]").click()
    text_in(browser, "#machine-state", "running")
    screenshot(browser, "machine")
    assert not js_errors(browser), js_errors(browser)


def test_a_user_with_a_grant_sees_only_that_machine(server, browser) -> None:
    mine = server.new_vm("granted1")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, "#/users")
    form = css(browser, "form#new-user")
    form.find_element(By.NAME, "username").send_keys("carol")
    form.find_element(By.NAME, "password").send_keys("carol-password-1")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    text_in(browser, "#users", "carol")
    go(browser, server.url, f"#/machine/{mine}")
    grant = css(browser, "form#grant")
    grant.find_element(By.NAME, "user").send_keys("carol")
    grant.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    text_in(browser, "#grants", "carol")
    login(browser, server.url, "carol", "carol-password-1")
    text_in(browser, "#machines tbody", "granted1")
    names = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#machines tbody th.name")}
    assert names == {"granted1"}  # not the host's web and db (their UUIDs may hold "db")
    assert not browser.find_element(By.CSS_SELECTOR, "a[href='#/users']").is_displayed()


def test_a_form_posted_from_another_site_is_refused(server, browser) -> None:
    """A page elsewhere posts a form at the server while the user is logged in: refused."""
    uuid = server.new_vm("target1")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    attack = (f'<form id="f" method="POST" action="{server.url}/rest/machine/{uuid}/actions/'
              'poweroff/"><input name="x" value="1"></form>')
    browser.get("data:text/html," + attack)
    browser.execute_script("document.getElementById('f').submit()")
    wait(browser, lambda d: "errno" in d.find_element(By.TAG_NAME, "body").text)
    assert "1140" in browser.find_element(By.TAG_NAME, "body").text
    assert server.ok("GET", f"/rest/machine/{uuid}/")["machine_obj"]["state"] == "running"


def _image(server, name: str) -> str:  # noqa: ANN001
    """A qcow2 volume in the fake host's pool and its image row (the test driver cannot take
    an upload: tests/api/test_create.py does the same)."""
    from enomalism.store.models import Hypervisor, Image

    registry = server.app.state.registry
    hv = registry.links()[0][0]
    pool = registry.connection(hv).virconnect.storagePoolLookupByName("default-pool")
    path = pool.createXML(f"<volume><name>{name}.qcow2</name><capacity>{1 << 30}</capacity>"
                          "<target><format type='qcow2'/></target></volume>", 0).path()
    with server.app.state.db.session() as s:
        img = Image(name=name, format="qcow2", size=1 << 30, virtual_size=1 << 30,
                    hypervisor_uuid=hv, pool="default-pool", path=path, state="ready",
                    owner_uuid=s.get(Hypervisor, hv).owner_uuid)
        s.add(img)
        s.flush()
        return img.uuid


def test_create_from_an_image_and_watch_its_progress(server, browser) -> None:
    _image(server, "tiny")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, "#/create")
    form = css(browser, "form#create")
    text_in(browser, "form#create select[name=image]", "tiny")
    form.find_element(By.NAME, "name").send_keys("fromimage")
    from selenium.webdriver.support.ui import Select

    Select(form.find_element(By.NAME, "image")).select_by_visible_text("tiny (qcow2)")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    text_in(browser, "#tx-state", "done", timeout=60)
    assert browser.find_element(By.CSS_SELECTOR, "main progress").get_attribute("value") == "100"
    text_in(browser, "#tx-target", "fromimage")
    screenshot(browser, "transaction")
    browser.find_element(By.ID, "tx-target").click()
    text_in(browser, "#disks", "vda")
    assert not js_errors(browser), js_errors(browser)


def test_a_broken_stream_resumes_without_losing_a_change(server, browser) -> None:
    uuid = server.new_vm("resume1")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    row = f"#machines tr[data-uuid='{uuid}'] .state-cell"
    text_in(browser, row, "running")
    wait(browser, lambda d: d.execute_script("return window.enomalismStream.last !== null"))
    # the stream breaks (as in a sleeping laptop); a change happens while it is down
    browser.execute_script("window.enomalismStream.running = false;"
                           "window.enomalismStream.ctrl.abort()")
    server.conn.lookupByUUIDString(uuid).suspend()
    server.app.state.registry.wait_idle(30)
    assert "running" in browser.find_element(By.CSS_SELECTOR, row).text
    browser.execute_script("window.enomalismStream.start()")  # resumes with Last-Event-ID
    text_in(browser, row, "paused")


def test_phone_width_and_dark(server, browser) -> None:
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    browser.set_window_size(390, 844)
    try:
        text_in(browser, "#machines tbody", "web")
        browser.find_element(By.ID, "theme").click()
        theme = browser.execute_script("return document.documentElement.dataset.theme")
        assert theme in ("dark", "light")
        if theme != "dark":
            browser.find_element(By.ID, "theme").click()
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, overflow  # the table scrolls in its own box, not the page
        screenshot(browser, "machines-phone-dark")
    finally:
        browser.execute_script("localStorage.removeItem('theme')")
        browser.set_window_size(1280, 900)
