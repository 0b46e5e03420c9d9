"""The schema applies (twice), and the server-only variants at least parse in the embedded engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickhouse import schema
from clickhouse.schema import SchemaOptions
from clickhouse.store import ThreadClients, apply_schema
from clickhouse.testing import scratch_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(settings):
    clients = ThreadClients(scratch_settings(settings).clickhouse_dsn)
    yield clients.get()
    clients.close()


def test_schema_applies_twice_and_creates_tables_and_views(client, unique_name):
    options = SchemaOptions(database=unique_name, realtime_ttl_days=7, window_ttl_days=30)
    assert apply_schema(client, options) == apply_schema(client, options)
    names = {r[0]: r[1] for r in client.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String}", parameters={"db": unique_name}
    ).result_rows}
    for table in schema.TABLES:
        assert names[table] == "ReplacingMergeTree"
        assert names[f"{table}_final"] == "View"
    assert names["aggregate_rejects"] == "ReplacingMergeTree"  # the dead letters, keyed by their place in Kafka
    ddl = client.command(f"SHOW CREATE TABLE {unique_name}.user_aggregations_realtime")
    assert "toIntervalDay(7)" in ddl and "PARTITION BY toDate(window_start)" in ddl
    assert "ReplacingMergeTree(version)" in ddl and "ORDER BY (window_start, user_id)" in ddl
    # A changed TTL setting reaches the existing table.
    apply_schema(client, SchemaOptions(database=unique_name, realtime_ttl_days=30, window_ttl_days=30))
    assert "toIntervalDay(30)" in client.command(f"SHOW CREATE TABLE {unique_name}.user_aggregations_realtime")


def test_final_views_deduplicate_by_version(client, unique_name):
    apply_schema(client, SchemaOptions(database=unique_name))
    day = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")  # recent: inside the TTL
    rows = [
        (f"{day} 10:00:00", f"{day} 12:00:00", 7, 3, 100),
        (f"{day} 10:00:00", f"{day} 12:00:00", 7, 5, 200),  # the later version wins
        (f"{day} 10:00:00", f"{day} 12:00:00", 7, 4, 150),
    ]
    for row in rows:  # separate inserts = separate parts, as replays would produce
        client.command(f"INSERT INTO {unique_name}.user_aggregations VALUES ('{row[0]}', '{row[1]}', "
                       f"{row[2]}, {row[3]}, {row[4]})")
    assert client.query(f"SELECT total_actions FROM {unique_name}.user_aggregations_final").result_rows == [(5,)]


_PER_TABLE = ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime")
# What each variant creates, in order: per aggregate table a Kafka-engine queue, its view into the table and its
# view into the dead letters; or the database, per table a local replicated table and its Distributed one, then the
# restatement log, the dead letters and the maintenance log.
CREATED = {
    "kafka_engine": [f"analytics.{t}{suffix}" for t in _PER_TABLE for suffix in ("_queue", "_queue_mv",
                                                                                   "_queue_rejects_mv")],
    "cluster": ["analytics", *(f"analytics.{t}{suffix}" for t in _PER_TABLE for suffix in ("_local", "")),
                "analytics.restatements", "analytics.aggregate_rejects", "analytics.maintenance_passes"],
}


@pytest.mark.parametrize("variant", ["kafka_engine", "cluster"])
def test_server_variants_parse(client, variant):
    import re

    options = SchemaOptions()
    if variant == "kafka_engine":
        stmts = schema.kafka_engine_statements(options, "kafka1:9092,kafka2:9092", "clickhouse-kafka-engine")
    else:
        stmts = schema.cluster_statements(options, "analytics_cluster")
    created = [re.match(r"CREATE (?:MATERIALIZED VIEW|TABLE|DATABASE) IF NOT EXISTS (\S+)", s).group(1) for s in stmts]
    assert created == CREATED[variant]
    for stmt in stmts:
        # formatQuery parses with the engine's own SQL parser without executing.
        formatted = client.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0]
        assert formatted.split()[0] == "CREATE"
