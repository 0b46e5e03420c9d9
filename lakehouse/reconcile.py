"""Reconciliation: recompute the three aggregates from ``lake.user_actions`` and compare them with
ClickHouse's deduplicated tables (FINAL), key by key.

The lake side is pypaimon + Arrow ``group_by``: it needs nothing but the warehouse, prunes partitions
by date and files by the per-file ``timestamp`` statistics (each file holds one 2-hour slot). The
ClickHouse side reads ``FINAL``, so a replayed or re-emitted row is counted once, as every dashboard
query counts it. Any key whose count differs, or that exists on one side only, is a mismatch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from base import contract
from base.errors import UserError
from lakehouse import queries

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from pypaimon.table.file_store_table import FileStoreTable

MINUTE_MS = 60_000
SLOT_MS = 120 * MINUTE_MS  # a partition of lake.user_actions: (event_date, event_hour)


@dataclass(frozen=True)
class Aggregate:
    """One ClickHouse aggregate table: its window size, key columns past window_start, count column."""

    table: str
    window_ms: int
    keys: tuple[str, ...]
    count: str


AGGREGATES = tuple(Aggregate(a.name, a.window_minutes * MINUTE_MS, a.key_columns, a.count_column)
                   for a in contract.AGGREGATES)


@dataclass(frozen=True)
class Mismatch:
    table: str
    window_start: datetime
    user_id: int
    action_type: str | None
    lake: int | None  # None: the key is in ClickHouse only
    clickhouse: int | None  # None: the key is in the lake only

    def __str__(self) -> str:
        key = f"window_start={self.window_start:%Y-%m-%d %H:%M} user_id={self.user_id}"
        if self.action_type is not None:
            key += f" action_type={self.action_type}"
        show = lambda n: "missing" if n is None else str(n)  # noqa: E731
        return f"{self.table}: {key}: lake={show(self.lake)} clickhouse={show(self.clickhouse)}"


@dataclass(frozen=True)
class TableCheck:
    table: str
    window_from: datetime  # first window start compared
    window_to: datetime  # end of the last window compared
    lake_keys: int
    clickhouse_keys: int
    matching: int
    mismatches: list[Mismatch]


@dataclass(frozen=True)
class ReconcileResult:
    start: datetime
    end: datetime
    events_scanned: int
    files_read: int
    seconds: float
    tables: list[TableCheck] = field(default_factory=list)

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for t in self.tables for m in t.mismatches]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def events_per_second(self) -> float:
        return self.events_scanned / self.seconds if self.seconds else 0.0

    def lines(self, max_mismatches: int = 50) -> list[str]:
        out = [f"reconcile {self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC: "
               f"{self.events_scanned} lake events in {self.files_read} files, {self.seconds:.2f} s"]
        for t in self.tables:
            state = "OK" if not t.mismatches else f"{len(t.mismatches)} MISMATCHES"
            out.append(f"  {t.table:<28} windows {t.window_from:%m-%d %H:%M}..{t.window_to:%m-%d %H:%M}  "
                       f"lake keys {t.lake_keys:>8}  clickhouse keys {t.clickhouse_keys:>8}  "
                       f"matching {t.matching:>8}  {state}")
        for m in self.mismatches[:max_mismatches]:
            out.append(f"  MISMATCH {m}")
        if len(self.mismatches) > max_mismatches:
            out.append(f"  ... and {len(self.mismatches) - max_mismatches} more")
        out.append("result: OK" if self.ok else f"result: {len(self.mismatches)} mismatching keys")
        return out


def reconcile(
    lake_table: FileStoreTable,
    client: Client,
    start: datetime,
    end: datetime,
    database: str = "analytics",
    aggregates: tuple[Aggregate, ...] = AGGREGATES,
) -> ReconcileResult:
    """Compare every window of ``aggregates`` that lies wholly in [start, end) (UTC) with the lake."""
    start_ms, end_ms = epoch_ms(start), epoch_ms(end)
    if end_ms <= start_ms:
        raise UserError(f"reconcile: --to {end:%Y-%m-%d %H:%M} is not after --from {start:%Y-%m-%d %H:%M}")
    if not database.isidentifier():
        raise UserError(f"reconcile: database '{database}' is not a plain identifier")
    began = time.perf_counter()
    events, files = lake_events(lake_table, start_ms, end_ms)
    checks = [_check(agg, events, client, database, start_ms, end_ms) for agg in aggregates]
    return ReconcileResult(
        start=utc(start_ms), end=utc(end_ms), events_scanned=events.num_rows, files_read=files,
        seconds=time.perf_counter() - began, tables=checks,
    )


def lake_events(table: FileStoreTable, start_ms: int, end_ms: int) -> tuple[pa.Table, int]:
    where = [
        ("event_date", "between", (f"{utc(start_ms):%Y-%m-%d}", f"{utc(end_ms - 1):%Y-%m-%d}")),
        ("timestamp", "greater_or_equal", start_ms),
        ("timestamp", "less_than", end_ms),
    ]
    # pypaimon prunes by date; keep only the 2-hour slots (event_date, event_hour) that overlap the range.
    first_slot = start_ms // SLOT_MS * SLOT_MS
    slots = {(f"{utc(t):%Y-%m-%d}", utc(t).hour) for t in range(first_slot, end_ms, SLOT_MS)}
    splits = [s for s in queries.plan(table, where) if tuple(s.partition.values) in slots]
    rows = queries.read(table, splits, where, columns=["user_id", "action_type", "timestamp"])
    return rows, sum(len(s.files) for s in splits)


def window_bounds(agg: Aggregate, start_ms: int, end_ms: int) -> tuple[int, int]:
    """[lo, hi): the windows of ``agg`` wholly inside [start, end) (a partial window can't be compared)."""
    lo = -(-start_ms // agg.window_ms) * agg.window_ms
    hi = end_ms // agg.window_ms * agg.window_ms
    if hi <= lo:
        raise UserError(
            f"reconcile: {agg.table} has {agg.window_ms // MINUTE_MS}-minute windows; the range holds none of them"
        )
    return lo, hi


def lake_counts(agg: Aggregate, events: pa.Table, lo: int, hi: int) -> pa.Table:
    """The aggregate recomputed from lake events: window_start (epoch ms), key columns, ``lake`` count."""
    names = ["window_start", *agg.keys]
    ts = events["timestamp"]
    inside = events.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
    # Integer division of positive epoch millis floors: the tumbling window's start.
    window = pc.multiply(pc.divide(inside["timestamp"], agg.window_ms), agg.window_ms)
    return (
        pa.table({"window_start": window, **{k: inside[k] for k in agg.keys}})
        .group_by(names)
        .aggregate([("window_start", "count")])
        .rename_columns([*names, "lake"])
    )


def clickhouse_counts(agg: Aggregate, client: Client, database: str, lo: int, hi: int, like: pa.Table) -> pa.Table:
    """ClickHouse's deduplicated (FINAL) rows of [lo, hi): window_start, keys, ``clickhouse`` count, ``version``;
    key types as in ``like`` (the lake side), so the two join."""
    names = ["window_start", *agg.keys]
    key_sql = ", ".join(f"toInt64({k})" if k == "user_id" else f"toString({k})" for k in agg.keys)
    ch = client.query_arrow(
        f"SELECT toUnixTimestamp64Milli(toDateTime64(window_start, 3, 'UTC')) AS ws, "
        f"{key_sql}, toInt64({agg.count}) AS clickhouse, toInt64(version) AS version "
        f"FROM {database}.{agg.table} FINAL "
        f"WHERE window_start >= fromUnixTimestamp64Milli(toInt64({lo}), 'UTC') "
        f"AND window_start < fromUnixTimestamp64Milli(toInt64({hi}), 'UTC')"
    )
    ch = ch.rename_columns([*names, "clickhouse", "version"])
    return ch.cast(pa.schema([("window_start", pa.int64()), *((k, like.schema.field(k).type) for k in agg.keys),
                              ("clickhouse", pa.int64()), ("version", pa.int64())]))


def differences(agg: Aggregate, lake: pa.Table, ch: pa.Table) -> tuple[pa.Table, int]:
    """Keys whose counts differ or that exist on one side only (``lake`` / ``clickhouse`` null there),
    sorted by key; and the number of keys on both sides that match."""
    names = ["window_start", *agg.keys]
    joined = lake.join(ch.select([*names, "clickhouse"]), keys=names, join_type="full outer")
    differ = pc.fill_null(pc.not_equal(joined["lake"], joined["clickhouse"]), True)
    bad = joined.filter(differ).sort_by([(n, "ascending") for n in names])
    return bad, joined.num_rows - bad.num_rows


def _check(agg: Aggregate, events: pa.Table, client: Client, database: str, start_ms: int, end_ms: int) -> TableCheck:
    lo, hi = window_bounds(agg, start_ms, end_ms)
    lake = lake_counts(agg, events, lo, hi)
    ch = clickhouse_counts(agg, client, database, lo, hi, like=lake)
    bad, matching = differences(agg, lake, ch)
    mismatches = [
        Mismatch(agg.table, utc(r["window_start"]), r["user_id"], r.get("action_type"), r["lake"], r["clickhouse"])
        for r in bad.to_pylist()
    ]
    return TableCheck(
        table=agg.table, window_from=utc(lo), window_to=utc(hi), lake_keys=lake.num_rows,
        clickhouse_keys=ch.num_rows, matching=matching, mismatches=mismatches,
    )


def epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
