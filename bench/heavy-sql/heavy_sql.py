"""Ingest and GET /v1/events latency, quiet and beside heavy SQL (see bench/heavy-sql/run).

Starts `sealtrail serve` on 127.0.0.1 in a temporary data directory, loads wide events, then
alternates phases of --seconds each, --rounds times: "quiet" (one client posting one event
per request with durability=sync, one client reading GET /v1/events?limit=100, each in a
closed loop) and "heavy" (the same two clients, plus QUERIES_CONCURRENT_MAX clients that keep
running heavy queries). Reports each phase's p50/p99 per round, the medians of the p99s and
their ratio heavy/quiet. Only the standard library; stops the server on exit.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ADMIN = "5ea17a11b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e"  # 32 bytes as hex: the server refuses weaker tokens
WIDE_EVENTS = 600
WIDE_CHANGES_BYTES = 30_000
# Heavy queries: CPU-bound until their 30 s timeout, or cut by the row/byte/memory bounds.
HEAVY_SQL = [
    "SELECT count(*) AS n FROM generate_series(1, 1000000000000) AS t(v) WHERE v % 7 = 3",
    "SELECT count(*) AS n FROM events a, events b, events c "
    "WHERE a.changes <> concat(b.changes, c.seq)",
    "SELECT a.changes AS x, b.changes AS y FROM events a CROSS JOIN events b",
    "SELECT value FROM generate_series(1, 1000000000000) AS t(value) ORDER BY value DESC",
    "SELECT concat(b.changes, a.seq, '-', b.seq) AS k, count(*) AS n "
    "FROM events a CROSS JOIN events b GROUP BY 1",
]
HEAVY_CLIENTS = 2  # QUERIES_CONCURRENT_MAX


class Client:
    def __init__(self, address, key):
        self.host, self.port = address
        self.key = key
        self.connection = None

    def request(self, method, path, body=None, timeout=120):
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {self.key}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
            return response.status, payload
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = None
            raise


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def start_server(binary, data_dir):
    log = open(os.path.join(data_dir, "serve.log"), "w")
    environment = dict(os.environ, SEALTRAIL_ADMIN_TOKEN=ADMIN, SEALTRAIL_LOG="warn")
    process = subprocess.Popen(
        [binary, "serve", "--data-dir", os.path.join(data_dir, "data"),
         "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=log, env=environment, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = process.stdout.readline()
        match = re.search(r"http://([0-9.]+):(\d+)", line or "")
        if match:
            return process, (match.group(1), int(match.group(2)))
        if process.poll() is not None:
            break
    process.kill()
    sys.exit("the server did not start; see " + log.name)


def event(index, changes=None):
    body = {
        "event_id": f"bench-{index}-{time.monotonic_ns()}",
        "tenant_id": "acme",
        "actor_id": f"user-{index % 50}",
        "action": "document.read",
        "resource_type": "document",
        "resource_id": f"doc-{index % 1000}",
    }
    if changes:
        body["changes"] = {"before": {"blob": changes}}
    return body


def load(admin, ingest):
    blob = "x" * WIDE_CHANGES_BYTES
    for start in range(0, WIDE_EVENTS, 100):
        batch = [event(index, blob) for index in range(start, min(WIDE_EVENTS, start + 100))]
        status, body = ingest.request("POST", "/v1/events", batch)
        assert status == 201, (status, body[:300])


def closed_loop(name, call, stop, latencies, errors):
    while not stop.is_set():
        started = time.perf_counter()
        try:
            status = call()
        except Exception as error:  # a transport error counts, and the loop goes on
            errors.append(f"{name}: {error}")
            continue
        elapsed = time.perf_counter() - started
        if status >= 300:
            errors.append(f"{name}: HTTP {status}")
        latencies.append(elapsed * 1000)


def heavy_loop(client, stop, outcomes, offset):
    turn = offset
    while not stop.is_set():
        sql = HEAVY_SQL[turn % len(HEAVY_SQL)]
        turn += 1
        started = time.perf_counter()
        try:
            status, body = client.request("POST", "/v1/query", {"sql": sql}, timeout=300)
        except Exception as error:
            outcomes.append(("error", str(error), 0.0, 0))
            continue
        elapsed = time.perf_counter() - started
        outcomes.append((status, sql[:40], elapsed, len(body)))


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def phase(address, keys, seconds, heavy):
    ingest = Client(address, keys["ingest"])
    reader = Client(address, keys["reader"])
    counter = [0]

    def post_one():
        counter[0] += 1
        status, _ = ingest.request("POST", "/v1/events?durability=sync", event(counter[0]))
        return status

    def get_page():
        status, _ = reader.request("GET", "/v1/events?limit=100")
        return status

    stop = threading.Event()
    heavy_stop = threading.Event()
    ingest_ms, get_ms, errors, outcomes = [], [], [], []
    threads = [
        threading.Thread(target=closed_loop, args=("ingest", post_one, stop, ingest_ms, errors)),
        threading.Thread(target=closed_loop, args=("get", get_page, stop, get_ms, errors)),
    ]
    heavy_threads = []
    if heavy:
        for offset in range(HEAVY_CLIENTS):
            client = Client(address, keys["reader"])
            heavy_threads.append(threading.Thread(
                target=heavy_loop, args=(client, heavy_stop, outcomes, offset)))
    for thread in heavy_threads:
        thread.start()
    if heavy:
        time.sleep(1)  # the heavy queries are running before measuring starts
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    heavy_stop.set()
    for thread in heavy_threads:
        thread.join()  # each query ends by its own bound (at most the 30 s timeout)
    return ingest_ms, get_ms, errors, outcomes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sealtrail-heavy-sql-")
    process, address = start_server(options.server, work)
    try:
        admin = Client(address, ADMIN)
        keys = {}
        for role in ["ingest", "reader"]:
            status, body = admin.request("POST", "/v1/keys", {"tenant_id": "acme", "role": role})
            assert status == 201, body
            keys[role] = json.loads(body)["key"]
        load(admin, Client(address, keys["ingest"]))
        print(f"server {address[0]}:{address[1]} pid {process.pid}; {WIDE_EVENTS} events of "
              f"{WIDE_CHANGES_BYTES // 1000} KB loaded; {options.rounds} rounds of "
              f"{options.seconds} s quiet then {options.seconds} s heavy "
              f"({HEAVY_CLIENTS} heavy SQL clients)")
        print(f"{'round':>5} {'phase':>6} {'ingest n':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'GET n':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  heavy queries")
        p99 = {"quiet": ([], []), "heavy": ([], [])}
        all_outcomes = []
        for round_index in range(1, options.rounds + 1):
            for name in ["quiet", "heavy"]:
                ingest_ms, get_ms, errors, outcomes = phase(
                    address, keys, options.seconds, name == "heavy")
                all_outcomes.extend(outcomes)
                p99[name][0].append(percentile(ingest_ms, 0.99))
                p99[name][1].append(percentile(get_ms, 0.99))
                statuses = {}
                for status, _, _, _ in outcomes:
                    statuses[status] = statuses.get(status, 0) + 1
                print(f"{round_index:>5} {name:>6} {len(ingest_ms):>8} "
                      f"{percentile(ingest_ms, 0.5):>8.1f} {percentile(ingest_ms, 0.99):>8.1f} "
                      f"{len(get_ms):>6} {percentile(get_ms, 0.5):>8.1f} "
                      f"{percentile(get_ms, 0.99):>8.1f} {len(errors):>6}  "
                      f"{statuses if outcomes else ''}")
                for error in errors[:3]:
                    print("      ", error)
        quiet_ingest, quiet_get = (statistics.median(values) for values in p99["quiet"])
        heavy_ingest, heavy_get = (statistics.median(values) for values in p99["heavy"])
        print()
        print(f"median p99 ingest: quiet {quiet_ingest:.1f} ms, heavy {heavy_ingest:.1f} ms, "
              f"ratio {heavy_ingest / quiet_ingest:.2f}x")
        print(f"median p99 GET:    quiet {quiet_get:.1f} ms, heavy {heavy_get:.1f} ms, "
              f"ratio {heavy_get / quiet_get:.2f}x")
        largest = max((size for _, _, _, size in all_outcomes), default=0)
        longest = max((elapsed for _, _, elapsed, _ in all_outcomes), default=0)
        print(f"heavy queries: {len(all_outcomes)}, longest {longest:.1f} s, largest answer "
              f"{largest / 1e6:.1f} MB; server peak RSS (VmHWM) "
              f"{vm_hwm_kib(process.pid) / 1024:.0f} MiB")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
