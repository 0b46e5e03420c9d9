"""Session-wide fixtures: real local services, started once per test session (or reused)."""

from __future__ import annotations

import os
import uuid

import pytest

from base.config import Settings

# Every Flink JVM the tests start (PyFlink's mini-cluster gateway, `flink run`, the standalone cluster's scripts)
# reads JVM_ARGS. The tests' JVMs live a minute on small data, so C2's optimising compiles are CPU spent for nothing:
# the client compiler alone cut two Flink test files from ~60 s to ~48 s here. The product's JVMs keep the default.
os.environ.setdefault("JVM_ARGS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The configuration the tests run with: the environment's, as a user's would be."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Kafka and the S3 server, started by the project's own code; running ones are reused.

    They are left running at the end of the session: ./test.sh stops the ones it started, by PID; a bare `pytest`
    leaves them for the next session, which then starts in seconds (`pipeline services stop` stops them). The suite
    runs in two pytest-xdist workers, each with its own session: an exclusive lock on a file beside the services' data
    makes one start them while the other waits, then finds them running and reuses them.
    """
    import fcntl

    from local_services import manage

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / ".services-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        manage.start(settings)
    return settings


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a topic, table or bucket prefix, so tests never see each other's data."""
    return f"t_{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port P nothing listens on right now, outside the kernel's ephemeral range and this xdist worker's own
    (scripts/faults.py free_loopback_port), so concurrent tests and runs never collide. P+1 is free too: a local
    Flink cluster on REST port P takes P+1 for its JobManager's RPC."""
    from scripts.faults import free_loopback_port

    return free_loopback_port(span=2)


def pid_running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent (or init) to reap it."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def listening_addresses(pid: int) -> set[str]:
    """host:port of every listening TCP socket owned by ``pid`` or its descendants (/proc, no tools needed)."""
    import os
    import socket
    from pathlib import Path

    from scripts.faults import descendants

    inodes = set()
    for p in [pid, *descendants(pid)]:
        for fd in Path(f"/proc/{p}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # /proc prints IPv6 as four little-endian 32-bit words
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.add(f"{ip}:{int(hex_port, 16)}")
    return found


def listening_ports() -> set[int]:
    """Every TCP port some process of this machine listens on right now (any address, /proc/net/tcp and tcp6)."""
    from pathlib import Path

    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                ports.add(int(cols[1].split(":")[1], 16))
    return ports
