"""A standalone Flink cluster (one JobManager, N TaskManagers) from the scripts in the apache-flink wheel.

FLINK_HOME is the wheel's pyflink directory (bin/, lib/); the configuration lives in $DATA_DIR/flink/conf.
Every daemon runs in the foreground under our own PID file ($DATA_DIR/run/flink-*.pid) and is stopped by PID.
Memory for this 2-core, 24 GiB box: JobManager 1.6 GiB; one TaskManager of 8 GiB, or N of 5 GiB each (two
fit beside three Kafka brokers and ClickHouse, and either one alone can run the whole job after the other dies);
2 slots each, 40 % managed memory (RocksDB block cache and write buffers), the rest heap (Paimon writers) and
network buffers.

Failures: a TaskManager that dies fails its tasks; Flink's restart strategy (exponential delay, below) restarts
the job from its last completed checkpoint on the slots that remain, with no command from the user. The
JobManager itself is a single point: high availability needs ZooKeeper or Kubernetes (see the README).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from base.config import PROJECT_ROOT, Settings
from base.errors import UserError
from local_services.process import ManagedProcess, port_open, require_java, require_port_free, wait_until

# The apache-flink wheel's pyflink directory (bin/, conf/, lib/), found without importing pyflink (slow).
_PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"
FLINK_HOME = Path(sys.prefix) / "lib" / _PY / "site-packages" / "pyflink"

CLUSTER_OPTIONS = {
    "jobmanager.rpc.address": "127.0.0.1",
    "jobmanager.bind-host": "127.0.0.1",
    "taskmanager.bind-host": "127.0.0.1",
    "taskmanager.host": "127.0.0.1",
    "rest.address": "127.0.0.1",
    "rest.bind-address": "127.0.0.1",
    "jobmanager.memory.process.size": "1600m",
    "taskmanager.memory.managed.fraction": "0.4",
    "taskmanager.numberOfTaskSlots": "2",
    "parallelism.default": "2",
    "state.backend.type": "rocksdb",
    "execution.checkpointing.incremental": "true",
    # Spread a job's slots over the TaskManagers, so losing one leaves the job half running, not all.
    "taskmanager.load-balance.mode": "SLOTS",
    # Restart after a failure by itself: 1 s, 1.5 s, 2.3 s ... up to 30 s between attempts, reset after 10 min
    # without a failure; never gives up (a broker or S3 outage is waited out, not turned into a dead job). A lost
    # TaskManager costs several quick attempts (deploys to it fail until it is declared lost, then Paimon's
    # committer fails once on purpose after restoring): multiplier 2 and 1-min cap took 68 s to the first new
    # checkpoint in the kill -9 test, these about half that (README, Failover).
    "restart-strategy.type": "exponential-delay",
    "restart-strategy.exponential-delay.initial-backoff": "1 s",
    "restart-strategy.exponential-delay.max-backoff": "30 s",
    "restart-strategy.exponential-delay.backoff-multiplier": "1.5",
    "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
    "restart-strategy.exponential-delay.jitter-factor": "0.1",
    # A killed TaskManager is declared lost after 2 failed heartbeats (heartbeat.rpc-failure-threshold): every
    # 5 s instead of 10 s halves that; the 50 s timeout for a slow but live one stays.
    "heartbeat.interval": "5 s",
}


def taskmanager_memory(taskmanagers: int) -> str:
    return "8g" if taskmanagers == 1 else "5g"


def conf_dir(settings: Settings) -> Path:
    return settings.data_dir / "flink" / "conf"


def rest_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.flink_rest_port}"


def jobmanager(settings: Settings) -> ManagedProcess:
    return ManagedProcess("flink-jobmanager", settings.run_dir, settings.logs_dir)


def taskmanager(settings: Settings, number: int = 1) -> ManagedProcess:
    """TaskManager ``number`` (1..N); its Flink resource id is the same name, as the REST API lists it."""
    name = "flink-taskmanager" if number == 1 else f"flink-taskmanager-{number}"
    return ManagedProcess(name, settings.run_dir, settings.logs_dir)


def taskmanagers(settings: Settings) -> list[ManagedProcess]:
    """Every TaskManager with a PID file (alive or not yet cleaned up), in number order."""
    numbers = {1} | {int(n) for p in settings.run_dir.glob("flink-taskmanager-*.pid")
                     if (n := p.stem.rsplit("-", 1)[1]).isdigit()}
    return [taskmanager(settings, n) for n in sorted(numbers)]


def write_conf(settings: Settings, taskmanagers: int = 1) -> Path:
    """$DATA_DIR/flink/conf: the wheel's config.yaml (flattened) with loopback, port and memory settings."""
    target = conf_dir(settings)
    target.mkdir(parents=True, exist_ok=True)
    for src in (FLINK_HOME / "conf").iterdir():
        if src.name != "config.yaml":
            (target / src.name).write_bytes(src.read_bytes())
    base = _flatten(yaml.safe_load((FLINK_HOME / "conf" / "config.yaml").read_text()) or {})
    base.update(CLUSTER_OPTIONS)
    base["rest.port"] = str(settings.flink_rest_port)
    base["taskmanager.memory.process.size"] = taskmanager_memory(taskmanagers)
    base["execution.checkpointing.dir"] = (settings.data_dir / "flink" / "checkpoints").as_uri()
    base["io.tmp.dirs"] = str(settings.data_dir / "flink" / "tmp")
    (settings.data_dir / "flink" / "tmp").mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(yaml.safe_dump(base, default_flow_style=False))
    return target


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}  # the job's driver under `flink run` reads its settings from these
    env.update({
        "FLINK_HOME": str(FLINK_HOME),
        "FLINK_CONF_DIR": str(conf_dir(settings)),
        "FLINK_LOG_DIR": str(settings.logs_dir),
        # flink-console.sh's own PID list (it numbers log files by it): ours, not the shared /tmp
        "FLINK_PID_DIR": str(settings.data_dir / "flink" / "pids"),
        # `flink run -py` runs the job script with this interpreter (the project's venv).
        "PYFLINK_CLIENT_EXECUTABLE": sys.executable,
        "PYTHONPATH": str(PROJECT_ROOT),
    })
    return env


