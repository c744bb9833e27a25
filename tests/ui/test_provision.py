"""Provision a package from the dashboard (issue 18): the form on a retrieved package posts
POST /rest/machine/<host>/actions/provision/ and goes to the transaction, which the page follows
to its end and shows as the API has it; a user without `control` is offered no hypervisor.

The server runs on libvirt's test driver, whose storage takes no uploads: the provision is
queued, retrieves nothing more (the package is cached) and fails in its transaction
(tests/api/test_provision_requests.py), and the page must say so as the API does."""

import time
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.conftest import ADMIN_PASSWORD
from tests.integration.provision_helpers import (
    FeedServer,
    build_package,
    feed_item,
    have_qemu_img,
    make_qcow2,
    publish,
)
from tests.ui.pages import css, go, js_errors, login, screenshot, text_in, wait

pytestmark = pytest.mark.skipif(not have_qemu_img(), reason="qemu-img is needed for packages")
FINAL = {"done", "failed", "cancelled"}


def _tx(server, txid: str, deadline: float = 120.0) -> dict:  # noqa: ANN001
    """The transaction once it has ended (polled through the API)."""
    end = time.monotonic() + deadline
    while True:
        t = server.ok("GET", f"/rest/transaction/{txid}/")["data"]
        if t["state"] in FINAL:
            return t
        assert time.monotonic() < end, t
        time.sleep(0.1)


@pytest.fixture(scope="module")
def package(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: ANN001
    """A test-driver package from a feed the admin added, retrieved (state `cached`)."""
    d = tmp_path_factory.mktemp("uipkg")
    pkg = build_package(d / "ui.xvm2", make_qcow2(d / "tiny.qcow2", 16, data=b"tiny" * 1000),
                        name="uipkg", virt_class="test")
    srv = FeedServer()
    try:
        url = publish(srv, [feed_item(srv, pkg, "/p/ui.xvm2")])
        uuid = server.ok("PUT", "/rest/vmfeed/", data={"url": url})["packages"][0]["uuid"]
        a = server.ok("POST", f"/rest/vmfeed/repo/package/{uuid}/")
        assert _tx(server, a["txid"])["state"] == "done"
        assert server.ok("GET", f"/rest/vmfeed/{uuid}/")["package"]["state"] == "cached"
        yield uuid
    finally:
        srv.close()


def test_provision_a_package_from_the_form_and_follow_its_transaction(server, browser, package):
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, "#/packages")
    css(browser, f"#packages a[href='#/provision/{package}']").click()
    form = css(browser, "form#provision")
    text_in(browser, "h1#page-title", "Provision uipkg")
    hv = server.app.state.registry.links()[0][0]
    wait(browser, lambda d: len(d.find_elements(
        By.CSS_SELECTOR, f"form#provision select[name=hvmuuid] option[value='{hv}']")) == 1)
    form.find_element(By.NAME, "name").send_keys("fromform")
    Select(form.find_element(By.NAME, "hvmuuid")).select_by_value(hv)
    form.find_element(By.NAME, "hostname").send_keys("fromform")
    form.find_element(By.NAME, "user_data").send_keys("#cloud-config\npackages: [htop]\n")
    form.find_element(By.NAME, "ssh_key").send_keys(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBwlDA1PrEzHbW9JNNQ++qP2H5qI4xRy36sDQNlNuwYv ui@test")
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, "provision")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: "#/transaction/" in d.current_url)
    txid = browser.current_url.rsplit("/", 1)[1]
    t = _tx(server, txid)
    assert t["kind"] == "provision"
    text_in(browser, "#tx-state", t["state"], timeout=30)  # as the API has it, no reload
    if t.get("error"):
        text_in(browser, "#tx-error", t["error"])
    log = browser.find_element(By.ID, "tx-log").text
    assert all(entry[2] in log for entry in t["log"]), (log, t["log"])
    assert not js_errors(browser), js_errors(browser)


