"""Paimon table definitions, written once and used by both the Flink job's DDL and pypaimon.

Columns follow the data contract in docs/design.md. Options are Paimon's own table options; the
Flink job may tune them, but this module is where they live.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from lakehouse.catalog import CATALOG_NAME, DATABASE

BUCKETS = 128


@dataclass(frozen=True)
class Column:
    name: str
    flink_type: str
    arrow_type: pa.DataType
    comment: str = ""


@dataclass(frozen=True)
class TableDef:
    name: str
    columns: tuple[Column, ...]
    partition_keys: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)
    comment: str = ""

    @property
    def identifier(self) -> str:
        """``lake.<name>`` as pypaimon names it."""
        return f"{DATABASE}.{self.name}"

    @property
    def flink_identifier(self) -> str:
        """``paimon.lake.<name>`` as Flink SQL names it."""
        return f"{CATALOG_NAME}.{DATABASE}.{self.name}"

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.arrow_type) for c in self.columns])

    def flink_ddl(self) -> str:
        cols = ",\n  ".join(
            f"`{c.name}` {c.flink_type}" + (f" COMMENT '{c.comment}'" if c.comment else "") for c in self.columns
        )
        parts = ", ".join(f"`{p}`" for p in self.partition_keys)
        opts = ",\n  ".join(f"'{k}' = '{v}'" for k, v in self.options.items())
        return (
            f"CREATE TABLE IF NOT EXISTS {self.flink_identifier} (\n  {cols}\n)"
            + (f" COMMENT '{self.comment}'" if self.comment else "")
            + (f"\nPARTITIONED BY ({parts})" if parts else "")
            + (f"\nWITH (\n  {opts}\n)" if opts else "")
        )

    def pypaimon_schema(self):  # -> pypaimon Schema
        from pypaimon.schema.schema import Schema

        return Schema.from_pyarrow_schema(
            self.arrow_schema(), partition_keys=list(self.partition_keys), options=dict(self.options),
            comment=self.comment or None,
        )


# Streaming-write options (Paimon's own): Parquet files, 128 fixed buckets hashed on user_id,
# compaction of small files triggered by file count, snapshots kept for an hour so readers and
# time travel have a window while metadata stays small.
# Compaction is split by slot: the writer compacts the open 2-hour slot inline (compaction.min.file-num:
# five small files in a bucket are merged), and `pipeline lake maintain` (lakehouse/maintainer.py) fully
# compacts each slot once it is closed, which the writer touches only for late events: the two compact the
# same bucket only if late events bring one to five files during that pass.
# Not `write-only` + Paimon's dedicated compaction job: that is a second always-on Flink job on the box
# and a second committer on the open slot (README "Lake maintenance", with the measured figures).
# Parquet dictionary encoding only for action_type:
# the other columns are (nearly) unique per row, and dictionary-encoding them was two thirds of the
# writers' CPU when profiled, for nothing (zstd compresses them anyway).
RAW_OPTIONS = {
    "bucket": str(BUCKETS),
    "bucket-key": "user_id",
    "file.format": "parquet",
    "file.compression": "zstd",
    "parquet.enable.dictionary": "false",
    "parquet.enable.dictionary#action_type": "true",
    "target-file-size": "128 mb",
    "compaction.min.file-num": "5",
    "compaction.max.file-num": "50",
    "snapshot.num-retained.min": "10",
    "snapshot.num-retained.max": "200",
    "snapshot.time-retained": "1 h",
}

USER_ACTIONS = TableDef(
    name="user_actions",
    comment="every valid user action read from Kafka",
    columns=(
        Column("event_id", "STRING", pa.string()),
        Column("user_id", "BIGINT", pa.int64()),
        Column("action_type", "STRING", pa.string()),
        Column("timestamp", "BIGINT", pa.int64(), "event time, epoch milliseconds UTC"),
        Column("metadata", "STRING", pa.string(), "JSON object"),
        Column("device_info", "STRING", pa.string(), "JSON object"),
        Column("event_time", "TIMESTAMP(3)", pa.timestamp("ms")),
        Column("event_date", "STRING", pa.string(), "yyyy-MM-dd, UTC"),
        Column("event_hour", "INT", pa.int32(), "start hour of the 2-hour slot, UTC"),
        Column("kafka_partition", "INT", pa.int32()),
        Column("kafka_offset", "BIGINT", pa.int64()),
        Column("ingest_time", "TIMESTAMP(3)", pa.timestamp("ms")),
    ),
    partition_keys=("event_date", "event_hour"),
    options=RAW_OPTIONS,
)

USER_ACTIONS_REJECTED = TableDef(
    name="user_actions_rejected",
    comment="every Kafka record that is not a valid event, with the reason",
    columns=(
        Column("raw_key", "BYTES", pa.binary()),
        Column("raw_value", "BYTES", pa.binary(), "the record value exactly as read"),
        Column("reason", "STRING", pa.string()),
        Column("kafka_partition", "INT", pa.int32()),
        Column("kafka_offset", "BIGINT", pa.int64()),
        Column("kafka_timestamp", "TIMESTAMP(3)", pa.timestamp("ms")),
        Column("ingest_time", "TIMESTAMP(3)", pa.timestamp("ms")),
        Column("ingest_date", "STRING", pa.string(), "yyyy-MM-dd of ingest_time, UTC"),
    ),
    partition_keys=("ingest_date",),
    # Few rows: one unaware-bucket (append) layout is enough.
    options={"bucket": "-1", "file.format": "parquet", "snapshot.time-retained": "1 h"},
)

TABLES = (USER_ACTIONS, USER_ACTIONS_REJECTED)
