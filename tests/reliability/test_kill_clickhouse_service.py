"""Invariant: kill -9 of the ClickHouse service mid-load, then a restart, changes no final result.

The loader commits Kafka offsets only after an insert, so a crash replays at most the batches in
flight; ReplacingMergeTree(version) + FINAL makes the replay idempotent. The service reads the default aggregate
topics, so it runs against a broker of this test only (free ports, its own DATA_DIR): everything in those topics is
this run's, the first insert observed is this run's records, and the feeder is checked to be still sending when the
service is killed, so the kill always lands mid-load.
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
from tests.conftest import free_port

# slow: the restarted loader waits for Kafka to expire the killed consumer's group membership
# (session timeout), so convergence takes 1-2 minutes.
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.slow]

USERS = 400  # top-users returns at most 1000 users: every test user fits in one answer
WINDOWS = 120  # 5-minute windows per user: 10 hours, three days ago (inside the 90-day TTL, clear of the
# demo test's recent windows), for users no other test uses
SEND_PAUSE_S = 0.5  # after every 2,000 records: the 96,000 records take ~25 s, so the kill lands while they arrive
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


@pytest.fixture
def private_kafka(services: Settings, tmp_path):
    """A broker of this test only (free ports, own DATA_DIR) holding the default topics and nothing else: the
    service's loader reads the default aggregate topics, which on the shared broker hold earlier runs' records."""
    from local_services import kafka
    from scripts.faults import free_loopback_port

    settings = replace(services, data_dir=tmp_path / "data", kafka_bootstrap=f"127.0.0.1:{free_loopback_port(span=2)}",
                       dashboard_port=free_port(), clickhouse_url=None)
    print(kafka.start(settings))
    try:
        kafka.ensure_topics(settings)
        yield settings
    finally:
        print(kafka.stop(settings))


def _get(settings: Settings, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.dashboard_port}{path}", timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def test_kill_9_mid_load_then_restart_keeps_final_results(private_kafka: Settings, unique_name: str) -> None:
    from confluent_kafka import Producer

    from clickhouse import service_process

    settings = private_kafka
    port = settings.dashboard_port
    args = ["--group", f"{unique_name}_loader", "--batch-rows", "2000", "--max-latency", "0.2"]
    # Version 1 rows, then corrections (version 2, double counts) of the same keys: 96,000 records.
    batches = [_records(1, 1), _records(2, 2)]
    records = sum(len(batch) for batch in batches)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    sent = [0]  # records handed to the producer so far

    def produce() -> None:
        for batch in batches:
            for i, (key, value) in enumerate(batch):
                producer.produce("user_aggregations_realtime", key=key, value=value)
                sent[0] += 1
                if i % 2000 == 0:
                    producer.poll(0)
                    time.sleep(SEND_PAUSE_S)  # spread over many seconds so the kill lands mid-load
        assert producer.flush(60) == 0

    span = (f"from={START.isoformat().replace('+00:00', 'Z')}"
            f"&to={(START + timedelta(minutes=5 * WINDOWS)).isoformat().replace('+00:00', 'Z')}")
    query = f"/api/top-users?window=5m&limit=1000&{span}"

    def this_runs_rows() -> int:
        """Rows the loader inserted, once the API shows users of this run (the broker holds nothing else)."""
        status = (_get(settings, "/api/status") or {}).get("loader") or {}
        users = (_get(settings, query) or {}).get("users", [])
        return status.get("rows_inserted", 0) if users else 0

    print(service_process.start(settings, args))
    feeder = threading.Thread(target=produce)
    feeder.start()
    try:
        deadline, inserted = time.monotonic() + 60, 0
        while time.monotonic() < deadline and not (inserted := this_runs_rows()):
            time.sleep(0.2)
        sending, sent_at_kill = feeder.is_alive(), sent[0]
        # killed mid-load: an insert of this run's records was observed, not every record was inserted yet, and
        # the feeder is still sending
        assert 0 < inserted < records, f"{inserted} of {records} rows inserted when the kill was due"
        assert sending and sent_at_kill < records, f"the feeder had sent all {sent_at_kill} records before the kill"
        proc = service_process.process(settings)
        pid = proc.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        from local_services.process import port_open

        deadline = time.monotonic() + 30
        while (proc.pid() is not None or port_open("127.0.0.1", port)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the kernel releases the dead process's listening socket
        print(f"killed pid {pid} with {inserted:,} rows inserted and {sent_at_kill:,} of {records:,} records sent; "
              f"port free after {30 - (deadline - time.monotonic()):.1f}s")
        print(service_process.start(settings, args))  # same group: resumes from the committed offsets
        feeder.join(120)

        expected = {29_000_000 + u: WINDOWS * 2 * (u % 7 + 1) for u in range(1, USERS + 1)}
        got: dict[int, int] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            answer = _get(settings, query) or {}
            got = {u["user_id"]: u["actions"] for u in answer.get("users", [])}
            if got == expected:
                break
            time.sleep(1)
        print(f"final results converged {240 - (deadline - time.monotonic()):.1f}s after the restart")
        assert got == expected, f"{sum(got.values())} actions in FINAL, expected {sum(expected.values())}"
    finally:
        feeder.join(120)
        service_process.stop(settings)
