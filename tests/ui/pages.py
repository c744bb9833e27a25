"""What the browser tests do on a page: log in, wait for something to show, read the console."""

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.ui.conftest import DOCS, WAIT


def wait(driver: WebDriver, condition, timeout: float = WAIT):  # noqa: ANN001, ANN201
    return WebDriverWait(driver, timeout).until(condition)


def css(driver: WebDriver, selector: str, timeout: float = WAIT):  # noqa: ANN201
    return wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, selector)), timeout)


def text_in(driver: WebDriver, selector: str, text: str, timeout: float = WAIT) -> None:
    wait(driver, ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text), timeout)


def logout(driver: WebDriver, url: str) -> None:
    driver.get(url + "/")
    driver.delete_all_cookies()
    driver.get(url + "/")


def login(driver: WebDriver, url: str, username: str, password: str) -> None:
    logout(driver, url)
    form = css(driver, "form#login")
    form.find_element(By.NAME, "username").send_keys(username)
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    css(driver, "#nav a[href='#/machines']")


def go(driver: WebDriver, url: str, fragment: str) -> None:
    driver.get(f"{url}/{fragment}")


def js_errors(driver: WebDriver) -> list[str]:
    """Script errors (a 401 or 404 answer the page expects is logged as a network error)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"]


def screenshot(driver: WebDriver, name: str) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(DOCS) / f"{name}.png"))


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"  # scripts/vendor-ui.sh


def axe_findings(driver: WebDriver) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.1 A and AA
    rules), one line each: the rule, its help and the elements."""
    if not driver.execute_script("return !!window.axe"):
        driver.execute_script(AXE.read_text())
    found = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: "tag",
                                     values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
          .then((r) => done(r.violations.filter((v) => ["serious", "critical"].includes(v.impact))
            .map((v) => `${v.id} (${v.impact}): ${v.help}: ` +
                        v.nodes.slice(0, 5).map((n) => n.target.join(" ")).join(", "))))
          .catch((e) => done([`axe failed: ${e}`]));""")
    return list(found)
