"""Session-wide fixtures: real local services, started once per test session (or reused)."""

from __future__ import annotations

import uuid

import pytest

from base.config import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The configuration the tests run with: the environment's, as a user's would be."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def services(settings: Settings) -> Settings:
    """Kafka and the S3 server, started by the project's own code; running ones are reused.

    They are left running at the end so a second session starts in seconds; `pipeline services
    stop` (or scripts/stop.sh) stops them by PID.
    """
    from local_services import manage

    manage.start(settings)
    return settings


@pytest.fixture
def unique_name() -> str:
    """A fresh name for a topic, table or bucket prefix, so tests never see each other's data."""
    return f"t_{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick), so concurrent runs never collide."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
