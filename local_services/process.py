"""Start, find and stop a background service by its PID file (never by process name).

A PID alone does not name a process: after a crash or a reboot the number in a stale PID file can belong to
any other program. So the PID file records the process's identity, and nothing is signalled unless the live
process still matches it. The file stays human-readable: the PID on the first line, then ``key=value`` lines
(unknown keys are ignored, so a later version may add some)::

    12345
    starttime=8391742
    boot_id=0f6d3c52-9a39-4c0e-a1a6-7e1f0b5d2c11

``starttime`` is field 22 of ``/proc/<pid>/stat`` (clock ticks since boot, fixed for the life of a process
and unchanged by ``exec``); ``boot_id`` is ``/proc/sys/kernel/random/boot_id``, so a reboot invalidates
every file written before it. ``write_pid_file`` is the only writer and ``read_pid_file`` the only reader.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys" / "kernel" / "random" / "boot_id"


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
        """The PID if the process the PID file recorded is still running; a stale file is removed.

        A PID whose process is alive but is not the one recorded (PID reused after a crash or a reboot, or a
        legacy file without an identity) is reported with a warning, its file removed, and never signalled.
        """
        return read_pid_file(self.pid_file)

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,  # survives the starting shell; stopped by PID only
            )
        finally:
            log_file.close()
        write_pid_file(self.pid_file, proc.pid)
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process (and its session), wait, then SIGKILL. True if one was running.

        Only the process the PID file recorded is signalled: its identity is checked before each signal, so a
        PID reused by another program while we wait is left alone.
        """
        verified = _read_verified(self.pid_file)
        if verified is None:
            return False
        pid, started = verified
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _still_running(pid, started):
            time.sleep(0.2)
        if _still_running(pid, started):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(0.5)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass(frozen=True)
class _ProcStat:
    """What ``/proc/<pid>/stat`` says about a live (or zombie) process."""

    comm: str
    state: str
    start_ticks: int


def _proc_stat(pid: int) -> _ProcStat | None:
    """``/proc/<pid>/stat`` parsed, or None if there is no such process (or it cannot be read)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text(errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the LAST ") ".
    head, sep, tail = text.rpartition(") ")
    fields = tail.split()
    if not sep or len(fields) < 20:
        return None
    try:
        # fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
        return _ProcStat(comm=head.partition("(")[2], state=fields[0], start_ticks=int(fields[19]))
    except ValueError:
        return None


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat.start_ticks if stat is not None else None


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _still_running(pid: int, start_ticks: int) -> bool:
    """True while ``pid`` is alive, not a zombie, and still the process that started at ``start_ticks``."""
    stat = _proc_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks and _alive(pid)


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` and its identity (start time, boot id) in ``path``; the only way a PID file is written.

    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    lines = [str(pid)]
    start_ticks = _start_ticks(pid)
    if start_ticks is not None:
        lines.append(f"starttime={start_ticks}")
    boot_id = _boot_id()
    if boot_id is not None:
        lines.append(f"boot_id={boot_id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> int | None:
    """The PID in ``path`` if that process is running and is the one recorded; otherwise None.

    A file whose process is gone is removed quietly. A file whose PID is alive but does not match the recorded
    identity (PID reused after a crash or reboot), or that records no identity at all, is removed with a
    warning; that process is never signalled.
    """
    verified = _read_verified(path)
    return verified[0] if verified is not None else None


def _read_verified(path: Path) -> tuple[int, int] | None:
    """``(pid, start ticks)`` of the live process ``path`` records, if it matches; see ``read_pid_file``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    try:
        pid = int(lines[0].strip())
        if pid <= 0:
            raise ValueError(pid)
    except (IndexError, ValueError):
        log.warning("unreadable PID file %s (%r), removed", path, text[:40])
        _remove_if_unchanged(path, text)
        return None
    fields = {key.strip(): value for key, _, value in (line.partition("=") for line in lines[1:])}
    stat = _proc_stat(pid)
    if stat is None or stat.state == "Z" or not _alive(pid):
        _remove_if_unchanged(path, text)  # the process is gone: an ordinary stale file
        return None
    recorded_ticks = fields.get("starttime", "").strip()
    recorded_boot = fields.get("boot_id", "").strip()
    boot_id = _boot_id()
    if not recorded_ticks.isdigit():
        # A legacy file (only a PID, written before identities were recorded) cannot tell our service from
        # a stranger that reuses the number: it is treated as stale and removed, and never signalled. A
        # service started by an older version that still runs must be stopped by hand this once.
        log.warning("stale PID file %s: pid %d (%r) is alive but the file records no identity (legacy format), "
                    "so it may belong to another process; removed; not signalled", path, pid, stat.comm)
    elif recorded_boot and boot_id and recorded_boot != boot_id:
        log.warning("stale PID file %s: pid %d now belongs to another process (%r; the file predates a reboot, "
                    "boot_id %s, now %s), removed; not signalled", path, pid, stat.comm, recorded_boot, boot_id)
    elif int(recorded_ticks) != stat.start_ticks:
        log.warning("stale PID file %s: pid %d now belongs to another process (%r, started at tick %d, the "
                    "recorded one at tick %s), removed; not signalled",
                    path, pid, stat.comm, stat.start_ticks, recorded_ticks)
    else:
        return pid, stat.start_ticks
    _remove_if_unchanged(path, text)
    return None


def _remove_if_unchanged(path: Path, text: str) -> None:
    """Remove a stale PID file unless a new start has just rewritten it."""
    try:
        if path.read_text() == text:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    stat = _proc_stat(pid)
    return stat is None or stat.state != "Z"


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
