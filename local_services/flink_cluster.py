"""A standalone Flink cluster (one JobManager, N TaskManagers) from the scripts in the apache-flink wheel.

FLINK_HOME is the wheel's pyflink directory (bin/, lib/): Flink of exactly the apache-flink pin, the same
distribution in the local cluster and in the compose image. Every daemon is started the way docker-compose.yml
starts it, `pipeline flink-daemon jobmanager|taskmanager` with its options in FLINK_PROPERTIES (here: loopback
addresses and this box's memory), writes its config to $DATA_DIR/flink/conf/<name>, runs in the foreground under our
own PID file ($DATA_DIR/run/flink-*.pid) and is stopped by PID.
Memory for this 2-core, 24 GiB box: JobManager 1.6 GiB; one TaskManager of 8 GiB, or N of 5 GiB each (two
fit beside three Kafka brokers and ClickHouse, and either one alone can run the whole job after the other dies);
2 slots each, 40 % managed memory (RocksDB block cache and write buffers), the rest heap (Paimon writers) and
network buffers.

Failures: a TaskManager that dies fails its tasks; Flink's restart strategy (exponential delay, below) restarts
the job from its last completed checkpoint on the slots that remain, with no command from the user. The
JobManager itself is a single point: high availability needs ZooKeeper or Kubernetes (see the README).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

import yaml

from base.config import PROJECT_ROOT, Settings
from base.errors import UserError
from local_services.flink_runtime import plugins_env, prometheus_reporter_options
from local_services.process import ManagedProcess, port_open, require_java, require_port_free, wait_until


def _flink_home() -> Path:
    """The apache-flink wheel's pyflink directory (bin/, conf/, lib/): a whole Flink distribution of the pinned
    version, found without importing pyflink (slow). Without the [flink] extra it does not exist."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        return Path(sys.prefix) / "pyflink-not-installed"
    return Path(spec.origin).parent


FLINK_HOME = _flink_home()


def require_flink() -> None:
    """Flink comes with the [flink] extra (apache-flink): a clear line when an install left it out."""
    if not (FLINK_HOME / "bin").is_dir():
        raise UserError("Flink is not installed in this environment: pip install 'user-actions-pipeline[flink]' "
                        "(the [flink] extra; ./run.sh installs it)")

# Flink's own config.yaml (the wheel's template) binds every daemon to localhost. `flink-daemon` drops these keys so the
# deployment decides: the local cluster passes loopback addresses, compose 0.0.0.0 and the JobManager's service name.
ADDRESS_KEYS = ("jobmanager.rpc.address", "jobmanager.bind-host", "taskmanager.bind-host", "taskmanager.host",
                "rest.address", "rest.bind-address")

