"""The dashboard's pages beyond the first ones (issue 18): buttons that follow the user's
permissions, the pages an administrator uses for hosts, networks, feeds and packages, and the
machine list's filters. Several checks share one test: the browser is slow on a small machine."""

from selenium.webdriver.common.by import By

from tests.conftest import ADMIN_PASSWORD
from tests.ui.pages import css, go, js_errors, login, text_in, wait


def _buttons(browser) -> set[str]:  # noqa: ANN001
    return {b.get_attribute("data-action")
            for b in browser.find_elements(By.CSS_SELECTOR, "#actions button")}


def test_a_user_with_read_and_control_sees_exactly_the_permitted_buttons(server, browser):
    uuid = server.new_vm("ctl1")  # running, owned by the admin
    server.ok("POST", "/rest/user/create/", data={"username": "dave",
                                                   "password": "dave-password-1"})
    for p in ("read", "control"):
        server.ok("PUT", f"/rest/permissions/{uuid}/", data={"user": "dave", "permission": p})
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, f"#/machine/{uuid}")
    css(browser, "#actions button[data-action=suspend]")
    assert {"suspend", "shutdown", "reboot", "poweroff", "totaldelete"} <= _buttons(browser)
    css(browser, "form#grant")  # the owner's administrator sees the access list

    login(browser, server.url, "dave", "dave-password-1")
    go(browser, server.url, f"#/machine/{uuid}")
    css(browser, "#actions button[data-action=suspend]")
    # running: the lifecycle actions control allows, not delete (delete), resize (modify)
    # or package (export)
    assert _buttons(browser) == {"suspend", "shutdown", "reboot", "poweroff"}
    assert not browser.find_elements(By.CSS_SELECTOR, "form#grant")
    css(browser, "a[href$='/serial']")  # control: the consoles too
    css(browser, "#actions button[data-action=suspend]").click()
    text_in(browser, "#machine-state", "paused")
    wait(browser, lambda d: _buttons(d) == {"resume", "poweroff"})
    assert not js_errors(browser), js_errors(browser)
