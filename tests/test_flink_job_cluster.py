"""`flink run -py` submission of the job to a standalone cluster started from the apache-flink wheel's scripts."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from base.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_flink_run_submission_to_standalone_cluster_completes(services: Settings, unique_name: str, tmp_path) -> None:
    from local_services import flink_cluster
    from tests.test_flink_job import prepare_input, read_table, topics_for

    # A private DATA_DIR and REST port: this test's cluster never meets a user's.
    settings = replace(services, data_dir=tmp_path / "data", flink_rest_port=18081,
                       paimon_warehouse=f"file://{tmp_path}/wh")
    job = replace(topics_for(unique_name), parallelism=1)
    events, bad = prepare_input(settings, job)
    print(flink_cluster.start(settings))
    try:
        out = flink_cluster.submit(settings, job)
        job_id = re.search(r"JobID ([0-9a-f]{32})", out).group(1)
        deadline, state = time.monotonic() + 240, ""
        while time.monotonic() < deadline:
            state = flink_cluster.job_state(settings, job_id)
            if state in ("FINISHED", "FAILED", "CANCELED"):
                break
            time.sleep(2)
        assert state == "FINISHED"
    finally:
        print(flink_cluster.stop(settings))
    assert flink_cluster.status(settings).startswith("flink cluster: jobmanager pid None, taskmanager pid None")

    raw, _ = read_table(settings, "user_actions")
    rejected, _ = read_table(settings, "user_actions_rejected")
    assert sorted(raw.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)
    assert rejected.num_rows == len(bad)
