"""Flink's metrics as Prometheus scrapes them, from a real job: `pipeline job --metrics-port` (the local mini-cluster,
unbounded) over the malformed-record catalogue of tests/reliability/test_bad_input.py with a valid event beside each
bad record, its endpoint read over HTTP while the job runs. One Flink run shows:

- the Kafka source's records-in counter, summed over its subtasks, equals the records in the topic;
- the rejects-by-reason counters (COUNTED_REASON in flink_job/sql/04_sink_user_actions_rejected.sql) equal the
  catalogue's count per reason exactly, and no other reason appears;
- the endpoint listens on 127.0.0.1 only;
- the series the README's Metrics section names for dashboards (checkpoints, backpressure, late records, Kafka lag),
  and every flink_* name the compose stack's alert rules and Grafana dashboards use (tests/test_operations.py), are
  served under those names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import replace

import pytest

from base.config import PROJECT_ROOT, Settings
from tests.conftest import free_port, listening_addresses
from tests.reliability.conftest import create_topics, day_ago_slot, encode, event, job_for, produce, stop_process_group
from tests.reliability.test_bad_input import catalogue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MIN = 60_000
SOURCE = "Source: kafka_user_actions[1]"
RECORDS_IN = "flink_taskmanager_job_task_operator_numRecordsIn"
REJECTED = "flink_taskmanager_job_task_operator_reason_numRecordsRejected"
PENDING = "flink_taskmanager_job_task_operator_pendingRecords"
# What the README's Metrics section names for the dashboards: each must be served under exactly this name.
NAMED_IN_README = (
    "flink_jobmanager_job_lastCheckpointDuration", "flink_jobmanager_job_lastCheckpointSize",
    "flink_jobmanager_job_numberOfFailedCheckpoints", "flink_jobmanager_job_numberOfCompletedCheckpoints",
    "flink_taskmanager_job_task_busyTimeMsPerSecond", "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
    "flink_taskmanager_job_task_operator_numLateRecordsDropped", "flink_taskmanager_job_task_operator_numRecordsOut",
    PENDING, RECORDS_IN, REJECTED,
)


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]] | None:
    """Every sample of the endpoint by metric name, (labels, value); None while it does not answer."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
    except OSError:
        return None
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def source_records_in(samples: dict) -> float:
    return sum(v for labels, v in samples.get(RECORDS_IN, []) if labels["operator_name"] == SOURCE)


def rejects_by_reason(samples: dict) -> dict[str, float]:
    by_reason: Counter[str] = Counter()
    for labels, value in samples.get(REJECTED, []):
        by_reason[labels["reason"]] += value
    return dict(by_reason)


