"""Where the Flink job's time goes: catch-up throughput and CPU per event, rung by rung, in one run.

    .venv/bin/python scripts/bench_flink.py [--events 5000000] [--users zipf|uniform] [--parallelism 2]
        [--rungs blackhole,floor,lake,job,job-p1] [--conf KEY=VALUE ...] [--metrics [PAIRS]] [--keep]
    .venv/bin/python scripts/bench_flink.py --scale 1M,10M,30M [--events-per-user 2] [--rungs job-sql,job-operator]

Fills a fresh topic (6 partitions) with N events from the producer's own generator (Zipf users and action
weights as in production, or --users uniform: every event a cold key, the worst case for window state), 6 hours
of event time, 0.1 % malformed. Then runs each rung in its own JVM, bounded to the end offsets:
  blackhole  the Kafka source (raw bytes) into a blackhole sink: the ceiling of reading Kafka;
  floor      Flink's own JSON format straight into the same Paimon table (no validation, no rejected table; it
             drops what it cannot parse): the cheapest way Flink SQL writes the lake;
  lake       the job without its three aggregates (validating format, raw + rejected tables);
  job        the whole job (+ the three window aggregates to Kafka);
  job-p1     the whole job at parallelism 1 (the scaling ratio against `job`): on 2 cores its five pipelined
             operator chains already keep both cores busy, so this ratio is bounded by the box, not the job;
  job-p1-1cpu  the same, its JVM pinned to one CPU: the job's scaling per core (one slot on one core against
             two slots on two);
  job-metrics  the whole job with Flink's Prometheus reporter on (the loopback one of FLINK_METRICS_PORT), its
             endpoint scraped every --scrape-interval seconds as a Prometheus server would. --metrics [PAIRS] runs
             PAIRS pairs of job / job-metrics (default 1; in ABBA order, so neither side always runs second on a warmer
             page cache) and prints the metrics' cost side by side: CPU per event and events/s, off, on, on / off;
  job-sql, job-operator  the whole job with its windows computed one way or the other (`pipeline job --windows
             sql|operator`: three TUMBLE window operators, or one keyed Java operator for the three aggregates, the
             default, so `job` = `job-operator`), to compare them in the same run.
--scale N1,N2,... is the capacity ladder instead: for each N a fresh topic of N x --events-per-user events, users
drawn uniformly from N distinct ones, all within one 2-hour window of event time (so the open window holds up to N
keys), and the job rungs (default job-sql,job-operator) on each: CPU per event against the smallest N, RocksDB state
size (its native size metrics), checkpoints (count, duration, incremental and full size, from the job's REST API)
and peak JVM memory.
For each rung: events/s end to end (submission to finish, start-up included) and in steady state (from the
records the lake writer has taken, sampled every 2 s through the mini-cluster's REST API, after the first 60 s),
JVM CPU per event over the whole run and in steady state, CPU per operator chain (Java's per-thread CPU, so each
window aggregate shows its own cost), peak JVM memory, Paimon data files and their average size. --conf sets a
Flink option on the job rungs, to measure a variant (e.g. --conf table.exec.window-agg.buffer-size-limit=1000000).
The topics and warehouse are deleted at the end (--keep keeps them). Measure on a quiet box: the load average is
printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from base.config import Settings  # noqa: E402
from flink_job.job_config import JobConfig  # noqa: E402

T0 = 1_772_323_200_000  # 2026-03-01 00:00:00 UTC
SPAN_S = 6 * 3600
# Every record's Kafka time: the end of the simulated span, as a replay of that day would stamp them (the job trusts
# event time within bounds of the Kafka time: 48 h behind by default).
KAFKA_TIME = T0 + SPAN_S * 1000
STEADY_AFTER_S = 60.0
RUNGS = ("blackhole", "floor", "lake", "job", "job-p1", "job-p1-1cpu", "job-metrics", "job-sql", "job-operator")
# The rungs of the job whose windows are named (JobConfig.windows); every other job rung: the default.
WINDOWS_OF_RUNG = {"job-sql": "sql", "job-operator": "operator"}
DEFAULT_WINDOWS = JobConfig().windows
DEFAULT_RUNGS = tuple(r for r in RUNGS if WINDOWS_OF_RUNG.get(r) != DEFAULT_WINDOWS)  # `job` runs those windows
SCALE_SPAN_S = 2 * 3600 - 60  # one 2-hour window of event time (the generator's jitter stays inside it)
# RocksDB's own size figures as operator metrics, read through the REST API in --scale runs.
ROCKSDB_SIZE_METRICS = ("total-sst-files-size", "estimate-live-data-size", "size-all-mem-tables")
STATE_SIZE_CONF = [f"state.backend.rocksdb.metrics.{m}=true" for m in ROCKSDB_SIZE_METRICS]
SCRAPE_INTERVAL_S = 15.0  # Prometheus's default scrape_interval


def fill(settings: Settings, topic: str, n: int, users: str, partitions: int = 6, distinct: int | None = None,
         span_s: int = SPAN_S) -> float:
    """N generator events (keyed by user_id, in event-time order within 50 ms) over ``span_s`` seconds of event time
    from T0, users drawn from ``distinct`` of them (default: the contract's 30M), 0.1 % malformed; seconds taken."""
    from confluent_kafka import Producer

    from local_services import kafka
    from producer.encoding import encode
    from producer.generator import EventGenerator, SimulationConfig

    # Kafka deletes by record time: KAFKA_TIME is in the past, so the topic keeps its records regardless.
    kafka.ensure_topics(settings, {topic: partitions}, {"retention.ms": "-1"})
    config = SimulationConfig(seed=7, start_ms=T0, events_per_sim_second=n / span_s, diurnal_pace=False,
                              zipf_exponent=1.0 if users == "zipf" else 0.0, invalid_fraction=0.001,
                              **({"users": distinct} if distinct else {}))
    generator = EventGenerator(config)
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576})
    start, sent = time.monotonic(), 0
    while sent < n:
        values, keys = encode(generator.next_batch(min(100_000, n - sent))).records()
        for key, value in zip(keys, values, strict=True):
            while True:
                try:
                    producer.produce(topic, key=key, value=value, timestamp=KAFKA_TIME)
                    break
                except BufferError:
                    producer.poll(0.1)
        sent += len(values)
    assert producer.flush(120) == 0
    return time.monotonic() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statement_set_for(kind: str, settings: Settings, job: JobConfig, extra: dict[str, str]):
    from flink_job import pipeline
    from flink_job.environment import job_options
    from local_services.flink_runtime import create_stream_table_env

    if kind in ("job", "lake"):
        return pipeline.build(settings, job, lake_only=kind == "lake", extra=extra)[1]
    t_env = create_stream_table_env(settings, lambda configured: {**job_options(settings, job, configured), **extra})
    if kind == "floor":
        pipeline.create_lake_tables(t_env, settings)
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE src (
            event_id STRING, user_id BIGINT, action_type STRING, `timestamp` BIGINT, metadata STRING,
            device_info STRING, kafka_partition INT METADATA FROM 'partition' VIRTUAL,
            kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
            event_ts AS CAST(TO_TIMESTAMP_LTZ(`timestamp`, 3) AS TIMESTAMP(3))) WITH (
            'connector' = 'kafka', 'topic' = '{job.source_topic}',
            'properties.bootstrap.servers' = '{settings.kafka_bootstrap}', 'properties.group.id' = 'bench-floor',
            'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
            'value.format' = 'json', 'value.json.ignore-parse-errors' = 'true')""")
        statement_set = t_env.create_statement_set()
        statement_set.add_insert_sql("""INSERT INTO paimon.lake.user_actions SELECT event_id, user_id, action_type,
            `timestamp`, metadata, device_info, event_ts, DATE_FORMAT(event_ts, 'yyyy-MM-dd'),
            CAST(HOUR(event_ts) - MOD(HOUR(event_ts), 2) AS INT), kafka_partition, kafka_offset,
            CAST(CURRENT_ROW_TIMESTAMP() AS TIMESTAMP(3)) FROM src WHERE user_id IS NOT NULL""")
        return statement_set
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE src (k BYTES, v BYTES) WITH (
        'connector' = 'kafka', 'topic' = '{job.source_topic}',
        'properties.bootstrap.servers' = '{settings.kafka_bootstrap}', 'properties.group.id' = 'bench-bh',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
        'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY')""")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (k BYTES, v BYTES) WITH ('connector' = 'blackhole')")
    statement_set = t_env.create_statement_set()
    statement_set.add_insert_sql("INSERT INTO sink SELECT k, v FROM src")
    return statement_set


