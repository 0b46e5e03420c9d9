"""The ClickHouse service as a background process with a PID file (like Kafka and S3)."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

from base.config import PROJECT_ROOT, Settings
from local_services.process import ManagedProcess, http_ok, require_port_free, status_line, stop_line, wait_until

NAME = "clickhouse"


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess(NAME, settings.run_dir, settings.logs_dir)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.dashboard_port}"


def fetch_status(settings: Settings, timeout: float = 5.0) -> dict | None:
    """The running service's /api/status, or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url(settings)}/api/status", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def healthy(settings: Settings) -> bool:
    return http_ok(f"{url(settings)}/healthz")


def start(settings: Settings, extra_args: list[str] | None = None, timeout: float = 60.0) -> str:
    proc = process(settings)
    if proc.pid() is not None and healthy(settings):
        return f"clickhouse service already running (pid {proc.pid()}) on {url(settings)}"
    require_port_free("clickhouse service (dashboard)", settings.dashboard_port)
    argv = [sys.executable, "-m", "pipeline", "clickhouse", "serve", *(extra_args or [])]
    # the whole environment passed on (no variable read here), the settings on top
    pid = proc.start(argv, env={**os.environ, **settings.to_env()}, cwd=PROJECT_ROOT)
    wait_until(lambda: healthy(settings), timeout, "clickhouse service", proc)
    return f"clickhouse service started (pid {pid}): dashboard {url(settings)}/ ; log {proc.log_file}"


def stop(settings: Settings) -> str:
    return stop_line("clickhouse service", process(settings))


def status(settings: Settings) -> str:
    return status_line("clickhouse service", process(settings), healthy(settings), url(settings))
