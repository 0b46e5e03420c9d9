"""A PID file names one process, not a number: a stale file never makes us signal a stranger's process.

Real processes (``sleep``), no services: ManagedProcess finds and stops what it started; a PID file whose PID
is alive but belongs to another process (wrong start time, another boot, or a legacy bare PID) is reported,
removed and never signalled; a PID file of a dead process is removed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_services.process import ManagedProcess, read_pid_file, status_line, write_pid_file


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, Z, ...), or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text.rpartition(") ")[2].split()[0]


def start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[19])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return proc_state(pid) not in (None, "Z")


@pytest.fixture
def managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess("svc", tmp_path / "run", tmp_path / "logs")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen]:
    """A live process that is not ours to stop: a plain `sleep 300`, killed by the test itself at the end."""
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def assert_untouched(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, f"the unrelated process exited with {proc.returncode}"
    assert proc_state(proc.pid) in ("S", "R"), proc_state(proc.pid)  # not stopped (T), not dead (Z)
    os.kill(proc.pid, 0)  # raises if it is gone


def test_pid_file_records_pid_start_time_and_boot_id(managed):
    pid = managed.start(["sleep", "60"])
    try:
        lines = managed.pid_file.read_text().splitlines()
        assert lines[0] == str(pid)
        fields = dict(line.split("=", 1) for line in lines[1:])
        assert int(fields["starttime"]) == start_ticks(pid)
        assert fields["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    finally:
        managed.stop(timeout=10)


def test_started_process_is_found_and_stopped(managed):
    pid = managed.start(["sleep", "60"])
    try:
        assert managed.pid() == pid
        assert read_pid_file(managed.pid_file) == pid
        assert f"pid {pid}" in status_line("svc", managed, True, "here")
        began = time.monotonic()
        assert managed.stop(timeout=10) is True
        assert time.monotonic() - began < 5  # SIGTERM ended it; no wait for the timeout, no SIGKILL
    finally:
        if alive(pid):
            os.killpg(pid, 9)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
    assert not managed.pid_file.exists()
    assert managed.pid() is None
    assert managed.stop(timeout=1) is False


def test_pid_of_another_process_with_wrong_start_time_is_never_signalled(managed, stranger, caplog):
    managed.run_dir.mkdir(parents=True)
    write_pid_file(managed.pid_file, stranger.pid)
    # Fabricate the identity of an earlier process with that PID: same PID and boot, another start time.
    text = managed.pid_file.read_text().replace(f"starttime={start_ticks(stranger.pid)}",
                                                f"starttime={start_ticks(stranger.pid) - 1000}")
    assert "starttime=" in text
    managed.pid_file.write_text(text)

    with caplog.at_level(logging.WARNING, logger="local_services.process"):
        assert managed.pid() is None
    assert not managed.pid_file.exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"pid {stranger.pid} now belongs to another process" in warnings[0]
    assert "not signalled" in warnings[0] and str(managed.pid_file) in warnings[0]
    assert_untouched(stranger)

    managed.pid_file.write_text(text)
    assert managed.stop(timeout=2) is False
    assert not managed.pid_file.exists()
    time.sleep(0.3)  # a signal, had one been sent, would have landed by now
    assert_untouched(stranger)


def test_pid_file_from_another_boot_is_never_signalled(managed, stranger, caplog):
    managed.run_dir.mkdir(parents=True)
    # The right start time but another boot: after a reboot the same tick count means nothing.
    managed.pid_file.write_text(f"{stranger.pid}\nstarttime={start_ticks(stranger.pid)}\n"
                                f"boot_id=00000000-0000-0000-0000-000000000000\n")
    with caplog.at_level(logging.WARNING, logger="local_services.process"):
        assert managed.stop(timeout=2) is False
    assert not managed.pid_file.exists()
    assert any("reboot" in r.getMessage() and "not signalled" in r.getMessage() for r in caplog.records)
    time.sleep(0.3)
    assert_untouched(stranger)


def test_legacy_bare_pid_file_is_unverifiable_removed_and_never_signalled(managed, stranger, caplog):
    managed.run_dir.mkdir(parents=True)
    managed.pid_file.write_text(f"{stranger.pid}\n")  # what earlier versions wrote
    with caplog.at_level(logging.WARNING, logger="local_services.process"):
        assert managed.pid() is None
    assert not managed.pid_file.exists()
    assert any("legacy" in r.getMessage() and "not signalled" in r.getMessage() for r in caplog.records)
    assert_untouched(stranger)

    managed.pid_file.write_text(f"{stranger.pid}\n")
    assert managed.stop(timeout=2) is False
    assert not managed.pid_file.exists()
    time.sleep(0.3)
    assert_untouched(stranger)


def test_pid_file_of_a_dead_process_is_removed(managed, caplog):
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=10)
    assert not alive(proc.pid)
    managed.run_dir.mkdir(parents=True)
    managed.pid_file.write_text(f"{proc.pid}\nstarttime=12345\n")
    with caplog.at_level(logging.WARNING, logger="local_services.process"):
        assert managed.pid() is None
    assert not managed.pid_file.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # an ordinary stale file: quiet

    managed.pid_file.write_text(f"{proc.pid}\n")
    assert managed.stop(timeout=1) is False
    assert not managed.pid_file.exists()


def test_process_that_exits_is_no_longer_found(managed):
    pid = managed.start(["sleep", "0.2"])
    deadline = time.monotonic() + 10
    while managed.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert managed.pid() is None  # exited (a zombie of ours counts as exited)
    assert not managed.pid_file.exists()
    assert not alive(pid) or proc_state(pid) == "Z"


def test_command_name_with_spaces_and_parentheses(tmp_path, managed):
    # /proc/<pid>/stat's comm field may hold ") " itself; the start time must still be read right.
    odd = tmp_path / "odd ) (name"
    odd.symlink_to("/bin/sleep")
    pid = managed.start([str(odd), "60"])
    try:
        assert "odd ) (" in Path(f"/proc/{pid}/stat").read_text()
        assert managed.pid() == pid
    finally:
        began = time.monotonic()
        assert managed.stop(timeout=10) is True
    assert time.monotonic() - began < 5  # seen dead on SIGTERM, not waited out to the timeout
    assert managed.pid() is None
