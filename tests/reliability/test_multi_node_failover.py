"""Faults a cluster is built to survive, on a private 3-broker Kafka (replication 3, min.insync.replicas 2):

1. kill -9 of the broker that leads the most partitions of the raw topic while `pipeline produce` sends, the
   streaming job reads and the ClickHouse service is restarted (its loader reconnects to the new leaders);
2. kill -9 of one of two TaskManagers under a job submitted with `flink run`: Flink's restart strategy brings the
   job back from its last completed checkpoint on the remaining slots, with no command from the test.

Invariants, with a known number N of events given to the idempotent, acks=all producer:
- the producer acknowledges every record and the topic holds exactly N (no loss, no duplicate from retries);
- the job is running at the end without anyone restarting it; lake.user_actions holds exactly the N events plus
  the window-closing ones, every event_id once, nothing rejected;
- ClickHouse's deduplicated aggregates equal the reconciliation from the lake.
Each test prints its recovery figures (fault to the next completed checkpoint, fault to a lag back under 10 s);
the README's failover table comes from these lines.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from base.config import Settings
from base.contract import RAW_TOPIC
from flink_job.job_config import JobConfig
from local_services import flink_cluster, kafka
from scripts import faults
from tests.reliability.conftest import (
    SLOT_MS,
    caught_up,
    close_windows,
    create_topics,
    day_ago_slot,
    exact_raw_counts,
    job_for,
    lake_rows,
    load_aggregates,
    reconcile_job,
    records_in,
    start_producer,
    stop_process_group,
    wait_for,
)
from tests.test_flink_job import pipeline_cli

# slow: three brokers, a job start-up and a failover each; several minutes on the 2-core box.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

EVENTS = 60_000
RATE = 1_500  # events/s: production spans ~40 s, so the fault lands mid-run
PARTITIONS = 6
CLOSE_MS = 8 * 3_600_000
DELIVERY_TIMEOUT_S = 300
# Broker test: events sent first, 10 per simulated second (about 10 minutes of event time, the producer's diurnal
# pace may stretch it), so 5-minute windows fire and the loader inserts them before the fault's production, which
# starts in the next 2-hour slot: after every warm-up event, so none of its events is late.
WARM_UP = 6_000
# The bounded waits of the longer test together (3 broker starts 90, checkpoint 300, Kafka 120, insert 120, leaders
# 60, restart 120, producer 600, catch-up 600, checkpoint 120, broker 90 + in sync 120, loader 300, reconcile 600)
# and a margin: a wait that runs out says what it waited for, before pytest-timeout would.
pytestmark.append(pytest.mark.timeout(3_400))


@pytest.fixture(scope="module")
def kafka_cluster(services: Settings, tmp_path_factory) -> Settings:
    """Three KRaft brokers of this module only (ports P, P+2, P+4, controllers +1), stopped by their PID files."""
    port = faults.free_loopback_port(span=6)
    settings = replace(services, data_dir=tmp_path_factory.mktemp("cluster") / "data", kafka_replication=3,
                       kafka_partitions=PARTITIONS,
                       kafka_bootstrap=",".join(f"127.0.0.1:{port + 2 * i}" for i in range(3)))
    print(kafka.start(settings))
    yield settings
    print(kafka.stop(settings))


def most_leading(settings: Settings, topic: str) -> tuple[int, int]:
    """(node id, partitions it leads) of the broker leading the most partitions of ``topic``."""
    node, count = Counter(kafka.leaders(settings, topic).values()).most_common(1)[0]
    return node, count


def check_producer(producer: subprocess.Popen, summary_path: Path, log: Path, settings: Settings,
                   topic: str, sent_before: int = 0) -> int:
    """Every record acknowledged once: exit 0, acked == N (less what was sent before it), the topic holds exactly
    N."""
    producer.wait(timeout=DELIVERY_TIMEOUT_S + 300)
    summary = json.loads(summary_path.read_text())
    held = records_in(settings, topic)
    assert producer.returncode == 0, log.read_text(errors="replace")[-2000:]
    assert (summary["acked"], summary["failed"], held) == (EVENTS - sent_before, 0, EVENTS), (summary, held)
    return held


def test_kill_9_of_the_leading_broker_while_producing_with_a_clickhouse_restart_loses_nothing(
        kafka_cluster: Settings, unique_name: str, tmp_path: Path) -> None:
    from clickhouse import service_process

    settings = replace(kafka_cluster, paimon_warehouse=f"file://{tmp_path}/wh", data_dir=tmp_path / "data",
                       dashboard_port=faults.free_loopback_port(), clickhouse_url=None)
    checkpoints = tmp_path / "checkpoints"
    # The contract's topic names: the cluster is this module's own, and the ClickHouse service loads them.
    job = replace(JobConfig(), bounded=False, startup_mode="earliest-offset", group_id=f"{unique_name}_job",
                  parallelism=2, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri(),
                  state_backend="rocksdb")
    kafka.ensure_topics(settings)
    loader_group = f"{unique_name}_loader"
    loader_args = ["--group", loader_group, "--batch-rows", "2000", "--max-latency", "0.2"]
    t0 = day_ago_slot()

    print(service_process.start(settings, loader_args))
    running = faults.start_job(settings, job, tmp_path / "job.log")
    producer: subprocess.Popen | None = None
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)
        # Warm-up: the job fires its first windows and the loader inserts them before the fault's production starts,
        # so the kill lands mid-production and mid-load however far the job lags on a loaded box (waiting for the
        # first insert during the 40 s of production let it end before the kill).
        warm = start_producer(settings, RAW_TOPIC, WARM_UP, RATE, t0 + 60_000, tmp_path / "warm-up.log",
                              tmp_path / "warm-up.json", extra=("--sim-rate", "10"))
        assert warm.wait(120) == 0, (tmp_path / "warm-up.log").read_text(errors="replace")[-2000:]
        wait_for(lambda: (service_process.fetch_status(settings) or {}).get("loader", {}).get(
            "rows_inserted", 0) > 0, 300, "the loader's first insert")
        summary_path, produce_log = tmp_path / "produce.json", tmp_path / "produce.log"
        with faults.LagClock(settings, RAW_TOPIC, job.group_id) as lag:
            producer = start_producer(settings, RAW_TOPIC, EVENTS - WARM_UP, RATE, t0 + SLOT_MS + 60_000,
                                      produce_log, summary_path, seed=9,
                                      extra=("--delivery-timeout", str(DELIVERY_TIMEOUT_S)))
            wait_for(lambda: records_in(settings, RAW_TOPIC) >= WARM_UP + (EVENTS - WARM_UP) // 5, 120,
                     "a fifth of the events in Kafka")
            victim, led = most_leading(settings, RAW_TOPIC)
            victim_pid = kafka.process(kafka_cluster, victim).pid()  # its PID file is the cluster's
            fault_at, at_kill = time.time(), records_in(settings, RAW_TOPIC)
            faults.kill9(victim_pid)
            producing = producer.poll() is None
            # While the partitions it led elect new leaders, the ClickHouse service restarts (SIGTERM, start).
            restart = threading.Thread(target=lambda: print(service_process.stop(settings), "/",
                                                            service_process.start(settings, loader_args)))
            restart.start()
            wait_for(lambda: victim not in kafka.leaders(settings, RAW_TOPIC).values(), 60, "new leaders")
            moved_s = time.time() - fault_at
            restart.join(120)
            assert service_process.healthy(settings), "the ClickHouse service did not come back"
            assert producing and at_kill < EVENTS, f"killed after production ended ({at_kill:,} in Kafka): lower RATE"
            held = check_producer(producer, summary_path, produce_log, settings, RAW_TOPIC, sent_before=WARM_UP)
            isr = kafka.in_sync_replicas(settings, RAW_TOPIC)
            assert all(victim not in nodes and len(nodes) == 2 for nodes in isr.values()), isr

            closing = close_windows(settings, RAW_TOPIC, EVENTS, t0 + CLOSE_MS, PARTITIONS)
            total = held + closing
            wait_for(lambda: exact_raw_counts(settings)[0] >= total or not running.alive(), 600, "job caught up",
                     every=2)
            assert running.alive(), (tmp_path / "job.log").read_text()[-3000:]
            last = faults.completed_checkpoints(checkpoints)[-1]
            faults.wait_for_checkpoint(checkpoints, running, timeout=120, after=int(last.name.split("-")[1]))
        # the killed broker comes back and catches up: every partition has its three in-sync copies again
        print(kafka.start(kafka_cluster))
        wait_for(lambda: all(len(n) == 3 for n in kafka.in_sync_replicas(settings, RAW_TOPIC).values()), 120,
                 "the restarted broker back in sync")
        aggregate_topics = list(job.aggregate_topics)
        wait_for(lambda: caught_up(settings, loader_group, aggregate_topics), 300, "loader caught up", every=2)
        assert running.alive(), (tmp_path / "job.log").read_text()[-3000:]
        failovers = faults.job_failovers(running)
        logged = faults.logged_checkpoints(running)
    finally:
        if producer is not None:
            stop_process_group(producer)
        running.kill9()
        print(service_process.stop(settings))

    # README: the job goes on "without a failover" (its Kafka clients retry while the leaders move)
    assert failovers == 0, f"the job failed over {failovers} time(s) after the broker kill: the README says it does not"
    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total)
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0
    start = datetime.fromtimestamp(t0 // SLOT_MS * SLOT_MS / 1000, UTC)
    end = datetime.fromtimestamp((t0 + CLOSE_MS) // SLOT_MS * SLOT_MS / 1000, UTC)
    reconciled = pipeline_cli(settings, "lake", "reconcile", "--from", start.strftime("%Y-%m-%d %H:%M"),
                              "--to", end.strftime("%Y-%m-%d %H:%M"), timeout=600)
    assert reconciled.returncode == 0, reconciled.stdout[-3000:] + reconciled.stderr[-2000:]
    assert "result: OK" in reconciled.stdout and f": {held} lake events" in reconciled.stdout, reconciled.stdout
    next_checkpoint = min((c.at for c in logged if c.at > fault_at), default=float("nan"))
    print(f"FAILOVER broker: kill -9 of node {victim} leading {led} of {PARTITIONS} partitions with {at_kill:,} of "
          f"{EVENTS:,} in Kafka; new leaders after {moved_s:.1f}s; job failovers {failovers}; next checkpoint "
          f"{next_checkpoint - fault_at:.1f}s after the kill; lag max {lag.max_lag_after(fault_at):.1f}s, back under "
          f"10 s after {lag.back_under(fault_at):.1f}s; acked {EVENTS:,}, topic {held:,}, lake {rows - closing:,} "
          f"(+{closing} closing), duplicated {rows - distinct}, lost {held - (rows - closing)}; "
          f"reconcile: {reconciled.stdout.strip().splitlines()[-1]}")


def rest(settings: Settings, path: str) -> dict:
    with urllib.request.urlopen(f"{flink_cluster.rest_url(settings)}{path}", timeout=10) as resp:
        return json.load(resp)


def job_taskmanagers(settings: Settings, job_id: str) -> set[str]:
    """Resource ids of the TaskManagers running tasks of the job's source vertex."""
    vertices = rest(settings, f"/jobs/{job_id}")["vertices"]
    source = next(v for v in vertices if "Source" in v["name"])
    found = rest(settings, f"/jobs/{job_id}/vertices/{source['id']}/taskmanagers")["taskmanagers"]
    return {tm["taskmanager-id"] for tm in found}


