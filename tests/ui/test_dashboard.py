"""The dashboard in headless Chromium (issue 18): log in and out, the machine list kept live by
the events stream, actions by clicks, create from an image with its progress, a user with a
grant, and a cross-site form post refused."""

from selenium.webdriver.common.by import By

from tests.conftest import ADMIN_PASSWORD
from tests.ui.pages import css, go, js_errors, login, screenshot, text_in, wait


def test_login_shows_the_machines_and_logout_ends_the_session(server, browser) -> None:
    browser.get(server.url + "/")
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
