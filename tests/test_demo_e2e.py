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

import pyarrow as pa
import pytest

from base.config import PROJECT_ROOT, Settings
from local_services import kafka
from local_services.process import port_open
from tests.conftest import free_port, listening_addresses, listening_ports, pid_running

# timeout: one demo's bounded waits together (run 400, stop 600, a broker start 90, the topic's ends 120, reconcile
# 300, the refusal 300) and a margin, so a wait that runs out says what it waited for, before pytest-timeout would
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2_000)]

SERVED = ("user_aggregations_realtime", "user_aggregations")


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def _raw_topic_ends(settings: Settings) -> dict[int, int]:
    """Per partition of the raw topic: its end offset, asked again while a just restarted broker answers with a
    retriable error (NOT_LEADER_FOR_PARTITION until it has loaded its partitions)."""
    from confluent_kafka import KafkaException

    from base.contract import RAW_TOPIC
    from tests.reliability.conftest import wait_for

    ends: dict[int, int] = {}

    def read() -> bool:
        try:
            ends.update(kafka.partition_ends(settings, RAW_TOPIC))
            return True
        except KafkaException:
            return False

    wait_for(read, 120, "the raw topic's end offsets", every=1)
    return ends


def _assert_lake_holds_each_record_once(settings: Settings, summary: dict) -> tuple[int, int]:
    """From the lake itself, not the demo's summary: raw + rejected hold every record of the demo's private raw
    topic, (partition, offset) by (partition, offset), each exactly once, and as many as the producer acknowledged;
    raw event ids are distinct. Returns the span of event time whose windows the job has surely closed."""
    from tests.reliability.conftest import lake_rows

    ends = _raw_topic_ends(settings)  # the broker is the demo's own: every record in it is this run's
    expected = sorted((p, o) for p, end in ends.items() for o in range(end))
    raw = lake_rows(settings, "user_actions", ["event_id", "kafka_partition", "kafka_offset", "timestamp"])
    rejected = lake_rows(settings, "user_actions_rejected", ["kafka_partition", "kafka_offset"])
    landed = sorted(zip(raw.column("kafka_partition").to_pylist() + rejected.column("kafka_partition").to_pylist(),
                        raw.column("kafka_offset").to_pylist() + rejected.column("kafka_offset").to_pylist(),
                        strict=True))
    assert landed == expected, f"{len(landed)} records in the lake, {len(expected)} in the topic"
    assert summary["backlog"] == 0 and len(landed) == summary["produced"]  # the producer's acknowledged count
    assert len(set(raw.column("event_id").to_pylist())) == raw.num_rows
    assert rejected.num_rows == summary["rejected_rows"] > 0  # 1% malformed on purpose (= the producer's count)
    return _closed_windows(raw)


def _closed_windows(raw: pa.Table) -> tuple[int, int]:
    """[first, last) epoch ms: whole 2-hour slots, from the first event's slot to the last slot the job's
    watermark had surely passed when the lake drained. The watermark is tracked per Kafka partition and is the
    smallest over them, so it was at least min(newest event time per partition) - the watermark delay (events are
    in order within 50 ms). Later windows may fire afterwards (an idle partition stops holding the watermark
    back) while the demo is stopping, so ClickHouse may hold them partly: they are left out."""
    import pyarrow.compute as pc

    from flink_job.job_config import JobConfig
    from tests.reliability.conftest import SLOT_MS

    newest = raw.group_by("kafka_partition").aggregate([("timestamp", "max")])["timestamp_max"]
    watermark = pc.min(newest).as_py() - JobConfig().watermark_delay_seconds * 1000
    first = pc.min(raw["timestamp"]).as_py() // SLOT_MS * SLOT_MS
    last = watermark // SLOT_MS * SLOT_MS
    assert last > first, "no 2-hour window closed during the demo"
    return first, last


