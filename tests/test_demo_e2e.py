"""End to end: ./run.sh --duration runs the whole local pipeline and proves nothing was lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
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


def _raw_topic_offsets(settings: Settings) -> dict[int, tuple[int, int]]:
    """Per partition of the raw topic: (where the job's consumer group resumes, the end offset)."""
    from confluent_kafka import Consumer, TopicPartition

    from base.contract import RAW_TOPIC
    from flink_job.job_config import JobConfig

    consumer = Consumer({**settings.kafka_client_config(), "group.id": JobConfig().group_id,
                         "enable.auto.commit": False})
    try:
        parts = sorted(consumer.list_topics(RAW_TOPIC, timeout=10).topics[RAW_TOPIC].partitions)
        out = {}
        for tp in consumer.committed([TopicPartition(RAW_TOPIC, p) for p in parts], timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            out[tp.partition] = (tp.offset if tp.offset >= 0 else low, high)
        return out
    finally:
        consumer.close()


def _assert_lake_holds_each_record_once(settings: Settings, before: dict[int, tuple[int, int]],
                                        summary: dict) -> None:
    """From the lake itself, not the demo's summary: raw + rejected hold every record the job was due to read,
    (partition, offset) by (partition, offset), each exactly once, and as many as the producer acknowledged plus
    the earlier backlog; raw event ids are distinct."""
    from tests.reliability.conftest import lake_rows

    after = _raw_topic_offsets(settings)
    expected = sorted((p, o) for p, (start, _) in before.items() for o in range(start, after[p][1]))
    raw = lake_rows(settings, "user_actions", ["event_id", "kafka_partition", "kafka_offset"])
    rejected = lake_rows(settings, "user_actions_rejected", ["kafka_partition", "kafka_offset"])
    landed = sorted(zip(raw.column("kafka_partition").to_pylist() + rejected.column("kafka_partition").to_pylist(),
                        raw.column("kafka_offset").to_pylist() + rejected.column("kafka_offset").to_pylist(),
                        strict=True))
    assert landed == expected, f"{len(landed)} records in the lake, {len(expected)} in the topic since the start"
    assert len(landed) == summary["produced"] + summary["backlog"]  # the producer's own acknowledged count
    assert len(set(raw.column("event_id").to_pylist())) == raw.num_rows
    assert rejected.num_rows > 0  # 1% malformed on purpose


def _pipeline(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    env.pop("CLICKHOUSE_URL", None)
    return subprocess.run([str(Path(sys.executable).parent / "pipeline"), *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_clickhouse_holds_the_aggregates(settings: Settings) -> None:
    """ClickHouse read directly (the demo's chDB, once its service has stopped): every aggregate table has rows.

    Not `pipeline lake reconcile`: the demo uses the broker's default aggregate topics and the loader's default
    group, shared with every other run on the broker, so its ClickHouse also holds other runs' windows (the
    kill-the-service test's rows three days back, another demo's at overlapping simulated times), and it stops
    its loader three seconds after the lake has drained, so the newest windows may be half loaded. Reconcile
    over closed windows is asserted where the topics are private: tests/reliability (kill -9 of the job, S3
    outage, broker restart, late events)."""
    counts = _pipeline(settings, "clickhouse", "sql", " UNION ALL ".join(
        f"SELECT '{t}', count() FROM analytics.{t} FINAL" for t in ("user_aggregations", "user_action_aggregations",
                                                                     "user_aggregations_realtime")),
        "--format", "TSV")
    assert counts.returncode == 0, counts.stderr
    rows = dict(line.split("\t") for line in counts.stdout.strip().splitlines())
    assert len(rows) == 3 and all(int(n) > 0 for n in rows.values()), rows


def _run_demo(tmp_path: Path, dashboard_port: int, flags: list[str], env_extra: dict[str, str],
              watch: Callable[[], None] = lambda: None, duration: int = 40,
              sigterm_when_served: bool = False, *, services: Settings) -> tuple[dict, dict[str, int], str]:
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
    demo_settings = replace(services, data_dir=(tmp_path / "data").resolve(), dashboard_port=dashboard_port,
                            clickhouse_url=None, paimon_warehouse=env_extra.get(
                                "PAIMON_WAREHOUSE", f"file://{(tmp_path / 'data').resolve()}/warehouse"))
    offsets_before = _raw_topic_offsets(demo_settings)  # before the demo: where its job resumes
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
    summary = json.loads(summary_path.read_text())
    _assert_lake_holds_each_record_once(demo_settings, offsets_before, summary)
    _assert_clickhouse_holds_the_aggregates(demo_settings)
    return summary, seen, output


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
    summary, seen, output = _run_demo(tmp_path, DASHBOARD_PORT, [], {}, duration=600, sigterm_when_served=True,
                                      services=services)
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
        {"PAIMON_WAREHOUSE": warehouse, "FLINK_REST_PORT": str(CLUSTER_REST_PORT)}, watch, services=services)
    _assert_balanced(summary, seen, output)
    assert "RUNNING" in job_states, f"the Flink web UI never listed the running job: {job_states}"
    assert f"Flink web UI   {rest}/" in output
    assert f"--warehouse {warehouse}" in output
    # Ctrl-C or the end of --duration stops the cluster the demo started.
    assert _get_json(f"{rest}/overview") is None
    cluster = flink_cluster.status(Settings.from_env({"DATA_DIR": str(tmp_path / "data")}))
    assert cluster.startswith("flink cluster: jobmanager pid None, taskmanager pid None"), cluster
