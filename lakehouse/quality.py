"""Data quality from the lake: rejected records by reason per hour, read from lake.user_actions_rejected.

What it reads: the ingest_date partitions of the range (pypaimon prunes the others from the manifests) and two
columns, reason and ingest_time, counted in batches, so memory does not grow with the rows read. Within a partition
every file is read: the job's files held no column statistics to skip one by when checked (nor do pypaimon's), and
the job keeps a day's files few by compacting them. Hours are of ingest_time, when the job
wrote the record: the clock of the partition key, so a range maps exactly onto partitions (kafka_timestamp is the
producer's clock, which a bad record may set to anything).

Served as /api/rejects by the ClickHouse service, which never imports this layer: the front end registers ``ROUTE``
(pipeline/cli.py). Answers are cached per range for ``CACHE_S``: the dashboard asks for the same hours every few
seconds, and a lake read costs per file (a day of 24 files ~90 ms, a week ~0.5 s: README, "Benchmarks").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from base.config import Settings
from clickhouse.api import RANGE, Params, Route, Unavailable, range_json
from clickhouse.openapi import get_path
from lakehouse.queries import ScanStats, plan
from lakehouse.tables import USER_ACTIONS_REJECTED

if TYPE_CHECKING:
    from pypaimon.table.file_store_table import FileStoreTable

log = logging.getLogger(__name__)

PATH = "/api/rejects"
HOUR = timedelta(hours=1)
CACHE_S = 30.0
CACHE_RANGES = 64  # bounded: every distinct from/to a client sends is a new entry
GROUP_ROWS = 1_000_000
FAILURE_S = 10.0  # an unreachable lake is not asked again for every request (an S3 timeout holds a worker thread)


@dataclass(frozen=True)
class RejectCounts:
    """Rejected records per reason and hour of ingest_time in [start, end), and what was read to count them."""

    start: datetime
    end: datetime
    hours: list[datetime]  # every hour from the one holding ``start`` to the last one before ``end``
    series: dict[str, list[int]]  # reason -> records per hour (aligned with ``hours``), most frequent reason first
    stats: ScanStats
    rows_matched: int
    read_ms: float

    @property
    def totals(self) -> dict[str, int]:
        return {reason: sum(counts) for reason, counts in self.series.items()}

    def as_json(self) -> dict:
        return {
            **range_json(self.start, self.end),
            "bucket": "1h",
            "time_column": "ingest_time",
            "hours": [range_json(h, h)["from"] for h in self.hours],
            "series": self.series,
            "totals": self.totals,
            "total": self.rows_matched,
            "read": {"partitions": self.stats.partitions, "files": self.stats.files, "bytes": self.stats.bytes,
                     "rows": self.stats.rows, "rows_matched": self.rows_matched, "ms": round(self.read_ms, 1)},
        }


def rejects_by_reason(table: FileStoreTable, start: datetime, end: datetime) -> RejectCounts:
    """Count ``table``'s rejected records per reason and hour of ingest_time, ``start <= ingest_time < end``."""
    started = time.perf_counter()
    lo, hi = _naive_utc(start), _naive_utc(end)  # ingest_time is a TIMESTAMP(3) without zone, holding UTC
    last_day = (hi - timedelta(milliseconds=1)).date()
    # ingest_time too: a file with statistics outside the range would be skipped, should files ever carry them
    where = [("ingest_date", "between", (lo.date().isoformat(), last_day.isoformat())),
             ("ingest_time", "greater_or_equal", lo), ("ingest_time", "less_than", hi)]
    splits = plan(table, where)
    builder = table.new_read_builder().with_projection(["reason", "ingest_time"])
    pb = builder.new_predicate_builder()
    builder = builder.with_filter(pb.and_predicates([pb.greater_or_equal("ingest_time", lo),
                                                     pb.less_than("ingest_time", hi)]))
    counts: Counter[tuple[str, datetime]] = Counter()
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in builder.new_read().to_arrow_batch_reader(splits):
        # pypaimon's filter skips files and row groups but may pass rows outside the range: applied again here
        times = batch.column("ingest_time")
        batch = batch.filter(pc.and_(pc.greater_equal(times, pa.scalar(lo, times.type)),
                                     pc.less(times, pa.scalar(hi, times.type))))
        pending.append(batch)
        pending_rows += batch.num_rows
        # Grouped per GROUP_ROWS rows, not per batch (a batch is at most a file: a group-by per file cost as much as
        # reading it), and not all at once (memory bounded whatever the range holds).
        if pending_rows >= GROUP_ROWS:
            _count(pending, counts)
            pending, pending_rows = [], 0
    _count(pending, counts)
    hours = []
    hour = lo.replace(minute=0, second=0, microsecond=0)
    while hour < hi:
        hours.append(hour)
        hour += HOUR
    index = {h: i for i, h in enumerate(hours)}
    series: dict[str, list[int]] = {}
    for (reason, hour), n in counts.items():
        series.setdefault(reason, [0] * len(hours))[index[hour]] += n
    ordered = dict(sorted(series.items(), key=lambda item: (-sum(item[1]), item[0])))
    return RejectCounts(start, end, [h.replace(tzinfo=UTC) for h in hours], ordered, ScanStats.of(splits),
                        sum(counts.values()), (time.perf_counter() - started) * 1000)


