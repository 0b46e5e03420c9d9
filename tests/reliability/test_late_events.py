"""Late-data policy, deterministically: an event that arrives after the watermark has passed its windows is kept
in the raw table and left out of the aggregates (drop and count, README "Flink job").

A bounded burst cannot show this (the periodic watermark may or may not be emitted between two records of one
read batch), so the job runs unbounded on a one-partition topic and the test waits for proof that the windows
fired (their rows in the 5-minute and 2-hour aggregate topics) before it sends the late event.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from producer.action_types import ACTION_TYPES
from scripts import faults
from tests.conftest import free_port
from tests.reliability.conftest import (
    SLOT_MS,
    create_topics,
    day_ago_slot,
    encode,
    event,
    exact_raw_counts,
    job_for,
    lake_rows,
    produce,
    wait_for,
)

# In CI: one job start-up and ~40 s; the only deterministic check of the late-data policy.
# timeout: the bounded waits together (300 + 240 + 240 + 120 + 120 + 60) and a margin, so a wait that runs out
# says what it waited for, before pytest-timeout's default 900 s would
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(1_200)]

ON_TIME = 10  # events of user 7 in the first 5 minutes of the slot


def topic_values(settings, topic: str) -> list[dict]:
    """Every record value of ``topic``, read from the beginning."""
    from tests.test_flink_job import read_topic

    return [value for _key, value in read_topic(settings, topic)]


def counts_of(values: list[dict], user_id: int, window_start_ms: int, field: str) -> list[int]:
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(window_start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [v[field] for v in values if v["user_id"] == user_id and str(v["window_start"]).startswith(start)]


def late_records_dropped(rest: str) -> dict[str, int]:
    """numLateRecordsDropped per window operator of the running job (its mini-cluster's REST API): the one
    UserWindows operator of the default windows (counting once per aggregate an event misses), or each SQL
    WindowAggregate by the sink it feeds (--windows sql)."""
    import json
    import urllib.request

    def get(path: str):
        with urllib.request.urlopen(rest + path, timeout=5) as resp:
            return json.load(resp)

    jid = next(j["jid"] for j in get("/jobs/overview")["jobs"] if j["state"] == "RUNNING")
    dropped = {}
    for vertex in get(f"/jobs/{jid}")["vertices"]:
        if "WindowAggregate" not in vertex["name"] and not vertex["name"].startswith("UserWindows"):
            continue
        ids = [m["id"] for m in get(f"/jobs/{jid}/vertices/{vertex['id']}/metrics")
               if m["id"].endswith("numLateRecordsDropped")]
        values = get(f"/jobs/{jid}/vertices/{vertex['id']}/metrics?get={','.join(ids)}") if ids else []
        sink = ("UserWindows" if vertex["name"].startswith("UserWindows")
                else vertex["name"].split("_sink[")[0].rsplit("> ", 1)[-1])
        dropped[sink] = sum(int(float(v["value"])) for v in values)
    return dropped


def test_late_event_is_in_the_lake_and_not_in_the_aggregates(services, unique_name, tmp_path) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    checkpoints = tmp_path / "checkpoints"
    rest_port = free_port()
    rest = f"http://127.0.0.1:{rest_port}"
    # The default windows (one UserWindows operator); the SQL windows' late events are Flink's WindowAggregate's
    # own policy, and their rows equal the operator's (tests/test_flink_job.py runs both).
    job = job_for(unique_name, bounded=False, parallelism=1, checkpoint_interval="2 s",
                  checkpoint_dir=checkpoints.as_uri(),
                  flink_conf=(("rest.port", str(rest_port)), ("rest.address", "127.0.0.1"),
                              ("metrics.fetcher.update-interval", "1000")))
    create_topics(settings, job, source_partitions=1, aggregate_partitions=1)
    t0 = day_ago_slot()
    action = ACTION_TYPES[0]
    on_time = [encode(event(n, 7, action, t0 + 60_000 + n)) for n in range(ON_TIME)]
    # Past the 2-hour slot plus the 5 s watermark delay: both of user 7's windows fire.
    closing = [encode(event(100, 8, action, t0 + SLOT_MS + 60_000))]

    running = faults.start_job(settings, job, tmp_path / "job.log")
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)
        produce(settings, job.source_topic, on_time + closing)
        wait_for(lambda: counts_of(topic_values(settings, job.realtime_aggregations_topic), 7, t0, "total_actions")
                 and counts_of(topic_values(settings, job.user_aggregations_topic), 7, t0, "total_actions"),
                 240, "user 7's 5-minute and 2-hour windows fired", every=2)

        # Two minutes into the slot: inside both windows that already fired, far behind the watermark.
        late = encode(event(200, 7, action, t0 + 120_000))
        later = encode(event(300, 8, action, t0 + SLOT_MS + 120_000))
        produce(settings, job.source_topic, [late, later])
        total = ON_TIME + 3
        wait_for(lambda: exact_raw_counts(settings)[0] >= total or not running.alive(), 240, "all rows in the lake",
                 every=2)
        assert running.alive(), (tmp_path / "job.log").read_text()[-3000:]
        # Two more checkpoints: anything the late event could have caused would be in Kafka by then.
        last = faults.completed_checkpoints(checkpoints)[-1]
        after = faults.wait_for_checkpoint(checkpoints, running, timeout=120, after=int(last.name.split("-")[1]))
        faults.wait_for_checkpoint(checkpoints, running, timeout=120, after=int(after.name.split("-")[1]))
        # "drop and count": counted once for each of user 7's three windows it missed
        dropped: dict[str, int] = {}
        wait_for(lambda: sum(dropped.update(late_records_dropped(rest)) or dropped.values()) >= 3, 60,
                 "numLateRecordsDropped to count the late event", every=2)
        assert dropped == ({"UserWindows": 3} if job.windows == "operator" else
                           {"user_aggregations": 1, "user_action_aggregations": 1, "user_aggregations_realtime": 1})
    finally:
        running.kill9()

    raw = lake_rows(settings, "user_actions", ["event_id", "user_id", "timestamp"]).to_pylist()
    assert len(raw) == total and exact_raw_counts(settings) == (total, total)
    assert {"event_id": event(200, 7, action, 0)["event_id"], "user_id": 7, "timestamp": t0 + 120_000} in raw
    assert lake_rows(settings, "user_actions_rejected", ["reason"]).num_rows == 0
    # Each window's row for user 7 counts the on-time events only, and no later version replaced it.
    assert counts_of(topic_values(settings, job.realtime_aggregations_topic), 7, t0, "total_actions") == [ON_TIME]
    assert counts_of(topic_values(settings, job.user_aggregations_topic), 7, t0, "total_actions") == [ON_TIME]
    assert counts_of(topic_values(settings, job.user_action_aggregations_topic), 7, t0, "actions") == [ON_TIME]
