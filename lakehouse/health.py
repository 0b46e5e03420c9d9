"""The file layout of each partition, from Paimon's metadata alone (no data file is opened):
files, bytes, files per bucket, and whether the partition is closed and compacted.

A 2-hour slot of ``lake.user_actions`` is *closed* once the lake's frontier is past the slot's end by a grace
period. The frontier is the watermark the streaming job committed with its latest snapshot (Paimon records it in
each snapshot): the writer's event-time progress, which a single event cannot move (the job's watermark never runs
ahead of a record's Kafka time, and an event more than minutes ahead of it is rejected), and which is past a slot's
end only once the writer has committed everything on time for it. A replay or a backfill closes slots as fast as it
writes them, a stalled job closes none. A table no streaming job wrote (no snapshot carries a watermark: pypaimon,
a bounded run) falls back to the wall clock: a slot is closed once now is past its end by the grace.
(The newest event ``timestamp`` in each partition, from the files' column statistics, is still reported per
partition; it is not the frontier, since one event with a wrong clock would move it.) A partition is *compacted*
when no bucket holds more than ``COMPACTED_FILES_PER_BUCKET`` files (a full compaction leaves one; a late event adds
one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse import queries
from lakehouse.describe import human_bytes

if TYPE_CHECKING:
    from pypaimon.table.file_store_table import FileStoreTable

COMPACTED_FILES_PER_BUCKET = 2
SLOT_MS = 2 * 3600 * 1000
TIME_COLUMN = "timestamp"  # event time, epoch ms: what the frontier is made of


@dataclass(frozen=True)
class PartitionHealth:
    values: tuple  # the partition values, in partition-key order
    keys: tuple[str, ...]
    rows: int
    files: int
    bytes: int
    buckets: int
    max_files_per_bucket: int
    max_time_ms: int | None  # newest event time in the partition (None: no statistics)
    closed: bool = False

    @property
    def spec(self) -> dict[str, str | int]:
        return dict(zip(self.keys, self.values, strict=True))

    @property
    def label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in zip(self.keys, self.values, strict=True))

    @property
    def avg_file_bytes(self) -> int:
        return self.bytes // self.files if self.files else 0

    @property
    def compacted(self) -> bool:
        return self.max_files_per_bucket <= COMPACTED_FILES_PER_BUCKET

    @property
    def slot_end_ms(self) -> int | None:
        """End of the 2-hour slot for (event_date, event_hour) partitions, else None."""
        if self.keys != ("event_date", "event_hour"):
            return None
        start = datetime.fromisoformat(str(self.values[0])).replace(tzinfo=UTC, hour=int(self.values[1]))
        return int(start.timestamp() * 1000) + SLOT_MS

    def compact_command(self) -> str:
        if self.keys == ("event_date", "event_hour"):
            return f"pipeline lake compact --date {self.values[0]} --hour {self.values[1]}"
        return f"pipeline lake compact --table <table> --partition {self.label}"


@dataclass(frozen=True)
class TableHealth:
    partitions: list[PartitionHealth]
    frontier_ms: int | None  # the committed watermark, else the wall clock (see frontier_source)
    grace_ms: int
    frontier_source: str = "watermark"  # or "wall clock"

    @property
    def closed_uncompacted(self) -> list[PartitionHealth]:
        return [p for p in self.partitions if p.closed and not p.compacted]

    def lines(self) -> list[str]:
        """One line per partition, then a warning with the command for each closed, uncompacted one."""
        out = [f"  {'partition':<36} {'rows':>10} {'files':>6} {'avg file':>10} {'max/bucket':>10}  state"]
        for p in self.partitions:
            state = ("compacted" if p.compacted else "NOT COMPACTED") if p.closed else "open"
            out.append(f"  {p.label:<36} {p.rows:>10} {p.files:>6} {human_bytes(p.avg_file_bytes):>10} "
                       f"{p.max_files_per_bucket:>10}  {state}")
        for p in self.closed_uncompacted:
            out.append(f"WARNING closed partition {p.label} has up to {p.max_files_per_bucket} files per bucket: "
                       f"run `{p.compact_command()}` (or leave it to `pipeline lake maintain`)")
        return out


def table_health(table: FileStoreTable, grace_ms: int = 10 * 60_000, now_ms: int | None = None) -> TableHealth:
    """Per-partition layout of the latest snapshot; slots closed ``grace_ms`` past the frontier (the committed
    watermark, or ``now_ms``/the wall clock for a table no streaming job wrote)."""
    keys = tuple(table.partition_keys)
    newest = _max_times(table)
    acc: dict[tuple, dict] = {}
    for split in queries.plan(table):
        p = acc.setdefault(tuple(split.partition.values), {"rows": 0, "files": 0, "bytes": 0, "buckets": {},
                                                           "max_time": None})
        p["buckets"][split.bucket] = p["buckets"].get(split.bucket, 0) + len(split.files)
        for f in split.files:
            p["rows"] += f.row_count
            p["files"] += 1
            p["bytes"] += f.file_size
            t = newest.get(f.file_name)
            if t is not None and (p["max_time"] is None or t > p["max_time"]):
                p["max_time"] = t
    partitions = [PartitionHealth(values=values, keys=keys, rows=p["rows"], files=p["files"], bytes=p["bytes"],
                                  buckets=len(p["buckets"]), max_files_per_bucket=max(p["buckets"].values()),
                                  max_time_ms=p["max_time"])
                  for values, p in sorted(acc.items())]
    frontier, source = committed_watermark(table), "watermark"
    if frontier is None:
        frontier, source = int(now_ms if now_ms is not None else time.time() * 1000), "wall clock"
    partitions = [replace(p, closed=p.slot_end_ms is not None and frontier >= p.slot_end_ms + grace_ms)
                  for p in partitions]
    return TableHealth(partitions=partitions, frontier_ms=frontier, grace_ms=grace_ms, frontier_source=source)


# Paimon records no watermark as Long.MIN_VALUE (a bounded run's last commit, pypaimon's commits, compactions).
_NO_WATERMARK = -(2**63)


def committed_watermark(table: FileStoreTable, look_back: int = 100) -> int | None:
    """The newest watermark the streaming writer committed: that of the latest snapshot carrying one (compactions,
    expiries and pypaimon commits carry none), looking back at most ``look_back`` snapshots; None if none does."""
    snapshots = table.snapshot_manager()
    latest = snapshots.get_latest_snapshot()
    if latest is None:
        return None
    for snapshot_id in range(latest.id, max(0, latest.id - look_back), -1):
        snapshot = latest if snapshot_id == latest.id else snapshots.get_snapshot_by_id(snapshot_id)
        if snapshot is None:  # expired
            break
        watermark = getattr(snapshot, "watermark", None)
        if watermark is not None and watermark > _NO_WATERMARK:
            return int(watermark)
    return None


def _max_times(table: FileStoreTable) -> dict[str, int]:
    """{data file name: newest ``timestamp`` in it} from the manifests' column statistics.

    pypaimon's scan drops statistics once it has used them for pruning, so the manifests are read
    again here with them kept (metadata only). Files written without statistics are left out.
    """
    from pypaimon.manifest.manifest_file_manager import ManifestFileManager
    from pypaimon.manifest.manifest_list_manager import ManifestListManager

    snapshot = table.snapshot_manager().get_latest_snapshot()
    index = next((i for i, f in enumerate(table.table_schema.fields) if f.name == TIME_COLUMN), None)
    if snapshot is None or index is None:
        return {}
    manifests = ManifestListManager(table).read_all(snapshot)
    times: dict[str, int] = {}
    for entry in ManifestFileManager(table).read_entries_parallel(manifests, drop_stats=False):
        f = entry.file
        stats_index = index if f.value_stats_cols is None else (
            f.value_stats_cols.index(TIME_COLUMN) if TIME_COLUMN in f.value_stats_cols else None)
        if stats_index is None:
            continue
        try:
            value = f.value_stats.max_values.get_field(stats_index)
        except (IndexError, AttributeError, ValueError):  # no statistics recorded
            continue
        if isinstance(value, int):
            times[f.file_name] = value
    return times
