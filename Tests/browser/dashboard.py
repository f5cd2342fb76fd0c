"""The dashboard in a real browser: Debian's chromium, driven by Selenium through
chromedriver. Run by DashboardBrowserTests against a seeded `chime` admin port:

    dashboard.py URL TOKEN SCREENSHOTS_DIR TOPIC GROUP SCHEDULE LOCK JOB_ID

It logs in through the form, loads every page and checks its content in the DOM, takes
a screenshot of each, and re-drives the group's dead letters with the page's button.
Prints one JSON line of what it saw; exits 1 with the reason on the first check that fails.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, token, shots, topic, group, schedule, lock, job = sys.argv[1:9]
    os.makedirs(shots, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    seen = {}
    try:
        def load(path, shot, heading):
            driver.get(url + path)
            h1 = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: d.find_element(By.TAG_NAME, "h1").text)
            check(heading in h1, f"{path}: heading {h1!r}, expected {heading!r}")
            source = driver.page_source
            check("src=\"http" not in source and "href=\"http" not in source, f"{path} loads something from another site")
            driver.save_screenshot(os.path.join(shots, shot + ".png"))
            return driver.find_element(By.TAG_NAME, "main").text

        # Without a session the dashboard sends you to its login form.
        driver.get(url + "/")
        check(driver.current_url.endswith("/login"), f"not sent to the login form: {driver.current_url}")
        driver.save_screenshot(os.path.join(shots, "login.png"))
        driver.find_element(By.NAME, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        # The click starts a navigation: elements of the old page go stale meanwhile.
        settle = WebDriverWait(driver, 30, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        settle.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Overview")
        check(token not in driver.current_url, "the token is in the URL")

        text = load("/", "overview", "Overview")
        check("topics" in text and "dead letters" in text, f"overview cards: {text[:300]!r}")
        check(len(driver.find_elements(By.CSS_SELECTOR, "figure.chart svg")) == 2, "the overview's two charts")
        seen["overview"] = text.splitlines()[:12]

        text = load("/topics", "topics", "Topics")
        check(topic in text, f"{topic} not listed")
        text = load(f"/topics/{topic}", "topic", f"Topic {topic}")
        check("Partitions" in text and "Latest messages" in text, "the topic's sections")
        text = load("/groups", "groups", "Groups")
        check(group in text, f"{group} not listed")
        row = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr") if r.text.startswith(group)]
        check(row and row[0].split()[-1] == "1", f"the group's dead letters: {row}")
        text = load(f"/groups/{group}", "group", f"Group {group}")
        check("Members" in text and "Partitions" in text, "the group's sections")
        text = load("/schedules", "schedules", "Schedules")
        check(schedule in text, f"{schedule} not listed")
        text = load(f"/jobs?id={job}", "jobs", "Jobs")
        check(job in text and "scheduled" in text, f"the job's state: {text[:300]!r}")
        text = load(f"/jobs?group={group}", "jobs-of-group", "Jobs")
        check(f"Running in {group}" in text and "Retrying" in text and "Waiting for a callback" in text, f"a group's jobs: {text[:300]!r}")
        text = load("/locks", "locks", "Locks")
        check(lock in text, f"{lock} not listed")

        # The round trip: the dead letter, re-driven with the page's button.
        text = load(f"/groups/{group}/dead-letters", "dead-letters", f"Dead letters of {group}")
        check("card declined" in text, f"the dead letter's error: {text[:400]!r}")
        seen["deadLetters"] = text.splitlines()[:8]
        driver.find_element(By.XPATH, "//button[normalize-space()='Re-drive all']").click()
        WebDriverWait(driver, 10).until(expected_conditions.alert_is_present()).accept()
        flash = settle.until(lambda d: d.find_element(By.CSS_SELECTOR, "p.flash").text)
        check("Re-drove 1 dead letter" in flash, f"after re-drive: {flash!r}")
        seen["redrive"] = flash
        check("No dead letters." in driver.find_element(By.TAG_NAME, "main").text, "the dead letter is still listed")
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        check(not errors, f"console errors: {errors}")
    finally:
        driver.quit()
    print(json.dumps(seen))


def check(condition, why):
    if not condition:
        print("dashboard check failed: " + why, file=sys.stderr)
        sys.exit(1)


main()
