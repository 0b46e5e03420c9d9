"""`pipeline flink-cluster start --taskmanagers 2|status|stop` and `pipeline job --submit`, as a user types them: a
standalone cluster started the way docker-compose.yml starts its containers (`pipeline flink-daemon` with
FLINK_PROPERTIES) runs the job with `flink run -py`; what `flink run` and the cluster configure wins over the job's
defaults; submitting twice starts one job; stop leaves no process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from base.config import PROJECT_ROOT, Settings
from tests.conftest import free_port, pid_running

# timeout: the bounded waits inside together (cluster start 120, flink run 240, running 180, cancels 3 x 60, four
# CLI calls of up to 240, health check 120, the bounded run 240, stop 120) and a margin, so a wait that runs out says
# what it waited for, before pytest-timeout would
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2_400)]


def _rest(settings: Settings, path: str) -> dict:
    with urllib.request.urlopen(f"{settings.flink_rest}{path}", timeout=10) as resp:
        return json.load(resp)


def _wait_running(settings: Settings, job_id: str, timeout: float = 180) -> None:
    """Until every task of the job runs (a checkpoint config and vertices to read)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = _rest(settings, f"/jobs/{job_id}")
        if detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"]):
            return
        assert detail["state"] not in ("FAILED", "CANCELED", "FINISHED"), detail["state"]
        time.sleep(1)
    raise AssertionError(f"job {job_id} not running within {timeout:.0f} s")


def _cancel(settings: Settings, job_id: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{settings.flink_rest}/jobs/{job_id}?mode=cancel",
                                                  method="PATCH"), timeout=10).close()
    deadline = time.monotonic() + 60
    while _rest(settings, f"/jobs/{job_id}")["state"] != "CANCELED" and time.monotonic() < deadline:
        time.sleep(1)


def _active(settings: Settings, name: str) -> list[dict]:
    from local_services.flink_cluster import ACTIVE_STATES

    return [j for j in _rest(settings, "/jobs/overview")["jobs"] if j["name"] == name and j["state"] in ACTIVE_STATES]


