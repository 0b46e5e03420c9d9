"""The malformed-record catalogue through the real job (Kafka -> Flink -> Paimon, aggregates -> ClickHouse).

Invariant: every record read lands in exactly one of lake.user_actions or lake.user_actions_rejected; each
malformed record is rejected byte for byte with its reason; the valid records around it are unaffected
(raw rows and aggregates exactly as if the bad ones had never been sent).

Documented behaviour for two entries that are not "malformed":
- duplicate event_id: the job does not deduplicate a stream (that would need state per event_id for ever);
  both copies land in lake.user_actions, with distinct (kafka_partition, kafka_offset), and both count in
  the aggregates. Deduplicate at query time by event_id where it matters.
- an oversized but valid record (near the broker's 1 MiB limit) is an ordinary event; an oversized
  malformed one is rejected like any other.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.reliability.conftest import (
    create_topics,
    day_ago_slot,
    encode,
    event,
    job_for,
    lake_rows,
    load_aggregates,
    produce,
    reconcile_job,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

MIN = 60_000
HOUR = 60 * MIN
AHEAD = "timestamp too far ahead of its Kafka time"
BEHIND = "timestamp too far behind its Kafka time"


def catalogue(t0: int, actions: tuple[str, ...]) -> list[tuple[str, bytes | None, str]]:
    """(name, raw value, expected reason) of every kind of bad record."""
    a = actions[0]
    good = event(999, 5, a, t0)

    def variant(**changes: object) -> bytes:
        e = {**good, **changes}
        return json.dumps({k: v for k, v in e.items() if v is not ...}).encode()

    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    year_2200 = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp() * 1000)
    year_1990 = int(datetime(1990, 6, 1, tzinfo=UTC).timestamp() * 1000)
    filler = "x" * 1_000_000
    return [
        ("invalid UTF-8 bytes", b"\xff\xfe{\"user_id\": 1}", "invalid UTF-8"),
        ("invalid UTF-8 inside a string", variant(event_id="ab").replace(b'"ab"', b'"a\xc3\x28b"'), "invalid UTF-8"),
        ("truncated JSON", variant()[:40], "unparseable JSON"),
        ("empty value", b"", "unparseable JSON"),
        ("plain text", b"hello", "unparseable JSON"),
        ("JSON array", b"[1, 2, 3]", "not a JSON object"),
        ("JSON string", b'"an event"', "not a JSON object"),
        ("JSON number", b"42", "not a JSON object"),
        ("JSON null", b"null", "not a JSON object"),
        ("null record (tombstone)", None, "null value"),
        *((f"missing {f}", variant(**{f: ...}), f"missing field: {f}")
          for f in ("event_id", "user_id", "action_type", "timestamp", "metadata", "device_info")),
        # a JSON null counts as missing (Flink's JSON_EXISTS is false for it)
        *((f"null {f}", variant(**{f: None}), f"missing field: {f}")
          for f in ("event_id", "user_id", "timestamp", "metadata")),
        ("user_id as string", variant(user_id="5"), "wrong type: user_id is not an integer"),
        ("user_id as float", variant(user_id=5.5), "wrong type: user_id is not an integer"),
        ("timestamp as ISO string", variant(timestamp="2026-01-01T00:00:00Z"),
         "wrong type: timestamp is not an integer"),
        ("action_type as number", variant(action_type=17), "wrong type: action_type is not a string"),
        ("device_info as array", variant(device_info=["android"]), "wrong type: device_info is not an object"),
        ("event_id as number", variant(event_id=7), "wrong type: event_id is not a string"),
        ("user_id 0", variant(user_id=0), "user_id out of range"),
        ("user_id negative", variant(user_id=-5), "user_id out of range"),
        ("user_id over 30M", variant(user_id=30_000_001), "user_id out of range"),
        ("user_id over BIGINT", variant(user_id=2**63), "user_id out of range"),
        ("user_id huge", variant(user_id=10**40), "user_id out of range"),
        ("unknown action_type", variant(action_type="teleport"), "unknown action_type"),
        ("empty action_type", variant(action_type=""), "unknown action_type"),
        # Event time is trusted within bounds of the record's Kafka time (set when it is sent, seconds after now_ms):
        # 10 minutes ahead, 48 hours behind (the job's defaults).
        ("timestamp 2 days ahead", variant(timestamp=now_ms + 2 * 86_400_000), AHEAD),
        ("timestamp 23 hours ahead (a device clock set wrong)", variant(timestamp=now_ms + 23 * HOUR), AHEAD),
        ("timestamp 11 minutes ahead of the record's Kafka time", variant(timestamp=now_ms + 11 * MIN), AHEAD),
        ("timestamp in 2200", variant(timestamp=year_2200), AHEAD),
        ("timestamp decades back (1990)", variant(timestamp=year_1990), BEHIND),
        ("timestamp 49 hours behind the record's Kafka time", variant(timestamp=now_ms - 49 * HOUR), BEHIND),
        ("timestamp before 1970", variant(timestamp=-1000), "timestamp out of range"),
        ("timestamp 16 digits", variant(timestamp=10**15), "timestamp out of range"),
        ("empty event_id", variant(event_id=""), "event_id empty or longer than 64 characters"),
        ("event_id of 65 characters", variant(event_id="e" * 65), "event_id empty or longer than 64 characters"),
        ("escaped quote in event_id", variant(event_id='a"b'), "escaped characters in event_id or action_type"),
        ("escaped control character in action_type", variant(action_type=a + "\n"),
         "escaped characters in event_id or action_type"),
        ("metadata as string", variant(metadata="home"), "wrong type: metadata is not an object"),
        ("invalid UTF-8: an encoded surrogate", variant(event_id="ab").replace(b'"ab"', b'"a\xed\xa0\x80b"'),
         "invalid UTF-8"),
        # the windows would have to pick one of two timestamps: the first differs, the last is the valid one
        ("two different timestamp keys", variant().replace(b'{"event_id"', b'{"timestamp": %d, "event_id"' % (t0 + 1)),
         "ambiguous timestamp"),
        ("a second timestamp key spelled with escapes",
         variant().replace(b'{"event_id"', b'{"time\\u0073tamp": %d, "event_id"' % (t0 + 1)), "ambiguous timestamp"),
        ("content after the object", variant() + b" trailing", "unparseable JSON"),
        ("two JSON objects in one record", variant() + variant(), "unparseable JSON"),
        ("byte order mark", b"\xef\xbb\xbf" + variant(), "unparseable JSON"),
        ("oversized malformed, near the broker limit", b'{"event_id": "' + filler.encode(), "unparseable JSON"),
    ]


def test_every_malformed_record_is_rejected_with_its_reason_and_neighbours_are_unaffected(
        services, unique_name, tmp_path, chdb_scratch) -> None:
    from flink_job import pipeline
    from producer.action_types import ACTION_TYPES

    settings = replace(services, paimon_warehouse=f"file://{tmp_path}/wh")
    # One partition, one reader: records are read in the order sent, so a bad record that moved the
    # watermark (a far-future timestamp) would make the valid neighbours after it late, and they would
    # be missing from the aggregates.
    job = job_for(unique_name, parallelism=1)
    create_topics(services, job, source_partitions=1, aggregate_partitions=1)
    t0 = day_ago_slot()
    bad = catalogue(t0, ACTION_TYPES)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    near_past = event(len(bad) + 3, 6, ACTION_TYPES[2], now_ms - 47 * HOUR)  # the oldest: sent first, never late
    valid, records = [near_past], [encode(near_past)]
    for i, (_, value, _) in enumerate(bad):
        # a valid neighbour before each bad record, in event-time order, over several windows and users
        e = event(i, 1 + i % 7, ACTION_TYPES[i % 5], t0 + i * 3 * MIN)
        valid.append(e)
        records += [encode(e), (b"bad", value)]
        if i == 3:  # the same event sent again right after: both are kept (see module doc)
            duplicate = dict(e)
            valid.append(duplicate)
            records.append(encode(duplicate))
    big_valid = event(len(bad), 9, ACTION_TYPES[0], t0 + len(bad) * 3 * MIN,
                      metadata={"screen": "home", "note": "y" * 1_000_000})
    valid.append(big_valid)
    records.append(encode(big_valid))
    # Within the bounds, valid: 9 minutes ahead of its Kafka time, and (sent first, above) 47 hours behind it. The
    # watermark does not follow the one ahead past its Kafka time, so an on-time event sent after it is counted.
    near_future = event(len(bad) + 1, 6, ACTION_TYPES[1], now_ms + 9 * MIN)
    after = event(len(bad) + 2, 6, ACTION_TYPES[3], now_ms + 30_000)
    for e in (near_future, after):
        valid.append(e)
        records.append(encode(e))
    assert produce(services, job.source_topic, records, partition=0) == len(records)

    pipeline.run(settings, job, wait=True)

    # Rejected: each bad record exactly once, byte for byte, with the expected reason.
    rejected = lake_rows(settings, "user_actions_rejected", ["raw_value", "reason"]).to_pylist()
    got = Counter((r["raw_value"], r["reason"]) for r in rejected)
    want = Counter((value, reason) for _, value, reason in bad)
    wrong = [(name, reason, [g for (v, g) in got if v == value])
             for name, value, reason in bad if got[(value, reason)] != 1]
    assert not wrong, wrong
    assert got == want

    # Raw: exactly the valid records (the duplicate twice), nothing else; read = raw + rejected.
    raw = lake_rows(settings, "user_actions", ["event_id", "user_id", "timestamp", "kafka_offset"])
    assert Counter(raw["event_id"].to_pylist()) == Counter(e["event_id"] for e in valid)
    assert raw.num_rows + len(rejected) == len(records)
    dup_offsets = [r["kafka_offset"] for r in raw.to_pylist() if r["event_id"] == duplicate["event_id"]]
    assert len(set(dup_offsets)) == 2

    # Aggregates: ClickHouse (deduplicated view) equals the reconciliation from the lake, and the lake's
    # per-window totals equal the valid records' (no neighbour dropped as late).
    scratch = load_aggregates(chdb_scratch, job)
    result = reconcile_job(settings, scratch, min(e["timestamp"] for e in valid), max(e["timestamp"] for e in valid))
    assert result.ok, "\n".join(result.lines())
    assert result.events_scanned == len(valid)
    totals = scratch.client.query(
        f"SELECT user_id, sum(total_actions) FROM {scratch.database}.user_aggregations FINAL GROUP BY user_id"
    ).result_rows
    assert dict(totals) == dict(Counter(e["user_id"] for e in valid))
    realtime = scratch.client.query(
        f"SELECT sum(total_actions) FROM {scratch.database}.user_aggregations_realtime FINAL").result_rows
    assert realtime[0][0] == len(valid)
