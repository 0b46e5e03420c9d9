"""Fault: the Kafka broker is stopped (SIGTERM by its PID file) for 10 s and started again while the producer
writes and the streaming job reads, checkpoints and emits aggregates.

Invariants, with a known number N of events given to ``pipeline produce`` (idempotent, acks=all):
- the producer reports every record acknowledged (exit 0, acked == N, failed == 0) and the topic then holds
  exactly N records (no duplicate from retries across the restart); or it exits 1 with the unacknowledged count
  in its summary (failed == N - acked), and the topic holds between acked and N records: never a silent loss;
- the job recovers by itself (its Kafka clients reconnect, or Flink's restart strategy restores the last
  checkpoint: the test never restarts it) and lake.user_actions ends with exactly as many rows as the topic
  holds (N when every record was acknowledged), all event_ids distinct, nothing rejected;
- ClickHouse's deduplicated aggregates equal the reconciliation from the lake.
The broker is a private one (own ports and data directory under tmp_path) started, stopped and started again with
local_services/kafka.py, so the restart never disturbs the shared broker that other tests and engineers' jobs
use (that one is checked healthy at the end); it comes back on the same port with the same log directory, like a
restarted production broker. The job runs unbounded (a bounded Kafka source restored from a checkpoint never
finishes, FLINK-31006); one later event per partition closes the windows that are compared.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace

import pytest

from local_services import kafka
from scripts import faults
from tests.reliability.conftest import (
    close_windows,
    create_topics,
    day_ago_slot,
    exact_raw_counts,
    job_for,
    lake_rows,
    load_aggregates,
    reconcile_job,
    records_in,
    start_producer,
    stop_process_group,
    wait_for,
)

# slow: a private broker, a job start-up and a broker restart; a few minutes on the loaded 2-core box.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

EVENTS = 30_000
RATE = 1_500  # events/s: production spans ~20 s, so the restart lands mid-run
PARTITIONS = 3
CLOSE_MS = 8 * 3_600_000
DOWN_S = 10.0
DELIVERY_TIMEOUT_S = 300  # the producer's per-record give-up time: far longer than the restart
# The bounded waits together (checkpoint 300, Kafka 120, restart ~130, producer 600, catch-up 900, checkpoint 120,
# loader 120) and a margin: a wait that runs out says what it waited for, before pytest-timeout would.
pytestmark.append(pytest.mark.timeout(2_400))


@pytest.fixture
def private_kafka(services, tmp_path):
    """A broker of this test only, on free loopback ports, stopped by its PID file at the end."""
    port = faults.free_loopback_port(span=2)
    settings = replace(services, kafka_bootstrap=f"127.0.0.1:{port}", data_dir=tmp_path / "data")
    print(kafka.start(settings))
    yield settings
    print(kafka.stop(settings))


def test_broker_restart_mid_run_loses_and_duplicates_nothing(
        services, private_kafka, unique_name, tmp_path, chdb_scratch) -> None:
    settings = replace(private_kafka, paimon_warehouse=f"file://{tmp_path}/wh")
    checkpoints = tmp_path / "checkpoints"
    job = job_for(unique_name, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri(), parallelism=2,
                  bounded=False)
    create_topics(settings, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()
    log_dir_before = (settings.data_dir / "kafka" / "log" / "meta.properties").read_text()

    running = faults.start_job(settings, job, tmp_path / "job.log")
    producer: subprocess.Popen | None = None
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)  # the job is up before any record arrives
        summary_path, produce_log = tmp_path / "produce.json", tmp_path / "produce.log"
        producer = start_producer(settings, job.source_topic, EVENTS, RATE, t0 + 60_000, produce_log, summary_path,
                                  seed=8, extra=("--delivery-timeout", str(DELIVERY_TIMEOUT_S)))
        wait_for(lambda: records_in(settings, job.source_topic) >= EVENTS // 5, 120, "a fifth of the events in Kafka")
        at_stop = records_in(settings, job.source_topic)
        broker_pid = kafka.process(settings).pid()
        bounce = faults.outage(lambda: kafka.stop(settings), lambda: kafka.start(settings), DOWN_S)
        # the same broker again: a new process on the same port, with the same formatted log directory
        assert kafka.process(settings).pid() not in (None, broker_pid) and kafka.healthy(settings)
        assert (settings.data_dir / "kafka" / "log" / "meta.properties").read_text() == log_dir_before
        assert running.alive(), "the job died in the broker restart: " + (tmp_path / "job.log").read_text()[-3000:]
        producer.wait(timeout=DELIVERY_TIMEOUT_S + 300)
        out = produce_log.read_text(errors="replace")
        assert at_stop < EVENTS, "every record was in Kafka before the broker stopped: lower RATE"

        summary = json.loads(summary_path.read_text())
        in_topic = records_in(settings, job.source_topic)
        if producer.returncode == 0:  # the idempotent producer wrote each record exactly once across the restart
            assert (summary["acked"], summary["failed"], in_topic) == (EVENTS, 0, EVENTS), (summary, in_topic)
        else:  # it gave up on some records: it must say how many, count every record once, and the topic holds
            # exactly the acknowledged ones (a record reported failed is not in Kafka; the lake is checked below)
            assert producer.returncode == 1 and summary["failed"] == EVENTS - summary["acked"] > 0, \
                (summary, out[-2000:])
            assert summary["sent"] == summary["acked"] + summary["failed"], summary
            assert f"failed {summary['failed']:,}" in out, out[-2000:]
            assert in_topic == summary["acked"], (summary, in_topic)

        closing = close_windows(settings, job.source_topic, EVENTS, t0 + CLOSE_MS, PARTITIONS)
        total = in_topic + closing

        wait_for(lambda: exact_raw_counts(settings)[0] >= total or not running.alive(), 900, "job caught up", every=2)
        assert running.alive(), (tmp_path / "job.log").read_text()[-3000:]
        # one more checkpoint: the window results fired by the last watermark are flushed to Kafka with it
        last = faults.completed_checkpoints(checkpoints)[-1]
        faults.wait_for_checkpoint(checkpoints, running, timeout=120, after=int(last.name.split("-")[1]))
        assert running.alive(), (tmp_path / "job.log").read_text()[-3000:]
        failovers = faults.job_failovers(running)
        logged = faults.logged_checkpoints(running)
    finally:
        if producer is not None:
            stop_process_group(producer)
        running.kill9()

    assert failovers == 0, f"the job failed over {failovers} time(s) in the broker restart: the README says it does not"
    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total)  # the lake: every acknowledged event once, plus the closing events
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0

    scratch = load_aggregates(replace(chdb_scratch, kafka_bootstrap=settings.kafka_bootstrap), job)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == in_topic
    assert kafka.healthy(services), "the shared broker must be untouched"
    during = [c.number for c in logged if bounce.covers(c.at)]
    longest = max(logged, key=lambda c: c.duration_ms)
    print(f"broker stopped at {time.strftime('%H:%M:%S', time.localtime(bounce.began))} with {at_stop} of {EVENTS} "
          f"records in Kafka: stop {bounce.stop_s:.1f}s, down {bounce.down_s:.1f}s, start {bounce.start_s:.1f}s; "
          f"producer acked {summary['acked']} failed {summary['failed']} in {summary['elapsed_s']:.1f}s, "
          f"{in_topic} in the topic; job failovers {failovers}; checkpoints completed meanwhile {during}, longest "
          f"#{longest.number} {longest.duration_ms} ms; lake {rows} rows, {distinct} distinct; "
          f"reconcile OK over {result.events_scanned} events")
