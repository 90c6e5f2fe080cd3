"""The console (GET /ui) in a real browser: headless Chromium driven by chromedriver through
selenium, against a real 3-node cluster started by crates/server/tests/console.rs.

Arguments come in the environment (set by the Rust test):
  CONSOLE_NODES       comma-separated base URLs of the nodes (index i is node id i + 1)
  CONSOLE_PIDS        comma-separated PIDs of the nodes, same order
  CONSOLE_UI          index of the node whose console the browser opens
  CONSOLE_KILL        index of the node this script kills with SIGKILL (never CONSOLE_UI)
  CONSOLE_SECRET      the cluster secret (the admin credential)
  CHROMIUM, CHROMEDRIVER   paths of the browser and its driver
  CONSOLE_WORKDIR     a fresh directory (browser profile, downloads)
  CONSOLE_SCREENSHOT  optional: where to save a screenshot of the signed-in console

Exits non-zero (an AssertionError or any exception) when a check fails. Every check prints
what it saw, so the Rust test's output tells what happened.
"""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

NODES = os.environ["CONSOLE_NODES"].split(",")
PIDS = [int(p) for p in os.environ["CONSOLE_PIDS"].split(",")]
UI = int(os.environ["CONSOLE_UI"])
KILL = int(os.environ["CONSOLE_KILL"])
SECRET = os.environ["CONSOLE_SECRET"]
WORKDIR = os.environ["CONSOLE_WORKDIR"]
SCREENSHOT = os.environ.get("CONSOLE_SCREENSHOT")

NAMESPACE = "PLUGIN#console_test"
VALUE_1 = "console-value-one-9f3a"
VALUE_2 = "console-value-two-51c7"

assert UI != KILL


def log(*args):
    print("[console_ui %.1f]" % (time.monotonic() - START), *args, flush=True)


START = time.monotonic()


def post(base, path, body, headers=None):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers=dict({"Content-Type": "application/json"}, **(headers or {})),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def store(base, key, data):
    status, body = post(base, "/store_data", {"namespace": NAMESPACE, "key": key, "data": data, "ttl": 3600})
    assert status == 200, (status, body)


