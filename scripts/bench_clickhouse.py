"""Benchmark of the ClickHouse part, on a scratch chDB directory (never the demo's).

1. Loader: rows/s from Kafka into the embedded engine (parse + insert + commit), beside two
   baselines measured in the same run on the same topic: consume-only (the Kafka client's
   ceiling in Python) and a direct insert of the same records (no Kafka).
2. API latency: p50/p95 per endpoint over ~10 million aggregate rows generated in SQL with
   numbers(), through the real HTTP server; and /api/rejects over a Paimon rejected table of --rejects
   rows over 7 days (the lake, not ClickHouse: answered from its 30-second cache, and uncached with a
   new range per request, with what each read).

    .venv/bin/python scripts/bench_clickhouse.py [--rows 1000000] [--api-rows 10000000] [--requests 30]
        [--rejects 100000] [--reject-files-per-day 24] [--api-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from base.config import Settings
from clickhouse.api import ROUTES
from clickhouse.loader import Loader, LoaderOptions
from clickhouse.records import KINDS, parse
from clickhouse.schema import SchemaOptions
from clickhouse.service import Service
from clickhouse.store import ThreadClients, apply_schema
from lakehouse import catalog as lake_catalog
from lakehouse import quality, synthetic
from lakehouse.tables import USER_ACTIONS_REJECTED
from local_services.kafka import ensure_topics

TABLE = "user_aggregations_realtime"


def cpu_seconds() -> float:
    """CPU time of this process (all threads): a rate per CPU-second does not depend on other load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def produce(settings: Settings, topic: str, rows: int) -> list[bytes]:
    """Realistic 5-minute aggregate records (the Flink job's format), produced as fast as possible."""
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    windows = [((base + timedelta(minutes=5 * w)).strftime("%Y-%m-%d %H:%M:%S"),
                (base + timedelta(minutes=5 * w + 5)).strftime("%Y-%m-%d %H:%M:%S")) for w in range(288)]
    values = []
    for n in range(rows):
        ws, we = windows[(n // 5000) % 288]
        values.append(b'{"window_start":"%s","window_end":"%s","user_id":%d,"total_actions":%d,"version":%d}'
                      % (ws.encode(), we.encode(), 1 + (n * 7) % 30_000_000, 1 + n % 37, 1_700_000_000_000 + n))
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20,
                         "batch.size": 1_000_000, "queue.buffering.max.messages": 2_000_000})
    for i, v in enumerate(values):
        while True:
            try:
                producer.produce(topic, key=b"%d" % i, value=v)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return values


def consume_only(settings: Settings, topic: str, rows: int) -> tuple[float, float]:
    """Baseline: the same records consumed with the same client settings, values touched, nothing else."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
                         "queued.min.messages": 200_000})
    consumer.subscribe([topic])
    seen, started, size = 0, None, 0
    while seen < rows:
        msgs = consumer.consume(num_messages=100_000, timeout=1.0)
        if msgs and started is None:
            started, cpu_started = time.perf_counter(), cpu_seconds()
        for m in msgs:
            if m.error() is None:
                size += len(m.value())
                seen += 1
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    consumer.close()
    return seen / elapsed, seen / cpu


def loader_rate(settings: Settings, clients: ThreadClients, topic: str, rows: int, db: str
                ) -> tuple[float, float, dict]:
    options = LoaderOptions(group_id=f"bench-loader-{uuid.uuid4().hex}", topics={topic: TABLE}, database=db)
    loader = Loader(settings.kafka_client_config(), clients.get, options)
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,))
    thread.start()
    cpu_started = None
    while loader.metrics.snapshot()["rows_inserted"] < rows:
        time.sleep(0.02)
        if cpu_started is None and loader.metrics.first_message_at is not None:
            cpu_started = cpu_seconds()
        if not thread.is_alive():
            raise SystemExit("the loader stopped early")
    done, cpu = time.time(), cpu_seconds() - cpu_started
    stop.set()
    thread.join()
    m = loader.metrics.snapshot()
    return rows / (done - m["first_message_at"]), rows / cpu, m


def direct_insert(clients: ThreadClients, values: list[bytes], db: str) -> tuple[float, float]:
    """Second reference: the same records parsed and inserted with no Kafka in between."""
    client = clients.get()
    client.command(f"TRUNCATE TABLE {db}.{TABLE}")
    started, cpu_started = time.perf_counter(), cpu_seconds()
    for i in range(0, len(values), 200_000):
        client.insert_arrow(f"{db}.{TABLE}", parse(values[i:i + 200_000], KINDS[TABLE]).table)
    return len(values) / (time.perf_counter() - started), len(values) / (cpu_seconds() - cpu_started)


def generate(clients: ThreadClients, db: str, total: int) -> datetime:
    """~``total`` aggregate rows over 7 days, written by ClickHouse itself (numbers()); returns the end."""
    client = clients.get()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    start_sql = start.strftime("%Y-%m-%d %H:%M:%S")
    rt, two_h = total // 2, total // 4
    # 5-minute: 2016 windows x (rt / 2016) users; 2-hour: 84 windows x (two_h / 84) users (or user x type)
    per5, per2 = -(-rt // 2016), -(-two_h // 84)  # rounded up: at least ``total`` rows
    client.command(f"""
        INSERT INTO {db}.user_aggregations_realtime
        SELECT toDateTime64('{start_sql}', 3, 'UTC') + toIntervalMinute(5 * intDiv(number, {per5})) AS ws,
               ws + toIntervalMinute(5), 1 + (number % {per5}) * 7 + intDiv(number, {per5}) % 7,
               1 + cityHash64(number) % 40, 1
        FROM numbers({per5 * 2016})""")
    client.command(f"""
        INSERT INTO {db}.user_aggregations
        SELECT toDateTime64('{start_sql}', 3, 'UTC') + toIntervalHour(2 * intDiv(number, {per2})) AS ws,
               ws + toIntervalHour(2), 1 + (number % {per2}) * 3, 1 + cityHash64(number) % 400, 1
        FROM numbers({per2 * 84})""")
    client.command(f"""
        INSERT INTO {db}.user_action_aggregations
        SELECT toDateTime64('{start_sql}', 3, 'UTC') + toIntervalHour(2 * intDiv(number, {per2})) AS ws,
               ws + toIntervalHour(2), 1 + intDiv(number % {per2}, 4) * 3,
               concat('action_', toString(cityHash64(number, 1) % 153)), 1 + cityHash64(number) % 50, 1
        FROM numbers({per2 * 84})""")
    return end


def wait_for_merges(clients: ThreadClients, timeout: float = 90.0) -> float:
    """Let the bulk load's background merges finish, so latency is measured in the steady state."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if clients.get().query("SELECT count() FROM system.merges").result_rows[0][0] == 0:
            break
        time.sleep(0.5)
    return time.perf_counter() - started


