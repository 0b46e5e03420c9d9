"""Fault injection for the reliability tests and the soak run: processes we start, killed by their own PID.

Nothing here looks processes up by name: a job is started here (its own session, so its PID is also its
process-group id and the PyFlink gateway JVM it launches is in that group) and killed by that id.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flink_job.job_config import JobConfig
from pipeline.config import PROJECT_ROOT, Settings


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
    env = {**os.environ, "DATA_DIR": str(settings.data_dir), "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
           "PAIMON_WAREHOUSE": settings.paimon_warehouse, "S3_ENDPOINT": settings.s3_endpoint,
           "S3_ACCESS_KEY": settings.s3_access_key, "S3_SECRET_KEY": settings.s3_secret_key,
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
    """Completed checkpoints (``<job-id>/chk-N`` with ``_metadata``), oldest first."""
    found = [p.parent for p in checkpoint_dir.glob("*/chk-*/_metadata")]
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
