"""Lake maintenance beside the running streaming job (README "Lake maintenance"): one pass compacts the closed
slot and expires snapshots while events still arrive, including late ones into the slot being compacted; the
job never fails over, the lake holds every event exactly once, and a later pass restates the slot so that
ClickHouse (loaded by the project's loader) reconciles with the lake exactly.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from lakehouse.catalog import open_table
from lakehouse.health import table_health
from lakehouse.maintainer import Maintainer, MaintenancePolicy
from producer.action_types import ACTION_TYPES
from scripts import faults
from tests.reliability.conftest import (
    SLOT_MS,
    create_topics,
    day_ago_slot,
    encode,
    event,
    exact_raw_counts,
    job_for,
    lake_rows,
    load_aggregates,
    produce,
    reconcile_job,
    wait_for,
)

# In CI: one job start-up, two maintenance passes (one batch Flink runtime), about two minutes.
# timeout: the bounded waits together (300 + 4 x 120 + 240 + 60 + 240, the loader 120) and a margin for the passes,
# so a wait that runs out says what it waited for, before pytest-timeout's default 900 s would
pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(1_800)]

USERS = 300
PARTITIONS = 2
DECADES_AGO_MS = int(datetime(1990, 6, 1, tzinfo=UTC).timestamp() * 1000)


def late_mismatches(closed: list[dict], late: list[dict]) -> list[tuple]:
    """(table, window start, user, action type, lake count, ClickHouse count) of every key a late event touches:
    the lake counts the on-time and late events of the key, ClickHouse the on-time ones only (None: no row)."""
    from collections import Counter

    def key(e: dict, minutes: int, by_action: bool) -> tuple:
        start = e["timestamp"] - e["timestamp"] % (minutes * 60_000)
        return (datetime.fromtimestamp(start / 1000, UTC), e["user_id"], e["action_type"] if by_action else None)

    out = []
    for table, minutes, by_action in (("user_aggregations", 120, False), ("user_action_aggregations", 120, True),
                                      ("user_aggregations_realtime", 5, False)):
        on_time = Counter(key(e, minutes, by_action) for e in closed)
        lake = on_time + Counter(key(e, minutes, by_action) for e in late)
        out += [(table, *k, lake[k], on_time.get(k)) for k in {key(e, minutes, by_action) for e in late}]
    return sorted(out)


def test_maintenance_while_the_job_writes_loses_and_duplicates_nothing(services, chdb_scratch, unique_name,
                                                                       tmp_path) -> None:
    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    checkpoints = tmp_path / "checkpoints"
    job = job_for(unique_name, bounded=False, checkpoint_interval="2 s", checkpoint_dir=checkpoints.as_uri())
    create_topics(settings, job, source_partitions=PARTITIONS)
    t0 = day_ago_slot()
    later = t0 + SLOT_MS + 70 * 60_000  # 70 minutes into the next slot: past both graces of slot t0
    kinds = ACTION_TYPES[:5]
    closed = [event(n, 1 + n % USERS, kinds[n % 5], t0 + n * 2_000) for n in range(1500)]
    # One event per partition far enough on that every partition's watermark passes slot t0.
    front = [event(10_000 + p, 1 + p, kinds[0], later) for p in range(PARTITIONS)]
    # What arrives during maintenance: open-slot events, and late ones into slot t0 (some for new users).
    open_slot = [event(20_000 + n, 1 + n % USERS, kinds[n % 5], later + n * 1_000) for n in range(600)]
    late = [event(30_000 + n, (1 + n) if n < 20 else 5000 + n, kinds[n % 5], t0 + 60_000 + n) for n in range(40)]

    running = faults.start_job(settings, job, tmp_path / "job.log")
    try:
        faults.wait_for_checkpoint(checkpoints, running, timeout=300)
        for i in range(0, len(closed), 375):  # four commits: up to four small files per bucket
            produce(settings, job.source_topic, [encode(e) for e in closed[i:i + 375]])
            wait_for(lambda n=i + 375: exact_raw_counts(settings)[0] == n, 120, "a batch committed", every=1)
        for p, e in enumerate(front):
            produce(settings, job.source_topic, [encode(e)], partition=p)
        # Wrong clocks, one of each per partition: rejected with their reasons; they neither move the watermark
        # (so no open slot is taken as closed and restated) nor open a partition in 1990.
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        for p in range(PARTITIONS):
            produce(settings, job.source_topic, [encode(event(40_000 + p, 1, kinds[0], now_ms + 23 * 3_600_000)),
                                                 encode(event(41_000 + p, 1, kinds[0], DECADES_AGO_MS))], partition=p)
        wait_for(lambda: exact_raw_counts(settings)[0] == len(closed) + len(front), 240, "slot t0 in the lake",
                 every=2)

        def slot_t0():
            health = table_health(open_table(settings, "user_actions"))
            return health, next(p for p in health.partitions if p.slot_end_ms == t0 + SLOT_MS)

        # Closed once the job has committed a watermark past it (with the next checkpoint: 2 s).
        wait_for(lambda: slot_t0()[1].closed, 60, "the committed watermark past slot t0", every=1)
        before, slot = slot_t0()
        assert before.frontier_source == "watermark" and not slot.compacted, before.lines()

        # Events keep arriving while the pass compacts slot t0 and expires snapshots.
        def keep_sending() -> None:
            for n, i in enumerate(range(0, len(open_slot), 60)):  # ten batches, four late events in each
                batch = open_slot[i:i + 60] + late[4 * n:4 * n + 4]
                produce(settings, job.source_topic, [encode(e) for e in batch])
        sender = threading.Thread(target=keep_sending)
        sender.start()
        maintainer = Maintainer(settings, MaintenancePolicy(restate=False, snapshot_retain_max=5, snapshot_retain_min=1,
                                                            snapshot_retain_hours=0, orphan_age_hours=0))
        passes = [maintainer.tick()]
        sender.join()
        # The late events may take a bucket of the slot to five files, so that the writer compacts it too and
        # Paimon refuses the pass's commit: the writer wins and the next pass compacts the slot (README).
        while slot.label not in passes[-1].compacted and len(passes) < 3:
            passes.append(maintainer.tick())
        assert [p.compacted for p in passes] == [[]] * (len(passes) - 1) + [[slot.label]], passes
        assert all(e.startswith(f"compact {slot.label}: ") for p in passes for e in p.errors), passes
        total = len(closed) + len(front) + len(open_slot) + len(late)
        wait_for(lambda: exact_raw_counts(settings)[0] >= total or not running.alive(), 240, "every event in the lake",
                 every=2)
        assert running.alive() and faults.job_failovers(running) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        running.kill9()

    reasons = sorted(lake_rows(settings, "user_actions_rejected", ["reason"])["reason"].to_pylist())
    assert reasons == ["timestamp too far ahead of its Kafka time"] * PARTITIONS + [
        "timestamp too far behind its Kafka time"] * PARTITIONS, reasons
    ids = lake_rows(settings, "user_actions", ["event_id"])["event_id"].to_pylist()
    sent = [e["event_id"] for e in closed + front + open_slot + late]
    assert len(ids) == len(sent) and sorted(ids) == sorted(sent)  # nothing lost, nothing twice
    after = table_health(open_table(settings, "user_actions"))
    compacted = next(p for p in after.partitions if p.label == slot.label)
    assert compacted.compacted and compacted.rows == len(closed) + len(late), after.lines()

    # The job left the late events out of its windows: ClickHouse differs from the lake by exactly their keys (the
    # lake counts them, ClickHouse does not); the next pass restates slot t0 from the lake.
    scratch = load_aggregates(chdb_scratch, job)
    differing = reconcile_job(settings, scratch, t0, t0 + SLOT_MS - 1).mismatches
    got = sorted((m.table, m.window_start, m.user_id, m.action_type, m.lake, m.clickhouse) for m in differing)
    assert got == late_mismatches(closed, late), "\n".join(map(str, differing))
    restating = Maintainer(settings, replace(maintainer.policy, restate=True, database=scratch.database),
                           clickhouse=lambda: scratch.client, flink=maintainer.flink)  # one batch runtime
    second = restating.tick()
    slot_start = datetime.fromtimestamp(t0 / 1000, UTC)
    assert second.errors == [] and second.restated == [f"{slot_start:%Y-%m-%d %H:%M}"], second  # no open slot
    # exactly the two slots the valid events fall in: none in 1990, none 23 hours ahead
    assert sorted(p.slot_end_ms for p in after.partitions) == [t0 + SLOT_MS, t0 + 2 * SLOT_MS], after.lines()
    assert reconcile_job(settings, scratch, t0, t0 + SLOT_MS - 1).ok
    assert restating.tick().restated == []  # once per slot
    # the job is gone, so the pass's expiry was the last commit: every snapshot is older than snapshot_retain_hours
    # (0), so only snapshot_retain_min (1) is left, the latest (snapshot_retain_max, 5, is an upper bound)
    snapshots = open_table(settings, "user_actions").snapshot_manager()
    latest = snapshots.get_latest_snapshot().id
    assert (snapshots.try_get_earliest_snapshot().id, latest) == (latest, latest)
