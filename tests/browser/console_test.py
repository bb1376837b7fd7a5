"""Browser tests of the web console (/console) and the account-activity view, against the real
server binary, in Debian's headless Chromium driven by Selenium.

The server is started once with a fresh data directory; a tenant `acme` gets an actor directory
and a small history (logins, a brute-force burst, changes, several devices and addresses), and a
signed checkpoint. Each test then opens one page in the browser, as a user would, and checks what
it shows against what was ingested.

Run with tests/browser/run. Environment: SEALTRAIL_BIN (default target/debug/sealtrail);
SEALTRAIL_SCREENSHOTS=docs/screenshots saves the screenshots there (else into a temporary
directory). Each page's time from the first response byte to its data being on screen is printed
as `console-timing page=<name> ms=<n>` (nothing is asserted about it).
"""

import datetime
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("SEALTRAIL_BIN", os.path.join(REPO, "target", "debug", "sealtrail"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TENANT = "acme"
WIDE, NARROW = 1280, 360

# What only alice's events carry, and what only bob's do: the activity view of alice must show
# the first and none of the second.
ALICE_LAPTOP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Gecko/20100101 Firefox/128.0 alice-laptop"
ALICE_PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1 alice-phone"
ALICE_IPS = ["203.0.113.10", "203.0.113.11"]
BOB_DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 bob-desktop-marker"
BOB_IP = "198.51.100.66"
BOB_DOC = "bob-private-doc"
BOB_FAILED_LOGINS = 6
ALICE_FAILED_LOGINS = 2


def rfc3339(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def history(now):
    """The tenant's events: three actors over six days, then bob's brute-force burst."""
    start = now.replace(microsecond=0) - datetime.timedelta(days=6)
    at = lambda days, minutes=0: rfc3339(start + datetime.timedelta(days=days, minutes=minutes))
    event = lambda **fields: {"tenant_id": TENANT, "actor_type": "human", **fields}
    events = [
        event(event_id="a-login-1", timestamp=at(0, 1), actor_id="alice", action="login", resource_type="session",
              ip_address=ALICE_IPS[0], user_agent=ALICE_LAPTOP),
        event(event_id="a-login-fail-1", timestamp=at(1, 2), actor_id="alice", action="login", resource_type="session",
              outcome="failure", ip_address=ALICE_IPS[1], user_agent=ALICE_PHONE),
        event(event_id="a-login-fail-2", timestamp=at(1, 3), actor_id="alice", action="login", resource_type="session",
              outcome="failure", ip_address=ALICE_IPS[1], user_agent=ALICE_PHONE),
        event(event_id="a-login-2", timestamp=at(1, 4), actor_id="alice", action="login", resource_type="session",
              ip_address=ALICE_IPS[1], user_agent=ALICE_PHONE),
        event(event_id="a-password", timestamp=at(1, 10), actor_id="alice", action="password_change", resource_type="user",
              resource_id="alice", ip_address=ALICE_IPS[1], user_agent=ALICE_PHONE,
              changes={"before": {"password_set_at": "2026-01-01"}, "after": {"password_set_at": "2026-06-01"}}),
        event(event_id="a-key", timestamp=at(2, 5), actor_id="alice", action="api_key_create", resource_type="api_key",
              resource_id="key-alice-1", ip_address=ALICE_IPS[0], user_agent=ALICE_LAPTOP),
        event(event_id="a-doc-update", timestamp=at(2, 30), actor_id="alice", action="document.update", resource_type="document",
              resource_id="doc-7", ip_address=ALICE_IPS[0], user_agent=ALICE_LAPTOP, request_id="req-doc-7",
              changes={"before": {"title": "Q3 plan", "owner": "alice", "draft": True},
                       "after": {"title": "Q3 plan (final)", "owner": "alice", "reviewers": ["bob"]}},
              metadata={"department": "finance", "bytes": 2048}),
        event(event_id="a-logout", timestamp=at(2, 40), actor_id="alice", action="logout", resource_type="session",
              ip_address=ALICE_IPS[0], user_agent=ALICE_LAPTOP),
        event(event_id="b-login", timestamp=at(3, 0), actor_id="bob", action="login", resource_type="session",
              ip_address=BOB_IP, user_agent=BOB_DESKTOP),
        event(event_id="b-doc", timestamp=at(3, 5), actor_id="bob", action="document.read", resource_type="document",
              resource_id=BOB_DOC, ip_address=BOB_IP, user_agent=BOB_DESKTOP),
        event(event_id="b-role", timestamp=at(3, 6), actor_id="bob", action="role_assign", resource_type="user",
              resource_id="carol", ip_address=BOB_IP, user_agent=BOB_DESKTOP,
              changes={"before": {"role": "viewer"}, "after": {"role": "editor"}}),
    ]
    # carol reads documents every few hours: enough events to page through.
    for i in range(36):
        events.append(event(event_id=f"c-read-{i:02d}", timestamp=at(i // 8, 60 + 170 * (i % 8)), actor_id="carol",
                            action="document.read", resource_type="document", resource_id=f"doc-{i % 5}",
                            ip_address="192.0.2.7", user_agent="carol-cli/2.1"))
    # bob fails to sign in six times within two minutes: the default brute-force rule fires.
    burst = now.replace(microsecond=0) - datetime.timedelta(minutes=30)
    for i in range(BOB_FAILED_LOGINS):
        events.append(event(event_id=f"b-login-fail-{i}", timestamp=rfc3339(burst + datetime.timedelta(seconds=15 * i)),
                            actor_id="bob", action="login", resource_type="session", outcome="failure",
                            ip_address=BOB_IP, user_agent=BOB_DESKTOP))
    return events


class Api:
    """A small client of the server's JSON API."""

    def __init__(self, base):
        self.base = base

    def call(self, method, path, credential, body=None, params=None, raw=False):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {credential}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path}: {error.code} {error.read().decode()}") from None
        return text if raw else json.loads(text)


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"no server binary at {BINARY} (build it, or set SEALTRAIL_BIN)")
        cls.work = tempfile.mkdtemp(prefix="sealtrail-console-")
        cls.shots = os.environ.get("SEALTRAIL_SCREENSHOTS") or os.path.join(cls.work, "screenshots")
        cls.shots = os.path.join(REPO, cls.shots) if not os.path.isabs(cls.shots) else cls.shots
        os.makedirs(cls.shots, exist_ok=True)
        cls.downloads = os.path.join(cls.work, "downloads")
        os.makedirs(cls.downloads)
        cls.admin_token = secrets.token_hex(32)
        cls.log = open(os.path.join(cls.work, "server.log"), "w")
        stdout_path = os.path.join(cls.work, "stdout")
        with open(stdout_path, "w") as stdout:
            cls.server = subprocess.Popen(
                [BINARY, "serve", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(cls.work, "data"),
                 "--lifecycle-interval-secs", "0"],
                env={**os.environ, "SEALTRAIL_ADMIN_TOKEN": cls.admin_token, "SEALTRAIL_LOG": "warn"},
                stdout=stdout, stderr=cls.log)
        cls.driver = None
        try:
            cls.base = cls._wait_for_address(stdout_path)
            cls.api = Api(cls.base)
            cls._seed()
            cls.driver = cls._start_browser()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "driver", None):
            cls.driver.quit()
        if getattr(cls, "server", None) and cls.server.poll() is None:
            cls.server.terminate()
            try:
                cls.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait()
        if getattr(cls, "log", None):
            cls.log.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def _wait_for_address(cls, stdout_path):
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(stdout_path) as out:
                match = re.search(r"sealtrail listening on (http://\S+)", out.read())
            if match:
                return match.group(1)
            if cls.server.poll() is not None:
                raise RuntimeError(f"the server exited with {cls.server.returncode}; see its log")
            time.sleep(0.05)
        raise RuntimeError("the server did not say where it listens within 30 s")

    @classmethod
    def _seed(cls):
        admin = cls.admin_token
        cls.admin_key = cls.api.call("POST", "/v1/keys", admin, {"tenant_id": TENANT, "role": "admin"})["key"]
        cls.ingest_key = cls.api.call("POST", "/v1/keys", admin, {"tenant_id": TENANT, "role": "ingest"})["key"]
        cls.api.call("PUT", f"/v1/tenants/{TENANT}/actors", admin, [
            {"actor_id": "alice", "display_name": "Alice Example", "department": "finance", "team": "red"},
            {"actor_id": "bob", "display_name": "Bob Example", "department": "sales", "team": "blue"},
            {"actor_id": "carol", "display_name": "Carol Example", "department": "finance", "team": "red"},
        ])
        cls.events = history(datetime.datetime.now(datetime.timezone.utc))
        cls.api.call("POST", "/v1/events", cls.ingest_key, cls.events)
        note = cls.api.call("POST", f"/v1/tenants/{TENANT}/checkpoint", cls.admin_key, raw=True)
        cls.checkpoint_size = int(note.split("\n")[1])
        # The alert engine reads the log after the commit; wait for its alert.
        deadline = time.time() + 15
        while time.time() < deadline:
            alerts = cls.api.call("GET", "/v1/events", cls.admin_key, params={"action": "alert.triggered"})["events"]
            if alerts:
                break
            time.sleep(0.2)

    @classmethod
    def _start_browser(cls):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--no-first-run", "--disable-extensions", f"--window-size={WIDE},900"]:
            options.add_argument(argument)
        options.add_experimental_option("prefs", {
            "download.default_directory": cls.downloads, "download.prompt_for_download": False})
        # The driver's path is given, so Selenium Manager never looks for (or downloads) one.
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_script_timeout(10)
        return driver

    # -- helpers ------------------------------------------------------------------------------

    def wait_for(self, condition, timeout=8, message="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = condition()
                if last:
                    return last
            except Exception as error:  # The page may be re-rendering under us.
                last = error
            time.sleep(0.05)
        self.fail(f"timed out waiting for {message} (last: {last!r})")

    def main_text(self):
        return self.driver.find_element(By.ID, "main").text

    def ready(self, page):
        return self.driver.execute_script(
            "const m = document.getElementById('main');"
            "return !!m && m.dataset.ready === '1' && m.dataset.page === arguments[0];", page)

    def wait_ready(self, page, timeout=8):
        self.wait_for(lambda: self.ready(page), timeout, f"page {page} to be ready")

    def timing(self, page):
        ms = self.driver.execute_script(
            "const nav = performance.getEntriesByType('navigation')[0];"
            "const marks = performance.getEntriesByName('sealtrail-ready:' + arguments[0]);"
            "return nav && marks.length ? Math.round(marks[0].startTime - nav.responseStart) : null;", page)
        print(f"console-timing page={page} ms={ms}", flush=True)
        return ms

    def log_in(self, key, tenant=""):
        """Signs in through the login form (the session lives in this tab's storage)."""
        self.driver.get(self.base + "/console/")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.get("about:blank")
        self.driver.get(self.base + "/console/")
        self.wait_ready("login")
        self.driver.find_element(By.ID, "login-key").send_keys(key)
        if tenant:
            self.driver.find_element(By.ID, "login-tenant").send_keys(tenant)
        self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()

    def as_admin(self):
        """Makes sure the tab is signed in with the tenant's admin key."""
        self.driver.get(self.base + "/console/")
        stored = self.driver.execute_script("return sessionStorage.getItem('sealtrail.console.session')")
        if not stored or self.admin_key not in stored:
            self.log_in(self.admin_key)
            self.wait_ready("search")

    def open_page(self, route, page, timeout=8):
        """Loads the console afresh at `route`, waits until its data is shown, prints the time."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/console/#/{route}")
        self.wait_ready(page, timeout)
        self.timing(page)

    def screenshot(self, name, width=WIDE):
        self.driver.set_window_size(width, 900)
        self.driver.execute_script("window.scrollTo(0, 0)")
        height = self.driver.execute_script("return Math.min(document.documentElement.scrollHeight, 4000)")
        self.driver.set_window_size(width, max(600, height))
        self.driver.save_screenshot(os.path.join(self.shots, f"{name}.png"))
        self.driver.set_window_size(WIDE, 900)

    def table_rows(self, selector="table.events tbody tr"):
        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def row_ids(self):
        return [row.get_attribute("data-event-id") for row in self.table_rows()]

    # -- tests --------------------------------------------------------------------------------

    def test_01_login_refuses_a_wrong_key_then_signs_in_and_out(self):
        self.log_in("stk_0000000000000000_not-a-real-secret")
        status = self.wait_for(lambda: self.driver.find_element(By.ID, "login-status").text, message="a refusal")
        self.assertIn("refused", status)
        self.assertFalse(self.driver.find_element(By.ID, "nav").is_displayed())
        self.screenshot("login")

        self.log_in(self.admin_key)
        self.wait_ready("search")
        who = self.driver.find_element(By.ID, "who").text
        self.assertIn(TENANT, who)
        self.assertIn("admin", who)
        self.assertTrue(self.driver.find_element(By.ID, "nav").is_displayed())
        stored = json.loads(self.driver.execute_script("return sessionStorage.getItem('sealtrail.console.session')"))
        self.assertEqual(stored["credential"], self.admin_key)

        self.driver.find_element(By.ID, "logout").click()
        self.wait_ready("login")
        self.assertIsNone(self.driver.execute_script("return sessionStorage.getItem('sealtrail.console.session')"))

    def test_02_search_with_filters_shows_only_matching_events(self):
        self.as_admin()
        self.open_page("search", "search")
        self.screenshot("search")
        self.driver.find_element(By.ID, "f-actor_id").send_keys("bob")
        Select(self.driver.find_element(By.ID, "f-outcome")).select_by_value("failure")
        self.driver.find_element(By.CSS_SELECTOR, "form[role=search] button[type=submit]").click()
        expected = {e["event_id"] for e in self.events if e["actor_id"] == "bob" and e.get("outcome") == "failure"}
        self.wait_for(lambda: "actor_id=bob" in self.driver.current_url and self.ready("search")
                      and set(self.row_ids()) == expected, message="the filtered page")
        rows = self.table_rows()
        self.assertEqual(len(rows), BOB_FAILED_LOGINS)
        for row in rows:
            cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            self.assertEqual(cells[1], "bob")
            self.assertEqual(cells[2], "login")
            self.assertEqual(cells[4], "failure")
        # The filters are in the URL, and the form shows them again.
        self.assertIn("outcome=failure", self.driver.current_url)
        self.assertEqual(self.driver.find_element(By.ID, "f-actor_id").get_attribute("value"), "bob")

    def test_03_paging_forward_and_back(self):
        self.as_admin()
        self.open_page("search?limit=25&actor_id=carol", "search")
        first = self.row_ids()
        from_api = self.api.call("GET", "/v1/events", self.admin_key, params={"limit": 25, "actor_id": "carol"})
        self.assertEqual(first, [e["event_id"] for e in from_api["events"]])
        self.assertEqual(len(first), 25)
        self.driver.find_element(By.CSS_SELECTOR, "[data-action=next]").click()
        self.wait_for(lambda: self.driver.find_element(By.CSS_SELECTOR, ".paged").get_attribute("data-page") == "2", message="page 2")
        second = self.row_ids()
        self.assertEqual(len(second), 36 - 25)
        self.assertFalse(set(first) & set(second))
        self.assertFalse(self.driver.find_element(By.CSS_SELECTOR, "[data-action=next]").is_enabled())
        self.driver.find_element(By.CSS_SELECTOR, "[data-action=previous]").click()
        self.wait_for(lambda: self.driver.find_element(By.CSS_SELECTOR, ".paged").get_attribute("data-page") == "1", message="page 1")
        self.assertEqual(self.row_ids(), first)

    def test_04_event_detail_shows_the_change_field_by_field(self):
        self.as_admin()
        self.open_page("search?resource_id=doc-7", "search")
        link = self.driver.find_element(By.CSS_SELECTOR, "tr[data-event-id=a-doc-update] a")
        link.send_keys(Keys.ENTER)  # Rows are reachable by keyboard.
        self.wait_ready("event")
        self.assertIn("#/event/a-doc-update", self.driver.current_url)

        def row(field):
            element = self.driver.find_element(By.CSS_SELECTOR, f"table.diff tr[data-field='{field}']")
            return [cell.text for cell in element.find_elements(By.CSS_SELECTOR, "th, td")]

        self.assertEqual(row("title"), ["title", "Changed", "Q3 plan", "Q3 plan (final)"])
        self.assertEqual(row("owner"), ["owner", "Unchanged", "alice", "alice"])
        self.assertEqual(row("draft")[:3], ["draft", "Removed", "true"])
        self.assertEqual(row("reviewers")[1], "Added")
        self.assertEqual(row("reviewers")[3], '["bob"]')
        self.assertIn("finance", self.main_text())  # the metadata

    def test_05_event_inclusion_is_verified_in_the_browser(self):
        self.as_admin()
        self.open_page("event/a-doc-update", "event")
        panel = self.wait_for(lambda: self.driver.find_element(By.CSS_SELECTOR, "#verification[data-verified]"),
                              message="the verification result")
        self.assertEqual(panel.get_attribute("data-verified"), "true", panel.text)
        match = re.search(r"Verified: included in checkpoint of size (\d+) signed by (\S+), (.+)\.", panel.text)
        self.assertTrue(match, panel.text)
        self.assertGreaterEqual(int(match.group(1)), self.checkpoint_size)
        key = self.api.call("GET", "/v1/verifier-key", self.admin_key, raw=True).strip()
        self.assertTrue(key.startswith(match.group(2)), (key, match.group(2)))
        event = self.api.call("GET", "/v1/events/a-doc-update", self.admin_key)
        self.assertIn(f"event_hash recomputed from the fields (canonical encoding v1): {event['event_hash']}", panel.text)
        self.assertIn("checkpoint signature (Ed25519) verified", panel.text)
        self.assertIn("inclusion proof", panel.text)
        self.screenshot("event")
        self.screenshot("event-360", NARROW)

    def test_06_the_browser_verifier_matches_the_vectors_and_refuses_tampering(self):
        self.as_admin()
        self.open_page("search", "search")
        with open(os.path.join(REPO, "docs", "vectors", "event-v1.json")) as vectors:
            vector_text = vectors.read()
        with open(os.path.join(REPO, "docs", "vectors", "event-v2.json")) as vectors:
            v2_text = vectors.read()
        result = self.driver.execute_async_script("""
            const [vectorText, v2Text, done] = arguments;
            (async () => {
              const c = await import('/console/console.js');
              const out = {hashes: [], expected: []};
              for (const vector of c.parseLossless(vectorText)) {
                out.hashes.push(c.bytesToHex(await c.eventHash(vector.event)));
                out.expected.push(vector.event_hash);
              }
              // Version 2: protected fields hash by their commitments, opened or erased.
              for (const vector of c.parseLossless(v2Text)) {
                for (const state of ['event', 'erased']) {
                  out.hashes.push(c.bytesToHex(await c.eventHash(vector[state])));
                  out.expected.push(vector.event_hash);
                }
              }
              // docs/MERKLE.md, "Worked example".
              const key = await c.parseVerifierKey('sealtrail/acme+aa8199c1+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4');
              const note = 'sealtrail/acme\\n2\\njU/E7nGPknNOE9kgGp9CD6aaCmm5/1gfKVtMzs+V4QY=\\n\\n\\u2014 sealtrail/acme '
                + 'qoGZwbqXuLRek1tsPxcxpc7WZrOCYUQSxX8T/y6QdlkWhcfA3ecXNO5C6KTxRG7dawjAiSEDXZQhHPh9GdGTdVKrlgg=\\n';
              const checkpoint = c.parseCheckpoint(await c.openNote(note, key));
              const leaf = c.base64ToBytes('HrJStEJgBXpgR6WN3hgsGAi8LKAQBZqO9+GJbc942I0=');
              const sibling = c.base64ToBytes('7m8LlMbUkFlWyHHK8MaIyXR60ExTh4g4pceGtH+TmmA=');
              out.size = String(checkpoint.size);
              out.included = c.equalBytes(await c.rootFromInclusion(leaf, 1n, 2n, [sibling]), checkpoint.root);
              out.wrongLeaf = c.equalBytes(await c.rootFromInclusion(sibling, 1n, 2n, [leaf]), checkpoint.root);
              try { await c.openNote(note.replace('\\n2\\n', '\\n3\\n'), key); out.tampered = 'accepted'; }
              catch (error) { out.tampered = error.message; }
              const tamperedEvent = c.parseLossless(vectorText)[1].event;
              tamperedEvent.metadata.department = 'sales';
              out.tamperedHash = c.bytesToHex(await c.eventHash(tamperedEvent));
              return out;
            })().then(done, (error) => done({error: String(error)}));
        """, vector_text, v2_text)
        self.assertNotIn("error", result, result)
        self.assertEqual(result["hashes"], result["expected"])
        self.assertEqual(result["size"], "2")
        self.assertTrue(result["included"])
        self.assertFalse(result["wrongLeaf"])
        self.assertIn("does not verify", result["tampered"])
        self.assertNotEqual(result["tamperedHash"], result["expected"][1])

    def test_07_verification_page_shows_the_signed_checkpoint(self):
        self.as_admin()
        self.open_page("verify", "verify")
        text = self.main_text()
        self.assertIn("Signature verified", text)
        size = int(self.driver.find_element(By.ID, "tree-size").text)
        self.assertGreaterEqual(size, self.checkpoint_size)
        self.assertIn(f"sealtrail/{TENANT}", text)
        self.screenshot("verify")

    def test_08_dashboard_draws_its_charts_with_tables(self):
        self.as_admin()
        self.open_page("dashboard", "dashboard", timeout=10)
        self.assertFalse(self.driver.find_elements(By.CSS_SELECTOR, "#main .notice.error"), self.main_text())
        for chart in ["chart-actions", "chart-actors", "chart-resources", "chart-failed-logins"]:
            figure = self.driver.find_element(By.ID, chart)
            self.assertTrue(figure.find_elements(By.CSS_SELECTOR, "svg[role=img] rect"), chart)
            self.assertTrue(figure.find_elements(By.CSS_SELECTOR, "details table"), chart)
        self.driver.find_element(By.ID, "chart-sampling")

        def table(chart):
            return self.driver.execute_script(
                "return [...document.querySelectorAll('#' + arguments[0] + ' details table tbody tr')]"
                ".map((row) => [...row.cells].map((cell) => cell.textContent));", chart)

        failures = sum(int(row[1]) for row in table("chart-failed-logins"))
        self.assertEqual(failures, BOB_FAILED_LOGINS + ALICE_FAILED_LOGINS)
        actors = {row[0]: int(row[1]) for row in table("chart-actors")}
        self.assertEqual(actors.get("carol"), 36)
        self.assertEqual(actors.get("alice"), 8)
        per_day_total = sum(int(row[-1]) for row in table("chart-actions"))
        self.assertGreaterEqual(per_day_total, len(self.events))
        self.screenshot("dashboard")

    def test_09_alerts_page_lists_the_brute_force_alert(self):
        self.as_admin()
        self.open_page("alerts", "alerts")
        rows = self.table_rows()
        self.assertTrue(rows, self.main_text())
        self.assertIn("brute-force", rows[0].text)
        self.assertIn("bob", rows[0].text)
        self.screenshot("alerts")

    def test_10_exports_are_created_followed_and_downloaded(self):
        self.as_admin()
        self.open_page("exports", "exports")
        Select(self.driver.find_element(By.ID, "x-format")).select_by_value("csv")
        self.driver.find_element(By.CSS_SELECTOR, "#export-form button[type=submit]").click()
        row = self.wait_for(lambda: self.driver.find_element(By.CSS_SELECTOR, "tr[data-export-id][data-state=done]"),
                            timeout=20, message="the export to be done")
        self.screenshot("exports")
        row.find_element(By.CSS_SELECTOR, "button[data-part=data]").click()
        path = self.wait_for(lambda: [os.path.join(self.downloads, name) for name in os.listdir(self.downloads)
                                      if name.endswith(".csv")], message="the downloaded file")[0]
        self.wait_for(lambda: os.path.getsize(path) > 0, message="the file's bytes")
        with open(path) as exported:
            text = exported.read()
        self.assertTrue(text.startswith("event_id,timestamp,tenant_id"), text[:200])
        self.assertIn("a-doc-update", text)

    def test_11_access_trail_lists_the_reads(self):
        self.as_admin()
        self.open_page("search?actor_id=alice", "search")  # a read the trail must show

        def recorded():
            # Reads are recorded through the async lane: they appear a moment later.
            self.open_page("access", "access")
            rows = [row.text for row in self.table_rows("table.access tbody tr")]
            return [row for row in rows if "/v1/events" in row and "alice" in row]

        rows = self.wait_for(recorded, timeout=10, message="the search to appear in the access trail")
        self.assertIn("admin", rows[0])  # the reader's role
        self.screenshot("access")
        # The trail's own filters: one route only.
        self.driver.find_element(By.ID, "a-resource_id").send_keys("/v1/events")
        self.driver.find_element(By.CSS_SELECTOR, "form[aria-label='Access trail filters'] button").click()
        self.wait_for(lambda: "resource_id=" in self.driver.current_url and self.ready("access"), message="the filtered trail")
        routes = self.driver.execute_script(
            "return [...document.querySelectorAll('table.access tbody tr')].map((row) => row.cells[4].textContent)")
        self.assertTrue(routes)
        self.assertEqual(set(routes), {"/v1/events"})

    def test_12_activity_view_shows_only_the_token_holders_events(self):
        minted = self.api.call("POST", "/v1/viewer-tokens", self.admin_key,
                               {"actor_id": "alice", "scope": "self", "ttl_seconds": 600})
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/console/activity.html#token={urllib.parse.quote(minted['token'])}")
        self.wait_ready("activity")
        self.timing("activity")
        self.assertIsNone(self.driver.find_element(By.ID, "main").get_attribute("data-state"), self.main_text())
        self.assertNotIn("token=", self.driver.current_url)  # the token left the address bar
        self.assertEqual(self.driver.find_element(By.ID, "actor").text, "alice")
        text = self.driver.find_element(By.TAG_NAME, "body").text
        for marker in ["alice-laptop", "alice-phone", *ALICE_IPS, "password_change", "api_key_create", "logout"]:
            self.assertIn(marker, text)
        sign_ins = self.driver.find_element(By.ID, "sign-ins").text
        self.assertEqual(sign_ins.count("Failed"), ALICE_FAILED_LOGINS, sign_ins)
        page = self.driver.page_source
        for marker in ["bob-desktop-marker", BOB_IP, BOB_DOC, "carol-cli"]:
            self.assertNotIn(marker, page)
        self.screenshot("activity")
        self.screenshot("activity-360", NARROW)

    def test_13_embed_component_frames_the_activity_view_on_another_site(self):
        minted = self.api.call("POST", "/v1/viewer-tokens", self.admin_key,
                               {"actor_id": "alice", "scope": "self", "ttl_seconds": 600})
        host_page = (
            "<!doctype html><html lang=en><title>Settings</title><h1>Your settings</h1>"
            f"<script src='{self.base}/console/embed.js'></script>"
            f"<sealtrail-activity server='{self.base}' token='{minted['token']}'></sealtrail-activity>"
        ).encode()

        class Host(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(host_page)

            def log_message(self, *args):
                pass

        host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
        threading.Thread(target=host.serve_forever, daemon=True).start()
        try:
            # Another origin: the host page never reads the user's audit data itself.
            self.driver.get(f"http://localhost:{host.server_address[1]}/settings")
            element = self.wait_for(lambda: self.driver.find_element(By.TAG_NAME, "sealtrail-activity"), message="the component")
            frame = self.wait_for(lambda: element.shadow_root.find_element(By.CSS_SELECTOR, "iframe"), message="its frame")
            self.assertTrue(frame.get_attribute("src").startswith(f"{self.base}/console/activity.html#token="))
            self.driver.switch_to.frame(frame)
            self.wait_ready("activity")
            self.assertIsNone(self.driver.find_element(By.ID, "main").get_attribute("data-state"), self.main_text())
            self.assertEqual(self.driver.find_element(By.ID, "actor").text, "alice")
            self.driver.switch_to.default_content()
            # The frame grows to its content (reported by the page inside).
            self.wait_for(lambda: frame.size["height"] > 400, message="the frame to fit its content")
            self.assertGreater(frame.size["width"], 1000)
            self.screenshot("embed")
        finally:
            self.driver.switch_to.default_content()
            host.shutdown()
            host.server_close()

    def test_14_a_key_that_may_not_read_sees_why(self):
        try:
            self.log_in(self.ingest_key)
            self.wait_ready("search")
            notice = self.wait_for(lambda: self.driver.find_element(By.CSS_SELECTOR, "#main .notice.error"), message="a refusal")
            self.assertIn("Not allowed", notice.text)
            self.assertEqual(notice.get_attribute("role"), "alert")
            self.open_page("dashboard", "dashboard")
            self.assertIn("Not allowed", self.main_text())
        finally:
            self.driver.execute_script("sessionStorage.clear()")

    def test_16_platform_admin_names_the_tenant(self):
        try:
            self.log_in(self.admin_token)
            status = self.wait_for(lambda: self.driver.find_element(By.ID, "login-status").text, message="the tenant prompt")
            self.assertIn("enter the tenant", status)
            self.driver.find_element(By.ID, "login-tenant").send_keys(TENANT)
            self.driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
            self.wait_ready("search")
            self.assertIn("platform_admin", self.driver.find_element(By.ID, "who").text)
            self.assertEqual(len(self.row_ids()), 50)
            self.open_page("verify", "verify")
            self.assertIn("Signature verified", self.main_text())
        finally:
            self.driver.execute_script("sessionStorage.clear()")

    def test_15_narrow_screen_and_keyboard(self):
        self.as_admin()
        self.driver.set_window_size(NARROW, 800)
        try:
            self.open_page("search", "search")
            overflow = self.driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            self.assertLessEqual(overflow, 0, "the page scrolls sideways at 360 px; only tables may")
            self.assertTrue(self.driver.find_elements(By.CSS_SELECTOR, ".table-wrap[tabindex='0']"))
            unlabelled = self.driver.execute_script(
                "return [...document.querySelectorAll('input, select')].filter((e) => !e.labels.length).map((e) => e.id)")
            self.assertEqual(unlabelled, [])
            # The first Tab stop is the skip link, and it moves focus to the content.
            self.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
            active = self.driver.switch_to.active_element
            self.assertEqual(active.get_attribute("class"), "skip")
            active.send_keys(Keys.ENTER)
            self.assertEqual(self.driver.switch_to.active_element.get_attribute("id"), "main")
            self.screenshot("search-360", NARROW)
        finally:
            self.driver.set_window_size(WIDE, 900)


if __name__ == "__main__":
    unittest.main(verbosity=2)