class Sampler:
    """Every 2 s while the job runs: JVM CPU, CPU per thread (full names, through the JVM's ThreadMXBean), and
    the records the lake writer has taken (REST API of the mini-cluster)."""

    def __init__(self, rest_port: int) -> None:
        from pyflink.java_gateway import get_gateway

        self.rest = f"http://127.0.0.1:{rest_port}"
        self.threads = get_gateway().jvm.java.lang.management.ManagementFactory.getThreadMXBean()
        self.thread_cpu: dict[int, tuple[str, float]] = {}
        self.timeline: list[tuple[float, float, int]] = []  # (seconds since submit, JVM CPU s, lake records)
        self.jvm = _java_child()
        self.checkpoints: dict | None = None  # the job's checkpoint statistics, as last read
        self.state_bytes: dict[str, int] = {}  # the largest RocksDB size seen, per native metric (all operators)
        self.last_stats = 0.0

    def sample(self, elapsed: float) -> None:
        try:
            for tid in self.threads.getAllThreadIds():
                cpu = self.threads.getThreadCpuTime(tid)
                info = self.threads.getThreadInfo(tid)
                if cpu > 0 and info is not None:
                    self.thread_cpu[tid] = (info.getThreadName(), cpu / 1e9)
        except Exception:  # noqa: BLE001 - the JVM is shutting the job down; the last sample stands
            return
        self.timeline.append((elapsed, _cpu_seconds(self.jvm), self._lake_records()))
        if elapsed - self.last_stats >= 10:
            self.last_stats = elapsed
            self._read_stats()

    def _get(self, path: str):
        with urllib.request.urlopen(self.rest + path, timeout=5) as resp:
            return json.load(resp)

    def _read_stats(self) -> None:
        """Checkpoint statistics and RocksDB's size metrics (summed over operators and subtasks) of the running job."""
        try:
            jobs = [j for j in self._get("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
            if not jobs:
                return
            jid = jobs[0]["jid"]
            stats = self._get(f"/jobs/{jid}/checkpoints")
            if stats.get("counts", {}).get("completed"):
                self.checkpoints = stats
            sizes: dict[str, int] = {}
            for vertex in self._get(f"/jobs/{jid}")["vertices"]:
                base = f"/jobs/{jid}/vertices/{vertex['id']}/metrics"
                ids = [m["id"] for m in self._get(base) if m["id"].endswith(ROCKSDB_SIZE_METRICS)]
                for m in (self._get(f"{base}?get={','.join(ids)}") if ids else []):
                    kind = next(k for k in ROCKSDB_SIZE_METRICS if m["id"].endswith(k))
                    sizes[kind] = sizes.get(kind, 0) + int(float(m["value"]))
        except (OSError, KeyError, ValueError, StopIteration):
            return
        for kind, size in sizes.items():
            self.state_bytes[kind] = max(self.state_bytes.get(kind, 0), size)

    def checkpoint_summary(self) -> dict | None:
        """Completed checkpoints, their end-to-end duration (max, average) and size (incremental and full, max)."""
        if not self.checkpoints:
            return None
        summary = self.checkpoints.get("summary", {})

        def stat(name: str, key: str) -> float:
            return float(summary.get(name, {}).get(key) or 0)

        return {"completed": self.checkpoints["counts"]["completed"],
                "duration_max_ms": stat("end_to_end_duration", "max"),
                "duration_avg_ms": stat("end_to_end_duration", "avg"),
                "incremental_max_bytes": stat("checkpointed_size", "max"),
                "full_max_bytes": stat("state_size", "max")}

    def _lake_records(self) -> int:
        try:
            with urllib.request.urlopen(f"{self.rest}/jobs/overview", timeout=2) as resp:
                jobs = [j for j in json.load(resp)["jobs"] if j["state"] == "RUNNING"]
            if not jobs:
                return -1
            with urllib.request.urlopen(f"{self.rest}/jobs/{jobs[0]['jid']}", timeout=2) as resp:
                vertices = json.load(resp)["vertices"]
        except (OSError, KeyError, ValueError):
            return -1
        writers = [v for v in vertices if "user_actions" in v["name"] and "rejected" not in v["name"]
                   and "Writer" in v["name"]]
        return sum(v["metrics"].get("read-records", 0) for v in writers) if writers else -1

    def by_chain(self, top: int = 12) -> dict[str, float]:
        """CPU seconds per operator chain (subtasks added up) or JVM thread kind, the largest first."""
        totals: dict[str, float] = {}
        for name, cpu in self.thread_cpu.values():
            key = _chain_label(name)
            totals[key] = totals.get(key, 0.0) + cpu
        return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:top])

    def steady(self) -> dict[str, float] | None:
        """Rate and CPU per event between the first sample after STEADY_AFTER_S and the last one still counting."""
        points = [p for p in self.timeline if p[2] >= 0]
        after = [p for p in points if p[0] >= STEADY_AFTER_S]
        if len(after) < 3 or after[-1][2] <= after[0][2]:
            return None
        first, last = after[0], max(after, key=lambda p: p[2])
        last = next(p for p in after if p[2] == last[2])  # the first sample that reached the final count
        records = last[2] - first[2]
        if records <= 0 or last[0] <= first[0]:
            return None
        return {"events_per_s": records / (last[0] - first[0]), "cpu_us": (last[1] - first[1]) * 1e6 / records,
                "seconds": last[0] - first[0]}


