"""Positive controls of what the fault tests read from a job, on one mini-cluster job started with faults.start_job:

1. ``faults.job_failovers`` counts a real failover. Every fault test that says "no failover" asserts a count of 0
   from the job's own Flink log; this forces one and checks that it is counted, so a 0 means something. The job's
   checkpoint folder (``<root>/<group>/<job id>``) is replaced by a regular file of the same name (chmod would not
   stop root), so the next checkpoint cannot be written; with ``tolerable-failed-checkpoints=0`` that failure is a
   global failure and Flink restarts the job by its restart strategy. The folder is then put back: the job
   restores from its last checkpoint and completes checkpoints again.
2. README "Flink job": checkpoints are incremental (RocksDB uploads only new files: a checkpoint after the state
   stopped changing is smaller than the state it covers, read from the job's REST API) and retained on
   cancellation (after a cancel the last checkpoint's folder with its ``_metadata`` is still there, so a restart
   resumes from it).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from producer.action_types import ACTION_TYPES
from scripts import faults
from tests.conftest import free_port
from tests.reliability.conftest import (
    create_topics,
    day_ago_slot,
    encode,
    event,
    exact_raw_counts,
    job_for,
    produce,
    wait_for,
)

# One job start-up (up to 2 min on the loaded 2-core box), then about 30 s.
# timeout: the bounded waits together (300 + 180 + 120 + 120 + 180 + 120) and a margin, so a wait that runs out says
# what it waited for, before pytest-timeout's default 900 s would
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1_200)]

EVENTS = 2_000
USERS = 50


def rest(base: str, path: str, method: str = "GET") -> dict:
    with urllib.request.urlopen(urllib.request.Request(base + path, method=method), timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else {}


def running_job_id(base: str) -> str:
    jobs = [j["jid"] for j in rest(base, "/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
    assert len(jobs) == 1, jobs
    return jobs[0]


def completed(base: str, job_id: str) -> list[dict]:
    """The job's completed checkpoints in its REST checkpoint history, oldest first."""
    history = rest(base, f"/jobs/{job_id}/checkpoints")["history"]
    return sorted((c for c in history if c["status"] == "COMPLETED"), key=lambda c: c["id"])


def flink_log(job: faults.JobProcess) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(faults.flink_log_dir(job.log).glob("*.log*")))


def test_a_forced_failover_is_counted_and_checkpoints_are_incremental_and_retained_on_cancel(
        services, unique_name, tmp_path) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    checkpoints = tmp_path / "checkpoints"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    job = job_for(unique_name, bounded=False, parallelism=1, checkpoint_interval="2 s",
                  checkpoint_dir=checkpoints.as_uri(), state_backend=None,  # the job's default: RocksDB
                  flink_conf=(("execution.checkpointing.tolerable-failed-checkpoints", "0"),
                              ("rest.port", str(port)), ("rest.address", "127.0.0.1")))
    create_topics(settings, job, source_partitions=1, aggregate_partitions=1)
    t0 = day_ago_slot()
    # Open windows only (nothing moves the watermark past them): the state stays in RocksDB and stops changing.
    events = [encode(event(n, 1 + n % USERS, ACTION_TYPES[n % 3], t0 + 60_000 + n * 100)) for n in range(EVENTS)]
    aside: Path | None = None
    folder: Path | None = None

    running = faults.start_job(settings, job, tmp_path / "job.log")
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)
        job_id = running_job_id(base)
        # no --state-backend: the default, read back from the running job
        assert rest(base, f"/jobs/{job_id}/checkpoints/config")["state_backend"] == "EmbeddedRocksDBStateBackend"
        produce(settings, job.source_topic, events)
        wait_for(lambda: exact_raw_counts(settings)[0] == EVENTS or not running.alive(), 180, "the events committed",
                 every=1)
        assert running.alive(), flink_log(running)[-3000:]

        # Incremental: two checkpoints after the commit, the state unchanged: the later one uploads less than the
        # state it covers (a full checkpoint uploads all of it: checkpointed_size == state_size).
        first_after = max(c["id"] for c in completed(base, job_id))
        wait_for(lambda: max(c["id"] for c in completed(base, job_id)) >= first_after + 2, 120,
                 "two more checkpoints")
        later = [c for c in completed(base, job_id) if c["id"] > first_after]
        sizes = [(c["id"], c["checkpointed_size"], c["state_size"]) for c in later]
        assert any(checkpointed < state for _, checkpointed, state in sizes), \
            f"no checkpoint smaller than its state (id, checkpointed, state): {sizes}: not incremental"

        # Failover: none so far, then the checkpoint folder replaced by a file.
        assert faults.job_failovers(running) == 0, flink_log(running)[-3000:]
        newest = faults.completed_checkpoints(checkpoints)[-1]
        at_break = int(newest.name.split("-")[1])
        folder = newest.parent  # <root>/<group>/<job id>
        assert folder.name == job_id, (folder, job_id)
        aside = folder.with_name(f"{job_id}.aside")
        folder.rename(aside)
        folder.write_text("a file where the job's checkpoint folder was\n")
        wait_for(lambda: faults.job_failovers(running) >= 1 or not running.alive(), 120,
                 "Flink to fail the job over on the failed checkpoint", every=0.5)
        folder.unlink()
        aside.rename(folder)
        aside = None
        failed_over = faults.job_failovers(running)
        assert running.alive() and failed_over >= 1, flink_log(running)[-3000:]
        assert "Exceeded checkpoint tolerable failure threshold" in flink_log(running)
        # Restored from its last checkpoint (in the folder put back), it checkpoints again.
        restored = faults.wait_for_checkpoint(checkpoints, running, timeout=180, after=at_break)
        assert rest(base, f"/jobs/{job_id}")["state"] == "RUNNING"
        assert faults.job_failovers(running) >= failed_over

        # Retained on cancellation: cancel through the REST API; the last completed checkpoint stays. Checkpoints go
        # on between reading the list and the cancel (one is retained), so the one kept is the newest completed one,
        # at least as new as the last the API listed, and complete on disk.
        last = completed(base, job_id)[-1]
        rest(base, f"/jobs/{job_id}?mode=cancel", method="PATCH")
        running.wait(120)  # the driver ends with its job (and the mini-cluster with it)
        on_disk = sorted(map(str, checkpoints.rglob("chk-*")))
        retained = faults.completed_checkpoints(checkpoints)
        assert retained, f"no checkpoint retained after the cancel: {on_disk}"
        kept = retained[-1]
        assert kept.parent.name == job_id and int(kept.name.split("-")[1]) >= last["id"], \
            f"checkpoint {last['id']} (or a later one) not retained after the cancel: {on_disk}"
        assert (kept / "_metadata").is_file(), on_disk
        print(f"failovers counted {faults.job_failovers(running)}; checkpoint after the restore {restored.name}; "
              f"sizes after the commit (id, checkpointed, state) {sizes}; retained after cancel {kept.name}")
    finally:
        if aside is not None and folder is not None:  # the test failed mid-break: leave the folder as found
            folder.unlink(missing_ok=True)
            aside.rename(folder)
        running.kill9()