def test_job_metrics_on_the_loopback_endpoint_equal_the_work_done(services: Settings, unique_name, tmp_path) -> None:
    from producer.action_types import ACTION_TYPES

    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    rest_port = free_port()
    job = job_for(unique_name, bounded=False, state_backend="hashmap", checkpoint_interval="5 s",
                  checkpoint_dir=(tmp_path / "checkpoints").as_uri(),
                  flink_conf=(("rest.port", str(rest_port)), ("rest.address", "127.0.0.1")))
    create_topics(services, job, source_partitions=2)
    t0 = day_ago_slot()
    bad = catalogue(t0, ACTION_TYPES)
    records = []
    for i, (_, value, _) in enumerate(bad):
        records += [encode(event(i, 1 + i % 7, ACTION_TYPES[i % 5], t0 + i * MIN)), (b"bad", value)]
    # Both partitions get bad and valid records, so each source subtask counts some of each.
    sent = sum(produce(services, job.source_topic, records[p::2], partition=p) for p in (0, 1))
    assert sent == len(records) == 2 * len(bad)

    port = free_port()
    log = tmp_path / "job.log"
    argv = [sys.executable, "-m", "pipeline", "--warehouse", settings.paimon_warehouse, "job", *job.to_argv(),
            "--metrics-port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env={**os.environ, **settings.to_env()}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    want = dict(Counter(reason for _, _, reason in bad))
    try:
        deadline, samples = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the job exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            samples = scrape(port)
            if (samples and source_records_in(samples) == sent and sum(rejects_by_reason(samples).values()) == len(bad)
                    and sum(v for _, v in samples.get(PENDING, [])) == 0):
                break
            time.sleep(2)
        assert samples is not None, f"nothing answered on 127.0.0.1:{port}:\n{log.read_text()[-3000:]}"
        got_in = source_records_in(samples)
        assert got_in == sent, f"source records in {got_in} of {sent} within 180 s"
        assert rejects_by_reason(samples) == want
        # One source subtask per partition, each with its share.
        per_subtask = {labels["subtask_index"]: v for labels, v in samples[RECORDS_IN]
                       if labels["operator_name"] == SOURCE}
        assert sorted(per_subtask.values()) == sorted(float(len(records[p::2])) for p in (0, 1))
        assert {labels["job_name"] for labels, _ in samples[REJECTED]} == {job.job_name}
        missing = [name for name in NAMED_IN_README if name not in samples]
        assert not missing, missing
        from tests.test_operations import referenced_metrics

        unserved = {name: where for name, where in referenced_metrics("flink_").items() if name not in samples}
        assert not unserved, f"named in the rules/dashboards but not served by the reporter: {unserved}"

        # `--state-backend hashmap` is what the running job has (its REST API), not only what the flag says
        rest = f"http://127.0.0.1:{rest_port}"
        with urllib.request.urlopen(f"{rest}/jobs", timeout=10) as resp:
            (job_id,) = [j["id"] for j in json.loads(resp.read())["jobs"] if j["status"] == "RUNNING"]
        with urllib.request.urlopen(f"{rest}/jobs/{job_id}/checkpoints/config", timeout=10) as resp:
            assert json.loads(resp.read())["state_backend"] == "HashMapStateBackend"

        # The JVM's sockets are IPv6 ones: bound to 127.0.0.1 they show as ::ffff:127.0.0.1, never as :: or 0.0.0.0.
        listening = {a.rsplit(":", 1)[0] for a in listening_addresses(proc.pid) if a.rsplit(":", 1)[1] == str(port)}
        assert len(listening) == 1 and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    finally:
        stop_process_group(proc)


def test_the_reporter_is_the_local_runtimes_and_never_the_jobs_under_a_cluster(tmp_path) -> None:
    """FLINK_METRICS_PORT: the mini-cluster's port, the local cluster's range (the JobManager and each TaskManager
    one port), both with the loopback reporter as a plugin; under `flink run` the job adds no reporter."""
    from flink_job.environment import job_options
    from flink_job.job_config import JobConfig
    from local_services import flink_cluster
    from local_services.flink_runtime import LOOPBACK_REPORTER_FACTORY, plugins_dir

    settings = replace(Settings.from_env({"FLINK_METRICS_PORT": "9300"}), data_dir=tmp_path)
    job = JobConfig(checkpoint_dir=tmp_path.as_uri())
    mini = job_options(settings, job)
    assert mini["metrics.reporter.prom.factory.class"] == LOOPBACK_REPORTER_FACTORY
    assert (mini["metrics.reporter.prom.host"], mini["metrics.reporter.prom.port"]) == ("127.0.0.1", "9300")
    assert mini["metrics.reporter.prom.filterLabelValueCharacters"] == "false"
    assert not any(k.startswith("metrics.reporter.") for k in job_options(settings, job, configured={}))
    assert not any(k.startswith("metrics.reporter.") for k in job_options(replace(settings, flink_metrics_port=None),
                                                                          job))

    cluster = flink_cluster.local_properties(settings, taskmanagers=2)
    assert cluster["metrics.reporter.prom.factory.class"] == LOOPBACK_REPORTER_FACTORY
    assert (cluster["metrics.reporter.prom.host"], cluster["metrics.reporter.prom.port"]) == ("127.0.0.1", "9300-9302")
    assert flink_cluster._local_env(settings, 2)["FLINK_PLUGINS_DIR"] == str(plugins_dir(settings))
    off = flink_cluster.local_properties(replace(settings, flink_metrics_port=None), taskmanagers=2)
    assert not any(k.startswith("metrics.reporter.") for k in off)


def test_metrics_port_is_refused_where_a_cluster_decides(capsys) -> None:
    from flink_job import cli

    assert cli.main(["--submit", "--metrics-port", "9300"]) == 2
    assert "--metrics-port is for the local mini-cluster" in capsys.readouterr().err
