"""The dashboard's pages beyond the first ones (issue 18): buttons that follow the user's
permissions, the pages an administrator uses for hosts, networks, feeds and packages, and the
machine list's filters. Several checks share one test: the browser is slow on a small machine."""

from selenium.webdriver.common.by import By

from tests.conftest import ADMIN_PASSWORD
from tests.ui.pages import css, go, js_errors, login, logout, screenshot, text_in, wait


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
    screenshot(browser, "machine-read-control")
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
    logout(browser, server.url)
    css(browser, "form#login")
    findings = {"login": axe_findings(browser)}
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    pages = {"machines": ("#/machines", "#machines tbody tr"),
             "machine": (f"#/machine/{uuid}", "#actions button"),
             "transactions": ("#/transactions", "#transactions"),
             "create": ("#/create", "form#create"), "images": ("#/images", "form#upload"),
             "provision": (f"#/provision/{uuid}", "form#provision"),
             "packages": ("#/packages", "form#add-feed"),
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


def _fill(form, **values: str) -> None:  # noqa: ANN001
    for name, value in values.items():
        el = form.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def _click(browser, text: str) -> None:  # noqa: ANN001
    """Click the page's button that says `text` once it shows."""
    # found and clicked in one step: the page may draw its list again in between
    wait(browser, lambda d: d.execute_script(
        "const b = [...document.querySelectorAll('main button')]"
        ".find((x) => x.textContent === arguments[0]); if (b) b.click(); return !!b;", text))


def test_list_filters_hosts_and_networks_by_clicks(server, browser, tmp_path):
    """The list's cluster and owner filters and its size columns; a host added and removed;
    a network made, with a range, a reservation and its release."""
    from tests.fakehost import write_host

    blue = server.new_vm("blue1")
    server.new_vm("green1")
    c = server.ok("PUT", "/rest/cluster/", data={"cluster_name": "bluec"})["cluster"]["uuid"]
    server.ok("POST", f"/rest/machine/{blue}/clusters/", data={"clusters": c})
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    browser.execute_script("window.confirm = () => true")  # the removals ask first
    heads = css(browser, "#machines thead").text
    assert all(c in heads for c in ("vCPUs", "Memory", "CPU use", "Memory use"))
    # the running rows' use is asked for (the test driver reports none: a dash, not a guess)
    wait(browser, lambda d: d.execute_script(
        "return performance.getEntriesByType('resource').some((r) => "
        "r.name.includes('/rest/stats/?machines='))"))
    wait(browser, lambda d: "bluec" in d.find_element(By.NAME, "cluster").text)
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.NAME, "cluster")).select_by_visible_text("bluec")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    text_in(browser, "#machines tbody", "blue1")
    wait(browser, lambda d: "green1" not in d.find_element(By.CSS_SELECTOR, "#machines tbody").text)
    go(browser, server.url, "#/machines?owner=nobody-such")
    text_in(browser, "#machines caption", "no machines match")
    go(browser, server.url, "#/machines?owner=admin")
    text_in(browser, "#machines tbody", "green1")

    uri = write_host(tmp_path / "extra.xml", [])
    go(browser, server.url, "#/hosts")
    _fill(css(browser, "form#add-host"), name="extra1", virt_url=uri)
    text_in(browser, "main", "extra1")
    text_in(browser, "main", uri)
    browser.execute_script("window.confirm = () => true")
    _click(browser, f"Remove {uri}")
    _click(browser, "Remove host extra1")
    wait(browser, lambda d: "extra1" not in d.find_element(By.TAG_NAME, "main").text)
    assert "extra1" not in [h["name"] for h in server.ok("GET", "/rest/hosts/")["hosts"]]

    go(browser, server.url, "#/networks")
    _fill(css(browser, "form#new-network"), name="uinet", ip="10.9.0.0", netmask="24",
          bridge="br-ui")
    text_in(browser, "main", "uinet")
    _fill(css(browser, "form.add-range"), start_ip="10.9.0.10", end_ip="10.9.0.20")
    text_in(browser, "main table[id^=ranges]", "10.9.0.20")
    _fill(css(browser, "form.reserve"), note="printer")
    text_in(browser, "main table[id^=leases]", "printer")
    assert "10.9.0.10" in browser.find_element(By.CSS_SELECTOR, "main table[id^=leases]").text
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot(browser, "networks")
    _click(browser, "Release 10.9.0.10")
    wait(browser, lambda d: "printer" not in d.find_element(By.TAG_NAME, "main").text)
    assert not js_errors(browser), js_errors(browser)


def test_a_feed_added_its_package_retrieved_and_a_machine_exported(server, browser, tmp_path):
    """Packages: a feed added by its URL and refreshed, its package retrieved (the
    transaction's page, then a download link that works); a machine exported from its page,
    the transaction's page then links the new package's download."""
    from tests.integration.provision_helpers import (
        build_package,
        feed_item,
        feed_server,
        have_qemu_img,
        make_qcow2,
        publish,
    )

    if not have_qemu_img():
        import pytest

        pytest.skip("qemu-img is needed to build a package")
    pkg = build_package(tmp_path / "alpha.xvm2",
                        make_qcow2(tmp_path / "tiny.qcow2", 16, data=b"hi\n" * 50), name="alpha")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    with feed_server() as srv:
        url = publish(srv, [feed_item(srv, pkg, "/p/alpha.xvm2")])
        go(browser, server.url, "#/packages")
        _fill(css(browser, "form#add-feed"), url=url)
        text_in(browser, "#feeds", url)
        text_in(browser, "#packages", "remote")
        _click(browser, "Retrieve alpha")
        text_in(browser, "#tx-state", "done", timeout=60)
        go(browser, server.url, "#/packages")
        link = css(browser, "#packages a.download")
        assert link.text == "Download alpha"
        screenshot(browser, "packages")
        size = browser.execute_async_script(  # the link works with the session's cookie
            "fetch(arguments[0]).then((r) => r.blob()).then((b) => arguments[1](b.size))",
            link.get_attribute("href"))
        assert size == pkg.size
        _click(browser, "Refresh test packages")  # the feed's title
        text_in(browser, "main p[role=status]", "refresh")

    uuid = server.new_vm("exp1")
    go(browser, server.url, f"#/machine/{uuid}")
    css(browser, "details summary").click()
    form = css(browser, "form#export")
    _fill(form, name="exp1-pkg")
    text_in(browser, "#page-title", "package")
    text_in(browser, "#tx-state", "done", timeout=60)
    href = css(browser, "#tx-download").get_attribute("href")
    package = href.rstrip("/").split("/")[-2]
    assert server.ok("GET", f"/rest/vmfeed/{package}/")["package"]["name"] == "exp1-pkg"
    assert not js_errors(browser), js_errors(browser)
