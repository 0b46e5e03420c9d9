"""Against the real local Kafka: every record the producer reports as acknowledged is read back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT, Settings
from producer.contract import check_event
from producer.partitioning import partitions_for_user_ids

pytestmark = pytest.mark.integration


def _consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"{topic}-check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                assert msg.error() is None, msg.error()
                records.append(msg)
            if len(records) >= expected:
                # Anything beyond the expected count would be a duplicate: look a little longer.
                records += [m for m in consumer.consume(10_000, timeout=2.0) if m.error() is None]
                break
    finally:
        consumer.close()
    return records


def _produce(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "--kafka-bootstrap", settings.kafka_bootstrap, "produce", "--quiet", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(("backend", "workers"), [("kafka-python", 1), ("confluent", 2), ("kafka-python", 2)])
def test_every_record_is_acknowledged_and_read_back(
    services: Settings, unique_name: str, tmp_path: Path, backend: str, workers: int
) -> None:
    count, invalid_fraction = 12_000, 0.01
    summary_path = tmp_path / "summary.json"
    result = _produce(
        services, "--backend", backend, "--workers", str(workers), "--topic", unique_name, "--count", str(count),
        "--invalid-fraction", str(invalid_fraction), "--seed", "7", "--summary-json", str(summary_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["sent"] == summary["acked"] == count and summary["failed"] == 0
    assert summary["invalid"] == int(count * invalid_fraction)

    records = _consume_all(services, unique_name, count)
    assert len(records) == count  # every record back, none twice
    assert {m.partition() for m in records} == set(range(services.kafka_partitions))
    reasons = Counter(check_event(m.value()) for m in records)
    assert sum(n for reason, n in reasons.items() if reason) == summary["invalid"]
    valid = [json.loads(m.value()) for m in records if check_event(m.value()) is None]
    assert len({e["event_id"] for e in valid}) == len(valid)
    # key = decimal user_id, partitioned like the Java client, and each user's events in order per partition
    user_ids = [e["user_id"] for e in valid]
    keyed = [m for m in records if check_event(m.value()) is None]
    assert [m.key() for m in keyed] == [str(u).encode() for u in user_ids]
    assert [m.partition() for m in keyed] == partitions_for_user_ids(user_ids, services.kafka_partitions).tolist()
    by_user: dict[int, list[int]] = {}
    for _, e in sorted(zip(keyed, valid, strict=True), key=lambda p: (p[0].partition(), p[0].offset())):
        by_user.setdefault(e["user_id"], []).append(e["timestamp"])
    # in order within the jitter
    assert all(b - a >= -100 for ts in by_user.values() for a, b in zip(ts, ts[1:], strict=False))


@pytest.mark.parametrize("backend", ["confluent", "kafka-python"])
def test_simulated_time_is_the_kafka_time_and_real_time_is_the_wall_clock(
    services: Settings, unique_name: str, backend: str
) -> None:
    """A simulation two days ago, faster than real time: every record's Kafka timestamp is the simulated moment it
    was sent, so no valid event is 10 min ahead of or 48 h behind its Kafka time (the job's bounds) however fast the
    simulation runs. In real time the client stamps the wall clock."""
    start_ms = int(time.time() * 1000) - 2 * 86_400_000
    count = 6_000
    result = _produce(services, "--backend", backend, "--topic", unique_name, "--count", str(count), "--seed", "3",
                      "--start-time", str(start_ms), "--sim-rate", "10")  # about 600 simulated seconds
    assert result.returncode == 0, result.stderr + result.stdout
    records = _consume_all(services, unique_name, count)
    assert len(records) == count
    gaps = [m.timestamp()[1] - json.loads(m.value())["timestamp"] for m in records]
    kafka_times = [m.timestamp()[1] for m in records]
    # the simulated span (about 10 minutes: the diurnal pace makes it longer at night), not the wall clock
    assert start_ms <= min(kafka_times) and max(kafka_times) <= start_ms + 1_800_000
    assert len(set(kafka_times)) > count // 2  # each record its own moment
    assert -51 <= min(gaps) and max(gaps) <= 51, (min(gaps), max(gaps))  # the event time's +-50 ms jitter

    before = int(time.time() * 1000)
    result = _produce(services, "--backend", backend, "--topic", f"{unique_name}_rt", "--count", "200",
                      "--rate", "1000")
    assert result.returncode == 0, result.stderr + result.stdout
    after = int(time.time() * 1000)
    assert all(before <= m.timestamp()[1] <= after for m in _consume_all(services, f"{unique_name}_rt", 200))


def _wait_for_records(settings: Settings, topic: str, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    from local_services import kafka

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if kafka.end_offsets(settings, topic) >= n:
                return
        except Exception:  # noqa: BLE001 - the producer has not created the topic yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"the producer did not write {n} records to {topic} (exit code {proc.poll()})")


def test_ctrl_c_flushes_and_prints_the_summary(services: Settings, unique_name: str, tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--kafka-bootstrap", services.kafka_bootstrap, "produce", "--quiet",
         "--backend", "confluent", "--workers", "2", "--rate", "5000", "--topic", unique_name,
         "--summary-json", str(summary_path)],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_records(services, unique_name, 1_000, proc)  # a condition, not a sleep: busy boxes are slower
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out and "acknowledged" in out and "Traceback" not in err
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted"] and summary["sent"] > 1_000
    assert summary["sent"] == summary["acked"] and summary["failed"] == 0
    assert len(_consume_all(services, unique_name, summary["acked"])) == summary["acked"]


@pytest.mark.parametrize("backend", ["kafka-python", "confluent"])
def test_records_the_broker_refuses_are_counted_failed_and_exit_nonzero(
    services: Settings, unique_name: str, tmp_path: Path, backend: str
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    # A topic whose size limit is below one event: the broker refuses every record.
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    topic = NewTopic(unique_name, 6, 1, config={"max.message.bytes": "200"})
    admin.create_topics([topic])[unique_name].result(timeout=30)
    summary_path = tmp_path / "summary.json"
    result = _produce(services, "--backend", backend, "--topic", unique_name, "--count", "500",
                      "--delivery-timeout", "20", "--summary-json", str(summary_path))  # fmt: skip
    assert result.returncode == 1, result.stderr + result.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["sent"] == 500 and summary["acked"] == 0 and summary["failed"] == 500
    assert "not acknowledged" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("backend", ["confluent", "kafka-python"])
def test_both_backends_are_idempotent_with_acks_all(services: Settings, unique_name: str, backend: str,
                                                    monkeypatch) -> None:
    """README: both producer backends are idempotent with acks=all. Read from the client each code path builds:
    librdkafka's configuration as producer/delivery.py hands it over (librdkafka accepts it: the producer is
    built), kafka-python's as the built producer holds it."""
    import confluent_kafka

    from local_services import kafka
    from producer.delivery import DeliveryOptions, open_backend

    kafka.ensure_topics(services, {unique_name: 1})
    handed: list[dict] = []

    class Recording(confluent_kafka.Producer):
        def __init__(self, conf: dict) -> None:
            handed.append(dict(conf))
            super().__init__(conf)

    monkeypatch.setattr(confluent_kafka, "Producer", Recording)
    built = open_backend(backend, services, DeliveryOptions(topic=unique_name))
    try:
        if backend == "confluent":
            assert len(handed) == 1 and isinstance(built._producer, Recording)
            assert (handed[0]["enable.idempotence"], handed[0]["acks"]) == (True, "all"), handed
        else:
            config = built._producer.config
            assert (config["enable_idempotence"], config["acks"]) == (True, -1), config  # kafka-python: 'all' -> -1
    finally:
        built.flush(10)
        built.close()
