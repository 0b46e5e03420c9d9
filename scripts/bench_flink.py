"""Catch-up throughput of the Flink job, beside a Kafka -> blackhole job on the same topic (the ceiling).

    .venv/bin/python scripts/bench_flink.py [--events 2000000] [--parallelism 2]

Pre-fills a fresh topic with N contract events (6 partitions, 6 hours of event time, random users, ~0.1 %
malformed), then runs, each in its own JVM and bounded to the current end offsets:
  1. baseline: the same Kafka source (raw bytes) into a blackhole sink;
  1b. lake floor: Flink's own JSON format (no validation, no rejected table; it drops what it cannot parse)
     straight into the same Paimon table, i.e. the cheapest way Flink SQL writes the lake: a ceiling for
     any job that must write every event there;
  2. lake only: the job without its three aggregate sinks (validation, Paimon raw + rejected tables), so
     the difference to 3. is what the windows cost;
  3. the job: validation, Paimon raw + rejected tables (file:// warehouse), the three window aggregates to Kafka.
Prints events/s end to end (submission to finish, including job start-up), their ratio, the Paimon data files
written and their average size, and each run's peak JVM memory (VmHWM). The topics and the warehouse are
deleted at the end (--keep keeps them). Other processes on the box (Kafka,
other work) share the CPU: say so beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flink_job.job_config import JobConfig  # noqa: E402
from pipeline.config import Settings  # noqa: E402

T0 = 1_772_323_200_000  # 2026-03-01 00:00:00 UTC
SPAN_MS = 6 * 3_600_000


def fill(settings: Settings, topic: str, n: int, partitions: int = 6) -> float:
    """N events in event-time order (small jitter), keyed by user_id; returns seconds taken."""
    from confluent_kafka import Producer

    from producer.action_types import ACTION_TYPES
    from scripts.services import kafka

    kafka.ensure_topics(settings, {topic: partitions})
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 1_048_576})
    rnd = random.Random(7)
    start = time.monotonic()
    for i in range(n):
        user = rnd.randint(1, 30_000_000)
        ts = T0 + SPAN_MS * i // n + rnd.randint(0, 2000)
        if i % 1000 == 999:
            value = b'{"event_id": "broken", "user_id": '  # malformed on purpose
        else:
            value = (
                f'{{"event_id":"{uuid.UUID(int=rnd.getrandbits(128), version=4)}","user_id":{user},'
                f'"action_type":"{ACTION_TYPES[rnd.randrange(153)]}","timestamp":{ts},'
                f'"metadata":{{"screen":"home","session_id":"{user:016x}","duration_ms":{rnd.randint(1, 60000)}}},'
                f'"device_info":{{"device_id":"{user * 7919:016x}","os":"android","os_version":"14",'
                f'"model":"Pixel 8","app_version":"5.2.1","country":"DE","network":"wifi"}}}}'
            ).encode()
        while True:
            try:
                producer.produce(topic, key=str(user).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0
    return time.monotonic() - start


def run_one(kind: str, settings: Settings, job: JobConfig) -> dict:
    """One measured run in this process (called in a child, so each run has its own JVM)."""
    from flink_job import pipeline
    from flink_job.environment import create_stream_table_env, job_options

    if kind in ("job", "lake"):
        _, statement_set = pipeline.build(settings, job, lake_only=kind == "lake")
    elif kind == "floor":
        t_env = create_stream_table_env(settings, job.parallelism, job_options(settings, job))
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
    else:
        t_env = create_stream_table_env(settings, job.parallelism, job_options(settings, job))
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE src (k BYTES, v BYTES) WITH (
            'connector' = 'kafka', 'topic' = '{job.source_topic}',
            'properties.bootstrap.servers' = '{settings.kafka_bootstrap}', 'properties.group.id' = 'bench-bh',
            'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
            'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY')""")
        t_env.execute_sql("CREATE TEMPORARY TABLE sink (k BYTES, v BYTES) WITH ('connector' = 'blackhole')")
        statement_set = t_env.create_statement_set()
        statement_set.add_insert_sql("INSERT INTO sink SELECT k, v FROM src")
    start = time.monotonic()
    statement_set.execute().wait()
    seconds = time.monotonic() - start
    jvm = _java_child()
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(jvm), "cpu_seconds": _cpu_seconds(jvm),
            "cpu_by_thread": _cpu_by_thread(jvm)}


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