def wait_for(what, check, limit):
    """Polls `check` every 50 ms until it returns a true value, for at most `limit` seconds;
    returns (value, seconds taken)."""
    started = time.monotonic()
    while True:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None  # the page re-rendered the element between finding and reading it
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > limit:
            raise AssertionError("%s: not within %.1f s" % (what, limit))
        time.sleep(0.05)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["CHROMIUM"]
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--user-data-dir=" + os.path.join(WORKDIR, "profile"),
    ]:
        options.add_argument(flag)
    downloads = os.path.join(WORKDIR, "downloads")
    os.makedirs(downloads, exist_ok=True)
    options.add_experimental_option(
        "prefs", {"download.default_directory": downloads, "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ["CHROMEDRIVER"], log_output=os.path.join(WORKDIR, "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver, downloads


ERRORS = []


def collect_console(driver):
    for entry in driver.get_log("browser"):
        log("browser console:", entry["level"], entry["message"])
        if entry["level"] == "SEVERE":
            ERRORS.append(entry["message"])


def click(driver, selector, limit=5):
    """Clicks the element `selector` finds, again if the page re-rendered it meanwhile."""

    def attempt():
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait_for("click " + selector, attempt, limit)


def members(driver):
    rows = driver.find_elements(By.CSS_SELECTOR, "#members tr.member")
    return [(r.get_attribute("data-id"), r.get_attribute("data-up"), r.get_attribute("data-role")) for r in rows]


def main():
    driver, downloads = browser()
    try:
        run(driver, downloads)
    finally:
        try:
            collect_console(driver)
        finally:
            driver.quit()
    assert not ERRORS, "errors in the browser console: %r" % ERRORS
    log("all checks passed")


def run(driver, downloads):
    ui = NODES[UI]
    driver.get(ui + "/ui")
    assert driver.title == "statemanager console", driver.title

    # Three members, all up, exactly one leader.
    def three_up_one_leader():
        m = members(driver)
        if len(m) == 3 and all(up == "true" for _, up, _ in m) and [r for _, _, r in m].count("leader") == 1:
            return m
        return None

    m, took = wait_for("three members up, one leader", three_up_one_leader, 10)
    log("members", m, "after %.2f s" % took)
    cache_rows = driver.find_elements(By.CSS_SELECTOR, "#cache-rows tr.cache-row")
    assert len(cache_rows) == 3, len(cache_rows)
    collect_console(driver)

    # Without credentials: no namespace list, no value, no admin action.
    store(NODES[KILL], "k1", VALUE_1)
    time.sleep(2.5)  # several polls
    assert not driver.find_element(By.ID, "namespaces").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, "tr.ns-row") == []
    assert driver.find_element(By.ID, "signin-form").is_displayed()
    source = driver.page_source
    assert NAMESPACE not in source and VALUE_1 not in source, "data visible without credentials"
    log("without credentials: cluster view only")

    # Traffic charts from this node's /metrics.
    wait_for("traffic chart lines", lambda: driver.find_elements(By.CSS_SELECTOR, "#charts .chart polyline"), 20)
    charts = driver.find_elements(By.CSS_SELECTOR, "#charts .chart")
    names = [c.get_attribute("data-endpoint") for c in charts]
    assert "/status/cluster" in names, names
    log("charts for", names)

    # Sign in with the cluster secret.
    driver.find_element(By.ID, "secret").send_keys(SECRET)
    driver.find_element(By.ID, "signin").click()
    selector = 'tr.ns-row[data-namespace="%s"]' % NAMESPACE
    _, took = wait_for("the namespace listed", lambda: driver.find_elements(By.CSS_SELECTOR, selector), 5)
    log("namespace listed %.2f s after signing in" % took)
    assert driver.find_element(By.ID, "namespaces").is_displayed()
    click(driver, selector)
    wait_for("k1 listed", lambda: driver.find_elements(By.CSS_SELECTOR, 'tr.item-row[data-key="k1"]'), 5)
    # Values stay hidden until asked for.
    assert VALUE_1 not in driver.page_source, "a value shown before it was asked for"

    # A store made with an HTTP client (on another node) appears within 2 s.
    store(NODES[KILL], "k2", VALUE_2)
    _, took = wait_for(
        "a new store in the namespace's list",
        lambda: driver.find_elements(By.CSS_SELECTOR, 'tr.item-row[data-key="k2"]'),
        2.0,
    )
    log("stored item listed %.2f s after the store was acknowledged" % took)
    expires, _ = wait_for(
        "k2's expires in",
        lambda: driver.find_element(By.CSS_SELECTOR, 'tr.item-row[data-key="k2"] td.expires').text,
        5,
    )
    assert expires.startswith("59m") or expires.startswith("1h"), expires
    assert VALUE_2 not in driver.page_source

    # Show a value.
    click(driver, 'tr.item-row[data-key="k1"] button.show-value')
    value, _ = wait_for(
        "the value shown",
        lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, 'tr.item-row[data-key="k1"] .value')],
        5,
    )
    assert value == [VALUE_1], value
    assert VALUE_2 not in driver.page_source, "only the value asked for is shown"

    if SCREENSHOT:
        for i in range(20):  # some traffic for the charts
            store(NODES[UI], "load%d" % (i % 5), "x" * (i + 1))
            post(NODES[UI], "/fetch_data", {"namespace": NAMESPACE, "key": "load%d" % (i % 5)})
            time.sleep(0.2)
        driver.set_window_size(1400, 1500)
        time.sleep(1.5)
        driver.save_screenshot(SCREENSHOT)
        log("screenshot saved to", SCREENSHOT)

    # Delete k1 from the console: gone from the list and from every node.
    click(driver, 'tr.item-row[data-key="k1"] button.delete')
    alert = driver.switch_to.alert
    assert "k1" in alert.text, alert.text
    alert.accept()
    wait_for("k1 gone from the list", lambda: not driver.find_elements(By.CSS_SELECTOR, 'tr.item-row[data-key="k1"]'), 5)
    for i, base in enumerate(NODES):
        status, body = post(base, "/fetch_data", {"namespace": NAMESPACE, "key": "k1"})
        assert status == 404, ("node", i + 1, status, body)
        status, body = post(base, "/fetch_data", {"namespace": NAMESPACE, "key": "k2"})
        assert status == 200 and body["data"] == VALUE_2, ("node", i + 1, status, body)
    log("deleted from the console: gone on every node, k2 kept")
    assert driver.find_element(By.ID, "message").text == "", driver.find_element(By.ID, "message").text

    # Download a backup.
    driver.find_element(By.ID, "backup").click()
    files, took = wait_for(
        "the backup downloaded",
        lambda: [f for f in os.listdir(downloads) if f.endswith(".smbackup")],
        15,
    )
    size = os.path.getsize(os.path.join(downloads, files[0]))
    assert size > 0, size
    log("backup downloaded:", files[0], size, "bytes")
    collect_console(driver)

    # kill -9 a member: shown down within 5 s; the others stay up.
    os.kill(PIDS[KILL], signal.SIGKILL)
    killed_at = time.monotonic()
    killed_id = str(KILL + 1)

    def shown_down():
        m = members(driver)
        row = [r for r in m if r[0] == killed_id]
        return m if row and row[0][1] == "false" else None

    m, _ = wait_for("the killed member shown down", shown_down, 5.0)
    log("killed node %s shown down after %.2f s: %r" % (killed_id, time.monotonic() - killed_at, m))
    assert sum(1 for _, up, _ in m if up == "true") == 2, m
    collect_console(driver)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # report, then fail
        log("FAILED:", repr(e))
        raise
    sys.exit(0)
