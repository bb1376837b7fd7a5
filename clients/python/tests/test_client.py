"""Tests of the Python client against the real server binary (target/debug/sealtrail).

Run from the repository root (scripts/test does, after `cargo test` built the binary):

    python3 -m unittest discover -s clients/python/tests -t clients/python

Only test_retry_after_* and test_status_classes talk to a local http.server stub, to time
retries; every other test uses the real server.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from sealtrail_client import (  # noqa: E402
    Client,
    DeliveryError,
    EventFailed,
    EventSpooled,
    request_context,
    uuid7,
)
from sealtrail_client._ids import uuid7_timestamp_ms  # noqa: E402

REPO_ROOT = HERE.parents[2]
BINARY = REPO_ROOT / "target" / "debug" / "sealtrail"
# 32 bytes as 64 hex characters, as the server requires of SEALTRAIL_ADMIN_TOKEN.
ADMIN_TOKEN = "c0ffee00d15ea5e5" * 4

# Local servers only: never through a proxy named in the environment.
for _name in ("no_proxy", "NO_PROXY"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Refusals the tests cause on purpose would print warnings; the assertions check them instead.
logging.getLogger("sealtrail_client").setLevel(logging.CRITICAL)


class Server:
    """`sealtrail serve` on 127.0.0.1, as crates/cli/tests/common/mod.rs starts it."""

    def __init__(self, data_dir: str, port: int = 0) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("SEALTRAIL_")}
        env["SEALTRAIL_ADMIN_TOKEN"] = ADMIN_TOKEN
        env["SEALTRAIL_LOG"] = "warn"
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:%d" % port],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        lines: "queue.Queue[str | None]" = queue.Queue()

        def read() -> None:
            assert self.process.stdout is not None
            with self.process.stdout:
                for raw in self.process.stdout:
                    lines.put(raw.decode("utf-8", "replace"))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        seen = []
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.process.kill()
                raise RuntimeError("the server did not report its address; stdout: %r" % seen)
            if line is None:
                raise RuntimeError("the server exited (%s); stdout: %r" % (self.process.wait(), seen))
            if line.startswith("sealtrail listening on "):
                self.base = line[len("sealtrail listening on "):].strip()
                break
            seen.append(line)
        self.port = int(self.base.rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM (an orderly shutdown) and wait for the exit."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def create_key(self, tenant_id: str, role: str) -> str:
        status, body = call("POST", self.base + "/v1/keys", ADMIN_TOKEN, {"tenant_id": tenant_id, "role": role})
        assert status == 201, (status, body)
        return body["key"]


def call(method: str, url: str, token: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _direct.open(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def stored_ids(base: str, reader_key: str, expected, timeout: float = 30.0) -> Counter:
    """Every event_id of the reader's tenant (GET /v1/events, cursor paging), with counts.

    Async events are committed shortly after their 202: waits (up to ``timeout``) until every
    expected id is there, then returns what is stored.
    """
    expected = set(expected)
    deadline = time.monotonic() + timeout
    while True:
        counts: Counter = Counter()
        cursor = None
        while True:
            query = {"limit": "1000", "order": "asc"}
            if cursor:
                query["cursor"] = cursor
            status, page = call("GET", base + "/v1/events?" + urllib.parse.urlencode(query), reader_key)
            assert status == 200, (status, page)
            counts.update(event["event_id"] for event in page["events"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        if expected <= set(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def make_event(tenant_id: str, n: int) -> dict:
    return {
        "tenant_id": tenant_id,
        "actor_id": "user-%d" % (n % 13),
        "action": "update",
        "resource_type": "document",
        "resource_id": "doc-%d" % n,
        "metadata": {"n": n},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_server: Server | None = None
_server_dir: str | None = None


def require_binary() -> None:
    if not BINARY.exists():
        raise RuntimeError("%s is missing: build it first (cargo build, or cargo test)" % BINARY)


def shared_server() -> Server:
    """One server for the tests that need no restart (each uses a tenant of its own)."""
    global _server, _server_dir
    if _server is None:
        require_binary()
        _server_dir = tempfile.mkdtemp(prefix="sealtrail-py-")
        _server = Server(_server_dir)
    return _server


def tearDownModule() -> None:
    if _server is not None:
        _server.kill()
    if _server_dir is not None:
        shutil.rmtree(_server_dir, ignore_errors=True)


class RealServerCase(unittest.TestCase):
    """A fresh tenant of the shared server, with its ingest and reader keys."""

    def setUp(self) -> None:
        self.server = shared_server()
        self.tenant = "t-" + uuid.uuid4().hex[:12]
        self.ingest_key = self.server.create_key(self.tenant, "ingest")
        self.reader_key = self.server.create_key(self.tenant, "reader")

    def assert_stored_once(self, base: str, ids) -> None:
        ids = list(ids)
        self.assertEqual(len(set(ids)), len(ids), "the client made the same event_id twice")
        counts = stored_ids(base, self.reader_key, ids)
        missing = [event_id for event_id in ids if counts[event_id] == 0]
        twice = {event_id: count for event_id, count in counts.items() if count > 1}
        self.assertEqual(missing, [], "%d event(s) missing" % len(missing))
        self.assertEqual(twice, {}, "event(s) stored more than once")
        self.assertEqual(set(counts), set(ids))


class BatchingTest(RealServerCase):
    def test_batches_of_1234_events_are_all_stored_once(self) -> None:
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant) as client:
            handles = [client.record(make_event(self.tenant, n)) for n in range(1234)]
            client.flush(timeout=60)
            self.assertTrue(all(handle.status == "acknowledged" for handle in handles))
            self.assertTrue(all(handle.http_status in (201, 202) for handle in handles))
            # 500 + 500 + 234, give or take a timer-triggered batch on a loaded machine.
            self.assertGreaterEqual(client.stats["requests"], 3)
            self.assertLessEqual(client.stats["requests"], 8)
            self.assertEqual(client.stats["retries"], 0)
        self.assert_stored_once(self.server.base, [handle.event_id for handle in handles])

    def test_a_partial_batch_goes_after_flush_interval(self) -> None:
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant, flush_interval=0.3) as client:
            started = time.monotonic()
            handles = [client.record(make_event(self.tenant, n)) for n in range(3)]
            for handle in handles:
                self.assertTrue(handle.wait(timeout=10))  # no flush(): the timer sends them
            self.assertGreaterEqual(time.monotonic() - started, 0.25)
            self.assertEqual(client.stats["requests"], 1)
        self.assert_stored_once(self.server.base, [handle.event_id for handle in handles])

    def test_sync_events_request_context_and_receipts(self) -> None:
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant) as client:
            with request_context(request_id="req-1", ip_address="203.0.113.9", user_agent="agent/1"):
                stamped = client.record(make_event(self.tenant, 1), durability="sync")
                own = client.record(dict(make_event(self.tenant, 2), request_id="own-id"), durability="sync")
            outside = client.record(make_event(self.tenant, 3), durability="sync")
            receipt = stamped.result(timeout=30)
            self.assertEqual(stamped.http_status, 201)
            self.assertEqual(receipt["event_id"], stamped.event_id)
            self.assertIsInstance(receipt["seq"], int)
            self.assertEqual(len(receipt["event_hash"]), 64)
            own.result(timeout=30)
            outside.result(timeout=30)

        def stored(event_id: str) -> dict:
            status, event = call("GET", "%s/v1/events/%s" % (self.server.base, event_id), self.reader_key)
            self.assertEqual(status, 200, event)
            return event

        event = stored(stamped.event_id)
        self.assertEqual((event["request_id"], event["ip_address"], event["user_agent"]), ("req-1", "203.0.113.9", "agent/1"))
        event = stored(own.event_id)
        self.assertEqual((event["request_id"], event["ip_address"]), ("own-id", "203.0.113.9"))
        event = stored(outside.event_id)
        self.assertEqual((event["request_id"], event["ip_address"], event["user_agent"]), (None, None, None))


class IdempotencyTest(RealServerCase):
    def test_the_same_batch_sent_twice_is_stored_once(self) -> None:
        # A lost response: the client cannot tell whether the server stored the batch, so it
        # sends it again, with the same event_ids and content.
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant) as client:
            sync_events = [client._prepare(make_event(self.tenant, n)) for n in range(25)]
            first = client._send_events(sync_events, "sync")
            again = client._send_events(sync_events, "sync")
            self.assertEqual([h.http_status for h in first + again], [201] * 50)
            self.assertEqual([h.receipt for h in first], [h.receipt for h in again])

            async_events = [client._prepare(make_event(self.tenant, n)) for n in range(25, 50)]
            first_async = client._send_events(async_events, "async")
            again_async = client._send_events(async_events, "async")
            self.assertEqual([h.status for h in first_async + again_async], ["acknowledged"] * 50)
            self.assertEqual(client.failures, [])
        self.assert_stored_once(self.server.base, [e["event_id"] for e in sync_events + async_events])


class InvalidEventTest(RealServerCase):
    def test_a_400_is_reported_by_flush_and_the_others_are_stored(self) -> None:
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant) as client:
            handles = []
            for n in range(30):
                event = make_event(self.tenant, n)
                if n == 7:
                    del event["action"]
                if n == 19:
                    event["action"] = "not an action!"
                handles.append(client.record(event))
            with self.assertRaises(DeliveryError) as raised:
                client.flush(timeout=60)
            failures = raised.exception.failures
            self.assertEqual(sorted(f.event_id for f in failures), sorted([handles[7].event_id, handles[19].event_id]))
            for failure in failures:
                self.assertEqual(failure.status, 400)
                self.assertIn("action", failure.reason)
                self.assertEqual(failure.event["event_id"], failure.event_id)
            self.assertIn(handles[7].event_id, str(raised.exception))
            self.assertEqual(handles[7].status, "failed")
            with self.assertRaises(EventFailed):
                handles[19].result(timeout=1)
            self.assertEqual(len(client.failures), 2)
            client.flush(timeout=10)  # reported once: no second raise
        good = [h.event_id for n, h in enumerate(handles) if n not in (7, 19)]
        self.assert_stored_once(self.server.base, good)

    def test_a_409_fails_the_reused_event_id_only(self) -> None:
        with Client(self.server.base, self.ingest_key, tenant_id=self.tenant) as client:
            first = client.record(make_event(self.tenant, 0), durability="sync")
            first.result(timeout=30)
            handles = [client.record(make_event(self.tenant, n)) for n in range(1, 11)]
            # Same event_id, other content: the server refuses the request naming this event.
            reused = client.record(dict(make_event(self.tenant, 99), event_id=first.event_id))
            handles += [client.record(make_event(self.tenant, n)) for n in range(11, 21)]
            with self.assertRaises(DeliveryError) as raised:
                client.flush(timeout=60)
            self.assertEqual([(f.event_id, f.status) for f in raised.exception.failures], [(first.event_id, 409)])
            self.assertEqual(reused.status, "failed")
            self.assertEqual({h.status for h in handles}, {"acknowledged"})
        self.assert_stored_once(self.server.base, [first.event_id] + [h.event_id for h in handles])

    def test_a_wrong_key_is_a_permanent_failure(self) -> None:
        with Client(self.server.base, "stk_not-a-key", tenant_id=self.tenant, max_retries=5) as client:
            handle = client.record(make_event(self.tenant, 1))
            with self.assertRaises(DeliveryError) as raised:
                client.flush(timeout=30)
            self.assertEqual([f.status for f in raised.exception.failures], [401])
            self.assertEqual(client.stats["retries"], 0)
            self.assertEqual(handle.status, "failed")


class OutageTest(unittest.TestCase):
    def test_server_stopped_mid_stream_every_event_arrives_once(self) -> None:
        require_binary()
        data_dir = tempfile.mkdtemp(prefix="sealtrail-py-outage-")
        self.addCleanup(shutil.rmtree, data_dir, True)
        server = Server(data_dir)
        self.addCleanup(lambda: server.kill())
        tenant = "outage"
        ingest_key = server.create_key(tenant, "ingest")
        reader_key = server.create_key(tenant, "reader")
        base, port = server.base, server.port

        client = Client(
            base, ingest_key, tenant_id=tenant, batch_size=100, flush_interval=0.1,
            max_retries=60, backoff_base=0.05, backoff_max=0.5, timeout=10,
        )
        self.addCleanup(client.close, 5, False)
        recorded = []  # (monotonic time, event_id)
        done = threading.Event()

        def produce() -> None:
            for n in range(2000):
                recorded.append((time.monotonic(), client.record(make_event(tenant, n)).event_id))
                if n % 10 == 9:
                    time.sleep(0.02)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(1.0)
        down_at = time.monotonic()
        self.assertEqual(server.stop(), 0)
        time.sleep(2.5)
        server = Server(data_dir, port=port)
        up_at = time.monotonic()
        producer.join(timeout=60)
        self.assertTrue(done.is_set())
        client.flush(timeout=60)
        client.close()

        during = [event_id for at, event_id in recorded if down_at <= at <= up_at]
        self.assertGreater(len(during), 100, "events were recorded while the server was down")
        self.assertGreater(client.stats["retries"], 0)
        self.assertEqual(client.failures, [])
        ids = [event_id for _, event_id in recorded]
        counts = stored_ids(base, reader_key, ids)
        self.assertEqual([i for i in ids if counts[i] != 1], [])
        self.assertEqual(len(counts), 2000)
        server.stop()


class SpoolTest(RealServerCase):
    def test_spooled_events_are_replayed_once_by_a_new_client(self) -> None:
        spool_dir = tempfile.mkdtemp(prefix="sealtrail-py-spool-")
        self.addCleanup(shutil.rmtree, spool_dir, True)
        nowhere = "http://127.0.0.1:%d" % free_port()
        offline = Client(nowhere, self.ingest_key, tenant_id=self.tenant, spool_dir=spool_dir,
                         max_retries=1, backoff_base=0.01, backoff_max=0.05)
        handles = [offline.record(make_event(self.tenant, n)) for n in range(40)]
        handles += [offline.record(make_event(self.tenant, n), durability="sync") for n in range(40, 45)]
        invalid = dict(make_event(self.tenant, 45), action="not an action!")
        refused = offline.record(invalid)  # spooled too: only the server can judge it
        offline.flush(timeout=30)  # returns once everything is on disk; nothing failed
        self.assertEqual({h.status for h in handles + [refused]}, {"spooled"})
        with self.assertRaises(EventSpooled):
            handles[0].result(timeout=0)
        offline.close()
        segments = [name for name in os.listdir(spool_dir) if name.endswith(".jsonl")]
        self.assertTrue(segments)
        self.assertTrue(any(name.endswith(".sync.jsonl") for name in segments))
        spooled_lines = sum(len(Path(spool_dir, name).read_bytes().splitlines()) for name in segments)
        self.assertEqual(spooled_lines, 46)

        with Client(self.server.base, self.ingest_key, spool_dir=spool_dir) as online:
            with self.assertRaises(DeliveryError) as raised:
                online.flush(timeout=60)
            self.assertEqual([(f.event_id, f.status) for f in raised.exception.failures], [(refused.event_id, 400)])
            self.assertEqual(online.stats["replayed"], 46)
        # Every segment is gone; the refused event is kept with its reason.
        self.assertEqual(sorted(n for n in os.listdir(spool_dir) if n.endswith(".jsonl")), ["rejected.jsonl"])
        rejected = [json.loads(line) for line in Path(spool_dir, "rejected.jsonl").read_bytes().splitlines()]
        self.assertEqual([r["event"]["event_id"] for r in rejected], [refused.event_id])
        self.assertIn("action", rejected[0]["reason"])
        # A third client on the same directory finds nothing left to send.
        with Client(self.server.base, self.ingest_key, spool_dir=spool_dir) as again:
            again.flush(timeout=30)
            self.assertEqual(again.stats["replayed"], 0)
        self.assert_stored_once(self.server.base, [h.event_id for h in handles])


class _Stub(http.server.ThreadingHTTPServer):
    """Answers POST /v1/events with the statuses of ``script`` in turn, then 201."""

    daemon_threads = True

    def __init__(self, script) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.script = list(script)
        self.max_events = 10_000
        self.arrivals = []  # (monotonic time, path, number of events)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def base(self) -> str:
        return "http://127.0.0.1:%d" % self.server_address[1]


class _StubHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        events = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.arrivals.append((time.monotonic(), self.path, len(events)))
        status = server.script.pop(0) if server.script else 201
        if len(events) > server.max_events:
            status = 413
        if status < 300:
            body = {"results": [{"event_id": e["event_id"], "tenant_id": e["tenant_id"], "seq": i + 1} for i, e in enumerate(events)]}
            content_type = "application/json"
        else:
            body = {"type": "about:blank", "title": "stub", "status": status, "detail": "stub says %d" % status}
            content_type = "application/problem+json"
        payload = json.dumps(body).encode()
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


class RetryAfterTest(unittest.TestCase):
    def _run_script(self, script, events=5, max_events=10_000, **options):
        stub = _Stub(script)
        stub.max_events = max_events
        self.addCleanup(stub.server_close)
        self.addCleanup(stub.shutdown)
        # Backoff so short that only Retry-After can explain a one-second pause.
        client = Client(stub.base, "stk_test", tenant_id="acme", backoff_base=0.001, backoff_max=0.01, **options)
        handles = [client.record(make_event("acme", n)) for n in range(events)]
        error = None
        try:
            client.flush(timeout=30)
        except DeliveryError as raised:
            error = raised
        client.close(_raise=False)
        return stub, client, handles, error

    def _assert_waited(self, status: int) -> None:
        stub, client, handles, error = self._run_script([status])
        self.assertIsNone(error)
        self.assertEqual(len(stub.arrivals), 2)
        pause = stub.arrivals[1][0] - stub.arrivals[0][0]
        self.assertGreaterEqual(pause, 0.95, "Retry-After: 1 was not honoured after %d" % status)
        self.assertLess(pause, 5)
        self.assertEqual(stub.arrivals[0][1], "/v1/events?durability=async")
        self.assertEqual({h.status for h in handles}, {"acknowledged"})
        self.assertEqual(handles[0].receipt["seq"], 1)

    def test_retry_after_on_503(self) -> None:
        self._assert_waited(503)

    def test_retry_after_on_429(self) -> None:
        self._assert_waited(429)

    def test_status_classes(self) -> None:
        # 500, 502 and 408 are retried at once (backoff only); 401 and 403 are failures.
        stub, client, handles, error = self._run_script([500, 408, 502])
        self.assertIsNone(error)
        self.assertEqual(len(stub.arrivals), 4)
        self.assertLess(stub.arrivals[-1][0] - stub.arrivals[0][0], 1.0)
        for status in (401, 403):
            stub, client, handles, error = self._run_script([status], events=3)
            self.assertIsNotNone(error)
            self.assertEqual(len(stub.arrivals), 1)
            self.assertEqual([f.status for f in error.failures], [status] * 3)
        # 413: halved until each request fits; nothing fails.
        stub, client, handles, error = self._run_script([], events=10, max_events=3)
        self.assertIsNone(error)
        self.assertEqual({h.status for h in handles}, {"acknowledged"})
        self.assertEqual(sum(n for _, _, n in stub.arrivals if n <= 3), 10)
        # Retries exhausted without a spool: reported, not dropped.
        stub, client, handles, error = self._run_script([503, 503, 503], events=2, max_retries=1, retry_after_max=0.1)
        self.assertIsNotNone(error)
        self.assertEqual(len(stub.arrivals), 2)
        self.assertEqual({f.status for f in error.failures}, {503})
        self.assertIn("not delivered after 2 attempt(s)", error.failures[0].reason)


class Uuid7Test(unittest.TestCase):
    def test_layout_and_order(self) -> None:
        before = time.time_ns() // 1_000_000
        ids = [uuid7() for _ in range(10_000)]
        after = time.time_ns() // 1_000_000
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), len(ids))
        for text in ids[:100] + ids[-100:]:
            value = uuid.UUID(text)
            self.assertEqual(str(value), text)
            self.assertEqual(value.version, 7)
            self.assertEqual(value.int >> 62 & 0b11, 0b10)  # the RFC 9562 variant
            self.assertLessEqual(before, uuid7_timestamp_ms(text))
            self.assertLessEqual(uuid7_timestamp_ms(text), after + 5)  # the counter may run ahead


if __name__ == "__main__":
    unittest.main()
