"""Fault: the JobManager of a standalone cluster (started as compose starts it, `pipeline flink-daemon`) dies with
kill -9 while events arrive. Without high availability its jobs die with it; the submitter compose runs,
`pipeline job --submit --watch`, finds no job once the JobManager is back and submits it again, and the job resumes
from its own newest retained checkpoint by itself (flink_job/checkpoints.py).

Invariants, with a known number N of acknowledged events: lake.user_actions holds exactly N rows, N distinct
event_ids; ClickHouse's deduplicated aggregates equal the reconciliation from the lake; the submitter submitted
exactly twice (once at the start, once after the restart: never a second job beside a running one).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT, Settings
from local_services import flink_cluster
from scripts import faults
from tests.conftest import free_port
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

# timeout: the bounded waits together (300 + 300 + 120 + 120 + 300 + 280 + 600 + 120, the loader 120) and a margin,
# so a wait that runs out says what it waited for, before pytest-timeout would
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(2_400)]

EVENTS = 20_000
RATE = 500
PARTITIONS = 2
CLOSE_MS = 8 * 3_600_000


def _rest(settings: Settings, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{settings.flink_rest}{path}", timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def _running_jobs(settings: Settings, name: str) -> list[str]:
    jobs = (_rest(settings, "/jobs/overview") or {}).get("jobs", [])
    return [j["jid"] for j in jobs if j["name"] == name and j["state"] == "RUNNING"]


def _completed_checkpoints(settings: Settings, job_id: str) -> int:
    return ((_rest(settings, f"/jobs/{job_id}/checkpoints") or {}).get("counts") or {}).get("completed", 0)


def test_kill_9_of_the_jobmanager_then_the_submitter_resumes_the_job_from_its_checkpoint(
        services: Settings, unique_name: str, tmp_path: Path, chdb_scratch: Settings) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh", data_dir=tmp_path / "data",
                       flink_rest_port=free_port())
    # The checkpoint root is the cluster's (its execution.checkpointing.dir under DATA_DIR): the job is given none.
    job = job_for(unique_name, bounded=False, checkpoint_interval="2 s", parallelism=None, job_name=unique_name)
    create_topics(settings, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()
    submitter_log = tmp_path / "submitter.log"
    print(flink_cluster.start(settings, taskmanagers=1))
    submitter: subprocess.Popen | None = None
    producer: subprocess.Popen | None = None
    try:
        with open(submitter_log, "ab") as out:  # exactly the compose service's command
            submitter = subprocess.Popen(
                [str(Path(sys.executable).parent / "pipeline"), "job", "--submit", "--watch", "3", *job.to_argv()],
                cwd=PROJECT_ROOT, env={**os.environ, **settings.to_env()}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for(lambda: len(_running_jobs(settings, job.job_name)) == 1, 300, "the submitted job running")
        (first_id,) = _running_jobs(settings, job.job_name)
        wait_for(lambda: _completed_checkpoints(settings, first_id) >= 1, 300, "the job's first checkpoint")

        producer = start_producer(settings, job.source_topic, EVENTS, RATE, t0 + 60_000, tmp_path / "produce.log",
                                  tmp_path / "produce.json")
        wait_for(lambda: records_in(settings, job.source_topic) >= EVENTS // 4, 120, "a quarter of the events")
        checkpoints_before = _completed_checkpoints(settings, first_id)
        wait_for(lambda: _completed_checkpoints(settings, first_id) >= checkpoints_before + 1, 120,
                 "a checkpoint with records")
        faults.kill9(flink_cluster.jobmanager(settings).pid())
        producing, at_kill = producer.poll() is None, records_in(settings, job.source_topic)
        killed_at = time.monotonic()

        print(flink_cluster.start(settings, taskmanagers=1))  # the JobManager again; the TaskManager re-registers
        wait_for(lambda: len(_running_jobs(settings, job.job_name)) == 1, 300, "the submitter's second job running")
        (second_id,) = _running_jobs(settings, job.job_name)
        resumed_after = time.monotonic() - killed_at
        assert second_id != first_id
        rc = producer.wait(EVENTS / RATE + 240)
        produced = json.loads((tmp_path / "produce.json").read_text())
        assert rc == 0 and produced["acked"] == EVENTS and produced["failed"] == 0, produced
        total = EVENTS + close_windows(settings, job.source_topic, EVENTS, t0 + CLOSE_MS, PARTITIONS)
        wait_for(lambda: exact_raw_counts(settings)[0] >= total, 600, "the resumed job to commit every row", every=2)
        done = _completed_checkpoints(settings, second_id)
        wait_for(lambda: _completed_checkpoints(settings, second_id) >= done + 2, 120,
                 "two more checkpoints: the last windows' results flushed")
    finally:
        for proc in (submitter, producer):
            if proc is not None:
                stop_process_group(proc)
        print(flink_cluster.stop(settings))

    assert producing and at_kill < EVENTS, f"killed after production ended ({at_kill:,} in Kafka): lower RATE"
    log = submitter_log.read_text()
    resumed = re.findall(r"job: resuming from the latest retained checkpoint of consumer group (\S+): (\S+)", log)
    assert len(resumed) == 1 and resumed[0][0] == f"{job.group_id}", log[-3000:]
    assert f"/{job.group_id}/{first_id}/chk-" in resumed[0][1], (resumed, first_id)
    assert log.count("Job has been submitted with JobID") == 2, log[-3000:]  # never a second job beside one
    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total), f"lake rows {rows:,}, distinct {distinct:,}, expected {total:,}"
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0
    scratch = load_aggregates(chdb_scratch, job)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == EVENTS
    print(f"JOBMANAGER kill -9 with {at_kill:,} of {EVENTS:,} in Kafka: the submitter's job running again "
          f"{resumed_after:.1f} s later from {resumed[0][1]}; lake {rows:,} = acknowledged {EVENTS:,} + {PARTITIONS} "
          f"closing, duplicated {rows - distinct}; reconcile OK over {result.events_scanned:,} events")
