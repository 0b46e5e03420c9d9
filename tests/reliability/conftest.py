"""Helpers of the reliability tests: known records into a unique topic, the job's outputs read back exactly.

Each test states an invariant and checks it with exact counts on the real services: Paimon through
lakehouse.queries, aggregates through the ClickHouse loader into a scratch chDB and lakehouse.reconcile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from base.config import PROJECT_ROOT, Settings
from flink_job.job_config import JobConfig

# Large enough for the catalogue's near-limit record (the local broker allows 1,048,588 bytes).
MAX_RECORD_BYTES = 1_048_588
SLOT_MS = 2 * 3_600_000


def job_for(name: str, **changes: object) -> JobConfig:
    """A bounded job on topics and a consumer group of its own."""
    base = JobConfig(
        source_topic=f"{name}_src", user_aggregations_topic=f"{name}_ua",
        user_action_aggregations_topic=f"{name}_uaa", realtime_aggregations_topic=f"{name}_uar",
        group_id=f"{name}_job", bounded=True, startup_mode="earliest-offset", parallelism=2,
        checkpoint_interval="10 s", state_backend="rocksdb",
    )
    return replace(base, **changes)


def create_topics(settings: Settings, job: JobConfig, source_partitions: int, aggregate_partitions: int = 2) -> None:
    from local_services import kafka

    kafka.ensure_topics(settings, {job.source_topic: source_partitions,
                                   **{t: aggregate_partitions for t in job.aggregate_topics}})


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes | None]],
            partition: int | None = None) -> int:
    """Send records (key, value) in order, idempotently; every one acknowledged or the test fails."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                         "message.max.bytes": MAX_RECORD_BYTES, "linger.ms": 5})
    failed: list[str] = []
    n = 0
    for key, value in records:
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda err, _msg: failed.append(str(err)) if err else None, **kwargs)
        producer.poll(0)
        n += 1
    assert producer.flush(60) == 0
    assert not failed, failed[:3]
    return n


def lake_table(settings: Settings, name: str):
    from lakehouse.catalog import open_catalog

    return open_catalog(settings).get_table(f"lake.{name}")


def lake_rows(settings: Settings, name: str, columns: list[str] | None = None) -> pa.Table:
    """Every row of lake.<name> in its latest snapshot (lakehouse.queries, no filter)."""
    from lakehouse import queries

    table = lake_table(settings, name)
    return queries.read(table, queries.plan(table), columns=columns)


def exact_raw_counts(settings: Settings) -> tuple[int, int]:
    """(rows, distinct event_id) of lake.user_actions."""
    ids = lake_rows(settings, "user_actions", ["event_id"])["event_id"]
    return len(ids), pc.count_distinct(ids).as_py()


@dataclass
class ClickHouseScratch:
    """A scratch chDB database of this pytest process, loaded from one job's aggregate topics."""

    settings: Settings
    database: str
    client: Any


@pytest.fixture(scope="session")
def chdb_scratch(services: Settings) -> Settings:
    from clickhouse.testing import scratch_settings

    return scratch_settings(services)


def load_aggregates(chdb_settings: Settings, job: JobConfig, timeout: float = 120.0) -> ClickHouseScratch:
    """Run the project's loader over the job's three aggregate topics until it has committed their ends."""
    from clickhouse.loader import Loader, LoaderOptions
    from clickhouse.schema import SchemaOptions
    from clickhouse.store import ThreadClients, apply_schema

    database = f"r_{uuid.uuid4().hex[:10]}"
    clients = ThreadClients(chdb_settings.clickhouse_dsn)
    apply_schema(clients.get(), SchemaOptions(database=database))
    topics = dict(zip(job.aggregate_topics,
                      ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime"), strict=True))
    group = f"{database}_loader"
    loader = Loader(chdb_settings.kafka_client_config(), clients.get,
                    LoaderOptions(group_id=group, batch_rows=50_000, max_latency_s=0.3, topics=topics,
                                  database=database))
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: caught_up(chdb_settings, group, list(topics)), timeout, "loader caught up")
    finally:
        stop.set()
        thread.join(60)
    return ClickHouseScratch(chdb_settings, database, clients.get())


def caught_up(settings: Settings, group: str, topics: list[str]) -> bool:
    """True when ``group`` has committed the end offset of every partition of ``topics``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        meta = consumer.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in topics for p in meta.topics[t].partitions]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
        for tp in tps:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > low and committed[(tp.topic, tp.partition)] != high:
                return False
        return True
    finally:
        consumer.close()


def reconcile_job(settings: Settings, scratch: ClickHouseScratch, first_ms: int, last_ms: int):
    """lakehouse.reconcile over whole 2-hour slots around [first_ms, last_ms]: lake vs ClickHouse FINAL."""
    from lakehouse.reconcile import reconcile

    start = datetime.fromtimestamp(first_ms // SLOT_MS * SLOT_MS / 1000, UTC)
    end = datetime.fromtimestamp((last_ms // SLOT_MS + 1) * SLOT_MS / 1000, UTC)
    return reconcile(lake_table(settings, "user_actions"), scratch.client, start, end, database=scratch.database)


def records_in(settings: Settings, topic: str) -> int:
    """Records ever written to ``topic``, or 0 while no broker answers (during a fault)."""
    from local_services import kafka

    try:
        return kafka.end_offsets(settings, topic)
    except Exception:
        return 0


def wait_for(check, timeout: float, what: str, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")


def event(n: int, user_id: int, action: str, ts: int, **extra: object) -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}", "user_id": user_id, "action_type": action,
        "timestamp": ts, "metadata": {"screen": "home", "session_id": f"s{user_id}", "duration_ms": n},
        "device_info": {"device_id": f"d{user_id}", "os": "android", "country": "DE"}, **extra,
    }


def encode(e: dict) -> tuple[bytes, bytes]:
    return str(e.get("user_id")).encode(), json.dumps(e, separators=(",", ":")).encode()


def day_ago_slot() -> int:
    """Start of a 2-hour slot about a day in the past (epoch ms): event times no future check can reject."""
    now = datetime.now(UTC) - timedelta(days=1)
    return int(now.timestamp() * 1000) // SLOT_MS * SLOT_MS


def start_producer(settings: Settings, topic: str, count: int, rate: int, start_ms: int, log: Path,
                   summary: Path, seed: int = 8, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """``pipeline produce`` as a user runs it, paced at ``rate``, output to ``log``, in its own session so
    stop_process_group can stop it by its PID."""
    argv = [sys.executable, "-m", "pipeline", "--kafka-bootstrap", settings.kafka_bootstrap, "produce",
            "--topic", topic, "--count", str(count), "--rate", str(rate), "--users", "20000", "--seed", str(seed),
            "--start-time", str(start_ms), "--sim-rate", "50", "--backend", "confluent", "--quiet",
            "--summary-json", str(summary), *extra]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process_group(popen: subprocess.Popen) -> None:
    """SIGKILL a child started in its own session (its PID is its process group), then reap it."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    popen.wait(30)


def close_windows(settings: Settings, topic: str, first_n: int, at_ms: int, partitions: int) -> int:
    """One later event per partition, so every partition's watermark passes every earlier window and they all
    fire; returns how many were written."""
    from producer.action_types import ACTION_TYPES

    for p in range(partitions):
        produce(settings, topic, [encode(event(first_n + p, 1 + p, ACTION_TYPES[0], at_ms))], partition=p)
    return partitions
