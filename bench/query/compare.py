#!/usr/bin/env python3
"""Times the query benchmark's investigations against a running Sealtrail server and, in the
same run, the same queries in DuckDB over the same Parquet files. Prints one Markdown table
(medians of --runs runs, ratio Sealtrail/DuckDB) and the warm tier's bytes per event, with the
largest columns.

Usage: compare.py --url URL --token TOKEN --warm DIR --facts FILE [--runs N]
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import duckdb
import pyarrow.parquet as pq


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--warm", required=True)
    parser.add_argument("--facts", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--actors", help="the largest tenant's directory (query-data's .actors.ndjson)")
    args = parser.parse_args()
    facts = json.load(open(args.facts))
    tenant = facts["largest_tenant"]
    files = sorted(glob.glob(os.path.join(args.warm, f"tenant_id={tenant}", "*", "*.parquet")))
    if not files:
        sys.exit(f"no Parquet files for {tenant} under {args.warm}")
    source = "read_parquet([" + ", ".join(f"'{path}'" for path in files) + "])"
    duck = duckdb.connect()
    duck.execute(f"SET threads = {os.cpu_count()}")
    # The cached rows below compare a repeat in Sealtrail with DuckDB answering again.
    duck.execute("SET TimeZone = 'UTC'")

    def api(method, path, body=None):
        request = urllib.request.Request(
            args.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.read()

    def pages(params):
        """Every page of GET /v1/events; returns the number of events."""
        count, cursor = 0, None
        while True:
            query = dict(params, tenant_id=tenant, limit="1000")
            if cursor:
                query["cursor"] = cursor
            page = json.loads(api("GET", "/v1/events?" + urllib.parse.urlencode(query)))
            count += len(page["events"])
            cursor = page["next_cursor"]
            if not cursor:
                return count

    fresh_runs = iter(range(1_000_000))

    def sql(text, cached=False):
        # A trailing comment makes each run a new question for the result cache (same answer),
        # so these rows time the engine; `cached` times a repeat.
        if not cached:
            text += f" -- run {next(fresh_runs)}"
        result = json.loads(api("POST", "/v1/query", {"sql": text, "tenant_id": tenant}))
        return result["row_count"]

    def export():
        query = urllib.parse.urlencode({"tenant_id": tenant, "from": facts["year_from"], "to": facts["year_to"]})
        request = urllib.request.Request(
            f"{args.url}/v1/export?{query}", headers={"Authorization": f"Bearer {args.token}"}
        )
        lines = 0
        with urllib.request.urlopen(request, timeout=600) as response:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
        return lines

    def duck_rows(text):
        return duck.sql(text).to_arrow_table().num_rows

    def duck_export():
        with tempfile.TemporaryDirectory() as scratch:
            out = os.path.join(scratch, "export.ndjson")
            duck.execute(f"COPY (SELECT * FROM {source} WHERE timestamp >= TIMESTAMPTZ '{facts['year_from']}' "
                         f"AND timestamp < TIMESTAMPTZ '{facts['year_to']}' ORDER BY seq) TO '{out}' (FORMAT JSON)")
            with open(out, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))

    dept = f'%"department":"{facts["department"]}"%'
    deletes_where = (f"action = 'document.delete' AND metadata LIKE '{dept}' "
                     "AND timestamp >= {q_from} AND timestamp < {q_to}")
    failed_logins = ("SELECT actor_id, date_trunc('day', timestamp) AS day, count(*) AS failures FROM {table} "
                     "WHERE action = 'user.login' AND outcome = 'failure' AND timestamp >= {y_from} AND timestamp < {y_to} "
                     "GROUP BY 1, 2 ORDER BY failures DESC, actor_id, day LIMIT 10000")

    def df_time(text):
        return f"TIMESTAMP '{text}'"

    def duck_ts(text):
        return f"TIMESTAMPTZ '{text}'"

    # The summary questions read the actor directory: load it (an upsert, so a rerun is the same).
    if args.actors:
        with open(args.actors) as handle:
            for line in handle:
                api("PUT", f"/v1/tenants/{tenant}/actors", json.loads(line))

    q_from_day, q_to_day = facts["quarter_from"][:10], facts["quarter_to"][:10]
    finance_summary = ("SELECT s.actor_id, sum(s.events) AS deletes FROM summary_actor_day s "
                       "JOIN actors a ON a.actor_id = s.actor_id "
                       f"WHERE a.department = '{facts['department']}' AND s.action = 'document.delete' "
                       f"AND s.date >= '{q_from_day}' AND s.date < '{q_to_day}' "
                       "GROUP BY s.actor_id ORDER BY deletes DESC, s.actor_id")
    finance_raw = (f"SELECT actor_id, count(*) AS deletes FROM {source} WHERE "
                   + deletes_where.format(q_from=duck_ts(facts["quarter_from"]), q_to=duck_ts(facts["quarter_to"]))
                   + " GROUP BY actor_id ORDER BY deletes DESC, actor_id")
    month_from, month_to = facts["year_from"][:7], facts["year_to"][:7]
    runs = iter(range(1_000_000))

    def tenant_months(fresh):
        # A fresh key per run (a `from` month before any event: the same answer) times the
        # summaries themselves; a repeated one times the result cache.
        start = f"{1900 + next(runs) % 100}-01" if fresh else month_from
        query = urllib.parse.urlencode({"tenant_id": tenant, "from": start, "to": month_to})
        return len(json.loads(api("GET", f"/v1/summaries/tenant-month?{query}"))["summaries"])

    def finance(fresh):
        return sql(finance_summary, cached=not fresh)

    def duck_tenant_months():
        months = f"(SELECT strftime(timestamp, '%Y-%m') AS month, * FROM {source})"
        totals = duck.execute(f"SELECT month, count(*), count(DISTINCT actor_id) FROM {months} "
                              f"WHERE month >= '{month_from}' AND month <= '{month_to}' GROUP BY 1 ORDER BY 1").fetchall()
        duck.execute(f"SELECT month, action, count(*) FROM {months} "
                     f"WHERE month >= '{month_from}' AND month <= '{month_to}' GROUP BY 1, 2").fetchall()
        duck.execute(f"SELECT * FROM (SELECT month, resource_type, resource_id, count(*) AS events, "
                     "row_number() OVER (PARTITION BY month ORDER BY count(*) DESC, resource_type, resource_id) AS rank "
                     f"FROM {months} WHERE resource_id IS NOT NULL AND month >= '{month_from}' AND month <= '{month_to}' "
                     "GROUP BY 1, 2, 3) WHERE rank <= 20").fetchall()
        return len(totals)

    cases = [
        (
            "deletes per actor, one department, one quarter, from summaries (summary_actor_day ⋈ actors; DuckDB: raw events)",
            lambda: finance(True),
            lambda: duck_rows(finance_raw),
        ),
        (
            "… the same, repeated (result cache)",
            lambda: finance(False),
            lambda: duck_rows(finance_raw),
        ),
        (
            "tenant-month report, 12 months (GET /v1/summaries/tenant-month; DuckDB: raw events)",
            lambda: tenant_months(True),
            duck_tenant_months,
        ),
        (
            "… the same, repeated (result cache)",
            lambda: tenant_months(False),
            duck_tenant_months,
        ),
        (
            "one actor's month (GET /v1/events, all pages)",
            lambda: pages({"actor_id": facts["actor_id"], "from": facts["month_from"], "to": facts["month_to"]}),
            lambda: duck_rows(f"SELECT * FROM {source} WHERE actor_id = '{facts['actor_id']}' "
                              f"AND timestamp >= {duck_ts(facts['month_from'])} AND timestamp < {duck_ts(facts['month_to'])} "
                              "ORDER BY seq DESC"),
        ),
        (
            "deletes per actor, one department, one quarter (POST /v1/query)",
            lambda: sql("SELECT actor_id, count(*) AS deletes FROM events WHERE "
                        + deletes_where.format(q_from=df_time(facts["quarter_from"]), q_to=df_time(facts["quarter_to"]))
                        + " GROUP BY actor_id ORDER BY deletes DESC, actor_id"),
            lambda: duck_rows(f"SELECT actor_id, count(*) AS deletes FROM {source} WHERE "
                              + deletes_where.format(q_from=duck_ts(facts["quarter_from"]), q_to=duck_ts(facts["quarter_to"]))
                              + " GROUP BY actor_id ORDER BY deletes DESC, actor_id"),
        ),
        (
            "one request_id (GET /v1/events)",
            lambda: pages({"request_id": facts["request_id"]}),
            lambda: duck_rows(f"SELECT * FROM {source} WHERE request_id = '{facts['request_id']}'"),
        ),
        (
            "failed logins per actor per day, 12 months (POST /v1/query)",
            lambda: sql(failed_logins.format(table="events", y_from=df_time(facts["year_from"]), y_to=df_time(facts["year_to"]))),
            lambda: duck_rows(failed_logins.format(table=source, y_from=duck_ts(facts["year_from"]), y_to=duck_ts(facts["year_to"]))),
        ),
        (
            f"12-month export of {tenant} to NDJSON (GET /v1/export)",
            export,
            duck_export,
        ),
    ]

    print(f"largest tenant {tenant}: {facts['largest_tenant_events']} events in {len(files)} files; "
          f"{args.runs} runs each, medians\n")
    print("| query | rows | Sealtrail | DuckDB | Sealtrail / DuckDB |")
    print("|---|---:|---:|---:|---:|")
    for name, ours, theirs in cases:
        ours_times, theirs_times = [], []
        ours_rows = theirs_rows = None
        for _ in range(args.runs):
            started = time.perf_counter()
            ours_rows = ours()
            ours_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs_rows = theirs()
            theirs_times.append(time.perf_counter() - started)
        ours_median, theirs_median = statistics.median(ours_times), statistics.median(theirs_times)
        rows = f"{ours_rows}" if ours_rows == theirs_rows else f"{ours_rows} (DuckDB {theirs_rows})"
        extra = ""
        if "export" in name:
            extra = f" ({ours_rows / ours_median / 1e6:.2f} M ev/s vs {theirs_rows / theirs_median / 1e6:.2f} M ev/s)"
        print(f"| {name} | {rows} | {fmt(ours_median)} | {fmt(theirs_median)} | "
              f"{ours_median / theirs_median:.2f}x{extra} |")

    parquet = glob.glob(os.path.join(args.warm, "tenant_id=*", "*", "*.parquet"))
    total_bytes = sum(os.path.getsize(path) for path in parquet)
    total_events = 0
    columns = {}
    for path in parquet:
        metadata = pq.ParquetFile(path).metadata
        total_events += metadata.num_rows
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                column = row_group.column(index)
                columns[column.path_in_schema] = columns.get(column.path_in_schema, 0) + column.total_compressed_size
    print(f"\nwarm tier: {total_bytes} bytes in {len(parquet)} files for {total_events} events = "
          f"{total_bytes / max(total_events, 1):.1f} bytes/event")
    print("bytes/event by column: " + ", ".join(
        f"{name} {size / max(total_events, 1):.1f}" for name, size in sorted(columns.items(), key=lambda item: -item[1])))


def fmt(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
