"""``describe``: what a Paimon table holds and how healthy its file layout is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pypaimon.table.file_store_table import FileStoreTable

MB = 1024 * 1024
# Size classes for the small-file report; the last edge is the table's target file size.
SIZE_CLASSES_MB = (1, 16, 64)


@dataclass(frozen=True)
class Description:
    table: str
    schema: pa.Schema
    partition_keys: list[str]
    bucket: int
    bucket_key: str | None
    options: dict[str, str]
    snapshots: int
    latest_snapshot_id: int | None
    latest_snapshot_time_ms: int | None
    partitions: pa.Table  # partition columns, rows, files, bytes
    files: int
    rows: int
    bytes: int
    target_file_size: int
    size_histogram: list[tuple[str, int]] = field(default_factory=list)  # (class label, file count)
    small_files: int = 0  # files under a quarter of the target size: candidates for compaction

    def lines(self) -> list[str]:
        """Human-readable report for the terminal."""
        out = [f"table        {self.table}",
               f"partitioned  {', '.join(self.partition_keys) or '(no)'}",
               f"buckets      {self.bucket}" + (f" on {self.bucket_key}" if self.bucket_key else ""),
               f"snapshots    {self.snapshots}" + (f" (latest id {self.latest_snapshot_id})"
                                                    if self.latest_snapshot_id is not None else ""),
               f"partitions   {self.partitions.num_rows}",
               f"files        {self.files}",
               f"rows         {self.rows}",
               f"total size   {human_bytes(self.bytes)}",
               f"avg file     {human_bytes(self.bytes // self.files) if self.files else '-'}"
               f" (target {human_bytes(self.target_file_size)})",
               f"small files  {self.small_files} of {self.files} under {human_bytes(self.target_file_size // 4)}"
               + (" - consider `lake compact`" if self.files and self.small_files * 2 > self.files else ""),
               "file sizes"]
        width = max((len(label) for label, _ in self.size_histogram), default=0)
        peak = max((n for _, n in self.size_histogram), default=0) or 1
        for label, n in self.size_histogram:
            out.append(f"  {label:<{width}}  {n:>7}  {'#' * round(40 * n / peak)}")
        out.append("schema")
        out.extend(f"  {f.name:<16} {f.type}" for f in self.schema)
        return out


def describe(table: FileStoreTable, name: str) -> Description:
    from lakehouse.queries import partition_counts

    snapshot_manager = table.snapshot_manager()
    latest = snapshot_manager.get_latest_snapshot()
    earliest = snapshot_manager.try_get_earliest_snapshot()
    # Snapshot ids are contiguous between EARLIEST and LATEST; expiry removes from the old end.
    snapshots = latest.id - earliest.id + 1 if latest and earliest else 0
    partitions = partition_counts(table)
    builder = table.new_read_builder()
    sizes = [f.file_size for s in builder.new_scan().plan().splits() for f in s.files] if latest else []
    target = table.options.target_file_size(False)
    from pypaimon.schema.data_types import PyarrowFieldParser

    return Description(
        table=name,
        schema=PyarrowFieldParser.from_paimon_schema(table.table_schema.fields),
        partition_keys=list(table.partition_keys),
        bucket=table.options.bucket(),
        bucket_key=table.options.bucket_key(),
        options=dict(table.table_schema.options),
        snapshots=snapshots,
        latest_snapshot_id=latest.id if latest else None,
        latest_snapshot_time_ms=latest.time_millis if latest else None,
        partitions=partitions.rows,
        files=len(sizes),
        rows=partitions.stats.rows,
        bytes=sum(sizes),
        target_file_size=target,
        size_histogram=_histogram(sizes, target),
        small_files=sum(1 for s in sizes if s < target // 4),
    )


def _histogram(sizes: list[int], target: int) -> list[tuple[str, int]]:
    edges = [e * MB for e in SIZE_CLASSES_MB if e * MB < target] + [target]
    labels, low = [], 0
    for edge in edges:
        labels.append((f"{human_bytes(low)}-{human_bytes(edge)}", low, edge))
        low = edge
    labels.append((f">= {human_bytes(target)}", target, None))
    return [(label, sum(1 for s in sizes if s >= lo and (hi is None or s < hi))) for label, lo, hi in labels]


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
