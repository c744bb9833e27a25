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


def test_the_main_pages_have_no_serious_accessibility_findings(server, browser):
    """axe-core (pinned, tests/ui/vendor) on each main page, light and dark."""
    from tests.ui.pages import axe_findings

    uuid = server.new_vm("a11y1")
    browser.set_script_timeout(60)
    browser.get(server.url + "/")
    css(browser, "form#login")
    findings = {"login": axe_findings(browser)}
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    pages = {"machines": ("#/machines", "#machines tbody tr"),
             "machine": (f"#/machine/{uuid}", "#actions button"),
             "transactions": ("#/transactions", "#transactions"),
             "create": ("#/create", "form#create"), "images": ("#/images", "form#upload"),
             "hosts": ("#/hosts", "main article"), "networks": ("#/networks", "main section"),
             "users": ("#/users", "#users"), "audit": ("#/audit", "#audit tbody tr"),
             "account": ("#/account", "main form")}
    for theme in ("light", "dark"):
        browser.execute_script(f"localStorage.setItem('theme', '{theme}')")
        for name, (fragment, ready) in pages.items():
            go(browser, server.url, fragment)
            browser.refresh()  # the theme is read when the page loads
            css(browser, ready)
            findings[f"{name} ({theme})"] = axe_findings(browser)
    browser.execute_script("localStorage.removeItem('theme')")
    bad = {page: f for page, f in findings.items() if f}
    assert not bad, "\n".join(f"{p}: {x}" for p, f in bad.items() for x in f)
