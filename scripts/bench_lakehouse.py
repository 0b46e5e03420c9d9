"""Benchmark of the lakehouse queries and reconciliation on a generated Paimon table.

1. One user's events over one day: pruned (one partition range, one bucket per partition) versus
   unpruned (every file read, rows filtered) -- latency and ratio.
2. Reconciliation throughput: lake events scanned per second when the three aggregates are recomputed
   for the whole day and compared with ClickHouse (embedded chDB), against a plain pypaimon scan of the
   same columns as the baseline.

The table (a few million rows, written by pypaimon with the project's schema) and chDB live in a
temporary directory that is removed afterwards.

    .venv/bin/python scripts/bench_lakehouse.py [--events 3000000] [--users 100000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.config import Settings  # noqa: E402
from lakehouse import queries, synthetic  # noqa: E402
from lakehouse.catalog import open_catalog  # noqa: E402
from lakehouse.clickhouse_paimon import table_function  # noqa: E402
from lakehouse.reconcile import reconcile  # noqa: E402
from lakehouse.tables import USER_ACTIONS  # noqa: E402

DAY_MS = 86_400_000


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000_000, help="rows in the generated day (default 3M)")
    parser.add_argument("--users", type=int, default=100_000, help="distinct users (default 100k)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of the pruned query (median)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-lakehouse-"))
    try:
        return _run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(args: argparse.Namespace, root: Path) -> int:
    settings = replace(Settings.from_env(), paimon_warehouse=f"file://{root}/wh", data_dir=root / "data")
    print(f"cpu: {os.cpu_count()} cores, shared with other work on this machine (figures are indicative)")
    day_ms = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS  # yesterday: inside ClickHouse's TTL
    day = datetime.fromtimestamp(day_ms / 1000, UTC)

    catalog = open_catalog(settings)
    catalog.create_table(USER_ACTIONS.identifier, USER_ACTIONS.pypaimon_schema(), False)
    table = catalog.get_table(USER_ACTIONS.identifier)
    t0 = time.perf_counter()
    written = 0
    chunk = 1_000_000  # one commit per million rows keeps memory flat
    for i, first in enumerate(range(0, args.events, chunk)):
        n = min(chunk, args.events - first)
        synthetic.write(table, synthetic.user_actions(n, day_ms, DAY_MS, users=args.users, seed=i, first_offset=first))
        written += n
    write_s = time.perf_counter() - t0
    files = queries.ScanStats.of(queries.plan(table))
    print(f"table: {written:,} events, {args.users:,} users, one day ({day:%Y-%m-%d}), "
          f"{files.files} files, {files.bytes / 2**20:.0f} MiB; written in {write_s:.1f} s")

    # 1. One user's day, pruned vs not.
    users = [1, args.users // 2, args.users]
    pruned_s, unpruned_s, pruned_stats, full_stats = [], [], None, None
    for user in users:
        s, r = _timed(lambda u=user: queries.user_events(table, u, day.date(), day.date()), args.repeat)
        pruned_s.append(s)
        pruned_stats = r.stats
        s, r_full = _timed(lambda u=user: queries.user_events(table, u, day.date(), day.date(), prune=False), 1)
        unpruned_s.append(s)
        full_stats = r_full.stats
        assert r.rows.num_rows == r_full.rows.num_rows, "pruned and full scans disagree"
    p, u = statistics.median(pruned_s), statistics.median(unpruned_s)
    print("\nuser events over one day (median over users "
          f"{', '.join(map(str, users))}; pruned x{args.repeat} each)")
    print(f"  pruned   {p * 1000:9.1f} ms   reads {pruned_stats.files} files, {pruned_stats.rows:,} rows")
    print(f"  unpruned {u * 1000:9.1f} ms   reads {full_stats.files} files, {full_stats.rows:,} rows  (baseline)")
    print(f"  speed-up {u / p:9.1f}x")

    # 2. Reconciliation over the whole day against ClickHouse filled from the same table.
    import clickhouse_connect

    os.chdir(root)  # embedded chDB reads local files only under its working directory
    client = clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    try:
        _fill_clickhouse(client, table_function(settings, USER_ACTIONS.name))
        start, end = day, day + timedelta(days=1)
        base_s, rows = _timed(lambda: queries.read(table, queries.plan(table),
                                                   columns=["user_id", "action_type", "timestamp"]), 1)
        rec_s, result = _timed(lambda: reconcile(table, client, start, end, database="bench"), 1)
    finally:
        client.close()
    assert result.ok, "\n".join(result.lines())
    keys = sum(t.lake_keys for t in result.tables)
    print(f"\nreconcile one day: {result.events_scanned:,} events, {keys:,} aggregate keys in 3 tables, all match")
    print(f"  reconcile        {rec_s:7.2f} s   {result.events_scanned / rec_s:12,.0f} events/s")
    print(f"  pypaimon scan    {base_s:7.2f} s   {rows.num_rows / base_s:12,.0f} events/s  (baseline: read only)")
    print(f"  ratio            {(result.events_scanned / rec_s) / (rows.num_rows / base_s):7.2f}  "
          "(reconcile throughput / scan throughput)")
    return 0


def _fill_clickhouse(client, source: str) -> None:
    """The ClickHouse part's schema, filled by ClickHouse itself from the Paimon table (correct data)."""
    from clickhouse.schema import SchemaOptions, analytics_statements

    for statement in analytics_statements(SchemaOptions(database="bench")):
        client.command(statement)
    for table, size, extra in (("user_aggregations", "2 HOUR", ""),
                               ("user_action_aggregations", "2 HOUR", "action_type"),
                               ("user_aggregations_realtime", "5 MINUTE", "")):
        keys = f"user_id, {extra}" if extra else "user_id"
        client.command(
            f"INSERT INTO bench.{table} SELECT toStartOfInterval(event_time, INTERVAL {size}) AS ws, "
            f"ws + INTERVAL {size}, {keys}, count(), 1 FROM {source} GROUP BY ws, {keys}"
        )


if __name__ == "__main__":
    sys.exit(main())
