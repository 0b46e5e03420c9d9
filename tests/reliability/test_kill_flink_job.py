"""Fault: the Flink job (its mini-cluster process) is killed with SIGKILL mid-run and started again with the same
flags and nothing else, as a user (or ./run.sh) would: it resumes from its own last retained checkpoint by itself.

Invariants, with a known number N of produced events:
- lake.user_actions holds exactly N rows with N distinct event_ids (nothing lost, nothing twice);
- ClickHouse's deduplicated aggregates equal the reconciliation from the lake (windows re-emitted after the
  restore replace the earlier rows, they do not add to them).
Paimon commits on checkpoints, so the restart must restore from the checkpoint, not from the Kafka group offsets
alone: the job finds its newest retained checkpoint under its consumer group's folder (flink_job/checkpoints.py)
and says so in one line. The job runs unbounded, as in production (a restored *bounded* Kafka source never
signals its end: FLINK-31006, open in connector 4.0.1); it is stopped once it has committed everything, and
one later event per partition closes the windows that are compared.

The events arrive at a steady rate while the first job runs, and the job is killed right after its first
checkpoint that committed rows to Paimon: it has then read, written and aggregated records that no checkpoint
covers, whatever the speed of the box. Every wait is on a condition (a checkpoint in the job's log, the row
count of Paimon's latest snapshot), bounded, and a timeout says what was seen.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from base.config import Settings
from local_services import kafka
from scripts import faults
from tests.reliability.conftest import (
    close_windows,
    create_topics,
    day_ago_slot,
    exact_raw_counts,
    job_for,
    lake_rows,
    lake_table,
    load_aggregates,
    reconcile_job,
    start_producer,
    stop_process_group,
)

# slow: two job start-ups (up to 2 min each on this 2-core box when other work loads it) and a minute of paced
# production: 3.5-5 min in all at load average 10-23.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

EVENTS = 25_000
RATE = 400  # events/s: about a minute of production, so the kill lands while records still arrive
PARTITIONS = 3
CLOSE_MS = 8 * 3_600_000  # the produced events span well under this (checked by the reconcile count)
CHECKPOINT_INTERVAL = "5 s"  # Paimon commits on every checkpoint: short, but not back to back under load

# Bounded waits, generous for a loaded box (other Flink jobs may share the 2 cores).
JOB_START_TIMEOUT = 300  # job process start -> first completed checkpoint (all tasks running)
FIRST_COMMIT_TIMEOUT = 240  # production start -> first rows committed to Paimon
PRODUCER_TIMEOUT = EVENTS / RATE + 240
CATCH_UP_TIMEOUT = 600  # restored job: every row committed
CHECKPOINT_TIMEOUT = 180
LOADER_TIMEOUT = 300
# Longer than the bounded waits above together, so a wait that runs out says what it waited for (pytest-timeout's
# default of 900 s would stop the test first, with a stack trace instead).
pytestmark.append(pytest.mark.timeout(2 * JOB_START_TIMEOUT + FIRST_COMMIT_TIMEOUT + PRODUCER_TIMEOUT
                                      + CATCH_UP_TIMEOUT + CHECKPOINT_TIMEOUT + LOADER_TIMEOUT + 180))

def newest_checkpoint(job: faults.JobProcess) -> int:
    return max((c.number for c in faults.logged_checkpoints(job)), default=0)


def committed_rows(settings: Settings) -> int:
    """Rows of lake.user_actions in Paimon's latest snapshot, from metadata only (cheap enough to poll).

    Appends only: compaction rewrites files but keeps the total. 0 before the job created the table.
    """
    from pypaimon.catalog.catalog_exception import TableNotExistException

    try:
        snapshots = lake_table(settings, "user_actions").snapshot_manager()
    except TableNotExistException:
        return 0
    latest = snapshots.get_latest_snapshot()
    if latest is None:
        return 0
    while (newer := snapshots.get_snapshot_by_id(latest.id + 1)) is not None:  # the LATEST hint may lag
        latest = newer
    return latest.total_record_count


def wait_until(check: Callable[[], bool], timeout: float, what: str, state: Callable[[], str],
               every: float = 1.0) -> float:
    """Poll ``check`` until true; returns the seconds it took. On timeout, fail with what was seen."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}; seen: {state()}")
        time.sleep(every)
    return time.monotonic() - start


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def test_kill_9_mid_run_then_a_plain_restart_resumes_from_its_checkpoint_and_loses_nothing(
        services, unique_name, tmp_path, chdb_scratch) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh", data_dir=tmp_path / "data")
    checkpoints = tmp_path / "checkpoints"
    job = job_for(unique_name, checkpoint_interval=CHECKPOINT_INTERVAL, checkpoint_dir=checkpoints.as_uri(),
                  parallelism=2, bounded=False)
    create_topics(services, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()
    total = EVENTS + PARTITIONS  # + one closing event per partition
    took: dict[str, float] = {}
    first: faults.JobProcess | None = None
    second: faults.JobProcess | None = None
    producer: subprocess.Popen | None = None

    def seen(job_proc: faults.JobProcess | None) -> str:
        done = faults.logged_checkpoints(job_proc) if job_proc else []
        return (f"{committed_rows(settings):,} of {total:,} rows committed; checkpoints completed "
                f"{[c.number for c in done]}; job alive {job_proc.alive() if job_proc else None}; producer "
                f"{'running' if producer and producer.poll() is None else 'done'}; job log tail:\n"
                + (log_tail(job_proc.log) if job_proc else ""))

    try:
        # 1. The job starts on the empty topic; its first checkpoint means every task runs.
        first = faults.start_job(settings, job, tmp_path / "job-1.log")
        took["job 1 start-up"] = wait_until(lambda: bool(faults.logged_checkpoints(first)) or not first.alive(),
                                            JOB_START_TIMEOUT, "job 1's first checkpoint", lambda: seen(first))
        assert first.alive(), seen(first)

        # 2. Records arrive at RATE; kill -9 right after the first checkpoint that committed rows to Paimon.
        producer = start_producer(services, job.source_topic, EVENTS, RATE, t0 + 60_000,  # (+1 min: clear of jitter)
                                  tmp_path / "produce.log", tmp_path / "produce.json")
        took["production start -> first commit"] = wait_until(
            lambda: committed_rows(settings) > 0 or not first.alive(), FIRST_COMMIT_TIMEOUT,
            "job 1 to commit rows to Paimon", lambda: seen(first), every=0.2)
        assert first.alive(), seen(first)
        first.kill9()
        committed_at_kill = committed_rows(settings)
        producing_at_kill = producer.poll() is None
        in_topic_after_kill = kafka.end_offsets(services, job.source_topic)
        # killed while events still arrive: the producer runs and the topic is still short of them after the kill
        assert producing_at_kill and in_topic_after_kill < EVENTS, \
            (producing_at_kill, in_topic_after_kill, log_tail(tmp_path / "produce.log"))
        done = faults.logged_checkpoints(first)
        assert done, seen(first)
        checkpoint = done[-1].path(checkpoints)
        assert (checkpoint / "_metadata").exists(), f"{checkpoint} is not retained: {list(checkpoints.rglob('*'))}"
        assert committed_at_kill < EVENTS, f"all {committed_at_kill} rows were committed before the kill: lower RATE"

        # 3. Start the same job again, no --restore-from, while records may still arrive: it finds the checkpoint.
        t_restart, restarted_at = time.monotonic(), time.time()
        second = faults.start_job(settings, job, tmp_path / "job-2.log")
        wait_until(lambda: "job: resuming from" in log_tail(second.log) or not second.alive(), JOB_START_TIMEOUT,
                   "the restarted job to say where it resumes from", lambda: seen(second))
        assert (f"job: resuming from the latest retained checkpoint of consumer group {job.group_id}: "
                f"{checkpoint.as_uri()} ") in log_tail(second.log), log_tail(second.log)
        try:
            rc = producer.wait(PRODUCER_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the producer did not finish within {PRODUCER_TIMEOUT:.0f} s: "
                                 f"{log_tail(tmp_path / 'produce.log')}") from None
        produced = json.loads((tmp_path / "produce.json").read_text())
        assert rc == 0 and produced["acked"] == EVENTS and produced["failed"] == 0, \
            (rc, produced, log_tail(tmp_path / "produce.log"))
        close_windows(services, job.source_topic, EVENTS, t0 + CLOSE_MS, PARTITIONS)

        wait_until(lambda: committed_rows(settings) >= total or not second.alive(), CATCH_UP_TIMEOUT,
                   f"the restored job to commit all {total:,} rows", lambda: seen(second), every=2)
        took["restart -> all rows committed"] = time.monotonic() - t_restart
        assert second.alive(), seen(second)
        # Two more checkpoints: the windows fired by the closing events' watermark are flushed to Kafka with them.
        last = newest_checkpoint(second)
        wait_until(lambda: newest_checkpoint(second) >= last + 2 or not second.alive(),
                   CHECKPOINT_TIMEOUT, f"checkpoint {last + 2} of the restored job", lambda: seen(second))
        assert second.alive(), seen(second)
        restored_checkpoints = faults.logged_checkpoints(second)
        took["restart -> restored job's first checkpoint"] = restored_checkpoints[0].at - restarted_at
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill9()
        if producer is not None:
            stop_process_group(producer)

    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total), \
        f"lake rows {rows:,}, distinct event_ids {distinct:,}, expected {total:,}; " \
        f"committed at kill {committed_at_kill:,}"
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0

    t_load = time.monotonic()
    scratch = load_aggregates(chdb_scratch, job, timeout=LOADER_TIMEOUT)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    took["load + reconcile"] = time.monotonic() - t_load
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == EVENTS

    durations = sorted(c.duration_ms for c in done + restored_checkpoints)
    print(f"killed after checkpoint {done[-1].number} with {committed_at_kill:,} of {total:,} rows committed "
          f"(producer still running, {in_topic_after_kill:,} events in Kafka just after); restored: {rows:,} rows, "
          f"{distinct:,} distinct; reconcile OK over {result.events_scanned:,} events")
    print(f"checkpoints: job 1 {len(done)}, restored job {len(restored_checkpoints)}; duration ms median "
          f"{durations[len(durations) // 2]}, max {durations[-1]}")
    print("took: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
