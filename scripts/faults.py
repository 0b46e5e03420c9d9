"""Fault injection for the reliability tests and the soak run: processes we start, killed by their own PID.

Nothing here looks processes up by name: a job is started here (its own session, so its PID is also its
process-group id and the PyFlink gateway JVM it launches is in that group) and killed by that id.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from base.config import PROJECT_ROOT, Settings
from flink_job.job_config import JobConfig


@dataclass
class JobProcess:
    """``python -m flink_job`` in a local mini-cluster, started in its own session."""

    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the job's process group (driver + gateway JVM with the mini-cluster): a crash, no clean-up."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(30)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"job did not finish within {timeout:.0f}s; log {self.log}") from None


def start_job(settings: Settings, job: JobConfig, log: Path) -> JobProcess:
    """Run the job in a child process with ``settings`` (DATA_DIR, bootstrap, warehouse through the env)."""
    env = {**os.environ, **settings.to_env(),
           # its own Flink log (and RocksDB logs): the shared PyFlink log is truncated by every new gateway
           "FLINK_LOG_DIR": str(flink_log_dir(log))}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen([sys.executable, "-m", "flink_job", *job.to_argv()], cwd=PROJECT_ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    return JobProcess(popen, log)


def flink_log_dir(log: Path) -> Path:
    return log.parent / f"{log.stem}-flink-log"


def completed_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Completed checkpoints under a checkpoint root (``<group>/<job-id>/chk-N`` with ``_metadata``), oldest
    first."""
    found = [p.parent for p in checkpoint_dir.rglob("chk-*/_metadata")]
    return sorted(found, key=lambda p: (p.stat().st_mtime, int(p.name.split("-")[1])))


def wait_for_checkpoint(checkpoint_dir: Path, job: JobProcess, timeout: float, after: int = 0) -> Path:
    """The first completed checkpoint numbered above ``after``, while the job still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [c for c in completed_checkpoints(checkpoint_dir) if int(c.name.split("-")[1]) > after]
        if done:
            return done[-1]
        if not job.alive():
            raise AssertionError(f"job exited (rc {job.popen.returncode}) before a checkpoint; log {job.log}")
        time.sleep(0.2)
    raise AssertionError(f"no completed checkpoint within {timeout:.0f}s; log {job.log}")


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS in /proc), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants (the job driver plus its gateway JVM)."""
    return sum(rss_bytes(p) for p in descendants(pid) + [pid])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (/proc/<pid>/stat), 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, in clock ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants (the job driver plus its JVM)."""
    return sum(cpu_seconds(p) for p in descendants(pid) + [pid])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class Outage:
    """Timings of one stop / down / start of a service (seconds)."""

    stop_s: float  # the stop call: SIGTERM by PID file until the process is gone
    down_s: float  # from the stop returning to the start call
    start_s: float  # the start call, until the service answered again
    began: float  # wall clock (epoch s) when the stop was called
    ended: float  # wall clock when the service answered again

    def covers(self, at: float) -> bool:
        """True if the wall-clock time ``at`` falls while the service was stopped or starting."""
        return self.began <= at <= self.ended


def outage(stop: Callable[[], object], start: Callable[[], object], down_s: float) -> Outage:
    """Stop a service, keep it down ``down_s`` seconds, start it again (the service module's own stop/start)."""
    began, t0 = time.time(), time.monotonic()
    stop()
    t1 = time.monotonic()
    time.sleep(down_s)
    t2 = time.monotonic()
    start()
    return Outage(t1 - t0, t2 - t1, time.monotonic() - t2, began, time.time())


def free_loopback_port(span: int = 1) -> int:
    """A port P with P..P+span-1 free on 127.0.0.1 (Kafka takes P and P+1): a private service for a fault
    test, so stopping it never disturbs the shared one that other tests and jobs use.

    Drawn from 20000-31999, below Linux's ephemeral range (32768-60999), where the kernel puts every port-0 bind
    (Flink's RPC and blob ports) and every outgoing connection: none of those can take the port between this pick
    and the service's bind. Under pytest-xdist each worker draws from its own share of the range, so two workers
    never pick the same port."""
    low, high = 20_000, 32_000
    worker, workers = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    if worker.startswith("gw") and workers > 1:
        share = (high - low) // workers
        low += int(worker[2:]) * share
        high = low + share
    for _ in range(200):
        base = random.randrange(low, high - span)
        socks = []
        try:
            for port in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {span} consecutive free loopback ports found")


# Flink 2.0's DefaultScheduler logs one of these per failure it recovers from by its restart strategy
# ("{} tasks will be restarted to recover the failed task {}." / "... to recover from a global failure."; a failed
# checkpoint beyond the tolerable number is a global failure): tests/reliability/test_failover_counted.py forces
# one and checks that it is counted.
_FAILOVER = re.compile(r"tasks will be restarted to recover (?:the failed task|from a global failure)")
_JOB_RUNNING = re.compile(r"Job .* \([0-9a-f]{32}\) switched from state \w+ to RUNNING\.")


def job_failovers(job: JobProcess) -> int:
    """How often the job's own Flink log saw it fail and restart (Flink's restart strategy, no restore by us).

    A count of 0 means something only if that log is the job's and shows it running: no Flink log in the job's log
    folder, or one where the job never switched to RUNNING or never completed a checkpoint, is an AssertionError,
    never 0.
    """
    log_dir = flink_log_dir(job.log)
    logs = sorted(p for p in log_dir.glob("*.log*") if p.is_file()) if log_dir.is_dir() else []
    text = "".join(p.read_text(errors="replace") for p in logs)
    if not text:
        found = sorted(p.name for p in log_dir.glob("*")) if log_dir.is_dir() else "no such folder"
        raise AssertionError(f"no Flink log in {log_dir} (found: {found}): cannot count the job's failovers")
    if not _JOB_RUNNING.search(text) or not _COMPLETED.search(text):
        raise AssertionError(f"the Flink log in {log_dir} shows the job never ran (no switch to RUNNING or no "
                             f"completed checkpoint): a failover count of 0 would mean nothing; its tail:\n"
                             f"{text[-2000:]}")
    return len(_FAILOVER.findall(text))


_COMPLETED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?Completed checkpoint (\d+) for job "
                        r"([0-9a-f]{32}) .*?checkpointDuration=(\d+) ms", re.MULTILINE)


