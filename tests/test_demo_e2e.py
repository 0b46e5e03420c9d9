"""End to end: ./run.sh --duration runs the whole local pipeline and proves nothing was lost."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

import pytest

from pipeline.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

DASHBOARD_PORT = 18050  # not the demo's default, so a developer's running demo is left alone


def _status() -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{DASHBOARD_PORT}/api/status", timeout=3) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def test_bounded_demo_balances_and_serves_fresh_aggregates(services: Settings, tmp_path) -> None:
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DASHBOARD_PORT": str(DASHBOARD_PORT),
           "SETUP_QUIET": "1"}
    env.pop("PAIMON_WAREHOUSE", None)
    env.pop("CLICKHOUSE_URL", None)
    # 40 s at 1,000 events/s; simulated time runs 300x, so 5-minute and 2-hour windows both close.
    demo = subprocess.Popen(
        [str(PROJECT_ROOT / "run.sh"), "--duration", "40", "--rate", "1000", "--speedup", "300",
         "--invalid-fraction", "0.01", "--summary-json", str(summary_path)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    # While it runs, the dashboard API must report aggregates that keep arriving.
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 300
    while demo.poll() is None and time.monotonic() < deadline:
        status = _status()
        if status:
            seen = {t["table"]: t["rows"] for t in status["tables"]}
            latest = status.get("latest_window_end")
            if all(seen.get(t, 0) > 0 for t in ("user_aggregations_realtime", "user_aggregations")) and latest:
                break
        time.sleep(2)
    output, _ = demo.communicate(timeout=600)
    assert demo.returncode == 0, output[-3000:]
    assert seen.get("user_aggregations_realtime", 0) > 0, f"the API never showed 5-minute aggregates: {seen}"
    assert seen.get("user_aggregations", 0) > 0, f"the API never showed 2-hour aggregates: {seen}"

    summary = json.loads(summary_path.read_text())
    assert summary["ok"] is True
    assert summary["produced"] >= 30_000  # 40 s at 1,000/s, less if this box is busy
    assert summary["produced"] + summary["backlog"] == summary["raw_rows"] + summary["rejected_rows"]
    assert summary["rejected_rows"] > 0  # 1% malformed on purpose, all in the rejected table
    assert all(summary["aggregate_rows"][t] > 0 for t in ("user_aggregations", "user_action_aggregations",
                                                           "user_aggregations_realtime"))
    assert "summary" in output and "produced = raw + rejected       yes" in output
