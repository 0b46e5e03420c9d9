"""A standalone Flink cluster (one JobManager, one TaskManager) from the scripts in the apache-flink wheel.

FLINK_HOME is the wheel's pyflink directory (bin/, lib/); the configuration lives in $DATA_DIR/flink/conf.
Both daemons run in the foreground under our own PID files ($DATA_DIR/run/flink-*.pid) and are stopped by PID.
Memory for this 2-core, 24 GiB box: JobManager 1.6 GiB; TaskManager 8 GiB process with 2 slots, 40 % of it
managed memory (RocksDB block cache and write buffers), the rest heap (Paimon writers) and network buffers.
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
from local_services.process import ManagedProcess, http_ok, require_java, require_port_free, wait_until

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
    "taskmanager.memory.process.size": "8g",
    "taskmanager.memory.managed.fraction": "0.4",
    "taskmanager.numberOfTaskSlots": "2",
    "parallelism.default": "2",
    "state.backend.type": "rocksdb",
    "execution.checkpointing.incremental": "true",
}


def conf_dir(settings: Settings) -> Path:
    return settings.data_dir / "flink" / "conf"


def rest_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.flink_rest_port}"


def _processes(settings: Settings) -> tuple[ManagedProcess, ManagedProcess]:
    return (ManagedProcess("flink-jobmanager", settings.run_dir, settings.logs_dir),
            ManagedProcess("flink-taskmanager", settings.run_dir, settings.logs_dir))


def write_conf(settings: Settings) -> Path:
    """$DATA_DIR/flink/conf: the wheel's config.yaml (flattened) with loopback, port and memory settings."""
    target = conf_dir(settings)
    target.mkdir(parents=True, exist_ok=True)
    for src in (FLINK_HOME / "conf").iterdir():
        if src.name != "config.yaml":
            (target / src.name).write_bytes(src.read_bytes())
    base = _flatten(yaml.safe_load((FLINK_HOME / "conf" / "config.yaml").read_text()) or {})
    base.update(CLUSTER_OPTIONS)
    base["rest.port"] = str(settings.flink_rest_port)
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
        # `flink run -py` runs the job script with this interpreter (the project's venv).
        "PYFLINK_CLIENT_EXECUTABLE": sys.executable,
        "PYTHONPATH": str(PROJECT_ROOT),
    })
    return env


def healthy(settings: Settings) -> bool:
    """The REST API answers and at least one TaskManager has registered."""
    return http_ok(f"{rest_url(settings)}/taskmanagers", must_contain=b'"taskmanagers":[{')


def start(settings: Settings, timeout: float = 90.0) -> str:
    jm, tm = _processes(settings)
    if jm.pid() and healthy(settings):
        return f"flink cluster already running (jobmanager pid {jm.pid()}) on {rest_url(settings)}"
    require_java()
    require_port_free("flink rest", settings.flink_rest_port)
    write_conf(settings)
    env = _env(settings)
    jm_pid = jm.start([str(FLINK_HOME / "bin" / "jobmanager.sh"), "start-foreground"], env=env)
    tm_pid = tm.start([str(FLINK_HOME / "bin" / "taskmanager.sh"), "start-foreground"], env=env)
    try:
        wait_until(lambda: healthy(settings), timeout, "flink cluster", jm)
    except UserError:
        stop(settings)
        raise
    return f"flink cluster started (jobmanager pid {jm_pid}, taskmanager pid {tm_pid}) on {rest_url(settings)}"


def stop(settings: Settings) -> str:
    jm, tm = _processes(settings)
    stopped = [p.name for p in (tm, jm) if p.stop(timeout=30)]
    return f"stopped {', '.join(stopped)}" if stopped else "flink cluster was not running"


def status(settings: Settings) -> str:
    jm, tm = _processes(settings)
    state = "healthy" if healthy(settings) else "not answering"
    return f"flink cluster: jobmanager pid {jm.pid()}, taskmanager pid {tm.pid()}, {state} on {rest_url(settings)}"


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