def _chain_label(thread_name: str) -> str:
    """A short label for a task thread ("WindowAggregate[18] -> ... -> user_aggregations_realtime_sink[21]: Writer
    ... (1/2)#0"), else the thread kind with digits folded (JIT compiler, GC, ...)."""
    name = re.sub(r" \(\d+/\d+\)#\d+$", "", thread_name)
    if "WindowAggregate" in name:
        sinks = ", ".join(dict.fromkeys(re.findall(r"(\w+)_sink\[", name)))
        return f"window {sinks}"
    if name.startswith("UserWindows"):
        return "window operator (all three aggregates)"
    if name.startswith("Source:"):
        return "source chain (Kafka, format, routing)"
    if name.startswith("Writer"):
        return "Paimon writer " + name.rsplit(" ", 1)[-1]
    if "Committer" in name:
        return "Paimon committer"
    return re.sub(r"\d+", "#", name)[:48]


class Scraper:
    """What a Prometheus server does to the job with the reporter on: GET /metrics every ``interval`` seconds (its
    cost in the JVM is part of the reporter's); keeps the count of scrapes and the size of the largest one (a
    bounded job's finished tasks leave the registry, so the last one is smaller)."""

    def __init__(self, port: int, interval: float) -> None:
        self.url, self.interval = f"http://127.0.0.1:{port}/metrics", interval
        self.scrapes, self.series, self.bytes = 0, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    body = resp.read()
            except OSError:
                continue
            self.scrapes += 1
            self.bytes = max(self.bytes, len(body))
            self.series = max(self.series, sum(1 for line in body.splitlines() if line and not line.startswith(b"#")))

    def result(self) -> dict[str, int]:
        self.stop.set()
        return {"scrapes": self.scrapes, "series": self.series, "bytes": self.bytes}