def _cpu_by_thread(jvm: Path | None, top: int = 8) -> dict[str, float]:
    """CPU seconds per JVM thread name (as the kernel keeps it: 15 characters, digits folded), the largest first:
    where the job's CPU went (operator chains, JIT compiler, garbage collector)."""
    totals: dict[str, float] = {}
    for task in (jvm / "task").glob("[0-9]*") if jvm else ():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = re.sub(r"\d+", "#", text[text.index("(") + 1:text.rindex(")")])
        stat = text.rsplit(")", 1)[1].split()
        totals[name] = totals.get(name, 0.0) + (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])[:top])


def _cpu_seconds(jvm: Path | None) -> float:
    """User + system CPU of the JVM so far: per event, the cost figure that other load on the box hardly skews."""
    if jvm is None:
        return 0.0
    stat = (jvm / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def child(kind: str, settings: Settings, job: JobConfig) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--topic", job.source_topic, "--parallelism",
           str(job.parallelism), "--warehouse", settings.paimon_warehouse, "--state-backend", job.state_backend]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def paimon_files(warehouse: Path) -> tuple[int, float]:
    files = [f for f in (warehouse / "lake.db" / "user_actions").glob("event_date=*/*/bucket-*/*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    return len(files), (total / len(files) if files else 0.0)


def job_for(topic: str, parallelism: int, state_backend: str) -> JobConfig:
    return JobConfig(source_topic=topic, user_aggregations_topic=f"{topic}_ua",
                     user_action_aggregations_topic=f"{topic}_uaa", realtime_aggregations_topic=f"{topic}_uar",
                     group_id=f"{topic}_job", bounded=True, startup_mode="earliest-offset",
                     parallelism=parallelism, state_backend=state_backend, checkpoint_interval="60 s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--state-backend", default="rocksdb", choices=["rocksdb", "hashmap"])
    p.add_argument("--keep", action="store_true", help="keep the bench topics and warehouse (default: delete them)")
    p.add_argument("--child", choices=["job", "lake", "floor", "blackhole"], help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--warehouse", help=argparse.SUPPRESS)
    args = p.parse_args()
    settings = Settings.from_env()
    if args.child:
        settings = replace(settings, paimon_warehouse=args.warehouse)
        print(json.dumps(run_one(args.child, settings, job_for(args.topic, args.parallelism, args.state_backend))))
        return 0

    from scripts.services import kafka, manage

    manage.start(settings, ["kafka"])
    topic = f"bench_flink_{uuid.uuid4().hex[:8]}"
    job = job_for(topic, args.parallelism, args.state_backend)
    kafka.ensure_topics(settings, {t: 6 for t in job.aggregate_topics})
    warehouse = settings.data_dir / "bench" / topic
    warehouse.mkdir(parents=True)
    settings = replace(settings, paimon_warehouse=warehouse.as_uri())
    try:
        fill_s = fill(settings, topic, args.events)
        print(f"filled {topic} with {args.events:,} events in {fill_s:.1f}s ({args.events / fill_s:,.0f}/s)")
        base = child("blackhole", settings, job)
        floor = child("floor", replace(settings, paimon_warehouse=(warehouse / "lake_floor").as_uri()), job)
        lake = child("lake", replace(settings, paimon_warehouse=(warehouse / "lake_only").as_uri()), job)
        full = child("job", settings, job)
        files, avg = paimon_files(warehouse)
    finally:
        if not args.keep:
            kafka.delete_topics(settings, [topic, *job.aggregate_topics])
            shutil.rmtree(warehouse, ignore_errors=True)
    base_rate, job_rate = args.events / base["seconds"], args.events / full["seconds"]
    for name, run, rate in (("baseline Kafka -> blackhole", base, base_rate),
                            ("lake floor (JSON format -> Paimon)", floor, args.events / floor["seconds"]),
                            ("lake only (Paimon + rejected)", lake, args.events / lake["seconds"]),
                            ("job (Paimon + rejected + 3 aggregates)", full, job_rate)):
        print(f"{name}: {rate:>10,.0f} events/s ({run['seconds']:.1f}s, peak JVM {run['peak_rss_mb']:,.0f} MiB, "
              f"JVM CPU {run['cpu_seconds']:.0f}s = {run['cpu_seconds'] * 1e6 / args.events:.0f} us/event "
              "incl. start-up)")
        print("    CPU by thread: " + ", ".join(f"{name} {sec:.0f}s" for name, sec in run["cpu_by_thread"].items()))
    print(f"ratio job/baseline: {job_rate / base_rate:.2f}   (targets: >= 100,000 events/s and >= 0.5)")
    print(f"Paimon user_actions files: {files}, average {avg / 1e6:.2f} MB; parallelism {args.parallelism}, "
          f"state backend {args.state_backend}; load average {os.getloadavg()[0]:.2f} (box shared with Kafka)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
