"""The service as a background process with a PID file, and the `pipeline clickhouse` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT
from clickhouse import metrics, service_process
from local_services.process import read_pid_file
from tests.conftest import free_port

pytestmark = pytest.mark.integration


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
        # API only: it runs no DDL (a read-only user will do), so before an administrator applies the schema the
        # API says what to do
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{s.dashboard_port}/api/status", timeout=10)
        assert missing.value.code == 503 and b"run `pipeline clickhouse schema`" in missing.value.read()
        service_process.stop(s)
        assert cli(s, "schema").returncode == 0
        service_process.start(s, extra_args=["--no-loader"])
        pid = service_process.process(s).pid()
        assert pid is not None and read_pid_file(s.run_dir / "clickhouse.pid") == pid
        assert "already running" in service_process.start(s, extra_args=["--no-loader"])
        status = service_process.fetch_status(s)
        assert {t["table"] for t in status["tables"]} == {
            "user_aggregations", "user_action_aggregations", "user_aggregations_realtime"}
        with urllib.request.urlopen(f"http://127.0.0.1:{s.dashboard_port}/", timeout=10) as resp:
            assert b"<canvas" in resp.read()
        # The service owns the embedded directory: the CLI refuses, with a clear line, instead of failing oddly.
        refused = cli(s, "sql", "SELECT 1")
        assert refused.returncode == 2 and "owns the embedded chDB directory" in refused.stderr  # README: 2
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
    assert bad.returncode == 2 and "Syntax error" in bad.stderr and "Traceback" not in bad.stderr
    printed = cli(s, "schema", "--print", "--kafka-engine", "--kafka-brokers", "kafka:9092")
    assert printed.returncode == 0 and "ENGINE = Kafka" in printed.stdout
    cluster = cli(s, "schema", "--print", "--cluster", "prod")
    assert "ReplicatedReplacingMergeTree" in cluster.stdout and "Distributed('prod'" in cluster.stdout
    refused = cli(s, "schema", "--kafka-engine")
    assert refused.returncode == 2 and "need a ClickHouse server" in refused.stderr
    ttl = cli(s, "schema", "--realtime-ttl-days", "0")
    assert ttl.returncode == 2 and "realtime_ttl_days" in ttl.stderr


@pytest.fixture
def private_kafka(own_settings):
    """A broker of this test only (free ports, own DATA_DIR) holding the default aggregate topics and nothing else,
    so `load` and `serve`, which read the default topics, see exactly the records this test writes."""
    from local_services import kafka
    from scripts.faults import free_loopback_port

    s = replace(own_settings, kafka_bootstrap=f"127.0.0.1:{free_loopback_port(span=2)}")
    print(kafka.start(s))
    try:
        kafka.ensure_topics(s)
        yield s
    finally:
        print(kafka.stop(s))


def pipeline_cli(settings, *args: str, background: bool = False):
    """The `pipeline` console script as a user types it, with these settings as its environment."""
    argv = [str(Path(sys.executable).parent / "pipeline"), *args]
    env = {**os.environ, **settings.to_env()}
    env.pop("CLICKHOUSE_URL", None)
    if background:
        return subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120)


def aggregate_records(day: datetime) -> tuple[list[tuple[str, dict]], list[tuple[int, int]]]:
    """2-hour rows of users 1..3 (user 2 re-emitted: version 2 wins) and the top users FINAL must give."""
    w = day + timedelta(hours=10)
    out = []
    for user, versions in ((1, [(1, 4)]), (2, [(1, 100), (2, 9)]), (3, [(1, 6)])):
        for version, n in versions:
            out.append(("user_aggregations", {"window_start": f"{w:%Y-%m-%d %H:%M:%S}",
                                              "window_end": f"{w + timedelta(hours=2):%Y-%m-%d %H:%M:%S}",
                                              "user_id": user, "total_actions": n, "version": version}))
    return out, [(2, 9), (3, 6), (1, 4)]


def produce_all(settings, records: list[tuple[str, dict]]) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.kafka_client_config())
    for topic, value in records:
        producer.produce(topic, key=str(value["user_id"]).encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_cli_load_then_serve_as_a_user_types_them(private_kafka):
    """`pipeline clickhouse load` inserts the aggregate topics and commits its group; after it stops,
    `pipeline clickhouse sql` sees the deduplicated rows; `pipeline clickhouse serve` answers them over HTTP."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    s = private_kafka
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    records, top = aggregate_records(day)
    produce_all(s, records)

    def committed_all() -> bool:
        consumer = Consumer({**s.kafka_client_config(), "group.id": "cli-load"})
        try:
            tps = [TopicPartition("user_aggregations", p) for p in range(s.kafka_partitions)]
            tps = consumer.committed(tps, timeout=10)
            ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            return sum(max(tp.offset, 0) for tp in tps) == sum(ends) == len(records)
        except KafkaException:  # a fresh broker answers NOT_COORDINATOR until its offsets topic is ready
            return False
        finally:
            consumer.close()

    load = pipeline_cli(s, "clickhouse", "load", "--group", "cli-load", "--max-latency", "0.2", background=True)
    try:
        wait_for(committed_all, 120, "the loader to commit every record")  # committed only after the insert
    finally:
        load.send_signal(signal.SIGINT)
        try:
            out, _ = load.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # it slept through Ctrl-C: fail, and leave no loader behind
            load.kill()
            out, _ = load.communicate()
            raise AssertionError(f"`clickhouse load` still ran 60 s after SIGINT: {out[-2000:]}") from None
    assert load.returncode == 0, out
    rows = pipeline_cli(s, "clickhouse", "sql", "SELECT user_id, total_actions FROM analytics.user_aggregations "
                        "FINAL ORDER BY total_actions DESC", "--format", "JSONEachRow")
    assert rows.returncode == 0, rows.stderr
    assert [(r["user_id"], r["total_actions"]) for r in map(json.loads, rows.stdout.splitlines())] == top

    serve = pipeline_cli(s, "clickhouse", "serve", "--group", "cli-serve", "--max-latency", "0.2", background=True)
    base = f"http://127.0.0.1:{s.dashboard_port}"
    try:
        def loaded() -> bool:
            try:
                with urllib.request.urlopen(base + "/api/status", timeout=5) as resp:
                    return json.loads(resp.read())["loader"]["rows_inserted"] == len(records)
            except OSError:
                return False

        wait_for(loaded, 120, "serve's loader to insert every record")
        span = f"from={day:%Y-%m-%dT%H:%M:%SZ}&to={day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
        with urllib.request.urlopen(f"{base}/api/top-users?window=2h&{span}", timeout=10) as resp:
            users = json.loads(resp.read())["users"]
        assert [(u["user_id"], u["actions"]) for u in users] == top

        # /metrics: the work done, as Prometheus reads it. One bad record more, on another topic: a dead letter.
        produce_all(s, [("user_aggregations_realtime", {"user_id": 7, "window_start": "not a time"})])
        wait_for(lambda: scrape(base).get(("pipeline_loader_dead_letters_total",
                                           (("topic", "user_aggregations_realtime"),))) == 1, 60,
                 "the bad record to be counted as a dead letter")
        wait_for(lambda: sum(v for (name, _), v in scrape(base).items() if name == "pipeline_loader_lag_records") == 0,
                 60, "the loader's lag to return to 0")
        time.sleep(metrics.CACHE_S)  # what ClickHouse holds is read at most once per CACHE_S
        m = scrape(base)
        assert m[("pipeline_loader_rows_loaded_total", (("table", "user_aggregations"),))] == len(records)
        assert m[("pipeline_loader_rows_loaded_total", (("table", "user_aggregations_realtime"),))] == 0
        assert m[("pipeline_loader_up", ())] == 1 and m[("pipeline_clickhouse_up", ())] == 1
        assert m[("pipeline_dead_letters_stored", (("topic", "user_aggregations_realtime"),))] == 1
        # Rows stored before deduplication (`load` and `serve` each inserted the records; merges fold some): as
        # /api/status counts them
        with urllib.request.urlopen(base + "/api/status", timeout=5) as resp:
            stored = {t["table"]: t["rows"] for t in json.loads(resp.read())["tables"]}
        assert len(records) <= m[("pipeline_table_rows", (("table", "user_aggregations"),))] \
            == stored["user_aggregations"] <= 2 * len(records)
        window_end = (day + timedelta(hours=12)).timestamp()
        assert m[("pipeline_table_latest_window_end_timestamp_seconds", (("table", "user_aggregations"),))] \
            == window_end
        assert abs(m[("pipeline_table_freshness_seconds", (("table", "user_aggregations"),))]
                   - (time.time() - window_end)) < 30
        assert m[("pipeline_api_requests_total", (("endpoint", "/api/top-users"), ("status", "200")))] == 1
        assert m[("pipeline_loader_insert_duration_seconds_count", (("table", "user_aggregations"),))] >= 1
        assert ("pipeline_maintenance_last_pass_timestamp_seconds", ()) not in m  # no maintenance ran: no series
        with pytest.raises(urllib.error.HTTPError) as refused:  # read-only like the API
            urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", method="POST"), timeout=10)
        assert refused.value.code == 405
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, out


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the service's /metrics: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _text_figures(text: str) -> dict[str, tuple[int, int]]:
    """table -> (rows, parts) from the table block of `clickhouse status`'s text."""
    figures = {}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime"):
            figures[words[0]] = (int(words[1]), int(words[2]))
    return figures