def run_one(kind: str, settings: Settings, job: JobConfig, extra: dict[str, str],
            scrape_interval: float = SCRAPE_INTERVAL_S) -> dict:
    """One measured rung in this process (a child, so each rung has its own JVM). With settings.flink_metrics_port
    the job's own options add the Prometheus reporter (flink_job/environment.py), scraped as Prometheus would."""
    port = _free_port()
    statement_set = statement_set_for(kind, settings, job, {
        **extra, "rest.port": str(port), "rest.address": "127.0.0.1", "metrics.fetcher.update-interval": "2000"})
    sampler = Sampler(port)
    start = time.monotonic()
    result = statement_set.execute()
    scraper = Scraper(settings.flink_metrics_port, scrape_interval) if settings.flink_metrics_port else None
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (result.wait(), done.set()), daemon=True)
    waiter.start()
    while not done.wait(2.0):
        sampler.sample(time.monotonic() - start)
    seconds = time.monotonic() - start
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(sampler.jvm), "cpu_seconds": _cpu_seconds(sampler.jvm),
            "cpu_by_chain": sampler.by_chain(), "steady": sampler.steady(),
            "scraped": scraper.result() if scraper else None, "checkpoints": sampler.checkpoint_summary(),
            "state_bytes": sampler.state_bytes}