def completed_checkpoints_after(settings: Settings, job_id: str, at: float) -> list[float]:
    """Completion times (epoch s) of the job's checkpoints completed after ``at``."""
    history = rest(settings, f"/jobs/{job_id}/checkpoints").get("history", [])
    return sorted(c["latest_ack_timestamp"] / 1000 for c in history
                  if c["status"] == "COMPLETED" and c["latest_ack_timestamp"] / 1000 > at)


def restarts(settings: Settings, job_id: str) -> int:
    """Failures Flink recovered the job from by itself (its exception history)."""
    return len(rest(settings, f"/jobs/{job_id}/exceptions?maxExceptions=100")["exceptionHistory"]["entries"])


def test_kill_9_of_a_taskmanager_under_flink_run_restarts_from_the_last_checkpoint_by_itself(
        kafka_cluster: Settings, unique_name: str, tmp_path: Path, chdb_scratch: Settings) -> None:
    settings = replace(kafka_cluster, paimon_warehouse=f"file://{tmp_path}/wh", data_dir=tmp_path / "data",
                       flink_rest_port=faults.free_loopback_port(span=2))
    checkpoints = tmp_path / "checkpoints"
    job = job_for(unique_name, bounded=False, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri())
    create_topics(settings, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()

    print(flink_cluster.start(settings, taskmanagers=2))
    producer: subprocess.Popen | None = None
    try:
        submitted = flink_cluster.submit(settings, job)
        job_id = re.search(r"JobID ([0-9a-f]{32})", submitted).group(1)
        wait_for(lambda: completed_checkpoints_after(settings, job_id, 0), 300, "the job's first checkpoint")
        on = job_taskmanagers(settings, job_id)
        assert len(on) == 2, f"the job's two source subtasks should run on both TaskManagers: {on}"
        summary_path, produce_log = tmp_path / "produce.json", tmp_path / "produce.log"
        with faults.LagClock(settings, job.source_topic, job.group_id) as lag:
            producer = start_producer(settings, job.source_topic, EVENTS, RATE, t0 + 60_000, produce_log,
                                      summary_path, extra=("--delivery-timeout", str(DELIVERY_TIMEOUT_S)))
            wait_for(lambda: records_in(settings, job.source_topic) >= EVENTS // 5, 120, "a fifth of the events")
            with_records = time.time()
            wait_for(lambda: completed_checkpoints_after(settings, job_id, with_records), 60,
                     "a checkpoint with records")
            victim = flink_cluster.taskmanager(settings, 2)
            fault_at, at_kill = time.time(), records_in(settings, job.source_topic)
            faults.kill9(victim.pid())
            producing = producer.poll() is None
            wait_for(lambda: restarts(settings, job_id) >= 1, 120, "Flink restarting the job by itself")
            wait_for(lambda: completed_checkpoints_after(settings, job_id, fault_at), 300,
                     "a checkpoint after the restart")
            next_checkpoint = completed_checkpoints_after(settings, job_id, fault_at)[0]
            assert producing and at_kill < EVENTS, f"killed after production ended ({at_kill:,} in Kafka): lower RATE"
            held = check_producer(producer, summary_path, produce_log, settings, job.source_topic)
            closing = close_windows(settings, job.source_topic, EVENTS, t0 + CLOSE_MS, PARTITIONS)
            total = held + closing
            wait_for(lambda: exact_raw_counts(settings)[0] >= total, 600, "job caught up", every=2)
            done = completed_checkpoints_after(settings, job_id, time.time())
            wait_for(lambda: len(completed_checkpoints_after(settings, job_id, time.time() - 3)) > len(done), 120,
                     "one more checkpoint: the last windows' results flushed")
        state = flink_cluster.job_state(settings, job_id)
        restarted = restarts(settings, job_id)
    finally:
        if producer is not None:
            stop_process_group(producer)
        print(flink_cluster.stop(settings))

    assert state == "RUNNING" and restarted >= 1, (state, restarted)
    rows, distinct = exact_raw_counts(settings)
    assert (rows, distinct) == (total, total)
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0
    scratch = load_aggregates(replace(chdb_scratch, kafka_bootstrap=settings.kafka_bootstrap), job)
    result = reconcile_job(settings, scratch, t0, t0 + CLOSE_MS - 1)
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == held
    print(f"FAILOVER taskmanager: kill -9 of {victim.name} with {at_kill:,} of {EVENTS:,} in Kafka; restarts "
          f"{restarted}; next checkpoint {next_checkpoint - fault_at:.1f}s after the kill; lag max "
          f"{lag.max_lag_after(fault_at):.1f}s, back under 10 s after {lag.back_under(fault_at):.1f}s; acked "
          f"{EVENTS:,}, topic {held:,}, lake {rows - closing:,} (+{closing} closing), duplicated {rows - distinct}, "
          f"lost {held - (rows - closing)}; reconcile OK over {result.events_scanned:,} events")
