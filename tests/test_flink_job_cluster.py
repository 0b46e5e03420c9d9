"""`pipeline flink-cluster start --taskmanagers 2|status|stop` and `pipeline job --submit`, as a user types them: a
standalone cluster started from the apache-flink wheel's scripts runs the job with `flink run -py`, and stop leaves
no process."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from base.config import Settings
from tests.conftest import pid_running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_flink_run_submission_to_standalone_cluster_completes(services: Settings, unique_name: str, tmp_path) -> None:
    from local_services import flink_cluster
    from tests.test_flink_job import pipeline_cli, prepare_input, read_table, topics_for

    # A private DATA_DIR and REST port: this test's cluster never meets a user's.
    settings = replace(services, data_dir=tmp_path / "data", flink_rest_port=18081,
                       paimon_warehouse=f"file://{tmp_path}/wh")
    job = replace(topics_for(unique_name), parallelism=1)
    events, bad = prepare_input(settings, job)
    started = pipeline_cli(settings, "flink-cluster", "start", "--taskmanagers", "2", timeout=120)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        pids = re.fullmatch(r"flink cluster started \(jobmanager pid (\d+), taskmanager pids (\d+), (\d+)\) on "
                            r"http://127\.0\.0\.1:18081\n", started.stdout)
        assert pids, started.stdout
        jm, tm, tm2 = (int(g) for g in pids.groups())
        status = pipeline_cli(settings, "flink-cluster", "status")
        assert status.stdout == (f"flink cluster: jobmanager pid {jm}, taskmanager pids {tm}, {tm2}, healthy on "
                                 "http://127.0.0.1:18081\n"), status.stdout
        # both registered under their resource ids, 2 slots each, with the restart strategy in the cluster config
        registered = {t["id"]: t["slotsNumber"] for t in flink_cluster.registered_taskmanagers(settings)}
        assert registered == {"flink-taskmanager": 2, "flink-taskmanager-2": 2}, registered
        conf = (settings.data_dir / "flink" / "conf" / "config.yaml").read_text()
        assert "restart-strategy.type: exponential-delay" in conf
        submitted = pipeline_cli(settings, "job", "--submit", *job.to_argv())
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        job_id = re.search(r"JobID ([0-9a-f]{32})", submitted.stdout).group(1)
        deadline, state = time.monotonic() + 240, ""
        while time.monotonic() < deadline:
            state = flink_cluster.job_state(settings, job_id)
            if state in ("FINISHED", "FAILED", "CANCELED"):
                break
            time.sleep(2)
        assert state == "FINISHED"
    finally:
        stopped = pipeline_cli(settings, "flink-cluster", "stop", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "stopped flink-taskmanager-2, flink-taskmanager, flink-jobmanager\n", stopped.stdout
    assert not pid_running(jm) and not pid_running(tm) and not pid_running(tm2)
    assert pipeline_cli(settings, "flink-cluster", "status").stdout == (
        "flink cluster: jobmanager pid None, taskmanager pid None, not answering on http://127.0.0.1:18081\n")

    raw, _ = read_table(settings, "user_actions")
    rejected, _ = read_table(settings, "user_actions_rejected")
    assert sorted(raw.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)
    assert rejected.num_rows == len(bad)