def registered_taskmanagers(settings: Settings) -> list[dict]:
    """The TaskManagers the JobManager knows (REST /taskmanagers): id, slotsNumber, freeSlots, ..."""
    import json

    if not port_open("127.0.0.1", settings.flink_rest_port):
        return []
    try:
        with urllib.request.urlopen(f"{rest_url(settings)}/taskmanagers", timeout=5) as resp:
            return json.load(resp)["taskmanagers"]
    except (OSError, ValueError, KeyError):
        return []


def healthy(settings: Settings, taskmanagers: int = 1) -> bool:
    """The REST API answers and at least ``taskmanagers`` TaskManagers have registered."""
    return len(registered_taskmanagers(settings)) >= max(1, taskmanagers)


def start(settings: Settings, taskmanagers: int = 1, timeout: float = 90.0) -> str:
    if taskmanagers < 1:
        raise UserError(f"--taskmanagers must be at least 1, not {taskmanagers}")
    jm = jobmanager(settings)
    if jm.pid() and healthy(settings):
        return f"flink cluster already running (jobmanager pid {jm.pid()}) on {rest_url(settings)}"
    require_java()
    require_port_free("flink rest", settings.flink_rest_port)
    (settings.data_dir / "flink" / "pids").mkdir(parents=True, exist_ok=True)
    write_conf(settings, taskmanagers)
    env = _env(settings)
    jm_pid = jm.start([str(FLINK_HOME / "bin" / "jobmanager.sh"), "start-foreground"], env=env)
    tm_pids = [start_taskmanager(settings, n, env) for n in range(1, taskmanagers + 1)]
    try:
        wait_until(lambda: healthy(settings, taskmanagers), timeout, "flink cluster", jm)
    except UserError:
        stop(settings)
        raise
    which = f"taskmanager pid {tm_pids[0]}" if taskmanagers == 1 else f"taskmanager pids {', '.join(map(str, tm_pids))}"
    return f"flink cluster started (jobmanager pid {jm_pid}, {which}) on {rest_url(settings)}"


def start_taskmanager(settings: Settings, number: int, env: dict[str, str] | None = None) -> int:
    """Start TaskManager ``number`` (also to replace one that died): it registers with the running JobManager."""
    tm = taskmanager(settings, number)
    return tm.start([str(FLINK_HOME / "bin" / "taskmanager.sh"), "start-foreground",
                     f"-Dtaskmanager.resource-id={tm.name}"], env=env or _env(settings))


def stop(settings: Settings) -> str:
    stopped = [p.name for p in (*reversed(taskmanagers(settings)), jobmanager(settings)) if p.stop(timeout=30)]
    return f"stopped {', '.join(stopped)}" if stopped else "flink cluster was not running"


def status(settings: Settings) -> str:
    tms = [tm for tm in taskmanagers(settings) if tm.pid() is not None] or taskmanagers(settings)[:1]
    which = (f"taskmanager pid {tms[0].pid()}" if len(tms) == 1
             else f"taskmanager pids {', '.join(str(tm.pid()) for tm in tms)}")
    state = "healthy" if healthy(settings) else "not answering"
    return f"flink cluster: jobmanager pid {jobmanager(settings).pid()}, {which}, {state} on {rest_url(settings)}"


def submit(settings: Settings, job, timeout: float = 300.0) -> str:  # job: flink_job.job_config.JobConfig
    """`flink run -py flink_job/__main__.py` against the local cluster; returns Flink's output (job id)."""
    if not healthy(settings):
        raise UserError(f"no Flink cluster answers on {rest_url(settings)}: run `pipeline flink-cluster start`")
    argv = [
        str(FLINK_HOME / "bin" / "flink"), "run", "--detached",
        "-m", f"127.0.0.1:{settings.flink_rest_port}",
        "-py", str(PROJECT_ROOT / "flink_job" / "__main__.py"),
        "-pyexec", sys.executable,
        *job.to_argv(),
    ]
    done = subprocess.run(argv, env=_env(settings), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise UserError(f"flink run failed (exit {done.returncode}):\n{tail}")
    return done.stdout.strip()


def job_state(settings: Settings, job_id: str) -> str:
    import json

    with urllib.request.urlopen(f"{rest_url(settings)}/jobs/{job_id}", timeout=5) as resp:
        return json.load(resp)["state"]