def test_status_is_text_or_one_json_document_with_lsb_exit_codes(own_settings):
    """`clickhouse status`: text by default, --json one document with the same figures; exit 3 while the service is
    not running (the tables read directly), 0 while it answers, 1 while its process lives but does not answer
    (stopped with SIGSTOP). The service's own log lines follow LOG_FORMAT=json, one object per line."""
    s = own_settings
    line = f"clickhouse service: no pid file, not answering on http://127.0.0.1:{s.dashboard_port}"
    no_schema, no_schema_json = cli(s, "status"), cli(s, "status", "--json")
    assert no_schema.returncode == no_schema_json.returncode == 3, no_schema.stderr
    assert no_schema.stdout.splitlines()[0] == line and "run: pipeline clickhouse schema" in no_schema.stdout
    doc = json.loads(no_schema_json.stdout)
    assert (doc["state"], doc["service"]["pid"], doc["status"]) == ("stopped", None, None)
    assert "run: pipeline clickhouse schema" in doc["status_error"]

    assert cli(s, "schema").returncode == 0
    one = cli(s, "sql", "SELECT 1 AS one, 'a' AS letter", "--json")  # a query command's --json: one document
    assert one.returncode == 0 and json.loads(one.stdout)["data"] == [{"one": 1, "letter": "a"}], one.stdout
    stopped, stopped_json = cli(s, "status"), cli(s, "status", "--json")
    assert stopped.returncode == stopped_json.returncode == 3, stopped.stderr
    doc = json.loads(stopped_json.stdout)
    assert doc["state"] == "stopped" and doc["status_error"] is None
    assert _text_figures(stopped.stdout) == {t["table"]: (t["rows"], t["parts"]) for t in doc["status"]["tables"]}
    assert set(_text_figures(stopped.stdout)) == {"user_aggregations", "user_action_aggregations",
                                                  "user_aggregations_realtime"}

    try:
        service_process.start(replace(s, log_format="json"), extra_args=["--no-loader"])
        pid = service_process.process(s).pid()
        running, running_json = cli(s, "status"), cli(s, "status", "--json")
        assert running.returncode == running_json.returncode == 0, running.stderr
        doc = json.loads(running_json.stdout)
        assert doc["service"] == {"service": "clickhouse", "name": "clickhouse service", "pid": pid, "healthy": True,
                                  "address": f"http://127.0.0.1:{s.dashboard_port}", "state": "running"}
        assert running.stdout.splitlines()[0] == f"clickhouse service: pid {pid}, healthy on " \
                                                 f"http://127.0.0.1:{s.dashboard_port}"
        assert _text_figures(running.stdout) == {t["table"]: (t["rows"], t["parts"])
                                                 for t in doc["status"]["tables"]}
        assert f"database {doc['status']['database']}, now " in running.stdout
        assert "loader not running" in running.stdout
        os.kill(pid, signal.SIGSTOP)
        try:
            stuck, stuck_json = cli(s, "status"), cli(s, "status", "--json")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert stuck.returncode == stuck_json.returncode == 1, stuck.stdout + stuck.stderr
        doc = json.loads(stuck_json.stdout)
        assert (doc["state"], doc["service"]["pid"], doc["service"]["healthy"], doc["status"]) == (
            "unhealthy", pid, False, None)
        assert stuck.stdout.splitlines() == [
            f"clickhouse service: pid {pid}, not answering on http://127.0.0.1:{s.dashboard_port}",
            f"tables not read: {doc['status_error']}"]
    finally:
        service_process.stop(s)
    # every line of its log is one JSON object (LOG_FORMAT reached the service through its environment)
    records = [json.loads(line) for line in service_process.process(s).log_file.read_text().splitlines()]
    assert [r["message"] for r in records if r["logger"] == "clickhouse.service"][-2:] == [
        f"serving dashboard and API on http://127.0.0.1:{s.dashboard_port} (ClickHouse: chdb://{s.data_dir}/chdb)",
        "stopping"], records
