"""Fault: the S3 server under the Paimon warehouse (PAIMON_WAREHOUSE=s3://...) is stopped by its PID file for
15 s while the streaming job writes, then started again on the same port and data directory.

Invariants, with a known number N of events acknowledged by ``pipeline produce``:
- the job survives the outage without a restart by the test: Paimon's S3 file IO (Hadoop S3A) retries the
  refused requests, or, if its retries run out, Flink's restart strategy restores the last checkpoint;
- after S3 is back, lake.user_actions holds exactly N rows with N distinct event_ids (nothing lost, nothing
  twice; Paimon commits once per checkpoint), nothing rejected;
- ClickHouse's deduplicated aggregates equal the reconciliation from the lake.
Observed on this box: S3A's retries cover a 15 s outage, so the job never fails over; the checkpoint in flight
simply completes ~25-30 s after it was triggered, once its data files reach S3.
The S3 server is a private versitygw (local_services/s3.py on a free port, data under tmp_path), so stopping it
never disturbs the shared one that other tests use. Checkpoints stay on the local disk (only the warehouse is on
S3). The job runs unbounded (FLINK-31006); one later event per partition closes the windows that are compared.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace

import pytest

from local_services import s3
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

# slow: a job start-up on S3, a 15 s outage and the recovery; a few minutes on the loaded 2-core box.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

EVENTS = 30_000
RATE = 1_000  # events/s: production spans ~30 s, so the job writes to S3 across the outage
PARTITIONS = 3
CLOSE_MS = 8 * 3_600_000
DOWN_S = 15.0
# The bounded waits together (checkpoint 300, first rows 240, outage ~120, producer 600, catch-up 900, checkpoint
# 120, loader 120) and a margin: a wait that runs out says what it waited for, before pytest-timeout would.
pytestmark.append(pytest.mark.timeout(2_500))


@pytest.fixture
def private_s3(services, tmp_path, unique_name):
    """A versitygw of this test only, on a free loopback port, stopped by its PID file at the end."""
    port = faults.free_loopback_port()
    settings = replace(services, s3_endpoint=f"http://localhost:{port}", data_dir=tmp_path / "data",
                       paimon_warehouse=f"s3://user-actions-paimon/{unique_name}")
    print(s3.start(settings))
    yield settings
    print(s3.stop(settings))


def raw_rows(settings) -> int:
    try:
        return exact_raw_counts(settings)[0]
    except Exception:  # table not created yet, or S3 not answering
        return 0


def test_s3_outage_mid_run_loses_and_duplicates_nothing(services, private_s3, unique_name, tmp_path,
                                                        chdb_scratch) -> None:
    settings = private_s3
    checkpoints = tmp_path / "checkpoints"
    job = job_for(unique_name, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri(), parallelism=2,
                  bounded=False)
    create_topics(settings, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()

    running = faults.start_job(settings, job, tmp_path / "job.log")
    producer: subprocess.Popen | None = None
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)
        summary_path, produce_log = tmp_path / "produce.json", tmp_path / "produce.log"
        producer = start_producer(settings, job.source_topic, EVENTS, RATE, t0 + 60_000, produce_log, summary_path,
                                  seed=9)
        wait_for(lambda: raw_rows(settings) > 0, 240, "first rows committed to the S3 warehouse", every=1)
        at_stop = raw_rows(settings)
        s3_pid = s3.process(settings).pid()
        at_stop_call: dict[str, object] = {}

        def stop_while_producing() -> str:
            # the outage overlaps production: the producer still runs and the topic is short of its events
            at_stop_call.update(producing=producer.poll() is None, in_topic=records_in(settings, job.source_topic))
            return s3.stop(settings)

        bounce = faults.outage(stop_while_producing, lambda: s3.start(settings), DOWN_S)
        assert at_stop_call["producing"] and at_stop_call["in_topic"] < EVENTS, \
            (at_stop_call, produce_log.read_text(errors="replace")[-2000:])
        assert s3.process(settings).pid() not in (None, s3_pid) and s3.healthy(settings)
        assert running.alive(), "the job died in the S3 outage: " + (tmp_path / "job.log").read_text()[-3000:]

        producer.wait(timeout=600)
        assert producer.returncode == 0, produce_log.read_text(errors="replace")[-2000:]
        summary = json.loads(summary_path.read_text())
        assert (summary["acked"], summary["failed"]) == (EVENTS, 0), summary
        assert at_stop < EVENTS, "everything was committed before the outage: raise EVENTS or lower RATE"

        closing = close_windows(settings, job.source_topic, EVENTS, t0 + CLOSE_MS, PARTITIONS)
        total = EVENTS + closing

        wait_for(lambda: raw_rows(settings) >= total or not running.alive(), 900, "job caught up after S3", every=2)
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

    assert failovers == 0, f"the job failed over {failovers} time(s) in the S3 outage: the README says it rides it out"
    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total), f"committed before the outage: {at_stop}"
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0

    scratch = load_aggregates(chdb_scratch, job)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == EVENTS
    during = [c.number for c in logged if bounce.covers(c.at)]
    longest = max(logged, key=lambda c: c.duration_ms)
    print(f"S3 stopped at {time.strftime('%H:%M:%S', time.localtime(bounce.began))} with {at_stop} rows "
          f"committed and {at_stop_call['in_topic']:,} of {EVENTS:,} events in Kafka, the producer running: "
          f"stop {bounce.stop_s:.1f}s, down {bounce.down_s:.1f}s, start {bounce.start_s:.1f}s; job "
          f"alive after it; failovers {failovers}; checkpoints completed meanwhile {during}, "
          f"longest #{longest.number} {longest.duration_ms} ms; lake {rows} rows, {distinct} distinct; "
          f"reconcile OK over {result.events_scanned} events")
