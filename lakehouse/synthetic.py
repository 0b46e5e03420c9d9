"""Synthetic rows in the exact ``lake.user_actions`` / ``lake.user_actions_rejected`` schemas, and a fast
pypaimon writer for them.

Tests and the benchmark use these to build real Paimon tables without waiting for the Flink job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.bucketing import buckets_of
from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED

if TYPE_CHECKING:
    from pypaimon.table.file_store_table import FileStoreTable

SLOT_MS = 2 * 3600 * 1000
# A handful of the producer's action names is enough to exercise per-type counts.
ACTION_TYPES = (
    "app_open", "app_close", "screen_view", "button_click", "search", "add_to_cart",
    "purchase", "share", "like", "comment", "logout", "login",
)
_METADATA = ('{"screen":"home","duration_ms":120}', '{"screen":"feed","duration_ms":850}',
             '{"screen":"cart","duration_ms":40}')
_DEVICES = ('{"os":"android","model":"Pixel 8","country":"DE"}', '{"os":"ios","model":"iPhone 15","country":"US"}')


def user_actions(
    n: int, start_ms: int, span_ms: int, users: int = 1000, seed: int = 0, first_offset: int = 0
) -> pa.Table:
    """``n`` valid events with event times uniform in [start_ms, start_ms + span_ms), users 1..users."""
    rng = np.random.default_rng(seed)
    ts = np.sort(start_ms + rng.integers(0, span_ms, n, dtype=np.int64))
    event_time = pa.array(ts, pa.timestamp("ms"))
    offsets = np.arange(first_offset, first_offset + n, dtype=np.int64)
    return pa.table(
        {
            "event_id": pc.binary_join_element_wise("ev-", pc.cast(pa.array(offsets + seed * 10**12), pa.string()), ""),
            "user_id": pa.array(rng.integers(1, users + 1, n, dtype=np.int64)),
            "action_type": _pick(ACTION_TYPES, rng.integers(0, len(ACTION_TYPES), n)),
            "timestamp": pa.array(ts),
            "metadata": _pick(_METADATA, rng.integers(0, len(_METADATA), n)),
            "device_info": _pick(_DEVICES, rng.integers(0, len(_DEVICES), n)),
            "event_time": event_time,
            "event_date": pc.strftime(event_time, "%Y-%m-%d"),
            # The 2-hour slot's start hour, derived the way the Flink job derives it (UTC).
            "event_hour": pa.array(((ts % 86_400_000) // SLOT_MS * 2).astype(np.int32)),
            "kafka_partition": pa.array((offsets % 6).astype(np.int32)),
            "kafka_offset": pa.array(offsets),
            "ingest_time": event_time,
        },
        schema=USER_ACTIONS.arrow_schema(),
    )


def rejected(n: int, ingest_ms: int, seed: int = 0) -> pa.Table:
    """``n`` rejected records (bad JSON, out-of-range ids) with their reasons."""
    rng = np.random.default_rng(seed)
    reasons = ("invalid JSON", "user_id out of range", "unknown action_type", "missing field: timestamp")
    values = [f'{{"user_id": {i}, "broken": '.encode() for i in range(n)]
    times = pa.array(np.full(n, ingest_ms, dtype=np.int64), pa.timestamp("ms"))
    return pa.table(
        {
            "raw_key": pa.array([str(i).encode() for i in range(n)], pa.binary()),
            "raw_value": pa.array(values, pa.binary()),
            "reason": _pick(reasons, rng.integers(0, len(reasons), n)),
            "kafka_partition": pa.array(np.zeros(n, dtype=np.int32)),
            "kafka_offset": pa.array(np.arange(n, dtype=np.int64)),
            "kafka_timestamp": times,
            "ingest_time": times,
            "ingest_date": pc.strftime(times, "%Y-%m-%d"),
        },
        schema=USER_ACTIONS_REJECTED.arrow_schema(),
    )


# Reasons of the job's catalogue (docs/design.md, "Rejection reasons"), most frequent first, with the share each gets
# in ``rejected_over``: a few dominate, as when one producer sends one kind of bad record.
REJECT_REASONS = (
    ("unparseable JSON", 0.40), ("missing field: timestamp", 0.20), ("unknown action_type", 0.15),
    ("user_id out of range", 0.10), ("wrong type: user_id is not an integer", 0.06),
    ("timestamp too far behind its Kafka time", 0.04), ("null value", 0.03), ("invalid UTF-8", 0.02),
)


def rejected_over(n: int, start_ms: int, span_ms: int, seed: int = 0) -> pa.Table:
    """``n`` rejected records with ingest (and Kafka) times uniform in [start_ms, start_ms + span_ms), oldest first,
    and reasons drawn with the shares of ``REJECT_REASONS``."""
    rng = np.random.default_rng(seed)
    names, shares = zip(*REJECT_REASONS, strict=True)
    times = pa.array(np.sort(start_ms + rng.integers(0, span_ms, n, dtype=np.int64)), pa.timestamp("ms"))
    return pa.table(
        {
            "raw_key": pa.array([b"%d" % i for i in range(n)], pa.binary()),
            "raw_value": pa.array([b'{"user_id": 1, "broken": '] * n, pa.binary()),
            "reason": _pick(names, rng.choice(len(names), n, p=np.array(shares) / sum(shares))),
            "kafka_partition": pa.array((np.arange(n) % 6).astype(np.int32)),
            "kafka_offset": pa.array(np.arange(n, dtype=np.int64)),
            "kafka_timestamp": times,
            "ingest_time": times,
            "ingest_date": pc.strftime(times, "%Y-%m-%d"),
        },
        schema=USER_ACTIONS_REJECTED.arrow_schema(),
    )


def _pick(choices: tuple[str, ...], idx: np.ndarray) -> pa.Array:
    return pc.take(pa.array(choices, pa.string()), pa.array(idx))


def write(table: FileStoreTable, data: pa.Table) -> None:
    """Append ``data`` to ``table`` as one snapshot.

    For fixed-bucket tables rows are grouped by (partition, bucket) with numpy and handed to pypaimon's
    file-store writer directly: ``write_arrow`` hashes every row in Python (~140 us/row), too slow for
    the benchmark's millions of rows. Files and the commit are pypaimon's own.
    """
    builder = table.new_batch_write_builder()
    writer, commit = builder.new_write(), builder.new_commit()
    try:
        buckets = table.options.bucket()
        if buckets > 0:
            for partition, bucket, rows in _groups(table, data, buckets):
                writer.file_store_write.write(partition, bucket, rows)
        else:
            writer.write_arrow(data)
        commit.commit(writer.prepare_commit())
    finally:
        writer.close()
        commit.close()


def _groups(table: FileStoreTable, data: pa.Table, buckets: int):
    (key,) = [k.strip() for k in (table.options.bucket_key() or "").split(",") if k.strip()]
    code = buckets_of(data.column(key).to_numpy(), buckets).astype(np.int64)
    dictionaries = []
    for name in table.partition_keys:
        encoded = pc.dictionary_encode(data.column(name)).combine_chunks()
        dictionaries.append(encoded.dictionary.to_pylist())
        code = code + encoded.indices.to_numpy().astype(np.int64) * buckets * _span(dictionaries[:-1])
    order = np.argsort(code, kind="stable")
    code = code[order]
    data = data.take(pa.array(order))
    starts = np.concatenate(([0], np.flatnonzero(np.diff(code)) + 1))
    ends = np.append(starts[1:], len(code))
    for start, end in zip(starts, ends, strict=True):
        c = int(code[start])
        bucket, rest = c % buckets, c // buckets
        partition = []
        for values in dictionaries:
            partition.append(values[rest % len(values)])
            rest //= len(values)
        yield tuple(partition), bucket, data.slice(start, end - start).combine_chunks().to_batches()[0]


def _span(dictionaries: list[list]) -> int:
    span = 1
    for values in dictionaries:
        span *= len(values)
    return span