def _pipeline(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    env.pop("CLICKHOUSE_URL", None)
    return subprocess.run([str(Path(sys.executable).parent / "pipeline"), *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_clickhouse_reconciles(settings: Settings, closed: tuple[int, int]) -> None:
    """`pipeline lake reconcile` (the real CLI, on the demo's chDB once its service has stopped) over every
    window the job has closed: the three aggregates recomputed from the lake equal ClickHouse FINAL key by key,
    and none of them is empty. Exact because the demo had a broker of its own (its aggregate topics and the
    loader's group held only this run's windows) and waited at drain until the loader had loaded every
    aggregate record (pipeline/demo.py wait_for_loader)."""
    from datetime import UTC, datetime

    first, last = (datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") for ms in closed)
    result = _pipeline(settings, "lake", "reconcile", "--from", first, "--to", last, "--max-print", "10")
    report = f"lake reconcile --from '{first}' --to '{last}':\n{result.stdout}{result.stderr}"
    assert result.returncode == 0 and "result: OK" in result.stdout, report
    matching = {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+) +windows .* matching +(\d+) +OK$", result.stdout,
                                                     re.MULTILINE)}
    assert len(matching) == 3 and all(n > 0 for n in matching.values()), report
    print(report)


def _private_bootstrap() -> str:
    """A loopback address for a broker of the demo's own (the controller takes the next port)."""
    from scripts.faults import free_loopback_port

    return f"127.0.0.1:{free_loopback_port(span=2)}"


def _run_demo(tmp_path: Path, dashboard_port: int, flags: list[str], env_extra: dict[str, str],
              watch: Callable[[], None] = lambda: None, duration: int = 40,
              sigterm_when_served: bool = False, *, services: Settings) -> tuple[dict, dict[str, int], str, Settings]:
    """./run.sh --duration at 1,000 events/s (simulated time 300x, so 5-minute and 2-hour windows both
    close) on the broker at env_extra's KAFKA_BOOTSTRAP; while it runs, polls the dashboard API (and calls
    ``watch``). With ``sigterm_when_served`` the demo is stopped by SIGTERM (what Ctrl-C does) as soon as the API
    shows both kinds of aggregates. Returns the summary, the largest row counts the API showed, the terminal
    output and the demo's settings."""
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DASHBOARD_PORT": str(dashboard_port),
           "SETUP_QUIET": "1", **env_extra}
    env.pop("CLICKHOUSE_URL", None)
    if "PAIMON_WAREHOUSE" not in env_extra:
        env.pop("PAIMON_WAREHOUSE", None)
    demo_settings = replace(services, data_dir=(tmp_path / "data").resolve(), dashboard_port=dashboard_port,
                            kafka_bootstrap=env_extra["KAFKA_BOOTSTRAP"], clickhouse_url=None,
                            paimon_warehouse=env_extra.get(
                                "PAIMON_WAREHOUSE", f"file://{(tmp_path / 'data').resolve()}/warehouse"))
    demo = subprocess.Popen(
        [str(PROJECT_ROOT / "run.sh"), "--duration", str(duration), "--rate", "1000", "--speedup", "300",
         "--invalid-fraction", "0.01", "--summary-json", str(summary_path), *flags],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: dict[str, int] = {}
    started = Started()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while demo.poll() is None and time.monotonic() < deadline:
        status = _get_json(f"http://127.0.0.1:{dashboard_port}/api/status")
        if status:
            rows = {t["table"]: t["rows"] for t in status["tables"]}
            seen = {t: max(n, seen.get(t, 0)) for t, n in rows.items()}
            if sigterm_when_served and all(seen.get(t, 0) > 0 for t in SERVED):
                demo.send_signal(signal.SIGTERM)  # run.sh execs the demo: this is its PID
                sigterm_when_served = False
        started.look(demo.pid)
        watch()
        time.sleep(2)
    output, _ = demo.communicate(timeout=STOP_TIMEOUT_S)
    (tmp_path / "demo-output.log").write_text(output)  # the whole terminal output, for a failure's post-mortem
    left = started.left_running()
    started.kill_left(left)  # so that a failure here leaves nothing behind for the next test
    # Exit 0 also means every stop succeeded (pipeline/demo.py: a failed stop is exit 1 and a line saying so).
    assert demo.returncode == 0, output[-3000:]
    assert not left, f"still running after the demo stopped: {left}\n{output[-3000:]}"
    job_pid = re.search(r"flink job started in a local mini-cluster \(pid (\d+)\)|flink cluster started "
                        r"\(jobmanager pid (\d+)", output)
    assert job_pid and int(job_pid.group(1) or job_pid.group(2)) in started.pids, output[-3000:]
    still_listening = started.ports & listening_ports()
    assert not still_listening, f"ports the demo opened still listened on after it stopped: {still_listening}"
    return json.loads(summary_path.read_text()), seen, output, demo_settings


# Bounded waits of one demo run: the run itself (it stops by --duration, or by SIGTERM once it serves), its stop.
RUN_TIMEOUT_S = 400
STOP_TIMEOUT_S = 600


class Started:
    """Every process the demo started (its descendants, sampled while it runs) and the ports they listened on."""

    def __init__(self) -> None:
        self.pids: dict[int, str] = {}  # pid -> command line
        self.ports: set[int] = set()

    def look(self, demo_pid: int) -> None:
        from scripts.faults import descendants

        for pid in descendants(demo_pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
            except OSError:
                continue
            self.pids.setdefault(pid, cmdline)
            self.ports |= {int(address.rsplit(":", 1)[1]) for address in listening_addresses(pid)}

    def left_running(self) -> dict[int, str]:
        return {pid: cmd for pid, cmd in self.pids.items() if pid_running(pid) and _same_process(pid, cmd)}

    @staticmethod
    def kill_left(left: dict[int, str]) -> None:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _same_process(pid: int, cmdline: str) -> bool:
    """The PID still runs the command it ran when it was seen (not a PID reused since)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160] == cmdline
    except OSError:
        return False


def _assert_lake_and_clickhouse(settings: Settings, summary: dict, output: str, maintenance: bool) -> None:
    """Both stores read directly (the broker must be up to read the raw topic's offsets)."""
    closed = _assert_lake_holds_each_record_once(settings, summary)
    assert summary["aggregates_left"] == 0, output[-3000:]
    if maintenance:
        # The demo restated the slots it closed once the service had stopped (its maintenance passes may lag
        # behind simulated time): the closed windows are exact in ClickHouse, late events included.
        slots, _keys = summary["restated"]
        assert slots >= (closed[1] - closed[0]) // (2 * 3600 * 1000), output[-3000:]
        assert "closed slots restated" in output
    else:
        assert summary["restated"] is None and "closed slots restated" not in output
    _assert_clickhouse_reconciles(settings, closed)


def _assert_balanced(summary: dict, seen: dict[str, int], output: str, min_produced: int = 1_000) -> None:
    assert seen.get("user_aggregations_realtime", 0) > 0, f"the API never showed 5-minute aggregates: {seen}"
    assert seen.get("user_aggregations", 0) > 0, f"the API never showed 2-hour aggregates: {seen}"
    assert summary["ok"] is True
    assert summary["produced"] >= min_produced  # how many depends on the box's speed; the balance below must hold
    assert summary["produced"] + summary["backlog"] == summary["raw_rows"] + summary["rejected_rows"]
    assert summary["rejected_rows"] > 0  # 1% malformed on purpose: exactly how many, at the end of each test
    assert all(summary["aggregate_rows"][t] > 0 for t in ("user_aggregations", "user_action_aggregations",
                                                           "user_aggregations_realtime"))
    assert "summary" in output and re.search(r"produced = raw \+ rejected +yes", output), output[-2000:]


def _assert_only_the_malformed_rejected(settings: Settings, summary: dict) -> None:
    """The demo sends 1% malformed records on purpose (--invalid-fraction 0.01): the rejected table holds exactly as
    many as the producer says it broke (its summary, under the demo's DATA_DIR), and no valid event."""
    from collections import Counter

    from tests.reliability.conftest import lake_rows

    broken = json.loads((settings.data_dir / "demo" / "producer-summary.json").read_text())["invalid"]
    reasons = Counter(lake_rows(settings, "user_actions_rejected", ["reason"])["reason"].to_pylist())
    assert summary["rejected_rows"] == sum(reasons.values()) == broken > 0, \
        f"{sum(reasons.values())} rejected, the producer broke {broken}: {reasons.most_common(6)}"


def test_demo_stopped_like_ctrl_c_balances_and_serves_fresh_aggregates(services: Settings, tmp_path) -> None:
    """Stopped by a signal (SIGTERM, handled as Ctrl-C) long before its --duration: it drains, stops what it
    started and prints the same balanced summary; the lake holds each record once and ClickHouse reconciles.

    On a broker of its own that the demo starts and must stop (private aggregate topics and loader group, so
    ClickHouse holds this run's windows only); the test starts it once more afterwards to read the raw topic's
    end offsets. A broker start costs ~6 s on a quiet box, so both demo tests have their own broker rather than
    only one keeping the weaker row-count check. Without lake maintenance, so no restatement corrects ClickHouse
    from the lake: reconcile checks exactly what the job and the loader delivered."""
    bootstrap = _private_bootstrap()
    summary, seen, output, settings = _run_demo(
        tmp_path, free_port(), ["--no-maintenance"], {"KAFKA_BOOTSTRAP": bootstrap}, duration=600,
        sigterm_when_served=True, services=services)
    _assert_balanced(summary, seen, output, min_produced=1_000)
    assert "Ctrl-C (or SIGTERM): stopping the producer" in output and "stopped by Ctrl-C or SIGTERM" in output
    assert "clickhouse service stopped" in output and "producer stopped" in output
    assert "kafka started (pid" in output and "kafka stopped" in output, output[-3000:]
    assert not kafka.healthy(settings) and kafka.process(settings).pid() is None  # the demo stopped its broker
    print(kafka.start(settings))  # the same broker (same log directory) again, to read the topic
    try:
        _assert_lake_and_clickhouse(settings, summary, output, maintenance=False)
    finally:
        print(kafka.stop(settings))
    # README "Failover beyond one node": a data directory formatted for one broker refuses three, in one line
    # (nothing is started: the check comes first).
    from scripts.faults import free_loopback_port

    three = [free_loopback_port(span=6) + 2 * i for i in range(3)]
    refused = _pipeline(replace(settings, kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in three)),
                        "services", "start", "kafka")
    one = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    assert refused.returncode == 2 and refused.stderr == (
        f"error: kafka: {settings.data_dir} holds a Kafka formatted for brokers 1@{one} (node@port), not "
        f"1@{three[0]},2@{three[1]},3@{three[2]}: use another DATA_DIR, or remove {settings.data_dir}/kafka* to "
        "start an empty cluster\n"), refused.stderr
    assert not any(port_open("127.0.0.1", p) for p in three)
    _assert_only_the_malformed_rejected(settings, summary)


def test_bounded_demo_on_s3_with_a_flink_cluster(services: Settings, tmp_path, unique_name: str) -> None:
    """The demo's other modes together: warehouse on the local S3 server, job submitted with `flink run`, lake
    maintenance on (it restates closed slots in ClickHouse), and a running broker that the demo uses and leaves
    running. The broker is this test's own (private aggregate topics, so reconcile is exact), not the session's."""
    from local_services import flink_cluster

    warehouse = f"s3://{services.s3_bucket}/{unique_name}/warehouse"
    rest_port = free_port()
    rest = f"http://127.0.0.1:{rest_port}"
    job_states: set[str] = set()

    def watch() -> None:
        jobs = _get_json(f"{rest}/jobs/overview") or {}
        job_states.update(j.get("state", "") for j in jobs.get("jobs", []))

    bootstrap = _private_bootstrap()
    broker = replace(services, kafka_bootstrap=bootstrap, data_dir=tmp_path / "broker")
    print(kafka.start(broker))
    try:
        summary, seen, output, settings = _run_demo(
            tmp_path, free_port(), ["--s3", "--flink-cluster"],
            {"PAIMON_WAREHOUSE": warehouse, "FLINK_REST_PORT": str(rest_port), "KAFKA_BOOTSTRAP": bootstrap},
            watch, services=services)
        _assert_balanced(summary, seen, output)
        assert f"kafka: using the broker on {bootstrap}" in output and kafka.healthy(broker)  # not the demo's to stop
        _assert_lake_and_clickhouse(settings, summary, output, maintenance=True)
    finally:
        print(kafka.stop(broker))
    assert "RUNNING" in job_states, f"the Flink web UI never listed the running job: {job_states}"
    assert f"Flink web UI   {rest}/" in output
    assert f"--warehouse {warehouse}" in output
    # Ctrl-C or the end of --duration stops the cluster the demo started.
    assert _get_json(f"{rest}/overview") is None
    cluster = flink_cluster.status(Settings.from_env({"DATA_DIR": str(tmp_path / "data")}))
    assert cluster.startswith("flink cluster: jobmanager pid None, taskmanager pid None"), cluster
    _assert_only_the_malformed_rejected(settings, summary)