def test_standalone_cluster_runs_the_job_and_yields_to_flink_run_options(
        services: Settings, unique_name: str, tmp_path) -> None:
    from local_services import flink_cluster
    from tests.test_flink_job import pipeline_cli, prepare_input, read_table, topics_for

    # A private DATA_DIR and REST port: this test's cluster never meets a user's. The cluster's own config says
    # hashmap state (the project default is rocksdb): the job must run with the cluster's choice.
    port = free_port()
    settings = replace(services, data_dir=tmp_path / "data", flink_rest_port=port,
                       paimon_warehouse=f"file://{tmp_path}/wh")
    job = replace(topics_for(unique_name), parallelism=1)
    events, bad = prepare_input(settings, job)
    started = pipeline_cli(settings, "flink-cluster", "start", "--taskmanagers", "2",
                           "-D", "state.backend.type=hashmap", timeout=120)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        pids = re.fullmatch(r"flink cluster started \(jobmanager pid (\d+), taskmanager pids (\d+), (\d+)\) on "
                            rf"http://127\.0\.0\.1:{port}\n", started.stdout)
        assert pids, started.stdout
        jm, tm, tm2 = (int(g) for g in pids.groups())
        status = pipeline_cli(settings, "flink-cluster", "status")
        assert status.returncode == 0 and status.stdout == (
            f"flink cluster: jobmanager pid {jm}, taskmanager pids {tm}, {tm2}, healthy on http://127.0.0.1:{port}\n"
        ), status.stdout
        as_json = pipeline_cli(settings, "flink-cluster", "status", "--json")  # the same figures, exit code
        assert as_json.returncode == 0 and json.loads(as_json.stdout) == {
            "service": "flink-cluster", "state": "running", "healthy": True, "address": f"http://127.0.0.1:{port}",
            "jobmanager_pid": jm, "taskmanagers": [{"name": "flink-taskmanager", "pid": tm},
                                                   {"name": "flink-taskmanager-2", "pid": tm2}],
            "registered_taskmanagers": 2}, as_json.stdout
        # both registered under their resource ids, 2 slots each, with the restart strategy in the cluster config
        registered = {t["id"]: t["slotsNumber"] for t in flink_cluster.registered_taskmanagers(settings)}
        assert registered == {"flink-taskmanager": 2, "flink-taskmanager-2": 2}, registered
        conf = (settings.data_dir / "flink" / "conf" / "flink-jobmanager" / "config.yaml").read_text()
        assert "restart-strategy.type: exponential-delay" in conf and "state.backend.type: hashmap" in conf
        # the containers' health checks (docker-compose.yml), run against this cluster
        checks = (("jobmanager",), ("taskmanager", "-D", "taskmanager.resource-id=flink-taskmanager"),
                  ("taskmanager", "-D", "taskmanager.resource-id=no-such-taskmanager"))
        health = {check: pipeline_cli(settings, "flink-daemon", check[0], "--healthcheck", *check[1:]).returncode
                  for check in checks}
        assert list(health.values()) == [0, 0, 1], health

        # README "Failover beyond one node": the restart strategy as the running JobManager has it (its REST API):
        # 1 s, x1.5 per failure up to 30 s, reset after 10 minutes without one, 10 % jitter, never giving up (no
        # attempts limit set: Flink's default is Integer.MAX_VALUE)
        running_conf = {e["key"]: e["value"] for e in _rest(settings, "/jobmanager/config")}
        restart = {k: v for k, v in running_conf.items() if k.startswith("restart-strategy")}
        assert restart == {"restart-strategy.type": "exponential-delay",
                           "restart-strategy.exponential-delay.initial-backoff": "1 s",
                           "restart-strategy.exponential-delay.backoff-multiplier": "1.5",
                           "restart-strategy.exponential-delay.max-backoff": "30 s",
                           "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
                           "restart-strategy.exponential-delay.jitter-factor": "0.1"}, restart
        # 1. `flink run -p 1 -D...` exactly as a user types it: -p, -D and the cluster's config win over the job's
        #    defaults (parallelism 2, 60 s, rocksdb), read back from the running job.
        streaming = replace(job, bounded=False, parallelism=None, checkpoint_interval=None, state_backend=None,
                            job_name=f"{unique_name}-yield", group_id=f"{unique_name}_yield")
        # The streaming jobs below write a lake of their own: the bounded run's lake is compared exactly at the end.
        elsewhere = replace(settings, paimon_warehouse=f"file://{tmp_path}/wh-streaming")
        flink = [str(flink_cluster.FLINK_HOME / "bin" / "flink"), "run", "--detached", "-m", f"127.0.0.1:{port}",
                 "-p", "1", "-Dexecution.checkpointing.interval=7s",
                 "-py", str(PROJECT_ROOT / "flink_job" / "__main__.py"), "-pyexec", sys.executable,
                 *streaming.to_argv()]
        env = {**flink_cluster._env(elsewhere), "FLINK_CONF_DIR": str(flink_cluster.client_conf(settings))}
        ran = subprocess.run(flink, env=env, capture_output=True, text=True, timeout=240)
        assert ran.returncode == 0, (ran.stdout + ran.stderr)[-3000:]
        job_id = re.search(r"JobID ([0-9a-f]{32})", ran.stdout).group(1)
        _wait_running(settings, job_id)
        vertices = _rest(settings, f"/jobs/{job_id}")["vertices"]
        assert vertices and {v["parallelism"] for v in vertices} == {1}, [v["parallelism"] for v in vertices]
        checkpointing = _rest(settings, f"/jobs/{job_id}/checkpoints/config")
        assert checkpointing["interval"] == 7000, checkpointing
        assert checkpointing["state_backend"] == "HashMapStateBackend", checkpointing
        assert checkpointing["externalization"]["enabled"] is True  # the job's own: retained for a restart
        _cancel(settings, job_id)

        # 2. `pipeline job --submit` twice: one job; the second finds it and does nothing.
        first = pipeline_cli(elsewhere, "job", "--submit", *replace(streaming, job_name=f"{unique_name}-once",
                                                                    group_id=f"{unique_name}_once").to_argv())
        assert first.returncode == 0, first.stderr[-3000:]
        assert f"job: no retained checkpoint of consumer group {unique_name}_once" in first.stdout, first.stdout
        second = pipeline_cli(elsewhere, "job", "--submit", *replace(streaming, job_name=f"{unique_name}-once",
                                                                     group_id=f"{unique_name}_once").to_argv())
        assert second.returncode == 0, second.stderr[-3000:]
        assert re.fullmatch(rf"job {unique_name}-once is already (running|created|initializing) on "
                            rf"http://127\.0\.0\.1:{port} \([0-9a-f]{{32}}\): nothing to submit\n", second.stdout), \
            second.stdout
        once = _active(settings, f"{unique_name}-once")
        assert len(once) == 1, once
        once_args = replace(streaming, job_name=f"{unique_name}-once", group_id=f"{unique_name}_once").to_argv()
        deadline = time.monotonic() + 120
        while pipeline_cli(elsewhere, "job", "--check-running", *once_args).returncode != 0:
            assert time.monotonic() < deadline, "the submitter's health check never saw the job running"
            time.sleep(2)
        # 3. The upgrade path: stop with a savepoint into the job's own folder; the next submission resumes from it.
        _wait_running(settings, once[0]["jid"])
        stopped = pipeline_cli(elsewhere, "job", "--stop", *once_args)
        assert stopped.returncode == 0, stopped.stderr[-3000:]
        savepoint = re.fullmatch(rf"job {unique_name}-once: stopped with a savepoint at (\S+)\n", stopped.stdout)
        assert savepoint and f"/savepoints/{unique_name}_once/savepoint-" in savepoint.group(1), stopped.stdout
        stopped_job = pipeline_cli(elsewhere, "job", "--check-running", *once_args)
        assert stopped_job.returncode == 3 and "not running" in stopped_job.stdout, stopped_job.stdout
        resumed = pipeline_cli(elsewhere, "job", "--submit", *once_args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        from_path = re.search(rf"job: resuming from the latest retained savepoint of consumer group "
                              rf"{unique_name}_once: file:(\S+) ", resumed.stdout)
        assert from_path and from_path.group(1).lstrip("/") == savepoint.group(1).split(":", 1)[1].lstrip("/"), \
            resumed.stdout
        _cancel(settings, _active(settings, f"{unique_name}-once")[0]["jid"])

        # 4. A bounded run to its end through the CLI.
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
    after = pipeline_cli(settings, "flink-cluster", "status")
    assert after.returncode == 3 and after.stdout == (
        f"flink cluster: jobmanager pid None, taskmanager pid None, not answering on http://127.0.0.1:{port}\n")

    raw, _ = read_table(settings, "user_actions")
    rejected, _ = read_table(settings, "user_actions_rejected")
    assert sorted(raw.column("event_id").to_pylist()) == sorted(e["event_id"] for e in events)
    assert rejected.num_rows == len(bad)


def test_cluster_status_exit_codes_and_json_without_a_cluster(settings: Settings, tmp_path) -> None:
    """`flink-cluster status [--json]` (LSB): 3 with nothing running; 1 when the JobManager's PID file names a live
    process and nothing answers on the REST port; --json carries the figures of the text. No cluster is started."""
    from local_services.process import write_pid_file
    from tests.test_flink_job import pipeline_cli

    port = free_port()
    own = replace(settings, data_dir=tmp_path / "data", flink_rest_port=port, flink_rest_url=None)
    stopped, stopped_json = pipeline_cli(own, "flink-cluster", "status"), pipeline_cli(own, "flink-cluster",
                                                                                        "status", "--json")
    assert stopped.returncode == stopped_json.returncode == 3
    assert stopped.stdout == f"flink cluster: jobmanager pid None, taskmanager pid None, not answering on " \
                             f"http://127.0.0.1:{port}\n"
    assert json.loads(stopped_json.stdout) == {
        "service": "flink-cluster", "state": "stopped", "healthy": False, "address": f"http://127.0.0.1:{port}",
        "jobmanager_pid": None, "taskmanagers": [], "registered_taskmanagers": 0}
    stuck = subprocess.Popen(["sleep", "60"])
    try:
        write_pid_file(own.run_dir / "flink-jobmanager.pid", stuck.pid)
        unhealthy, unhealthy_json = (pipeline_cli(own, "flink-cluster", "status", *args) for args in ((), ("--json",)))
        assert unhealthy.returncode == unhealthy_json.returncode == 1
        assert unhealthy.stdout == f"flink cluster: jobmanager pid {stuck.pid}, taskmanager pid None, not " \
                                   f"answering on http://127.0.0.1:{port}\n"
        doc = json.loads(unhealthy_json.stdout)
        assert (doc["state"], doc["healthy"], doc["jobmanager_pid"], doc["taskmanagers"]) == (
            "unhealthy", False, stuck.pid, [])
    finally:
        stuck.kill()
        stuck.wait()
    epilog = " ".join(pipeline_cli(own, "flink-cluster", "--help").stdout.split())  # the exit codes, documented
    assert "0 running and answering, 3 not running, 1 unhealthy" in epilog, epilog


def test_a_second_local_cluster_takes_its_own_rpc_port_and_a_held_one_is_one_line(settings: Settings,
                                                                                  tmp_path) -> None:
    """The JobManager's RPC port is the one after FLINK_REST_PORT (Flink's 6123 would be shared by every local
    cluster on the machine); when another program holds it, `flink-cluster start` says so in one line, exit 2, and
    starts nothing. No cluster is started."""
    import socket

    from local_services import flink_cluster
    from tests.test_flink_job import pipeline_cli

    port = free_port()
    own = replace(settings, data_dir=tmp_path / "data", flink_rest_port=port, flink_rest_url=None)
    assert flink_cluster.local_properties(own, taskmanagers=1)["jobmanager.rpc.port"] == str(port + 1)
    with socket.socket() as held:
        held.bind(("127.0.0.1", port + 1))
        held.listen()
        started = pipeline_cli(own, "flink-cluster", "start", timeout=120)
    assert (started.returncode, started.stderr) == (
        2, f"error: flink jobmanager rpc: port {port + 1} on 127.0.0.1 is already in use by another program; stop it "
           "or choose another port (see README, Troubleshooting)\n"), started.stderr
    assert not any(own.run_dir.glob("flink-*.pid")), sorted(own.run_dir.glob("*"))
