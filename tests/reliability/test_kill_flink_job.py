"""Fault: the Flink job (its mini-cluster process) is killed with SIGKILL mid-run and restarted from its last
retained checkpoint.

Invariants, with a known number N of produced events:
- lake.user_actions holds exactly N rows with N distinct event_ids (nothing lost, nothing twice);
- ClickHouse's deduplicated aggregates equal the reconciliation from the lake (windows re-emitted after the
  restore replace the earlier rows, they do not add to them).
Paimon commits on checkpoints, so the restart restores from the checkpoint (``--restore-from``), not from the
Kafka group offsets alone. The job runs unbounded, as in production (a restored *bounded* Kafka source never
signals its end: FLINK-31006, open in connector 4.0.1); it is stopped once it has committed everything, and
one later event per partition closes the windows that are compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from pipeline.config import PROJECT_ROOT
from producer.action_types import ACTION_TYPES
from scripts import faults
from tests.reliability.conftest import (
    create_topics,
    day_ago_slot,
    encode,
    event,
    exact_raw_counts,
    job_for,
    lake_rows,
    load_aggregates,
    produce,
    reconcile_job,
    wait_for,
)

# slow: two job start-ups and 100k events; several minutes when other work loads this 2-core box.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

EVENTS = 100_000
PARTITIONS = 3
CLOSE_MS = 8 * 3_600_000  # the produced events span well under this (checked by the reconcile count)


def produce_with_cli(settings, topic: str, count: int, start_ms: int, tmp_path, extra: tuple[str, ...] = ()) -> dict:
    """``pipeline produce`` as a user runs it; returns its JSON summary (every record acknowledged)."""
    summary = tmp_path / f"produce-{topic}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "--kafka-bootstrap", settings.kafka_bootstrap, "produce",
         "--topic", topic, "--count", str(count), "--users", "20000", "--seed", "8", "--start-time", str(start_ms),
         "--sim-rate", "50", "--backend", "confluent", "--quiet", "--summary-json", str(summary), *extra],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(summary.read_text())
    assert result["acked"] == count and result["failed"] == 0, result
    return result


def test_kill_9_mid_run_then_restore_from_checkpoint_loses_and_duplicates_nothing(
        services, unique_name, tmp_path, chdb_scratch) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh", data_dir=tmp_path / "data")
    checkpoints = tmp_path / "checkpoints"
    # Unbounded, as in production: a restored bounded Kafka source never signals its end (FLINK-31006), and its
    # finished splits stop emitting watermarks, so the last windows would never fire.
    job = job_for(unique_name, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri(), parallelism=2,
                  bounded=False)
    create_topics(services, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()
    produce_with_cli(services, job.source_topic, EVENTS, t0 + 60_000, tmp_path)  # (+1 min: clear of jitter)
    # One later event per partition moves the watermark past every window before CLOSE_MS, so they all fire.
    closing = [event(EVENTS + p, 1 + p, ACTION_TYPES[0], t0 + CLOSE_MS) for p in range(PARTITIONS)]
    for p, e in enumerate(closing):
        produce(services, job.source_topic, [encode(e)], partition=p)
    total = EVENTS + len(closing)

    first = faults.start_job(settings, job, tmp_path / "job-1.log")
    try:
        checkpoint = faults.wait_for_checkpoint(checkpoints, first, timeout=180, after=1)
        assert first.alive(), "the job finished before it could be killed mid-run: raise EVENTS"
    finally:
        first.kill9()
    committed_at_kill, _ = exact_raw_counts(settings)
    assert committed_at_kill < total, "everything was committed before the kill: raise EVENTS"

    second = faults.start_job(settings, replace(job, restore_from=str(checkpoint)), tmp_path / "job-2.log")
    try:
        wait_for(lambda: exact_raw_counts(settings)[0] >= total or not second.alive(), 900, "restored job caught up",
                 every=2)
        assert second.alive(), (tmp_path / "job-2.log").read_text()[-3000:]
        # one more checkpoint: the window results fired by the last watermark are flushed to Kafka with it
        last = faults.completed_checkpoints(checkpoints)[-1]
        faults.wait_for_checkpoint(checkpoints, second, timeout=60, after=int(last.name.split("-")[1]))
    finally:
        second.kill9()

    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total), f"committed at kill: {committed_at_kill}"
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0

    scratch = load_aggregates(chdb_scratch, job)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == EVENTS
    print(f"killed after {checkpoint.name} with {committed_at_kill} of {total} rows committed; "
          f"restored: {rows} rows, {distinct} distinct; reconcile OK over {result.events_scanned} events")