@dataclass(frozen=True)
class LoggedCheckpoint:
    """A checkpoint the job's own Flink log reports completed: its ``_metadata`` was finalized before the line."""

    job_id: str
    number: int
    duration_ms: int
    at: float  # epoch seconds of the log line (Flink logs in the machine's local time)

    def path(self, checkpoint_dir: Path) -> Path:
        """Its folder under the checkpoint root (``<root>/<consumer group>/<job-id>/chk-N``)."""
        found = sorted(checkpoint_dir.glob(f"*/{self.job_id}/chk-{self.number}"))
        return found[0] if found else checkpoint_dir / "?" / self.job_id / f"chk-{self.number}"


def logged_checkpoints(job: JobProcess) -> list[LoggedCheckpoint]:
    """Every checkpoint the job completed, from its own Flink log: the directories keep only the newest one."""
    text = "".join(p.read_text(errors="replace") for p in sorted(flink_log_dir(job.log).glob("*.log*")))
    return [LoggedCheckpoint(m.group(3), int(m.group(2)), int(m.group(4)),
                             datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
            for m in _COMPLETED.finditer(text)]


def kill9(pid: int) -> None:
    """SIGKILL a service we started (its PID leads its own process group): a crash, no clean shutdown."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LagClock:
    """Samples about once a second how far a consumer group's committed offsets trail a topic's end offsets.

    The Flink Kafka source commits its group's offsets when a checkpoint completes, so the committed offsets are
    what the lake holds; the lag is the age of the oldest record written but not yet committed.
    """

    def __init__(self, settings: Settings, topic: str, group: str, every: float = 1.0) -> None:
        import threading

        self.settings, self.topic, self.group, self.every = settings, topic, group, every
        self.samples: list[tuple[float, int, int]] = []  # (epoch s, end offsets, committed offsets)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagClock:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from local_services import kafka

        while not self._stop.wait(self.every):
            try:  # the end first: a record written between the two reads counts as not yet committed
                end = kafka.end_offsets(self.settings, self.topic)
                committed = end - kafka.group_lag(self.settings, self.topic, self.group)
            except Exception:
                continue  # a broker is down or a leader moves: no sample this time
            self.samples.append((time.time(), end, committed))

    def lag_at(self, i: int) -> float:
        """Seconds since the end offset first passed what was committed at sample ``i`` (0 if all committed)."""
        at, _, committed = self.samples[i]
        for t, end, _ in self.samples[: i + 1]:
            if end > committed:
                return at - t
        return 0.0

    def back_under(self, fault_at: float, limit_s: float = 10.0) -> float:
        """Seconds from ``fault_at`` until the lag fell under ``limit_s`` for good (0 if it never rose to it)."""
        last_over = fault_at
        for i, (t, _, _) in enumerate(self.samples):
            if t >= fault_at and self.lag_at(i) >= limit_s:
                last_over = t + self.every
        return last_over - fault_at

    def max_lag_after(self, fault_at: float) -> float:
        return max((self.lag_at(i) for i, (t, _, _) in enumerate(self.samples) if t >= fault_at), default=0.0)