# What every cluster the project runs gets, locally and in docker-compose.yml; FLINK_PROPERTIES goes over it.
CLUSTER_DEFAULTS = {
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

# Job states in which a job of that name holds the cluster (a submitter does nothing then).
ACTIVE_STATES = {"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "CANCELLING", "RECONCILING",
                 "SUSPENDED"}


def taskmanager_memory(taskmanagers: int) -> str:
    return "8g" if taskmanagers == 1 else "5g"


def conf_dir(settings: Settings, name: str = "flink-jobmanager") -> Path:
    """The config directory a daemon writes at its start (the local client submits with the JobManager's)."""
    return settings.data_dir / "flink" / "conf" / name


def rest_url(settings: Settings) -> str:
    return settings.flink_rest


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


# -- the daemons: one entry point (`pipeline flink-daemon`) for the local cluster and the compose containers ------
def parse_properties(text: str | None, what: str = "FLINK_PROPERTIES") -> dict[str, str]:
    """``key: value`` lines (Flink's flat YAML) as a dict of strings; anything else is a UserError."""
    if not text or not text.strip():
        return {}
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{what} is not 'key: value' lines: {str(exc).splitlines()[0]}") from None
    if not isinstance(parsed, dict):
        raise UserError(f"{what} must be 'key: value' lines, one Flink option per line")
    return {str(k): _yaml_scalar(v) for k, v in _flatten(parsed).items()}


def _yaml_scalar(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def daemon_config(properties: dict[str, str]) -> dict[str, object]:
    """The wheel's config.yaml without its localhost addresses, the project's cluster defaults, then ``properties``."""
    config = _flatten(yaml.safe_load((FLINK_HOME / "conf" / "config.yaml").read_text()) or {})
    for key in ADDRESS_KEYS:
        config.pop(key, None)
    return {**config, **CLUSTER_DEFAULTS, **properties}


def write_conf(target: Path, config: dict[str, object]) -> Path:
    """A Flink config directory: the wheel's log4j files and ``config`` as config.yaml."""
    target.mkdir(parents=True, exist_ok=True)
    for src in (FLINK_HOME / "conf").iterdir():
        if src.name != "config.yaml":
            (target / src.name).write_bytes(src.read_bytes())
    (target / "config.yaml").write_text(yaml.safe_dump(config, default_flow_style=False))
    return target


def run_daemon(settings: Settings, role: str, name: str | None = None, conf: Path | None = None,
               dynamic: Sequence[str] = ()) -> NoReturn:
    """Become Flink's ``role`` (jobmanager or taskmanager) in the foreground, configured from FLINK_PROPERTIES.

    The process execs jobmanager.sh/taskmanager.sh, which exec the JVM: the PID stays the same (a PID file or a
    container's init sees the JVM), and SIGTERM stops Flink directly.
    """
    if role not in ("jobmanager", "taskmanager"):
        raise UserError(f"flink-daemon: role must be jobmanager or taskmanager, not {role!r}")
    require_flink()
    require_java()
    properties = parse_properties(settings.flink_properties)
    for option in dynamic:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise UserError(f"flink-daemon: -D {option!r} is not KEY=VALUE")
        properties[key.strip()] = value.strip()
    if role == "taskmanager":
        # Registered under its host name (the container's), so its health check can find itself in the JobManager.
        properties.setdefault("taskmanager.resource-id", socket.gethostname())
    target = write_conf(conf or conf_dir(settings, name or f"flink-{role}"), daemon_config(properties))
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    env = {**_env(settings), "FLINK_CONF_DIR": str(target)}
    script = str(FLINK_HOME / "bin" / f"{role}.sh")
    sys.stdout.flush()
    os.execve(script, [script, "start-foreground"], env)


def daemon_healthy(settings: Settings, role: str, resource_id: str | None = None) -> bool:
    """A container's health check: the JobManager's REST API answers; a TaskManager is registered with it (under
    ``resource_id``, default this host's name, as run_daemon registers it)."""
    if role == "jobmanager":
        return _rest_json(settings, "/overview") is not None
    wanted = resource_id or socket.gethostname()
    return any(tm.get("id") == wanted for tm in registered_taskmanagers(settings))


def rpc_port(settings: Settings) -> int:
    """The local cluster's JobManager RPC port: the one after its REST port (FLINK_REST_PORT)."""
    return settings.flink_rest_port + 1


def local_properties(settings: Settings, taskmanagers: int) -> dict[str, str]:
    """The local cluster's FLINK_PROPERTIES: loopback only, its ports, memory for this box, data under DATA_DIR; with
    FLINK_METRICS_PORT the Prometheus reporter on 127.0.0.1, where the JobManager and each TaskManager take the first
    free port of FLINK_METRICS_PORT..+taskmanagers."""
    port = settings.flink_metrics_port
    metrics = {} if port is None else prometheus_reporter_options(settings, f"{port}-{port + taskmanagers}")
    return {
        **metrics,
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": str(settings.flink_rest_port),
        # Flink's default 6123 would be one port for every local cluster on the machine: a second one (another
        # DATA_DIR, a test's private cluster) died at start-up in Pekko. The next port after REST is the cluster's own.
        "jobmanager.rpc.port": str(rpc_port(settings)),
        "jobmanager.memory.process.size": "1600m",
        "taskmanager.memory.process.size": taskmanager_memory(taskmanagers),
        "execution.checkpointing.dir": (settings.data_dir / "flink" / "checkpoints").as_uri(),
        "execution.checkpointing.savepoint-dir": (settings.data_dir / "flink" / "savepoints").as_uri(),
        "io.tmp.dirs": str(settings.data_dir / "flink" / "tmp"),
    }


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
    # The whole environment passed on (no variable read here), the settings on top: the job's driver under
    # `flink run` reads its settings from these.
    env = {**os.environ, **settings.to_env()}
    env.update({
        "FLINK_HOME": str(FLINK_HOME),
        "FLINK_LOG_DIR": str(settings.logs_dir),
        # flink-console.sh's own PID list (it numbers log files by it): ours, not the shared /tmp
        "FLINK_PID_DIR": str(settings.data_dir / "flink" / "pids"),
        # `flink run -py` runs the job script with this interpreter (the project's venv).
        "PYFLINK_CLIENT_EXECUTABLE": sys.executable,
        "PYTHONPATH": str(PROJECT_ROOT),
    })
    return env


# -- the local cluster ---------------------------------------------------------------------------------------------
def _rest_json(settings: Settings, path: str, timeout: float = 5.0) -> dict | None:
    """GET the REST API; None if it does not answer (refused, timeout, not JSON)."""
    import json

    parsed = urlparse(settings.flink_rest)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 80):
        return None
    try:
        with urllib.request.urlopen(f"{settings.flink_rest}{path}", timeout=timeout) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def registered_taskmanagers(settings: Settings) -> list[dict]:
    """The TaskManagers the JobManager knows (REST /taskmanagers): id, slotsNumber, freeSlots, ..."""
    return (_rest_json(settings, "/taskmanagers") or {}).get("taskmanagers", [])


def healthy(settings: Settings, taskmanagers: int = 1) -> bool:
    """The REST API answers and at least ``taskmanagers`` TaskManagers have registered."""
    return len(registered_taskmanagers(settings)) >= max(1, taskmanagers)


def _daemon_argv(role: str, name: str, *dynamic: str) -> list[str]:
    # Exactly what docker-compose.yml runs in the Flink image (`pipeline flink-daemon ROLE`), with a name of its own.
    return [sys.executable, "-m", "pipeline", "flink-daemon", role, "--name", name, *(f"-D{d}" for d in dynamic)]


def start(settings: Settings, taskmanagers: int = 1, timeout: float = 90.0,
          options: dict[str, str] | None = None) -> str:
    """Start whatever of the cluster is not running: the JobManager and TaskManagers 1..``taskmanagers``. A
    JobManager that died (no HA: its jobs are gone) is started again on the same port and config, and TaskManagers
    still alive register with it. ``options`` go over the local cluster's own (``flink-cluster start -D``)."""
    if taskmanagers < 1:
        raise UserError(f"--taskmanagers must be at least 1, not {taskmanagers}")
    require_flink()
    jm = jobmanager(settings)
    missing = [tm for tm in (taskmanager(settings, n) for n in range(1, taskmanagers + 1)) if tm.pid() is None]
    if jm.pid() and not missing and healthy(settings, taskmanagers):
        return f"flink cluster already running (jobmanager pid {jm.pid()}) on {rest_url(settings)}"
    require_java()
    for folder in ("pids", "tmp"):
        (settings.data_dir / "flink" / folder).mkdir(parents=True, exist_ok=True)
    env = _local_env(settings, taskmanagers, options)
    started = []
    if jm.pid() is None:
        # A JobManager that has just died may still hold its port for a moment while the kernel tears it down.
        deadline = time.monotonic() + 10
        ports = {"flink rest": settings.flink_rest_port, "flink jobmanager rpc": rpc_port(settings)}
        while any(port_open("127.0.0.1", p) for p in ports.values()) and time.monotonic() < deadline:
            time.sleep(0.3)
        for name, port in ports.items():
            require_port_free(name, port)
        started.append(f"jobmanager pid {jm.start(_daemon_argv('jobmanager', jm.name), env=env, cwd=PROJECT_ROOT)}")
    tm_pids = [_start_taskmanager(tm, env) for tm in missing]
    if tm_pids:
        started.append(f"taskmanager pid {tm_pids[0]}" if len(tm_pids) == 1
                       else f"taskmanager pids {', '.join(map(str, tm_pids))}")
    try:
        wait_until(lambda: healthy(settings, taskmanagers), timeout, "flink cluster", jm)
    except UserError:
        stop(settings)
        raise
    return f"flink cluster started ({', '.join(started)}) on {rest_url(settings)}"


def _local_env(settings: Settings, taskmanagers: int, options: dict[str, str] | None = None) -> dict[str, str]:
    local = replace(settings, flink_rest_url=None)  # the local cluster is always the one on FLINK_REST_PORT
    env = {**os.environ, **local.to_env()}  # the whole environment passed on, the settings on top
    env.update(plugins_env(settings))  # the loopback reporter's plugin (compose's image keeps the wheel's plugins)
    properties = {**local_properties(settings, taskmanagers), **(options or {})}
    env["FLINK_PROPERTIES"] = yaml.safe_dump(properties, default_flow_style=False)
    return env


def _start_taskmanager(tm: ManagedProcess, env: dict[str, str]) -> int:
    return tm.start(_daemon_argv("taskmanager", tm.name, f"taskmanager.resource-id={tm.name}"), env=env,
                    cwd=PROJECT_ROOT)


def start_taskmanager(settings: Settings, number: int, env: dict[str, str] | None = None) -> int:
    """Start TaskManager ``number`` (also to replace one that died): it registers with the running JobManager."""
    known = len(taskmanagers(settings))
    return _start_taskmanager(taskmanager(settings, number), env or _local_env(settings, max(known, number)))


def stop(settings: Settings) -> str:
    stopped = [p.name for p in (*reversed(taskmanagers(settings)), jobmanager(settings)) if p.stop(timeout=30)]
    return f"stopped {', '.join(stopped)}" if stopped else "flink cluster was not running"


def status(settings: Settings) -> str:
    tms = [tm for tm in taskmanagers(settings) if tm.pid() is not None] or taskmanagers(settings)[:1]
    which = (f"taskmanager pid {tms[0].pid()}" if len(tms) == 1
             else f"taskmanager pids {', '.join(str(tm.pid()) for tm in tms)}")
    state = "healthy" if healthy(settings) else "not answering"
    return f"flink cluster: jobmanager pid {jobmanager(settings).pid()}, {which}, {state} on {rest_url(settings)}"


# -- submitting: idempotent, as a supervisor would ------------------------------------------------------------------
def active_job(settings: Settings, job_name: str) -> dict | None:
    """The cluster's job named ``job_name`` that is not finished (running, restarting, ...), or None."""
    overview = _rest_json(settings, "/jobs/overview")
    if overview is None:
        raise UserError(f"no Flink cluster answers on {settings.flink_rest}: start it (pipeline flink-cluster start) "
                        "or set FLINK_REST_URL")
    active = [j for j in overview.get("jobs", []) if j.get("name") == job_name and j.get("state") in ACTIVE_STATES]
    return max(active, key=lambda j: j.get("start-time", 0), default=None)


def ensure_submitted(settings: Settings, job, watch: float | None = None,
                     stop: threading.Event | None = None) -> int:  # job: flink_job.job_config.JobConfig
    """Submit ``job`` unless a job of its name is active on the cluster; with ``watch``, check again every
    ``watch`` seconds until ``stop`` (a JobManager restarted without HA has lost its jobs: the job is submitted
    again and resumes from its newest retained checkpoint, flink_job/checkpoints.py)."""
    stop = stop or threading.Event()
    while True:
        try:
            running = active_job(settings, job.job_name)
            if running is not None:
                print(f"job {job.job_name} is already {running['state'].lower()} on {settings.flink_rest} "
                      f"({running['jid']}): nothing to submit", flush=True)
            else:
                print(submit(settings, job), flush=True)
        except UserError as exc:
            if watch is None:
                raise
            print(f"error: {exc} (trying again in {watch:g} s)", file=sys.stderr, flush=True)
        if watch is None or stop.wait(watch):
            return 0


def stop_with_savepoint(settings: Settings, job_name: str, target: str, timeout: float = 300.0) -> str:
    """Stop the running job named ``job_name`` with a savepoint into ``target`` (Flink's stop-with-savepoint: sources
    stop, a last savepoint is taken, sinks commit, the job ends FINISHED); returns the savepoint's path."""
    import json

    found = active_job(settings, job_name)
    if found is None or found["state"] != "RUNNING":
        raise UserError(f"no running job {job_name} on {settings.flink_rest} to stop")
    body = json.dumps({"targetDirectory": target, "drain": False}).encode()
    request = urllib.request.Request(f"{settings.flink_rest}/jobs/{found['jid']}/stop", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        trigger = json.load(resp)["request-id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _rest_json(settings, f"/jobs/{found['jid']}/savepoints/{trigger}") or {}
        if status.get("status", {}).get("id") == "COMPLETED":
            operation = status.get("operation") or {}
            if "location" not in operation:
                raise UserError(f"stop with savepoint of {job_name} failed: "
                                f"{str(operation.get('failure-cause', operation))[:300]}")
            return operation["location"]
        time.sleep(1)
    raise UserError(f"stop with savepoint of {job_name} did not finish within {timeout:.0f} s")


def client_config(settings: Settings) -> dict[str, str]:
    """The options the `flink run` client passes on (client_conf's config.yaml), as strings."""
    config = yaml.safe_load((client_conf(settings) / "config.yaml").read_text()) or {}
    return {k: _yaml_scalar(v) for k, v in _flatten(config).items()}


def client_conf(settings: Settings) -> Path:
    """The `flink run` client's config: FLINK_PROPERTIES when given (the submitter in compose carries the cluster's),
    else the local JobManager's own config, so the cluster's options are the client's too."""
    if settings.flink_properties:
        properties = parse_properties(settings.flink_properties)
        return write_conf(conf_dir(settings, "flink-client"), daemon_config(properties))
    local = conf_dir(settings)
    if (local / "config.yaml").is_file():
        return local
    return write_conf(conf_dir(settings, "flink-client"), daemon_config({}))


def submit(settings: Settings, job, timeout: float = 300.0) -> str:  # job: flink_job.job_config.JobConfig
    """`flink run -py flink_job/__main__.py` against the cluster at FLINK_REST_URL; returns Flink's output (the
    job's own lines, e.g. which checkpoint it resumes from, and its id)."""
    require_flink()
    rest = urlparse(settings.flink_rest)
    argv = [
        str(FLINK_HOME / "bin" / "flink"), "run", "--detached",
        "-m", f"{rest.hostname}:{rest.port or 80}",
        "-py", str(PROJECT_ROOT / "flink_job" / "__main__.py"),
        "-pyexec", sys.executable,
        *job.to_argv(),
    ]
    env = {**_env(settings), "FLINK_CONF_DIR": str(client_conf(settings))}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise UserError(f"flink run failed (exit {done.returncode}):\n{tail}")
    return done.stdout.strip()


def job_state(settings: Settings, job_id: str) -> str:
    found = _rest_json(settings, f"/jobs/{job_id}")
    if found is None:
        raise UserError(f"no Flink cluster answers on {settings.flink_rest}")
    return found["state"]