def get(url: str) -> dict:
    """One API answer; an error answer ends the benchmark with what the service said (e.g. a query over its limits)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url}: {exc.code} {exc.read()[:500].decode(errors='replace')}") from None


def latency(base: str, paths: dict[str, str], requests: int) -> dict[str, tuple[float, float]]:
    out = {}
    for name, path in paths.items():
        for _ in range(3):  # warm-up: first reads of the parts' marks and primary index
            get(base + path)
        times = []
        for _ in range(requests):
            t = time.perf_counter()
            get(base + path)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[name] = (statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)])
    return out


def seed_rejects(settings: Settings, rows: int, files_per_day: int, end: datetime) -> int:
    """``rows`` rejected records over the 7 days before ``end`` in lake.user_actions_rejected, one commit (one file)
    per 24 / ``files_per_day`` hours: the job's own compaction of this append table keeps a day's partition to a few
    files, so one an hour is on the pessimistic side. Returns the files written."""
    catalog = lake_catalog.open_catalog(settings)
    catalog.create_table(USER_ACTIONS_REJECTED.identifier, USER_ACTIONS_REJECTED.pypaimon_schema(), False)
    table = catalog.get_table(USER_ACTIONS_REJECTED.identifier)
    files = 7 * files_per_day
    span_ms = 86_400_000 // files_per_day
    start_ms = int((end - timedelta(days=7)).timestamp() * 1000)
    for i in range(files):
        synthetic.write(table, synthetic.rejected_over(rows // files, start_ms + i * span_ms, span_ms, seed=i))
    return files


def uncached(base: str, hours: int, end: datetime, requests: int) -> tuple[float, float, dict]:
    """/api/rejects over the ``hours`` before ``end``, every request a range of its own (``from`` one second later
    each time), so each one reads the lake: p50, p95 and the last answer's read figures."""
    times, read = [], {}
    for i in range(requests):
        start = end - timedelta(hours=hours) + timedelta(seconds=i + 1)
        t = time.perf_counter()
        read = get(f"{base}/api/rejects?from={start:%Y-%m-%dT%H:%M:%SZ}&to={end:%Y-%m-%dT%H:%M:%SZ}")["read"]
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], read


def load() -> str:
    import os

    return "/".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="records through Kafka for the loader test")
    ap.add_argument("--api-rows", type=int, default=10_000_000, help="aggregate rows for the API latency test")
    ap.add_argument("--requests", type=int, default=30, help="requests per endpoint")
    ap.add_argument("--rejects", type=int, default=100_000,
                    help="rejected records in the lake for /api/rejects (~0.1 %% of the events)")
    ap.add_argument("--reject-files-per-day", type=int, default=24,
                    help="files per day partition of the rejected table (default: one an hour)")
    ap.add_argument("--api-only", action="store_true", help="skip the loader part (no Kafka needed)")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-clickhouse-"))
    settings = replace(Settings.from_env(), data_dir=scratch, paimon_warehouse=f"file://{scratch}/warehouse")
    ROUTES[quality.PATH] = quality.ROUTE  # as the front end registers it (pipeline/cli.py)
    topic = f"bench_ch_{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka_client_config())
    try:
        print("(CPU shared with other work on this 2-core machine: figures are a lower bound)")
        service = Service(settings, SchemaOptions(database="analytics"), loader_options=None, port=0)
        service.start()
        clients = service.clients
        apply_schema(clients.get(), SchemaOptions(database="analytics"))
        if not args.api_only:
            loader_part(settings, clients, topic, args.rows)
        api_part(service, clients, args)
        service.stop()
    finally:
        if not args.api_only:
            admin.delete_topics([topic])
        shutil.rmtree(scratch, ignore_errors=True)


