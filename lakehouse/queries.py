"""Queries over the Paimon tables through pypaimon, with partition and bucket pruning.

Partition pruning is pypaimon's predicate push-down (a predicate on the partition columns skips whole
manifests and partitions). Bucket pruning is ours: pypaimon 1.4 does not prune fixed buckets of an
append table, so for a single user we compute the user's bucket the way Paimon's writer does
(``bucketing.bucket_of``) and keep only that bucket's splits. ``ScanStats`` reports what was read, so
pruning is visible and testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.bucketing import bucket_of

if TYPE_CHECKING:
    from pypaimon.common.predicate import Predicate
    from pypaimon.read.split import Split
    from pypaimon.table.file_store_table import FileStoreTable


@dataclass(frozen=True)
class ScanStats:
    """What a query planned to read: splits, data files, bytes and rows in those files."""

    partitions: int
    buckets: int
    splits: int
    files: int
    bytes: int
    rows: int

    @classmethod
    def of(cls, splits: list[Split]) -> ScanStats:
        files = [f for s in splits for f in s.files]
        return cls(
            partitions=len({tuple(s.partition.values) for s in splits}),
            buckets=len({(tuple(s.partition.values), s.bucket) for s in splits}),
            splits=len(splits),
            files=len(files),
            bytes=sum(f.file_size for f in files),
            rows=sum(f.row_count for f in files),
        )


@dataclass(frozen=True)
class QueryResult:
    rows: pa.Table
    stats: ScanStats


def plan(
    table: FileStoreTable, where: list[tuple[str, str, Any]] | None = None, bucket: int | None = None
) -> list[Split]:
    """Splits of the latest snapshot matching ``where`` (field, op, value) terms, optionally one bucket.

    ``op`` is a pypaimon PredicateBuilder method name: equal, between, greater_or_equal, less_than, ...
    """
    builder = table.new_read_builder()
    predicate = _predicate(builder, where)
    if predicate is not None:
        builder = builder.with_filter(predicate)
    splits = builder.new_scan().plan().splits()
    if bucket is not None:
        splits = [s for s in splits if s.bucket == bucket]
    return splits


def read(
    table: FileStoreTable,
    splits: list[Split],
    where: list[tuple[str, str, Any]] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows of ``splits`` that satisfy ``where``, with ``columns`` (default: all).

    pypaimon uses the predicate to skip data, but does not promise to drop every non-matching row
    (a ``between`` on a string column passes through), so the terms are applied again with Arrow.
    """
    builder = table.new_read_builder()
    predicate = _predicate(builder, where)
    if predicate is not None:
        builder = builder.with_filter(predicate)
    needed = None
    if columns:
        needed = list(dict.fromkeys([*columns, *(field for field, _, _ in where or [])]))
        builder = builder.with_projection(needed)
    rows = builder.new_read().to_arrow(splits)
    for field, op, value in where or []:
        rows = rows.filter(_ARROW_OPS[op](rows[field], value))
    return rows.select(columns) if columns else rows


_ARROW_OPS = {
    "equal": pc.equal,
    "not_equal": pc.not_equal,
    "less_than": pc.less,
    "less_or_equal": pc.less_equal,
    "greater_than": pc.greater,
    "greater_or_equal": pc.greater_equal,
    "between": lambda col, bounds: pc.and_(pc.greater_equal(col, bounds[0]), pc.less_equal(col, bounds[1])),
    "is_in": lambda col, values: pc.is_in(col, pa.array(values)),
}


def _predicate(builder, where: list[tuple[str, str, Any]] | None) -> Predicate | None:
    if not where:
        return None
    pb = builder.new_predicate_builder()
    terms = [getattr(pb, op)(field, *(value if op in ("between", "not_between") else (value,))) for field, op, value
             in where]
    return pb.and_predicates(terms)


