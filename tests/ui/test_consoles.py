"""The dashboard's console pages (ui/static/app/console.js) against the real endpoints and a
real guest: the tiny guest of tests/integration/test_consoles.py (its fixture, its server),
in the shared headless Chromium. The serial page's xterm.js carries a typed command to the
guest's shell and shows its answer; the VNC page's noVNC connects and draws the screen; a
session the server ends saying it may come back is opened again by the page."""

import time

import libvirt
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from tests.conftest import ADMIN_PASSWORD
from tests.integration.conftest import host, tiny_guest  # noqa: F401  (fixtures)
from tests.integration.test_consoles import WAIT, Guest, guest  # noqa: F401  (a fixture)
from tests.ui.pages import css, go, js_errors, login, text_in, wait

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.guest]


def test_the_serial_page_types_into_the_guest_and_shows_its_answer(
        guest: Guest, browser) -> None:  # noqa: F811, ANN001
    login(browser, guest.url, "admin", ADMIN_PASSWORD)
    go(browser, guest.url, f"#/console/{guest.uuid}/serial")
    text_in(browser, "#console-status", "Connected", WAIT)
    css(browser, "#console .xterm-screen").click()  # as a person would: focus, then type
    ActionChains(browser).send_keys(Keys.ENTER).send_keys(
        "echo $((6*7))-IN-THE-BROWSER" + Keys.ENTER).perform()
    # the guest computes it: the answer is not the echo of what was typed
    text_in(browser, "#console .xterm-rows", "42-IN-THE-BROWSER", WAIT)
    assert "$((6*7))-IN-THE-BROWSER" in browser.find_element(
        By.CSS_SELECTOR, "#console .xterm-rows").text
    assert not js_errors(browser)


def test_the_vnc_page_connects_novnc_and_draws_the_screen(
        guest: Guest, browser) -> None:  # noqa: F811, ANN001
    login(browser, guest.url, "admin", ADMIN_PASSWORD)
    go(browser, guest.url, f"#/console/{guest.uuid}/vnc")
    text_in(browser, "#console-status", "Connected", WAIT)
    canvas = wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#console canvas")))
    # the guest's screen (its framebuffer's size), drawn at a size one can see
    size = wait(browser, lambda d: d.execute_script(
        "const c = arguments[0]; return c.width > 0 && c.clientWidth > 0 && "
        "c.clientHeight > 0 && [c.width, c.height, c.clientWidth, c.clientHeight];",
        canvas), WAIT)
    assert size[0] >= 320 and size[1] >= 200 and min(size[2:]) >= 100, size
    assert not js_errors(browser)


def test_the_serial_page_comes_back_after_the_server_ends_its_session(
        guest: Guest, browser, host) -> None:  # noqa: F811, ANN001
    """A client outside the project takes the console (a forced libvirt stream): the server
    ends the page's session saying it may come back; the page tries again (refused while the
    outsider holds it) and is back, with a fresh ticket, once it lets go."""
    login(browser, guest.url, "admin", ADMIN_PASSWORD)
    go(browser, guest.url, f"#/console/{guest.uuid}/serial")
    text_in(browser, "#console-status", "Connected", WAIT)
    outsider = host.conn.newStream(0)
    host.conn.lookupByUUIDString(guest.uuid).openConsole(
        None, outsider, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    try:
        text_in(browser, "#console-status", "Reconnecting", WAIT)
    finally:
        outsider.abort()
    # an attempt refused while the outsider held it also opened first: settled, it stays
    wait(browser, lambda d: steady(d, "Connected"), WAIT * 2)
    css(browser, "#console .xterm-screen").click()
    ActionChains(browser).send_keys(Keys.ENTER).send_keys(
        "echo $((5*5))-BACK-IN-THE-BROWSER" + Keys.ENTER).perform()
    text_in(browser, "#console .xterm-rows", "25-BACK-IN-THE-BROWSER", WAIT)


def steady(driver, text: str) -> bool:  # noqa: ANN001
    """The status says `text` now and still a moment later."""
    status = lambda: driver.find_element(By.CSS_SELECTOR, "#console-status").text  # noqa: E731
    if text not in status():
        return False
    time.sleep(1.5)
    return text in status()


def test_the_serial_page_says_who_took_its_console_over_and_when(
        guest: Guest, browser) -> None:  # noqa: F811, ANN001
    """Another viewer forces the console (the API's take-over, not an outsider): the page
    stops, says who took it and at what time, and offers to take it back."""
    login(browser, guest.url, "admin", ADMIN_PASSWORD)
    go(browser, guest.url, f"#/console/{guest.uuid}/serial")
    text_in(browser, "#console-status", "Connected", WAIT)
    with guest.client() as c, c.machines.console(guest.uuid, force=True):
        text_in(browser, "#console-status", "admin took this console over at ", WAIT)
        assert not steady(browser, "Reconnecting")  # told, not silently retried
    assert not js_errors(browser)
