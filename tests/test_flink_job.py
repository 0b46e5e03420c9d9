"""The Flink job end to end on real Kafka and Paimon (local mini-cluster): known events in, exact rows out."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from base.config import PROJECT_ROOT, Settings
from flink_job.job_config import WINDOWS, JobConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

T0 = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)  # 2026-03-01 00:00:00 UTC
MIN = 60_000
HOUR = 60 * MIN


def _action_types() -> tuple[str, ...]:
    from producer.action_types import ACTION_TYPES

    return ACTION_TYPES


def _event(n: int, user_id: int, action: str, ts: int) -> dict:
    return {
        "event_id": f"00000000-0000-4000-8000-{n:012d}",
        "user_id": user_id,
        "action_type": action,
        "timestamp": ts,
        "metadata": {"screen": "home", "session_id": f"s{user_id}", "duration_ms": 10 * n},
        "device_info": {"device_id": f"d{user_id}", "os": "android", "country": "DE"},
    }


def valid_events() -> list[dict]:
    a, b = _action_types()[0], _action_types()[1]
    spec = [  # (user, action, ms after T0), in event-time order
        (1, a, 1 * MIN), (1, a, 2 * MIN), (1, b, 7 * MIN),
        (2, a, 2 * HOUR - 1), (2, b, 2 * HOUR),          # either side of the 02:00 slot boundary
        (3, b, 5 * HOUR + 30 * MIN),
        (30_000_000, a, 23 * HOUR + 59 * MIN),            # last slot of the day, highest user id
    ]
    return [_event(i, u, act, T0 + off) for i, (u, act, off) in enumerate(spec)]


def malformed_records() -> list[tuple[bytes | None, str]]:
    """(raw value, expected reason)."""
    a = _action_types()[0]
    good = _event(99, 5, a, T0)

    def variant(**changes: object) -> bytes:
        ev = {**good, **changes}
        return json.dumps({k: v for k, v in ev.items() if v is not ...}).encode()

    return [
        (b"not json at all", "unparseable JSON"),
        (b'{"event_id": "x", "user_id": ', "unparseable JSON"),
        (b"\xff\xfe{\"user_id\": 1}", "invalid UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (None, "null value"),
        (variant(user_id=...), "missing field: user_id"),
        (variant(device_info=...), "missing field: device_info"),
        (variant(user_id="5"), "wrong type: user_id is not an integer"),
        (variant(timestamp=1.5), "wrong type: timestamp is not an integer"),
        (variant(metadata="home"), "wrong type: metadata is not an object"),
        (variant(event_id=7), "wrong type: event_id is not a string"),
        (variant(user_id=0), "user_id out of range"),
        (variant(user_id=30_000_001), "user_id out of range"),
        (variant(action_type="teleport"), "unknown action_type"),
    ]


def expected_aggregates(events: list[dict]) -> dict[str, set[tuple]]:
    def window(ts: int, size: int) -> tuple[str, str]:
        start = ts - ts % size
        fmt = "%Y-%m-%d %H:%M:%S"
        return (datetime.fromtimestamp(start / 1000, UTC).strftime(fmt),
                datetime.fromtimestamp((start + size) / 1000, UTC).strftime(fmt))

    from collections import Counter

    per_user = Counter((*window(e["timestamp"], 2 * HOUR), e["user_id"]) for e in events)
    per_action = Counter((*window(e["timestamp"], 2 * HOUR), e["user_id"], e["action_type"]) for e in events)
    realtime = Counter((*window(e["timestamp"], 5 * MIN), e["user_id"]) for e in events)
    return {
        "user_aggregations": {(*k, n) for k, n in per_user.items()},
        "user_action_aggregations": {(*k, n) for k, n in per_action.items()},
        "user_aggregations_realtime": {(*k, n) for k, n in realtime.items()},
    }


# The records' Kafka time: as a replay of that day would stamp them (the job trusts event time within bounds of it).
KAFKA_TIME = T0 + 24 * HOUR
# Kafka deletes by record time: a topic holding KAFKA_TIME records keeps them (the broker's 7 days would not).
KEEP_FOREVER = {"retention.ms": "-1"}


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key, value=value, timestamp=KAFKA_TIME)
    assert producer.flush(30) == 0


def read_topic(settings: Settings, topic: str, timeout: float = 60) -> list[tuple[dict, dict]]:
    """Every record of ``topic`` up to its end offsets when called, (key, value) as JSON: the end offsets are the
    count to wait for, so a slow start (no group to join: the partitions are assigned) is never a short read; a
    read that cannot reach them within ``timeout`` fails, saying how far it got."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from local_services import kafka

    ends = {p: end for p, end in kafka.partition_ends(settings, topic).items() if end > 0}
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"read-{topic}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    out, done, deadline = [], dict.fromkeys(ends, 0), time.monotonic() + timeout
    try:
        while any(done[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, f"read {done} of {ends} records of {topic} within {timeout:.0f} s"
            msg = consumer.poll(0.5)
            if msg is None:  # past a transaction marker (no record), the position still moves
                for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                    done[tp.partition] = max(done[tp.partition], tp.offset)
                continue
            assert msg.error() is None, msg.error()
            if msg.offset() < ends[msg.partition()]:
                out.append((json.loads(msg.key()), json.loads(msg.value())))
                done[msg.partition()] = msg.offset() + 1
    finally:
        consumer.close()
    return out


def topics_for(name: str) -> JobConfig:
    return JobConfig(
        source_topic=f"{name}_src", user_aggregations_topic=f"{name}_ua", user_action_aggregations_topic=f"{name}_uaa",
        realtime_aggregations_topic=f"{name}_uar", group_id=f"{name}_job", bounded=True,
        startup_mode="earliest-offset", parallelism=2, checkpoint_interval="10 s", state_backend="rocksdb",
    )


def prepare_input(settings: Settings, job: JobConfig, with_malformed: bool = True) -> tuple[list[dict], list]:
    from local_services import kafka

    kafka.ensure_topics(settings, {job.source_topic: 2, **{t: 2 for t in job.aggregate_topics}}, KEEP_FOREVER)
    events = valid_events()
    bad = malformed_records() if with_malformed else []
    records = [(str(e["user_id"]).encode(), json.dumps(e).encode()) for e in events]
    records += [(b"bad", value) for value, _ in bad]
    produce(settings, job.source_topic, records)
    return events, bad


def read_table(settings: Settings, name: str):
    from lakehouse.catalog import open_catalog

    table = open_catalog(settings).get_table(f"lake.{name}")
    rb = table.new_read_builder()
    return rb.new_read().to_arrow(rb.new_scan().plan().splits()), table


# Each way of computing the windows (JobConfig.windows) must give exactly the same rows: one run per variant.
@pytest.mark.parametrize("windows", WINDOWS)
def test_job_writes_exact_paimon_rows_rejects_and_aggregates(services: Settings, unique_name: str, tmp_path,
                                                             windows: str) -> None:
    from flink_job import pipeline

    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    job = replace(topics_for(unique_name), windows=windows)
    events, bad = prepare_input(settings, job)

    started = datetime.now(UTC).replace(tzinfo=None)
    pipeline.run(settings, job, wait=True)
    finished = datetime.now(UTC).replace(tzinfo=None)

    # Raw table: exactly the valid events, in UTC date / 2-hour-slot partitions.
    raw, table = read_table(settings, "user_actions")
    rows = {r["event_id"]: r for r in raw.to_pylist()}
    assert set(rows) == {e["event_id"] for e in events}
    for e in events:
        row = rows[e["event_id"]]
        ts = datetime.fromtimestamp(e["timestamp"] / 1000, UTC)
        assert (row["user_id"], row["action_type"], row["timestamp"]) == (e["user_id"], e["action_type"],
                                                                            e["timestamp"])
        assert row["event_date"] == ts.strftime("%Y-%m-%d") and row["event_hour"] == ts.hour - ts.hour % 2
        assert json.loads(row["metadata"]) == e["metadata"] and json.loads(row["device_info"]) == e["device_info"]
        assert started <= row["ingest_time"] <= finished
    assert {(r["event_date"], r["event_hour"]) for r in rows.values()} == {
        ("2026-03-01", 0), ("2026-03-01", 2), ("2026-03-01", 4), ("2026-03-01", 22)}

    # Buckets: Flink placed each user in the bucket pypaimon computes for it (same hash, 128 buckets).
    from pypaimon.write.row_key_extractor import FixedBucketRowKeyExtractor

    extractor = FixedBucketRowKeyExtractor(table.table_schema)
    table_dir = tmp_path / "wh" / "lake.db" / "user_actions"
    files = list(table_dir.glob("event_date=*/event_hour=*/bucket-*/*.parquet"))
    assert files
    for f in files:
        batch = pq.read_table(f).to_batches()[0]
        assert set(extractor._extract_buckets_batch(batch)) == {int(f.parent.name.split("-")[1])}

    # Rejected: every malformed record with its reason, byte for byte; nothing lost.
    rejected, _ = read_table(settings, "user_actions_rejected")
    got = sorted(((r["raw_value"], r["reason"]) for r in rejected.to_pylist()), key=repr)
    assert got == sorted(bad, key=repr)
    assert raw.num_rows + rejected.num_rows == len(events) + len(bad)
    # ... and together they hold every (partition, offset) of the topic exactly once.
    from local_services import kafka

    positions = sorted((r["kafka_partition"], r["kafka_offset"]) for t in (raw, rejected) for r in t.to_pylist())
    assert len(positions) == len(set(positions)) == kafka.end_offsets(settings, job.source_topic)
    for partition in (0, 1):
        offsets = [o for p, o in positions if p == partition]
        assert offsets == list(range(len(offsets)))

    # Aggregates: exactly the expected windows on the three topics, keyed, with a version.
    expected = expected_aggregates(events)
    for topic, name, count_field, key_fields in (
        (job.user_aggregations_topic, "user_aggregations", "total_actions", ("window_start", "window_end", "user_id")),
        (job.user_action_aggregations_topic, "user_action_aggregations", "actions",
         ("window_start", "window_end", "user_id", "action_type")),
        (job.realtime_aggregations_topic, "user_aggregations_realtime", "total_actions",
         ("window_start", "window_end", "user_id")),
    ):
        messages = read_topic(settings, topic)
        got = {(*(v[k] for k in key_fields), v[count_field]) for _, v in messages}
        assert got == expected[name], topic
        assert len(messages) == len(expected[name])
        for key, value in messages:
            assert key == {k: value[k] for k in key_fields}
            assert abs(value["version"] - time.time() * 1000) < 15 * 60_000  # epoch ms of emission


def pipeline_cli(settings: Settings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """The `pipeline` console script as a user types it, with these settings in its environment."""
    return subprocess.run([str(Path(sys.executable).parent / "pipeline"), *args], capture_output=True, text=True,
                          env={**os.environ, **settings.to_env()}, cwd=PROJECT_ROOT, timeout=timeout)


def test_job_on_s3_warehouse_through_the_cli(services: Settings, unique_name: str) -> None:
    """`pipeline job ... --bounded` as a user types it: reads the topic to its end, then the lake holds every event."""
    settings = replace(services, paimon_warehouse=f"s3://{services.s3_bucket}/{unique_name}")
    job = replace(topics_for(unique_name), parallelism=1)
    events, bad = prepare_input(settings, job)
    done = pipeline_cli(settings, "job", *job.to_argv())
    assert done.returncode == 0, done.stderr[-3000:]
    finished = rf"^job {re.escape(job.job_name)} \([0-9a-f]{{32}}\) finished$"
    assert re.search(finished, done.stdout, re.MULTILINE), done.stdout
    raw, _ = read_table(settings, "user_actions")
    rejected, _ = read_table(settings, "user_actions_rejected")
    assert sorted(raw.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)
    assert rejected.num_rows == len(bad)


def test_clear_errors(services: Settings, unique_name: str, tmp_path: Path) -> None:
    from base.errors import UserError
    from flink_job import preflight

    job = topics_for(unique_name)
    with pytest.raises(UserError, match="topics missing"):
        preflight.check(replace(services, paimon_warehouse=f"file://{tmp_path}"), job)
    with pytest.raises(UserError, match="cannot reach a broker"):
        preflight.check_kafka(replace(services, kafka_bootstrap="127.0.0.1:1"), (job.source_topic,))
    with pytest.raises(UserError, match="not reachable"):
        preflight.check_warehouse(replace(services, paimon_warehouse="s3://no-such-bucket-here/x"))
    with pytest.raises(UserError, match="jar flink-sql-connector-kafka"):
        from local_services import flink_runtime

        flink_runtime.connector_jars(replace(services, jars_dir=tmp_path))


def test_explain_scans_the_source_once_for_all_five_inserts(services: Settings, unique_name: str, tmp_path,
                                                           capsys) -> None:
    """`pipeline job --explain --windows sql`, as a user types it: the value format parses each record once, one Kafka
    source scan feeds the five sinks, and the two per-user windows share one shuffle (no per-sink re-reading)."""
    from pipeline import cli

    assert cli.main(["--warehouse", f"file://{tmp_path}/wh", "job", "--explain", "--source-topic",
                     f"{unique_name}_src", "--watermark-delay", "7", "--idle-timeout", "45 s",
                     "--state-backend", "hashmap", "--windows", "sql"]) == 0
    plan = capsys.readouterr().out
    assert "-(event_time, 7000:INTERVAL SECOND)" in plan and "idletimeout=[45000]" in plan
    execution = plan.split("== Optimized Execution Plan ==", 1)[1]
    assert execution.count("TableSourceScan(") == 1
    assert "value.format" not in execution and execution.count("Reused(reference_id=[1])") == 4
    assert execution.count("Sink(table=") == 5
    assert execution.count("Exchange(distribution=[hash[user_id]])") == 1


def test_operator_windows_read_the_source_once(services: Settings, unique_name: str, tmp_path) -> None:
    """`--windows operator` hands the records to a DataStream operator: the job still reads Kafka with one source, and
    the lake's INSERTs and the operator read the same stream (no second scan of the topic, nor a second job)."""
    import json as json_

    from flink_job import pipeline

    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    job = replace(topics_for(unique_name), windows="operator")
    t_env, statement_set = pipeline.build(settings, job)
    statement_set.attach_as_datastream()
    nodes = json_.loads(t_env._j_tenv.execEnv().getExecutionPlan())["nodes"]
    types = [n["type"] for n in nodes]
    assert sum(t.startswith("Source: kafka_user_actions") for t in types) == 1, types
    assert types.count("UserWindows") == 1, types
