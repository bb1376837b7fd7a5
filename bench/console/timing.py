"""Console page timings on a loaded server: each page of the web console, and the account-activity
view, opened afresh `--runs` times in Debian's headless Chromium; the time from the first byte of
the page to its data being on screen (the `sealtrail-ready:<page>` mark the console sets, minus
the navigation's responseStart), the way tests/browser/console_test.py measures it.

Run by `bench/query/run --console`, which loads 10 million events first. Prints one line per
page: median, min and max in milliseconds over the runs, and whether the median is under the
target.
"""

import argparse
import json
import statistics
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TARGET_MS = 300


def call(url, token, method, path, body=None, params=None):
    if params:
        path += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url + path, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(request, data=data, timeout=120) as response:
        text = response.read().decode()
        return json.loads(text) if text.startswith(("{", "[")) else text


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", "--window-size=1280,900"]:
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)


def wait_ready(driver, page, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready = driver.execute_script(
            "const m = document.getElementById('main');"
            "return !!m && m.dataset.ready === '1' && m.dataset.page === arguments[0];", page)
        if ready:
            return
        time.sleep(0.01)
    raise TimeoutError(f"page {page} was not ready within {timeout} s")


def elapsed(driver, page):
    return driver.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "const marks = performance.getEntriesByName('sealtrail-ready:' + arguments[0]);"
        "return nav && marks.length ? marks[0].startTime - nav.responseStart : null;", page)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True, help="the platform-admin token")
    parser.add_argument("--facts", required=True, help="the data set's facts (bench/query)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    facts = json.load(open(args.facts))
    tenant = facts["largest_tenant"]
    url, token = args.url, args.token

    # The newest event of the tenant (its detail page verifies its proof in the browser), a
    # checkpoint to verify it against, and a viewer token for one of its actors.
    newest = call(url, token, "GET", "/v1/events", params={"tenant_id": tenant, "limit": 1})["events"][0]
    call(url, token, "POST", f"/v1/tenants/{tenant}/checkpoint")
    viewer = call(url, token, "POST", "/v1/viewer-tokens",
                  {"actor_id": newest["actor_id"], "scope": "self", "ttl_seconds": 3600, "tenant_id": tenant})["token"]
    print(f"console pages on {facts['events']} events in {facts['tenants']} tenants; tenant {tenant} "
          f"({facts['largest_tenant_events']} events); {args.runs} runs each")

    driver = browser()
    try:
        driver.get(f"{url}/console/")
        wait_ready(driver, "login")
        driver.find_element(By.ID, "login-key").send_keys(token)
        driver.find_element(By.ID, "login-tenant").send_keys(tenant)
        driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        wait_ready(driver, "search")
        pages = [
            ("search", "search"),
            ("search?action=login&outcome=failure", "search"),
            (f"event/{urllib.parse.quote(newest['event_id'])}", "event"),
            ("verify", "verify"),
            ("alerts", "alerts"),
            ("exports", "exports"),
            ("access", "access"),
            ("dashboard", "dashboard"),
        ]
        results = []
        for route, page in pages:
            times = []
            for _ in range(args.runs):
                driver.get("about:blank")
                driver.get(f"{url}/console/#/{route}")
                wait_ready(driver, page)
                times.append(elapsed(driver, page))
            results.append((route, times))
        times = []
        for _ in range(args.runs):
            driver.get("about:blank")
            driver.get(f"{url}/console/activity.html#token={viewer}")
            wait_ready(driver, "activity")
            times.append(elapsed(driver, "activity"))
        results.append(("activity.html (viewer token)", times))
    finally:
        driver.quit()
    for route, times in results:
        median = statistics.median(times)
        verdict = "under" if median < TARGET_MS else "OVER"
        print(f"{route:45s} median {median:7.0f} ms  min {min(times):7.0f}  max {max(times):7.0f}  "
              f"({verdict} {TARGET_MS} ms)")


if __name__ == "__main__":
    main()