def _count(batches: list[pa.RecordBatch], counts: Counter[tuple[str, datetime]]) -> None:
    if not batches:
        return
    rows = pa.Table.from_batches(batches)
    per_hour = pa.table({"reason": pc.fill_null(rows.column("reason"), "(no reason)"),
                         "hour": pc.floor_temporal(rows.column("ingest_time"), unit="hour")})
    grouped = per_hour.group_by(["reason", "hour"]).aggregate([("hour", "count")])
    for reason, hour, n in zip(grouped["reason"].to_pylist(), grouped["hour"].to_pylist(),
                               grouped["hour_count"].to_pylist(), strict=True):
        counts[(reason, hour)] += n


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class RejectsEndpoint:
    """``GET /api/rejects?from&to`` in the ClickHouse service: counts from the lake, cached per range; a lake that
    cannot be read is a 503 saying why. Built at service start without touching the lake (it may be down then)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._table: FileStoreTable | None = None
        self._cache: OrderedDict[tuple[datetime, datetime], tuple[float, dict]] = OrderedDict()
        self._failure: tuple[float, str] | None = None
        # One lake read at a time: requests for a range being read wait and take its answer from the cache.
        self._lock = threading.Lock()

    def __call__(self, params: Params) -> dict:
        start, end = params.time_range(datetime.now(UTC).replace(microsecond=0))
        with self._lock:
            now = time.monotonic()
            cached = self._cache.get((start, end))
            if cached is not None and now - cached[0] < CACHE_S:
                return {**cached[1], "cached_s": round(now - cached[0], 1)}
            if self._failure is not None and now - self._failure[0] < FAILURE_S:
                raise Unavailable(self._failure[1])
            try:
                answer = rejects_by_reason(self._open(), start, end).as_json()
            except Unavailable as exc:
                self._failure = (now, str(exc))
                raise
            except OSError as exc:  # files or the S3 server gone since the table was opened
                self._table = None
                self._failure = (now, _unreachable(exc))
                raise Unavailable(self._failure[1]) from None
            self._failure = None
            self._cache[(start, end)] = (now, answer)
            self._cache.move_to_end((start, end))
            while len(self._cache) > CACHE_RANGES:
                self._cache.popitem(last=False)
            return {**answer, "cached_s": 0.0}

    def _open(self) -> FileStoreTable:
        if self._table is None:
            from lakehouse.catalog import open_table

            try:
                self._table = open_table(self.settings, USER_ACTIONS_REJECTED.name)
            except Exception as exc:  # whatever the catalog raises for a warehouse it cannot reach
                raise Unavailable(_unreachable(exc)) from None
        return self._table


def _unreachable(exc: Exception) -> str:
    log.warning("/api/rejects: cannot read lake.%s: %s", USER_ACTIONS_REJECTED.name, exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return f"the lake is not reachable from this service: {first}"


_RANGE_PARAMS = [
    {"name": "from", "in": "query", "schema": {"type": "string"},
     "description": "start of the range on ingest_time, inclusive: ISO 8601 (UTC unless an offset is given) or epoch "
                    "milliseconds (default: 'to' minus 24 hours)"},
    {"name": "to", "in": "query", "schema": {"type": "string"},
     "description": "end of the range, exclusive (default: now)"},
]

ROUTE = Route(
    parameters=frozenset(RANGE),
    factory=RejectsEndpoint,
    openapi=get_path(
        "rejected records (lake.user_actions_rejected) per reason and hour of ingest_time in the range: hours, "
        "series (reason -> count per hour), totals per reason, and what the lake read cost (read: partitions, "
        f"files, bytes, rows, ms); cached per range for {CACHE_S:.0f} s (cached_s: the answer's age)",
        _RANGE_PARAMS,
        {"503": "the lake is not reachable from this service (the error says why)"}),
)