def loader_part(settings: Settings, clients: ThreadClients, topic: str, rows: int) -> None:
    ensure_topics(settings, {topic: 6})
    t = time.perf_counter()
    values = produce(settings, topic, rows)
    print(f"produced {rows:,} aggregate records into {topic} (6 partitions) in {time.perf_counter() - t:.1f}s")
    raw, raw_cpu = consume_only(settings, topic, rows)
    rate, rate_cpu, m = loader_rate(settings, clients, topic, rows, "analytics")
    direct, direct_cpu = direct_insert(clients, values, "analytics")
    print(f"\n== loader: Kafka -> embedded ClickHouse (parse, insert, commit), load average {load()} ==")
    print(f"{'':18}{'rows/s (wall)':>14}{'rows per CPU-s':>16}")
    row = "{:18}{:>14,.0f}{:>16,.0f}   ({})"
    print(row.format("loader", rate, rate_cpu, f"{m['batches']} batches, {m['rows_rejected']} rejected"))
    print(row.format("baseline consume", raw, raw_cpu, "consume-only, same topic, same client settings"))
    print(row.format("reference insert", direct, direct_cpu, "same records parsed + inserted, no Kafka"))
    print(f"loader / consume-only = {rate / raw:.2f} (wall), {rate_cpu / raw_cpu:.2f} (CPU); "
          f"target >= 200,000 rows/s: {'met' if rate >= 200_000 else 'NOT met'} (wall)")


def api_part(service: Service, clients: ThreadClients, args: argparse.Namespace) -> None:
    client = clients.get()
    for table in ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime"):
        client.command(f"TRUNCATE TABLE analytics.{table}")
    t = time.perf_counter()
    end = generate(clients, "analytics", args.api_rows)
    merged = wait_for_merges(clients)
    stored = sum(client.query(f"SELECT count() FROM analytics.{t}").result_rows[0][0]
                 for t in ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime"))
    generated = time.perf_counter() - t - merged
    t = time.perf_counter()
    files = seed_rejects(service.settings, args.rejects, args.reject_files_per_day, end)
    print(f"\n== API latency (load average {load()}): {stored:,} aggregate rows over 7 days (generated in "
          f"{generated:.1f}s with numbers(), merges settled in {merged:.1f}s); {args.rejects:,} rejected records "
          f"over the same 7 days in the lake, {files} files ({time.perf_counter() - t:.1f}s); {args.requests} "
          "requests each, 24-hour range ==")
    rng = f"from={(end - timedelta(days=1)):%Y-%m-%dT%H:%M:%SZ}&to={end:%Y-%m-%dT%H:%M:%SZ}"
    paths = {
        "status": "/api/status",
        "top-users (2h)": f"/api/top-users?limit=20&{rng}",
        "top-users (5m)": f"/api/top-users?limit=20&window=5m&{rng}",
        "user activity": f"/api/users/7/activity?{rng}",
        "action-types": f"/api/action-types?limit=12&{rng}",
        "action-types/series": f"/api/action-types/series?limit=5&{rng}",
        "events (5m)": f"/api/events?{rng}",
        "hourly": f"/api/hourly?{rng}",
        "distribution": f"/api/distribution?{rng}",
        "rejects (cached)": f"/api/rejects?{rng}",  # what the dashboard's refreshes get within 30 s
    }
    results = latency(service.url, paths, args.requests)
    worst = max(p95 for _, p95 in results.values())
    for name, (p50, p95) in results.items():
        print(f"{name:<22} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    print(f"worst p95 {worst:.1f} ms; target p95 < 100 ms: {'met' if worst < 100 else 'NOT met'}")
    # Each range's first request reads the lake: separate figures, as the lake is not ClickHouse (and a refresh
    # pays it once per range and 30 s).
    print("/api/rejects uncached (a new range per request: every one reads the lake):")
    for hours in (1, 24, 24 * 7):
        p50, p95, read = uncached(service.url, hours, end, args.requests)
        print(f"  {hours:>3} h  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   read {read['partitions']} partitions, "
              f"{read['files']} files, {read['rows']:,} rows ({read['rows_matched']:,} in range), "
              f"{read['ms']:.0f} ms in the lake")


if __name__ == "__main__":
    main()