def _java_child() -> Path | None:
    """/proc/<pid> of the JVM child (the PyFlink gateway that hosts the mini-cluster)."""
    from scripts.faults import descendants

    for pid in descendants(os.getpid()):
        try:
            if (Path("/proc") / str(pid) / "comm").read_text().strip() == "java":
                return Path("/proc") / str(pid)
        except OSError:
            continue
    return None


def _peak_rss_mb(jvm: Path | None) -> float:
    if jvm is None:
        return 0.0
    fields = dict(line.split(":", 1) for line in (jvm / "status").read_text().splitlines() if ":" in line)
    return int(fields.get("VmHWM", "0 kB").split()[0]) / 1024


def _cpu_seconds(jvm: Path | None) -> float:
    """User + system CPU of the JVM so far: per event, the cost figure that other load on the box hardly skews."""
    from scripts.faults import cpu_seconds

    return cpu_seconds(int(jvm.name)) if jvm is not None else 0.0


def child(kind: str, settings: Settings, job: JobConfig, conf: list[str], one_cpu: bool = False,
          metrics: bool = False, scrape_interval: float = SCRAPE_INTERVAL_S) -> dict:
    cmd = ["taskset", "-c", "0"] if one_cpu else []
    cmd += [sys.executable, __file__, "--child", kind, "--topic", job.source_topic, "--parallelism",
           str(job.parallelism), "--warehouse", settings.paimon_warehouse, "--state-backend", job.state_backend,
           "--child-windows", job.windows]
    for c in conf:
        cmd += ["--conf", c]
    if metrics:
        cmd += ["--child-metrics", "--scrape-interval", str(scrape_interval)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def paimon_files(warehouse: Path) -> tuple[int, float]:
    files = [f for f in (warehouse / "lake.db" / "user_actions").glob("event_date=*/*/bucket-*/*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    return len(files), (total / len(files) if files else 0.0)


def job_for(topic: str, parallelism: int, state_backend: str, windows: str = DEFAULT_WINDOWS,
            conf: dict[str, str] | None = None) -> JobConfig:
    return JobConfig(source_topic=topic, user_aggregations_topic=f"{topic}_ua",
                     user_action_aggregations_topic=f"{topic}_uaa", realtime_aggregations_topic=f"{topic}_uar",
                     group_id=f"{topic}_job", bounded=True, startup_mode="earliest-offset",
                     parallelism=parallelism, state_backend=state_backend, checkpoint_interval="60 s",
                     windows=windows, flink_conf=tuple((conf or {}).items()))


def _conf(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--conf {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def report(name: str, run: dict, events: int, floor_rate: float | None, files: tuple[int, float] | None) -> None:
    rate = events / run["seconds"]
    steady = run["steady"]
    cpu_us = run["cpu_seconds"] * 1e6 / events
    line = f"{name:<8} {rate:>9,.0f} ev/s end to end ({run['seconds']:.0f} s), CPU {cpu_us:,.0f} us/event"
    if steady:
        line += (f"; steady {steady['events_per_s']:>9,.0f} ev/s, {steady['cpu_us']:,.0f} us/event "
                 f"(over {steady['seconds']:.0f} s)")
    if floor_rate:
        line += f"; x{(steady['events_per_s'] if steady else rate) / floor_rate:.2f} of the floor"
    line += f"; peak JVM {run['peak_rss_mb']:,.0f} MiB"
    if run.get("checkpoints"):
        c = run["checkpoints"]
        line += (f"; {c['completed']} checkpoints, max {c['duration_max_ms'] / 1000:.1f} s (avg "
                 f"{c['duration_avg_ms'] / 1000:.1f} s), up to {c['incremental_max_bytes'] / 2**20:,.0f} MiB "
                 f"incremental / {c['full_max_bytes'] / 2**20:,.0f} MiB full")
    if run.get("state_bytes"):
        line += "; RocksDB " + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in run["state_bytes"].items())
    if run.get("scraped"):
        line += (f"; scraped {run['scraped']['scrapes']}x, up to {run['scraped']['series']:,} series "
                 f"({run['scraped']['bytes'] / 1024:,.0f} KiB)")
    if files:
        line += f"; {files[0]} Paimon files, avg {files[1] / 1e6:.2f} MB"
    print(line)
    chains = [(label, sec * 1e6 / events) for label, sec in run["cpu_by_chain"].items()]
    print("         CPU by chain (us/event): " + ", ".join(f"{label} {us:,.1f}" for label, us in chains if us >= 0.5))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def metrics_cost(runs: dict[str, list[dict]], events: int, scrape_interval: float) -> None:
    """The reporter's cost: the job with it off and on, side by side, means over the pairs run."""
    off, on = runs["job"], runs["job-metrics"]

    def figures(group: list[dict]) -> dict[str, float | None]:
        steady = [r["steady"] for r in group if r["steady"]]
        both = len(steady) == len(group)
        return {
            "CPU us/event, steady": _mean([s["cpu_us"] for s in steady]) if both else None,
            "CPU us/event, end to end": _mean([r["cpu_seconds"] * 1e6 / events for r in group]),
            "events/s, steady": _mean([s["events_per_s"] for s in steady]) if both else None,
            "events/s, end to end": _mean([events / r["seconds"] for r in group]),
        }

    a, b = figures(off), figures(on)
    print(f"\nmetrics cost: the job with Flink's Prometheus reporter off / on, {len(off)} pair(s) in ABBA order, on "
          f"scraped every {scrape_interval:g} s; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'':<26} {'off':>10} {'on':>10} {'on / off':>9}")
    for name in a:
        if a[name] is None or b[name] is None:
            print(f"  {name:<26} {'-':>10} {'-':>10} {'-':>9}  (no steady state: run more events)")
            continue
        print(f"  {name:<26} {a[name]:>10,.1f} {b[name]:>10,.1f} {b[name] / a[name]:>9.3f}")
    cpu = "CPU us/event, steady" if a["CPU us/event, steady"] and b["CPU us/event, steady"] else \
        "CPU us/event, end to end"
    ratio = b[cpu] / a[cpu]
    print(f"  target: {cpu} with the reporter on within 3 % of off: {ratio:.3f} "
          f"{'ok' if ratio <= 1.03 else 'over'} (single pairs on a busy box vary by more than 3 %: compare pairs)")


SCALE_RUNGS = "job-sql,job-operator"


def _count(text: str) -> int:
    """'1M', '500k', '30000000' -> a number."""
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if factor > 1 else text) * factor)


def scale_ladder(settings: Settings, sizes: list[int], per_user: float, rungs: list[str], parallelism: int,
                 state_backend: str, conf: list[str]) -> int:
    """The job on uniform users over each number of distinct users, within one 2-hour window: how its cost per
    event, state, checkpoints and memory grow with the keys of an open window (README "Capacity")."""
    from local_services import kafka, manage

    manage.start(settings, ["kafka"])
    conf = [*STATE_SIZE_CONF, *conf]
    results: list[tuple[int, str, dict, int]] = []
    for distinct in sizes:
        events = int(distinct * per_user)
        topic = f"bench_flink_{uuid.uuid4().hex[:8]}"
        job = job_for(topic, parallelism, state_backend)
        kafka.ensure_topics(settings, {t: 6 for t in job.aggregate_topics})
        warehouse = settings.data_dir / "bench" / topic
        warehouse.mkdir(parents=True)
        try:
            fill_s = fill(settings, topic, events, "uniform", distinct=distinct, span_s=SCALE_SPAN_S)
            seen = 1 - (1 - 1 / distinct) ** events
            print(f"\n{distinct:,} distinct users: filled {topic} with {events:,} events in {fill_s:.0f} s (about "
                  f"{seen:.0%} of the users seen), one 2-hour window; load average {os.getloadavg()[0]:.2f}",
                  flush=True)
            for n, rung in enumerate(rungs):
                wh = warehouse / f"{n}-{rung}"
                run = child("job", replace(settings, paimon_warehouse=wh.as_uri()),
                            replace(job, parallelism=1 if rung.startswith("job-p1") else parallelism,
                                    windows=WINDOWS_OF_RUNG.get(rung, DEFAULT_WINDOWS)), conf,
                            one_cpu=rung == "job-p1-1cpu", metrics=rung == "job-metrics")
                report(rung, run, events, None, paimon_files(wh))
                results.append((distinct, rung, run, events))
                sys.stdout.flush()
                shutil.rmtree(wh, ignore_errors=True)  # room for the next: a 30M rung writes gigabytes
        finally:
            kafka.delete_topics(settings, [topic, *job.aggregate_topics])
            shutil.rmtree(warehouse, ignore_errors=True)

    print(f"\nscale ladder: uniform users within one 2-hour window, {per_user:g} events per user, parallelism "
          f"{parallelism}, {state_backend} state; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'rung':<13} {'users':>11} {'us/event':>9} {'x smallest':>10} {'ev/s':>8} {'RocksDB MiB':>11} "
          f"{'ckpts':>5} {'ckpt max s':>10} {'incr MiB':>8} {'full MiB':>8} {'peak JVM MiB':>12}")
    for rung in rungs:
        base = None
        for distinct, name, run, events in results:
            if name != rung:
                continue
            steady = run["steady"]
            us = steady["cpu_us"] if steady else run["cpu_seconds"] * 1e6 / events
            base = base or us
            c = run.get("checkpoints") or {}
            state = run.get("state_bytes") or {}
            rocksdb = max(state.get("total-sst-files-size", 0), state.get("estimate-live-data-size", 0))
            print(f"  {rung:<13} {distinct:>11,} {us:>9.1f} {us / base:>10.2f} "
                  f"{steady['events_per_s'] if steady else events / run['seconds']:>8,.0f} "
                  f"{rocksdb / 2**20:>11,.0f} "
                  f"{c.get('completed', 0):>5} {c.get('duration_max_ms', 0) / 1000:>10.1f} "
                  f"{c.get('incremental_max_bytes', 0) / 2**20:>8,.0f} {c.get('full_max_bytes', 0) / 2**20:>8,.0f} "
                  f"{run['peak_rss_mb']:>12,.0f}")
    print("  targets: at the largest N, us/event within 1.5x of the smallest; checkpoints under 10 s at the default "
          "60 s interval; peak JVM within the TaskManager sizes of the README (steady figures where the run had one, "
          "else end to end)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--users", choices=["zipf", "uniform"], default="zipf",
                   help="zipf: the producer's user law (realistic); uniform: every event a cold key (worst case)")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--state-backend", default="rocksdb", choices=["rocksdb", "hashmap"])
    p.add_argument("--rungs", default=None,
                   help=f"comma-separated, of {', '.join(RUNGS)} (default: {','.join(DEFAULT_RUNGS)}; with --scale: "
                        f"{SCALE_RUNGS})")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Flink option for the job rungs (repeatable), to measure a variant")
    p.add_argument("--metrics", type=int, nargs="?", const=1, default=0, metavar="PAIRS",
                   help="also run PAIRS pairs (default 1) of the job with Flink's Prometheus reporter off and on, "
                        "and print its cost side by side (CPU per event, events/s, on / off)")
    p.add_argument("--scrape-interval", type=float, default=SCRAPE_INTERVAL_S, metavar="S",
                   help=f"with the reporter on, GET /metrics every S seconds (default {SCRAPE_INTERVAL_S:g})")
    p.add_argument("--keep", action="store_true", help="keep the bench topics and warehouse (default: delete them)")
    p.add_argument("--child", choices=["job", "lake", "floor", "blackhole"], help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--warehouse", help=argparse.SUPPRESS)
    p.add_argument("--child-metrics", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-windows", default=DEFAULT_WINDOWS, help=argparse.SUPPRESS)
    p.add_argument("--scale", default=None, metavar="N1,N2,...",
                   help="the capacity ladder: for each N (e.g. 1M,10M,30M) uniform users over N distinct ones within "
                        "one 2-hour window of event time, N x --events-per-user events, the job rungs on each")
    p.add_argument("--events-per-user", type=float, default=2.0,
                   help="--scale: events per distinct user (2: 86 %% of the users seen, 3: 95 %%)")
    args = p.parse_args()
    settings = Settings.from_env()
    extra = _conf(args.conf)
    if args.child:
        # The reporter only where this benchmark asks for it, whatever FLINK_METRICS_PORT says.
        settings = replace(settings, paimon_warehouse=args.warehouse,
                           flink_metrics_port=_free_port() if args.child_metrics else None)
        extra = extra if args.child in ("job", "lake") else {}
        # --conf reaches the job's own options too (e.g. the window operator's buffer limit)
        job = job_for(args.topic, args.parallelism, args.state_backend, args.child_windows, extra)
        print(json.dumps(run_one(args.child, settings, job, extra, args.scrape_interval)))
        return 0
    rungs = [r.strip() for r in (args.rungs or (SCALE_RUNGS if args.scale else ",".join(DEFAULT_RUNGS))).split(",")
             if r.strip()]
    if unknown := [r for r in rungs if r not in RUNGS]:
        p.error(f"unknown rung(s) {', '.join(unknown)}; choose from {', '.join(RUNGS)}")
    if args.scale:
        if not_job := [r for r in rungs if not r.startswith("job")]:
            p.error(f"--scale runs the job rungs only, not {', '.join(not_job)}")
        return scale_ladder(settings, [_count(n) for n in args.scale.split(",")], args.events_per_user, rungs,
                            args.parallelism, args.state_backend, args.conf)
    if args.metrics:
        rungs = [r for r in rungs if r not in ("job", "job-metrics")]
        for pair in range(args.metrics):
            rungs += ["job", "job-metrics"] if pair % 2 == 0 else ["job-metrics", "job"]

    from local_services import kafka, manage

    manage.start(settings, ["kafka"])
    topic = f"bench_flink_{uuid.uuid4().hex[:8]}"
    job = job_for(topic, args.parallelism, args.state_backend)
    kafka.ensure_topics(settings, {t: 6 for t in job.aggregate_topics})
    warehouse = settings.data_dir / "bench" / topic
    warehouse.mkdir(parents=True)
    results: dict[str, list[tuple[dict, tuple[int, float] | None]]] = {}
    try:
        fill_s = fill(settings, topic, args.events, args.users)
        print(f"filled {topic} with {args.events:,} events ({args.users} users) in {fill_s:.0f} s; "
              f"load average before the runs {os.getloadavg()[0]:.2f}", flush=True)
        for n, rung in enumerate(rungs):
            kind = "job" if rung.startswith("job") else rung
            parallelism = 1 if rung.startswith("job-p1") else args.parallelism
            wh = warehouse / f"{n}-{rung}"
            rung_settings = replace(settings, paimon_warehouse=wh.as_uri())
            run = child(kind, rung_settings, replace(job, parallelism=parallelism,
                                                     windows=WINDOWS_OF_RUNG.get(rung, DEFAULT_WINDOWS)), args.conf,
                        one_cpu=rung == "job-p1-1cpu", metrics=rung == "job-metrics",
                        scrape_interval=args.scrape_interval)
            files = paimon_files(wh) if kind != "blackhole" else None
            results.setdefault(rung, []).append((run, files))
            report(rung, run, args.events, None, files)
            sys.stdout.flush()
            if not args.keep:  # each run writes a lake of its own, counted above: room for the next
                shutil.rmtree(wh, ignore_errors=True)
    finally:
        if not args.keep:
            kafka.delete_topics(settings, [topic, *job.aggregate_topics])
            shutil.rmtree(warehouse, ignore_errors=True)

    def rate(rung: str) -> float | None:
        if rung not in results:
            return None
        return _mean([run["steady"]["events_per_s"] if run["steady"] else args.events / run["seconds"]
                      for run, _ in results[rung]])

    print(f"\nsummary: {args.events:,} events, {args.users} users, parallelism {args.parallelism}, "
          f"{args.state_backend} state, conf {extra or 'default'}; load average {os.getloadavg()[0]:.2f}")
    for rung, runs in results.items():
        for run, files in runs:
            report(rung, run, args.events, rate("floor") if rung != "floor" else None, files)
    if rate("job") and rate("job-p1"):
        print(f"scaling: job at parallelism {args.parallelism} / 1 = x{rate('job') / rate('job-p1'):.2f} (both on all "
              f"{os.cpu_count()} cores)")
    if rate("job") and rate("job-p1-1cpu"):
        print(f"scaling per core: parallelism {args.parallelism} on {os.cpu_count()} cores / parallelism 1 on one "
              f"core = x{rate('job') / rate('job-p1-1cpu'):.2f}")
    if rate("job") and rate("floor"):
        print(f"targets: job >= 25,000 ev/s steady and >= 0.35x floor; lake >= 0.8x floor; job CPU <= 80 us/event;"
              f" scaling >= 1.6x. Job: {rate('job'):,.0f} ev/s, x{rate('job') / rate('floor'):.2f}")
    if "job" in results and "job-metrics" in results:
        metrics_cost({r: [run for run, _ in results[r]] for r in ("job", "job-metrics")}, args.events,
                     args.scrape_interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
