#!/usr/bin/env python3
"""Times export jobs (POST /v1/exports, polled until done) of the largest tenant's 12 months
against a running Sealtrail server and, in the same run, DuckDB's COPY ... TO of the same rows
from the same Parquet files, per format. Reports medians, events/s, the ratio, and peak memory:
the server's resident set sampled during its jobs, DuckDB's (in this process) during its COPY.

Usage: compare.py --url URL --token TOKEN --warm DIR --facts FILE --server-pid PID [--runs N]
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

import duckdb

POLL_SECONDS = 0.05
SAMPLE_SECONDS = 0.02


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Samples a process's resident set in a thread while the block runs."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--warm", required=True)
    parser.add_argument("--facts", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    facts = json.load(open(args.facts))
    tenant = facts["largest_tenant"]
    files = sorted(glob.glob(os.path.join(args.warm, f"tenant_id={tenant}", "*", "*.parquet")))
    if not files:
        sys.exit(f"no Parquet files for {tenant} under {args.warm}")
    source = "read_parquet([" + ", ".join(f"'{path}'" for path in files) + "])"
    duck = duckdb.connect()
    duck.execute(f"SET threads = {os.cpu_count()}")
    duck.execute("SET TimeZone = 'UTC'")

    def api(method, path, body=None):
        request = urllib.request.Request(
            args.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def ours(fmt):
        job = api("POST", "/v1/exports", {"format": fmt, "tenant_id": tenant,
                                          "from": facts["year_from"], "to": facts["year_to"]})
        while job["state"] in ("queued", "running"):
            time.sleep(POLL_SECONDS)
            job = api("GET", f"/v1/exports/{job['export_id']}?tenant_id={tenant}")
        if job["state"] != "done":
            sys.exit(f"export {job['export_id']} ended {job['state']}: {job.get('error')}")
        return job["events_written"], job["bytes"]

    duck_formats = {"ndjson": "(FORMAT JSON)", "csv": "(FORMAT CSV, HEADER)",
                    "parquet": "(FORMAT PARQUET, COMPRESSION ZSTD)"}

    def theirs(fmt, scratch):
        out = os.path.join(scratch, f"export.{fmt}")
        duck.execute(f"COPY (SELECT * FROM {source} WHERE timestamp >= TIMESTAMPTZ '{facts['year_from']}' "
                     f"AND timestamp < TIMESTAMPTZ '{facts['year_to']}' ORDER BY seq) TO '{out}' {duck_formats[fmt]}")
        rows = duck.execute(f"SELECT count(*) FROM {source} WHERE timestamp >= TIMESTAMPTZ '{facts['year_from']}' "
                            f"AND timestamp < TIMESTAMPTZ '{facts['year_to']}'").fetchone()[0]
        size = os.path.getsize(out)
        os.remove(out)
        return rows, size

    print(f"largest tenant {tenant}: {facts['largest_tenant_events']} events in {len(files)} files; "
          f"{args.runs} runs each, medians; server RSS before: {rss_kib(args.server_pid) // 1024} MiB\n")
    print("| format | rows | Sealtrail job | DuckDB COPY | Sealtrail / DuckDB | M events/s (ours / DuckDB) "
          "| bytes (ours / DuckDB) | peak RSS MiB (server / DuckDB process) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for fmt in ["ndjson", "csv", "parquet"]:
            ours_times, theirs_times = [], []
            ours_peak = theirs_peak = 0
            for _ in range(args.runs):
                with PeakRss(args.server_pid) as peak:
                    started = time.perf_counter()
                    ours_rows, ours_bytes = ours(fmt)
                    ours_times.append(time.perf_counter() - started)
                ours_peak = max(ours_peak, peak.peak)
                with PeakRss(os.getpid()) as peak:
                    started = time.perf_counter()
                    theirs_rows, theirs_bytes = theirs(fmt, scratch)
                    theirs_times.append(time.perf_counter() - started)
                theirs_peak = max(theirs_peak, peak.peak)
            ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
            rows = f"{ours_rows}" if ours_rows == theirs_rows else f"{ours_rows} (DuckDB {theirs_rows})"
            print(f"| {fmt} | {rows} | {ours_median:.2f} s | {theirs_median:.2f} s | "
                  f"{ours_median / theirs_median:.2f}x | {ours_rows / ours_median / 1e6:.2f} / "
                  f"{theirs_rows / theirs_median / 1e6:.2f} | {ours_bytes} / {theirs_bytes} | "
                  f"{ours_peak // 1024} / {theirs_peak // 1024} |")


if __name__ == "__main__":
    main()
