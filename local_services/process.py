"""Start, find and stop a background service by its PID file (never by process name)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from base.errors import UserError


@dataclass(frozen=True)
class ManagedProcess:
    """A service process identified by ``name``: PID file in ``run_dir``, log in ``logs_dir``."""

    name: str
    run_dir: Path
    logs_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID from the PID file if that process is alive; a stale file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # survives the starting shell; stopped by PID only
            )
        finally:
            log.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process (and its session), wait, then SIGKILL. True if one was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the process leads its own session (start_new_session)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0


def require_port_free(service: str, port: int) -> None:
    if port_open("127.0.0.1", port):
        raise UserError(
            f"{service}: port {port} on 127.0.0.1 is already in use by another program; "
            f"stop it or choose another port (see README, Troubleshooting)"
        )


def require_java() -> str:
    java = shutil.which("java")
    if not java:
        raise UserError("Java is missing: install a JDK 17 (e.g. apt-get install openjdk-17-jre-headless)")
    return java


def require_jars(directory: Path, what: str) -> None:
    if not directory.is_dir() or not any(directory.glob("*.jar")):
        raise UserError(f"{what} jars are missing in {directory}: run scripts/setup.sh first")


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
) -> None:
    """Poll ``check`` until true; fail with one line (and the log's last lines) on timeout or death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.pid() is None:
            raise UserError(
                f"{what} exited during start-up; see {process.log_file}:\n{process.log_tail()}"
            )
        time.sleep(0.3)
    raise UserError(f"{what} did not become healthy within {timeout:.0f}s; see its log"
                    + (f" {process.log_file}" if process else ""))


# The three verbs every local service shares (kafka, s3, the Flink cluster, the ClickHouse service).
def http_ok(url: str, must_contain: bytes | None = None, timeout: float = 2.0) -> bool:
    """True if ``url`` (on a port that accepts connections) answers 200, with ``must_contain`` in its body."""
    parsed = urlparse(url)
    if not port_open(parsed.hostname or "127.0.0.1", parsed.port or 80):
        return False
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200 and (must_contain is None or must_contain in resp.read())
    except OSError:
        return False


def status_line(name: str, proc: ManagedProcess, healthy: bool, where: str) -> str:
    pid = proc.pid()
    state = "healthy" if healthy else "not answering"
    return f"{name}: {'pid ' + str(pid) if pid else 'no pid file'}, {state} on {where}"


def stop_line(name: str, proc: ManagedProcess, timeout: float = 30.0) -> str:
    return f"{name} stopped" if proc.stop(timeout=timeout) else f"{name} was not running"
