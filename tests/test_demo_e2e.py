"""End to end: ./run.sh --duration runs the whole local pipeline and proves nothing was lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

# Not the demo's defaults, so a developer's running demo (or Flink cluster) is left alone.
DASHBOARD_PORT = 18050
CLUSTER_DASHBOARD_PORT = 18051
CLUSTER_REST_PORT = 18082
SERVED = ("user_aggregations_realtime", "user_aggregations")


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def _run_demo(tmp_path: Path, dashboard_port: int, flags: list[str], env_extra: dict[str, str],
              watch: Callable[[], None] = lambda: None, duration: int = 40,
              sigterm_when_served: bool = False) -> tuple[dict, dict[str, int], str]:
    """./run.sh --duration at 1,000 events/s (simulated time 300x, so 5-minute and 2-hour windows both
    close); while it runs, polls the dashboard API (and calls ``watch``). With ``sigterm_when_served`` the
    demo is stopped by SIGTERM (what Ctrl-C does) as soon as the API shows both kinds of aggregates.
    Returns the summary, the largest row counts the API showed, and the terminal output."""
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DASHBOARD_PORT": str(dashboard_port),
           "SETUP_QUIET": "1", **env_extra}
    env.pop("CLICKHOUSE_URL", None)
    if "PAIMON_WAREHOUSE" not in env_extra:
        env.pop("PAIMON_WAREHOUSE", None)
    demo = subprocess.Popen(
        [str(PROJECT_ROOT / "run.sh"), "--duration", str(duration), "--rate", "1000", "--speedup", "300",
         "--invalid-fraction", "0.01", "--summary-json", str(summary_path), *flags],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 400
    while demo.poll() is None and time.monotonic() < deadline:
        status = _get_json(f"http://127.0.0.1:{dashboard_port}/api/status")
        if status:
            rows = {t["table"]: t["rows"] for t in status["tables"]}
            seen = {t: max(n, seen.get(t, 0)) for t, n in rows.items()}
            if sigterm_when_served and all(seen.get(t, 0) > 0 for t in SERVED):
                demo.send_signal(signal.SIGTERM)  # run.sh execs the demo: this is its PID
                sigterm_when_served = False
        watch()
        time.sleep(2)
    output, _ = demo.communicate(timeout=600)
    assert demo.returncode == 0, output[-3000:]
    return json.loads(summary_path.read_text()), seen, output


def _assert_balanced(summary: dict, seen: dict[str, int], output: str, min_produced: int = 1_000) -> None:
    assert seen.get("user_aggregations_realtime", 0) > 0, f"the API never showed 5-minute aggregates: {seen}"
    assert seen.get("user_aggregations", 0) > 0, f"the API never showed 2-hour aggregates: {seen}"
    assert summary["ok"] is True
    assert summary["produced"] >= min_produced  # how many depends on the box's speed; the balance below must hold
    assert summary["produced"] + summary["backlog"] == summary["raw_rows"] + summary["rejected_rows"]
    assert summary["rejected_rows"] > 0  # 1% malformed on purpose, all in the rejected table
    assert all(summary["aggregate_rows"][t] > 0 for t in ("user_aggregations", "user_action_aggregations",
                                                           "user_aggregations_realtime"))
    assert "summary" in output and re.search(r"produced = raw \+ rejected +yes", output), output[-2000:]


def test_demo_stopped_like_ctrl_c_balances_and_serves_fresh_aggregates(services: Settings, tmp_path) -> None:
    """Stopped by a signal (SIGTERM, handled as Ctrl-C) long before its --duration: it drains, stops what it
    started and prints the same balanced summary."""
    summary, seen, output = _run_demo(tmp_path, DASHBOARD_PORT, [], {}, duration=600, sigterm_when_served=True)
    _assert_balanced(summary, seen, output, min_produced=1_000)
    assert "Ctrl-C (or SIGTERM): stopping the producer" in output and "stopped by Ctrl-C or SIGTERM" in output
    assert "clickhouse service stopped" in output and "producer stopped" in output


def test_bounded_demo_on_s3_with_a_flink_cluster(services: Settings, tmp_path, unique_name: str) -> None:
    """The demo's other modes together: warehouse on the local S3 server, job submitted with `flink run`."""
    from local_services import flink_cluster

    warehouse = f"s3://{services.s3_bucket}/{unique_name}/warehouse"
    rest = f"http://127.0.0.1:{CLUSTER_REST_PORT}"
    job_states: set[str] = set()

    def watch() -> None:
        jobs = _get_json(f"{rest}/jobs/overview") or {}
        job_states.update(j.get("state", "") for j in jobs.get("jobs", []))

    summary, seen, output = _run_demo(
        tmp_path, CLUSTER_DASHBOARD_PORT, ["--s3", "--flink-cluster"],
        {"PAIMON_WAREHOUSE": warehouse, "FLINK_REST_PORT": str(CLUSTER_REST_PORT)}, watch)
    _assert_balanced(summary, seen, output)
    assert "RUNNING" in job_states, f"the Flink web UI never listed the running job: {job_states}"
    assert f"Flink web UI   {rest}/" in output
    assert f"--warehouse {warehouse}" in output
    # Ctrl-C or the end of --duration stops the cluster the demo started.
    assert _get_json(f"{rest}/overview") is None
    cluster = flink_cluster.status(Settings.from_env({"DATA_DIR": str(tmp_path / "data")}))
    assert cluster.startswith("flink cluster: jobmanager pid None, taskmanager pid None"), cluster