def date_range(start: date, end: date) -> tuple[str, str]:
    if end < start:
        from base.errors import UserError

        raise UserError(f"date range {start}..{end} is empty: --to is before --from")
    return start.isoformat(), end.isoformat()


def user_events(
    table: FileStoreTable, user_id: int, start: date, end: date, prune: bool = True, limit: int | None = None
) -> QueryResult:
    """Events of one user with ``start <= event_date <= end``, oldest first.

    With ``prune``: partition pruning by the event_date range and bucket pruning to the user's one
    bucket per partition. Without: every file of the table is read and filtered (the baseline).
    """
    where = [("event_date", "between", date_range(start, end)), ("user_id", "equal", user_id)]
    splits = plan(table, where, bucket=bucket_of(table, user_id)) if prune else plan(table)
    rows = read(table, splits, where).sort_by([("timestamp", "ascending")])
    return QueryResult(rows.slice(0, limit) if limit else rows, ScanStats.of(splits))


def partition_counts(table: FileStoreTable, start: date | None = None, end: date | None = None) -> QueryResult:
    """Rows, files and bytes per partition, from file metadata alone (no data file is opened).

    Exact for this append-only table: a data file's row count is its number of rows.
    """
    date_key = table.partition_keys[0]
    where = [(date_key, "between", date_range(start or date.min, end or date.max))] if start or end else None
    splits = plan(table, where)
    agg: dict[tuple, list[int]] = {}
    for split in splits:
        acc = agg.setdefault(tuple(split.partition.values), [0, 0, 0])
        for f in split.files:
            acc[0] += f.row_count
            acc[1] += 1
            acc[2] += f.file_size
    keys = sorted(agg)
    columns = {name: [k[i] for k in keys] for i, name in enumerate(table.partition_keys)}
    columns |= {"rows": [agg[k][0] for k in keys], "files": [agg[k][1] for k in keys],
                "bytes": [agg[k][2] for k in keys]}
    return QueryResult(pa.table(columns), ScanStats.of(splits))


def action_counts(table: FileStoreTable, event_date: date, event_hour: int) -> QueryResult:
    """Events per action type in one 2-hour slot (one partition), most frequent first."""
    if event_hour % 2 or not 0 <= event_hour <= 22:
        from base.errors import UserError

        raise UserError(f"--hour {event_hour}: a slot starts at an even hour 0..22")
    where = [("event_date", "equal", event_date.isoformat()), ("event_hour", "equal", event_hour)]
    splits = plan(table, where)
    rows = read(table, splits, where, columns=["action_type"])
    counts = rows.group_by("action_type").aggregate([("action_type", "count")]).rename_columns(
        ["action_type", "actions"]
    )
    return QueryResult(counts.sort_by([("actions", "descending"), ("action_type", "ascending")]),
                       ScanStats.of(splits))


def rejected_sample(
    table: FileStoreTable, limit: int = 20, start: date | None = None, end: date | None = None
) -> QueryResult:
    """The newest ``limit`` rejected records with their reasons; raw bytes shown as text."""
    where = [("ingest_date", "between", date_range(start or date.min, end or date.max))] if start or end else None
    splits = plan(table, where)
    rows = read(table, splits, where)
    rows = rows.sort_by([("ingest_time", "descending"), ("kafka_partition", "ascending"),
                         ("kafka_offset", "descending")]).slice(0, limit)
    # Bytes of a rejected record are often not valid UTF-8; show them with replacement characters.
    as_text = [None if v is None else v.decode("utf-8", "replace") for v in rows["raw_value"].to_pylist()]
    key_text = [None if v is None else v.decode("utf-8", "replace") for v in rows["raw_key"].to_pylist()]
    rows = rows.set_column(rows.schema.get_field_index("raw_value"), "raw_value", pa.array(as_text, pa.string()))
    rows = rows.set_column(rows.schema.get_field_index("raw_key"), "raw_key", pa.array(key_text, pa.string()))
    return QueryResult(rows, ScanStats.of(splits))