def test_a_refused_provision_shows_the_api_s_words_by_the_form(server, browser, package):
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, f"#/provision/{package}")
    form = css(browser, "form#provision")
    text_in(browser, "h1#page-title", "Provision uipkg")
    form.find_element(By.NAME, "name").send_keys("web")  # the host's domain has that name
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    r = server.http.post(f"/rest/machine/{_host(server)}/actions/provision/",
                         auth=("admin", ADMIN_PASSWORD), data={"pkguuid": package, "name": "web"})
    assert r.status_code == 409, r.text
    body = r.json()
    text_in(browser, "form#provision .error", f"{body['message']} (errno {body['errno']})")
    assert "#/provision/" in browser.current_url


def _host(server) -> str:  # noqa: ANN001
    """The host of the server's own hypervisor: the one the page's path names."""
    hv = server.app.state.registry.links()[0][0]
    return next(h["uuid"] for h in server.ok("GET", "/rest/hosts/")["hosts"]
                if any(v["uuid"] == hv for v in server.ok(
                    "GET", f"/rest/machine/{h['uuid']}/hypervisors/")["hypervisors"]))


def test_a_user_without_control_is_offered_no_hypervisor(server, browser, package):
    server.ok("POST", "/rest/user/create/", data={"username": "pia",
                                                   "password": "pia-password-1"})
    login(browser, server.url, "pia", "pia-password-1")
    go(browser, server.url, f"#/provision/{package}")
    css(browser, "form#provision")
    # the package is the admin's feed's: pia may not read it, and the page says so as the API does
    r = server.http.get(f"/rest/vmfeed/{package}/", auth=("pia", "pia-password-1"))
    assert r.status_code in (403, 404), r.text
    text_in(browser, "form#provision .error", r.json()["message"])
    wait(browser, lambda d: d.find_element(By.ID, "provision-networks").text)  # lists loaded
    options = [o.get_attribute("value") for o in browser.find_elements(
        By.CSS_SELECTOR, "form#provision select[name=hvmuuid] option")]
    assert options == [""], options  # only "any (the server picks)"
    assert not js_errors(browser), js_errors(browser)


def test_a_user_with_control_on_a_hypervisor_provisions_onto_it(server, browser, package):
    """She may not read the hypervisor's host, only the hypervisor (GET /rest/hypervisors/)
    and the machines on it: the form offers it and names one of those machines in the path."""
    server.ok("POST", "/rest/user/create/", data={"username": "quinn",
                                                   "password": "quinn-password-1"})
    hv = server.app.state.registry.links()[0][0]
    server.ok("PUT", f"/rest/permissions/{hv}/", data={"user": "quinn", "permission": "control"})
    server.ok("PUT", f"/rest/permissions/{package}/", data={"user": "quinn", "permission": "read"})
    quinn = ("quinn", "quinn-password-1")
    assert server.http.get("/rest/hosts/", auth=quinn).json()["hosts"] == []
    login(browser, server.url, *quinn)
    go(browser, server.url, f"#/provision/{package}")
    form = css(browser, "form#provision")
    text_in(browser, "h1#page-title", "Provision uipkg")
    wait(browser, lambda d: len(d.find_elements(
        By.CSS_SELECTOR, f"form#provision select[name=hvmuuid] option[value='{hv}']")) == 1)
    options = [o.get_attribute("value") for o in form.find_elements(
        By.CSS_SELECTOR, "select[name=hvmuuid] option")]
    assert options == ["", hv], options  # "any", and the one she controls
    form.find_element(By.NAME, "name").send_keys("quinns")
    Select(form.find_element(By.NAME, "hvmuuid")).select_by_value(hv)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda d: "#/transaction/" in d.current_url)
    t = _tx(server, browser.current_url.rsplit("/", 1)[1])
    assert t["kind"] == "provision", t  # queued: the path's machine was one she may read
    assert not js_errors(browser), js_errors(browser)
