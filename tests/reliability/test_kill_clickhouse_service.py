"""Invariant: kill -9 of the ClickHouse service mid-load, then a restart, changes no final result.

The loader commits Kafka offsets only after an insert, so a crash replays at most the batches in
flight; ReplacingMergeTree(version) + FINAL makes the replay idempotent. Records keep arriving while
the service is killed, so the kill always lands mid-load.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from base.config import Settings

# slow: the restarted loader waits for Kafka to expire the killed consumer's group membership
# (session timeout), so convergence takes 1-2 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

PORT = 18052
USERS = 400  # top-users returns at most 1000 users: every test user fits in one answer
WINDOWS = 120  # 5-minute windows per user: 10 hours, three days ago (inside the 90-day TTL, clear of the
# demo test's recent windows), for users no other test uses
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)


def _records(version: int, scale: int) -> list[tuple[bytes, bytes]]:
    out = []
    for w in range(WINDOWS):
        ws = START + timedelta(minutes=5 * w)
        for u in range(1, USERS + 1):
            user_id = 29_000_000 + u
            value = {"window_start": ws.strftime("%Y-%m-%d %H:%M:%S"),
                     "window_end": (ws + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S"),
                     "user_id": user_id, "total_actions": scale * (u % 7 + 1), "version": version}
            key = {"window_start": value["window_start"], "user_id": user_id}
            out.append((json.dumps(key).encode(), json.dumps(value).encode()))
    return out


def _get(path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def test_kill_9_mid_load_then_restart_keeps_final_results(services: Settings, unique_name: str, tmp_path) -> None:
    from confluent_kafka import Producer

    from clickhouse import service_process

    settings = replace(services, data_dir=tmp_path / "data", dashboard_port=PORT, clickhouse_url=None)
    args = ["--group", f"{unique_name}_loader", "--batch-rows", "2000", "--max-latency", "0.2"]
    # Version 1 rows, then corrections (version 2, double counts) of the same keys: 96,000 records.
    batches = [_records(1, 1), _records(2, 2)]
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "linger.ms": 20})

    def produce() -> None:
        for batch in batches:
            for i, (key, value) in enumerate(batch):
                producer.produce("user_aggregations_realtime", key=key, value=value)
                if i % 2000 == 0:
                    producer.poll(0)
                    time.sleep(0.05)  # spread over several seconds so the kill lands mid-load
        assert producer.flush(60) == 0

    print(service_process.start(settings, args))
    feeder = threading.Thread(target=produce)
    feeder.start()
    try:
        deadline, inserted = time.monotonic() + 60, 0
        while time.monotonic() < deadline:
            inserted = ((_get("/api/status") or {}).get("loader") or {}).get("rows_inserted", 0)
            if inserted > 0:
                break
            time.sleep(0.2)
        # killed mid-load: an insert was observed, and not every record was inserted yet
        records = sum(len(batch) for batch in batches)
        assert 0 < inserted < records, f"{inserted} of {records} rows inserted when the kill was due"
        proc = service_process.process(settings)
        pid = proc.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        from local_services.process import port_open

        deadline = time.monotonic() + 30
        while (proc.pid() is not None or port_open("127.0.0.1", PORT)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the kernel releases the dead process's listening socket
        print(f"killed pid {pid}; port free after {30 - (deadline - time.monotonic()):.1f}s")
        print(service_process.start(settings, args))  # same group: resumes from the committed offsets
        feeder.join(120)

        expected = {29_000_000 + u: WINDOWS * 2 * (u % 7 + 1) for u in range(1, USERS + 1)}
        query = (f"/api/top-users?window=5m&limit=1000&from={START.isoformat().replace('+00:00', 'Z')}"
                 f"&to={(START + timedelta(minutes=5 * WINDOWS)).isoformat().replace('+00:00', 'Z')}")
        got: dict[int, int] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            answer = _get(query) or {}
            got = {u["user_id"]: u["actions"] for u in answer.get("users", [])}
            if got == expected:
                break
            time.sleep(1)
        print(f"final results converged {240 - (deadline - time.monotonic()):.1f}s after the restart")
        assert got == expected, f"{sum(got.values())} actions in FINAL, expected {sum(expected.values())}"
    finally:
        feeder.join(120)
        service_process.stop(settings)
