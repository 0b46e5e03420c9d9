"""scripts/faults.py's failover count: a 0 only from a log that shows the job running (no Flink needed).

The count itself is checked on a real failover in tests/reliability/test_failover_counted.py; the lines below are
what Flink 2.0's JobMaster logs there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts import faults

JOB = "061fcb46d31ed0dac59a794fb5922346"
RUNNING = (f"2026-12-03 09:30:19,001 INFO  org.apache.flink.runtime.executiongraph.ExecutionGraph       [] - Job "
           f"user-actions-pipeline ({JOB}) switched from state CREATED to RUNNING.\n")
CHECKPOINT = ("2026-12-03 09:30:23,026 INFO  org.apache.flink.runtime.checkpoint.CheckpointCoordinator    [] - "
              f"Completed checkpoint 1 for job {JOB} (79057 bytes, checkpointDuration=128 ms, "
              "finalizationTime=5 ms).\n")
GLOBAL = ("2026-12-03 09:30:44,421 INFO  org.apache.flink.runtime.jobmaster.JobMaster                 [] - "
          "7 tasks will be restarted to recover from a global failure.\n")
# DefaultScheduler's other form ("{} tasks will be restarted to recover the failed task {}."), a task's failure
TASK = ("2026-12-03 09:31:02,118 INFO  org.apache.flink.runtime.jobmaster.JobMaster                 [] - "
        "4 tasks will be restarted to recover the failed task 0a448493b4782967b150582570326227_0_0.\n")


def job_with_log(tmp_path: Path, *lines: str) -> faults.JobProcess:
    log = tmp_path / "job.log"
    if lines:
        folder = faults.flink_log_dir(log)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "flink-root-python-vm.log").write_text("".join(lines))
    return faults.JobProcess(subprocess.Popen(["true"]), log)


def test_failovers_are_counted_from_the_jobs_own_flink_log(tmp_path: Path) -> None:
    assert faults.job_failovers(job_with_log(tmp_path, RUNNING, CHECKPOINT)) == 0
    assert faults.job_failovers(job_with_log(tmp_path / "a", RUNNING, CHECKPOINT, GLOBAL, TASK, GLOBAL)) == 3


def test_no_log_or_a_job_that_never_ran_is_an_error_not_zero_failovers(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="no Flink log in .*no such folder"):
        faults.job_failovers(job_with_log(tmp_path / "none"))
    empty = job_with_log(tmp_path / "empty")
    faults.flink_log_dir(empty.log).mkdir(parents=True)
    with pytest.raises(AssertionError, match="no Flink log in"):
        faults.job_failovers(empty)
    with pytest.raises(AssertionError, match="shows the job never ran"):
        faults.job_failovers(job_with_log(tmp_path / "starting", "2026-12-03 09:30:01,000 INFO  starting\n"))
    with pytest.raises(AssertionError, match="shows the job never ran"):  # running, but not one checkpoint
        faults.job_failovers(job_with_log(tmp_path / "no-checkpoint", RUNNING))
