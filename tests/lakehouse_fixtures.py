"""Shared helpers of the lakehouse tests: real Paimon tables written by pypaimon with the project's
table definitions, and an embedded ClickHouse with the analytics schema."""

from __future__ import annotations

from dataclasses import replace

from base.config import Settings
from lakehouse import catalog as lake_catalog
from lakehouse import synthetic
from lakehouse.tables import TableDef

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def warehouse(settings: Settings, uri: str) -> Settings:
    return replace(settings, paimon_warehouse=uri)


def create(settings: Settings, table: TableDef):
    catalog = lake_catalog.open_catalog(settings)
    catalog.create_table(table.identifier, table.pypaimon_schema(), False)
    return catalog.get_table(table.identifier)


def write(table, data) -> None:
    synthetic.write(table, data)


# The ClickHouse part's schema file when present; the same DDL otherwise, so these tests don't wait for it.
_FALLBACK_DDL = """
CREATE DATABASE IF NOT EXISTS {db};
CREATE TABLE IF NOT EXISTS {db}.user_aggregations (window_start DateTime64(3, 'UTC'),
  window_end DateTime64(3, 'UTC'), user_id UInt32, total_actions UInt32, version UInt64)
  ENGINE = ReplacingMergeTree(version) PARTITION BY toDate(window_start) ORDER BY (window_start, user_id);
CREATE TABLE IF NOT EXISTS {db}.user_action_aggregations (window_start DateTime64(3, 'UTC'),
  window_end DateTime64(3, 'UTC'), user_id UInt32, action_type LowCardinality(String), actions UInt32,
  version UInt64) ENGINE = ReplacingMergeTree(version) PARTITION BY toDate(window_start)
  ORDER BY (window_start, user_id, action_type);
CREATE TABLE IF NOT EXISTS {db}.user_aggregations_realtime (window_start DateTime64(3, 'UTC'),
  window_end DateTime64(3, 'UTC'), user_id UInt32, total_actions UInt32, version UInt64)
  ENGINE = ReplacingMergeTree(version) PARTITION BY toDate(window_start) ORDER BY (window_start, user_id)
"""


def analytics_schema(client, database: str) -> None:
    try:
        from clickhouse.schema import SchemaOptions, analytics_statements

        statements = analytics_statements(SchemaOptions(database=database))
    except ImportError:
        statements = [s for s in _FALLBACK_DDL.format(db=database).split(";") if s.strip()]
    for statement in statements:
        client.command(statement)


def chdb_settings(settings: Settings, tmp_path_factory) -> Settings:
    """Settings whose ``clickhouse_dsn`` is the process's one chDB directory (chDB hosts one engine path
    at a time): the ClickHouse part's scratch directory when available, so both parts' tests share it."""
    try:
        from clickhouse.testing import scratch_settings

        return scratch_settings(settings)
    except ImportError:
        return replace(settings, data_dir=tmp_path_factory.mktemp("chdb-data"))
