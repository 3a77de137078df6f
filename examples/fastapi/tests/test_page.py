"""The status page in headless Chromium (Debian's chromium + chromium-driver)."""
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import APP_URL, RESET, count, send

SCREENSHOT = Path(__file__).resolve().parent.parent / "artifacts" / "status-page.png"


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    yield driver
    driver.quit()


def visible_text(browser, element_id, timeout=10):
    """Waits until the element is displayed, and returns its text."""
    WebDriverWait(browser, timeout).until(lambda b: b.find_element(By.ID, element_id).is_displayed())
    return browser.find_element(By.ID, element_id).text


def numbers(browser):
    return {k: browser.find_element(By.ID, f"q-{k}").text for k in ("limit", "consumed", "remaining", "reset")}


def db_quota(db, user):
    row = db.execute("SELECT limit_value + bonus, used, remaining, to_char(reset_at AT TIME ZONE 'UTC',"
                     " 'YYYY-MM-DD HH24:MI \"UTC\"') FROM quota.quota_status(%s) WHERE metric = 'messages'",
                     (user,)).fetchone()
    return dict(zip(("limit", "consumed", "remaining", "reset"), map(str, row)))


def send_from_page(browser, text):
    browser.find_element(By.ID, "message").send_keys(text)
    browser.find_element(By.ID, "send").click()


def test_page_shows_quota_sends_and_refusal(browser, db, http, new_user):
    user = new_user()
    for i in range(3):  # earlier usage today, from another client
        db.execute("WITH c AS (INSERT INTO conversations (user_id, title) VALUES (%s, 't') RETURNING id)"
                   " INSERT INTO messages (conversation_id, user_id, content) SELECT id, %s, 'earlier' FROM c",
                   (user, user))
    browser.get(f"{APP_URL}/?user={user}")
    visible_text(browser, "quota")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-states") == "loading,ready"
    assert not browser.find_element(By.ID, "state-loading").is_displayed()
    expected = db_quota(db, user)
    assert (expected["limit"], expected["consumed"], expected["remaining"]) == ("5", "3", "2")
    assert expected["reset"] == RESET.strftime("%Y-%m-%d %H:%M UTC")  # the pinned day's end
    assert numbers(browser) == expected

    send_from_page(browser, "Bonjour")
    assert visible_text(browser, "send-status").startswith("Message #")
    WebDriverWait(browser, 10).until(lambda b: numbers(b)["remaining"] == "1")
    assert numbers(browser) == db_quota(db, user) | {"consumed": "4", "remaining": "1"}

    # Another tab takes the last message: the page still says 1 left, the database says 0.
    assert send(http, user, "from another tab").status_code == 201
    send_from_page(browser, "one too many")
    refusal = visible_text(browser, "send-error")
    assert refusal.startswith("Quota exceeded: 0 of 5 messages left today. Next reset: " + db_quota(db, user)["reset"])
    WebDriverWait(browser, 10).until(lambda b: numbers(b)["remaining"] == "0")
    assert numbers(browser) == db_quota(db, user) | {"consumed": "5", "remaining": "0"}
    assert visible_text(browser, "limit-reached").startswith("Daily limit reached.")
    assert not browser.find_element(By.ID, "send").is_enabled()
    assert count(db, "messages", user) == 5
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))


def test_page_empty_state(browser, db, new_user):
    user = new_user()
    browser.get(f"{APP_URL}/?user={user}")
    empty = visible_text(browser, "state-empty")
    assert empty == f"No messages sent today yet: 5 available until {db_quota(db, user)['reset']}."
    assert not browser.find_element(By.ID, "quota").is_displayed()
    assert browser.find_element(By.ID, "send").is_enabled()


def test_page_error_states(browser, db, new_user):
    broken = new_user()
    db.execute("UPDATE quota.subjects SET time_zone = 'Mars/Olympus' WHERE subject = %s", (broken,))
    browser.get(f"{APP_URL}/?user={broken}")
    assert visible_text(browser, "error-message") == "Your quota state is inconsistent; support has been notified."
    assert browser.find_element(By.ID, "error-code").text == "invalid_quota_state"
    assert browser.find_element(By.ID, "error-request-id").text != ""
    assert not browser.find_element(By.ID, "quota").is_displayed()

    browser.get(f"{APP_URL}/?user={new_user(plan=None)}")
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "error-code").text == "no_active_subscription")
    assert not browser.find_element(By.ID, "send").is_enabled()
