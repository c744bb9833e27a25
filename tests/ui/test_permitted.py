"""What a granted non-administrator is offered beyond a machine's page (issue 18): the list's
bulk actions follow the API's answer per machine and show a result per machine, the images
page offers delete only where the user holds it; and the pages that read the hypervisors:
hosts with capacity and allocation, the create form's libvirt networks."""

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.conftest import ADMIN_PASSWORD
from tests.ui.pages import css, go, js_errors, login, screenshot, text_in, wait


def _image(server, name: str, owner: str | None = None) -> str:  # noqa: ANN001
    """An image row over a qcow2 volume of the fake host's pool (the test driver takes no
    upload), owned by `owner` (default the hypervisor's owner)."""
    from enomalism.store.models import Hypervisor, Image

    registry = server.app.state.registry
    hv = registry.links()[0][0]
    pool = registry.connection(hv).virconnect.storagePoolLookupByName("default-pool")
    path = pool.createXML(f"<volume><name>{name}.qcow2</name><capacity>{1 << 30}</capacity>"
                          "<target><format type='qcow2'/></target></volume>", 0).path()
    with server.app.state.db.session() as s:
        img = Image(name=name, format="qcow2", size=1 << 30, virtual_size=1 << 30,
                    hypervisor_uuid=hv, pool="default-pool", path=path, state="ready",
                    owner_uuid=owner or s.get(Hypervisor, hv).owner_uuid)
        s.add(img)
        s.flush()
        return img.uuid


def _options(browser, selector: str) -> list[str]:  # noqa: ANN001
    """The values offered now (read in one script: the page may replace them meanwhile)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((o) => o.value)",
        f"{selector} option")


def _select(browser, name: str) -> None:  # noqa: ANN001
    row = css(browser, f"#machines tr[data-name='{name}'] input[type=checkbox]")
    if not row.is_selected():
        row.click()


def test_bulk_actions_and_images_follow_the_users_permissions(server, browser) -> None:
    ctl = server.new_vm("bulkctl")  # running, the admin's
    ro = server.new_vm("bulkro")
    erin = server.ok("POST", "/rest/user/create/", data={"username": "erin",
                                                          "password": "erin-password-1"})["uuid"]
    for uuid, perms in ((ctl, ("read", "control")), (ro, ("read",))):
        for p in perms:
            server.ok("PUT", f"/rest/permissions/{uuid}/", data={"user": "erin", "permission": p})
    theirs = _image(server, "adminimg")
    server.ok("PUT", f"/rest/permissions/{theirs}/", data={"user": "erin", "permission": "read"})
    _image(server, "erinimg", owner=erin)

    login(browser, server.url, "erin", "erin-password-1")
    text_in(browser, "#machines tbody", "bulkro")
    _select(browser, "bulkro")  # read only: nothing to offer
    text_in(browser, "#bulk-hint", "none of these actions")
    assert not css(browser, "#bulk-action").is_enabled()
    _select(browser, "bulkctl")  # control on this one: its lifecycle actions, no more
    wait(browser, lambda d: set(_options(d, "#bulk-action")) == {"suspend", "shutdown", "reboot",
                                                                  "poweroff"})
    Select(css(browser, "#bulk-action")).select_by_value("suspend")
    css(browser, "#bulk button[type=submit]").click()
    text_in(browser, f"#bulk-results li[data-uuid='{ctl}']", "suspended")
    text_in(browser, f"#bulk-results li[data-uuid='{ro}']", "errno")  # the API's refusal
    refused = browser.find_element(By.CSS_SELECTOR, f"#bulk-results li[data-uuid='{ro}']")
    assert "error" in refused.get_attribute("class")
    assert server.ok("GET", f"/rest/machine/{ctl}/")["machine_obj"]["state"] == "paused"
    assert server.ok("GET", f"/rest/machine/{ro}/")["machine_obj"]["state"] == "running"

    go(browser, server.url, "#/images")
    text_in(browser, "#images", "adminimg")
    buttons = {b.text for b in browser.find_elements(By.CSS_SELECTOR, "#images button")}
    assert buttons == {"Delete erinimg"}  # her own; read only on the admin's
    # anyone may upload to the default hypervisor; naming one needs control, which she lacks
    assert _options(browser, "form#upload select[name=hvmuuid]") == [""]
    assert not js_errors(browser), js_errors(browser)


def test_hosts_show_allocation_and_create_offers_the_libvirt_networks(server, browser) -> None:
    hv = server.app.state.registry.links()[0][0]
    conn = server.conn
    conn.networkDefineXML("<network><name>uinet</name><bridge name='vbuinet'/>"
                          "<ip address='10.77.0.1' netmask='255.255.255.0'/></network>").create()
    alloc = server.ok("GET", f"/rest/hypervisor/{hv}/allocation/")
    login(browser, server.url, "admin", ADMIN_PASSWORD)
    go(browser, server.url, "#/hosts")
    cells = f"#hvs-{server.ok('GET', '/rest/hosts/')['hosts'][0]['uuid']} tbody"
    text_in(browser, cells, f"{alloc['active']['vcpus']} of 4")
    text_in(browser, "main article", "Storage pools")
    text_in(browser, "main article", "default-pool")
    screenshot(browser, "hosts")

    img = _image(server, "netimg")
    go(browser, server.url, "#/create")
    form = css(browser, "form#create")
    wait(browser, lambda d: "uinet" in _options(d, "form#create select[name=libvirt_network]"))
    form.find_element(By.NAME, "name").send_keys("onuinet")
    Select(form.find_element(By.NAME, "image")).select_by_value(img)
    wait(browser, lambda d: "uinet" in _options(d, "form#create select[name=libvirt_network]"))
    Select(form.find_element(By.NAME, "libvirt_network")).select_by_value("uinet")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    text_in(browser, "#tx-state", "done", timeout=60)
    browser.find_element(By.ID, "tx-target").click()
    text_in(browser, "#nics", "uinet")
    assert not js_errors(browser), js_errors(browser)
