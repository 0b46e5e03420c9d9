"""The service as a background process with a PID file, and the `pipeline clickhouse` CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from dataclasses import replace

import pytest

from base.config import PROJECT_ROOT
from clickhouse import service_process

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "DASHBOARD_PORT": str(settings.dashboard_port)}
    env.pop("CLICKHOUSE_URL", None)
    return subprocess.run([sys.executable, "-m", "pipeline", "clickhouse", *args], capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=120)


@pytest.fixture
def own_settings(settings, tmp_path):
    # Its own DATA_DIR (so its own chDB directory) and port: never the demo's.
    return replace(settings, data_dir=tmp_path, dashboard_port=free_port(), clickhouse_url=None)


def test_start_status_stop_by_pid_file(own_settings):
    s = own_settings
    try:
        line = service_process.start(s, extra_args=["--no-loader"])
        assert "started" in line
        pid = service_process.process(s).pid()
        assert pid is not None and (s.run_dir / "clickhouse.pid").read_text().strip() == str(pid)
        assert "already running" in service_process.start(s, extra_args=["--no-loader"])
        status = service_process.fetch_status(s)
        assert {t["table"] for t in status["tables"]} == {
            "user_aggregations", "user_action_aggregations", "user_aggregations_realtime"}
        with urllib.request.urlopen(f"http://127.0.0.1:{s.dashboard_port}/", timeout=10) as resp:
            assert b"<canvas" in resp.read()
        # The service owns the embedded directory: the CLI refuses, with a clear line, instead of failing oddly.
        refused = cli(s, "sql", "SELECT 1")
        assert refused.returncode != 0 and "owns the embedded chDB directory" in refused.stderr
        assert "healthy" in cli(s, "status").stdout
    finally:
        assert service_process.stop(s) in ("clickhouse service stopped", "clickhouse service was not running")
    assert service_process.process(s).pid() is None
    assert "was not running" in service_process.stop(s)


def test_cli_schema_sql_and_variants(own_settings):
    s = own_settings
    applied = cli(s, "schema", "--realtime-ttl-days", "30")
    assert applied.returncode == 0, applied.stderr
    assert "schema applied" in applied.stdout
    out = cli(s, "sql", "SELECT name FROM system.tables WHERE database = 'analytics' ORDER BY name",
              "--format", "JSONEachRow")
    assert out.returncode == 0, out.stderr
    names = [json.loads(line)["name"] for line in out.stdout.splitlines()]
    assert "user_aggregations_realtime" in names and "user_aggregations_realtime_final" in names
    bad = cli(s, "sql", "SELEC nonsense")
    assert bad.returncode != 0 and "Syntax error" in bad.stderr and "Traceback" not in bad.stderr
    printed = cli(s, "schema", "--print", "--kafka-engine", "--kafka-brokers", "kafka:9092")
    assert printed.returncode == 0 and "ENGINE = Kafka" in printed.stdout
    cluster = cli(s, "schema", "--print", "--cluster", "prod")
    assert "ReplicatedReplacingMergeTree" in cluster.stdout and "Distributed('prod'" in cluster.stdout
    refused = cli(s, "schema", "--kafka-engine")
    assert refused.returncode != 0 and "need a ClickHouse server" in refused.stderr
    ttl = cli(s, "schema", "--realtime-ttl-days", "0")
    assert ttl.returncode != 0 and "realtime_ttl_days" in ttl.stderr
