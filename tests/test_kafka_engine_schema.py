"""The Kafka-engine ingestion's views (clickhouse/schema/kafka_engine.sql) on the real engine (chDB): the views are
created exactly as `pipeline clickhouse schema --kafka-engine` renders them; only the queue table, which needs a
server's background Kafka consumer, is a plain table here with the Kafka engine's virtual columns as real columns,
so an insert into it fires the two views as a consumed Kafka block does."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from clickhouse.schema import SchemaOptions, analytics_statements, kafka_engine_statements
from clickhouse.store import ThreadClients
from clickhouse.testing import scratch_settings

pytestmark = pytest.mark.integration

VIRTUAL = "_topic String, _partition UInt64, _offset UInt64, _key String, _raw_message String, _error String"
# Within the tables' TTL (rows older than it are dropped on insert): yesterday, 10:00 UTC.
_START = (datetime.now(UTC) - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
W, W_5 = (f"{t:%Y-%m-%d %H:%M:%S}" for t in (_START, _START + timedelta(minutes=5)))
W_2H = f"{_START + timedelta(hours=2):%Y-%m-%d %H:%M:%S}"
EPOCH = tuple(int((_START - timedelta(minutes=m)).timestamp() * 1000) for m in (60, 55))


def _queue_as_plain_table(statement: str) -> str:
    """The rendered queue DDL with its Kafka engine swapped for Memory and the virtual columns made real."""
    statement = re.sub(r"\)\s*ENGINE = Kafka.*", f",\n    {VIRTUAL}\n) ENGINE = Memory", statement, flags=re.S)
    assert "ENGINE = Memory" in statement
    return statement


@pytest.fixture(scope="module")
def engine(settings):
    database = f"k_{uuid.uuid4().hex[:10]}"
    clients = ThreadClients(scratch_settings(settings).clickhouse_dsn)
    client = clients.get()
    for statement in analytics_statements(SchemaOptions(database=database)):
        client.command(statement)
    for statement in kafka_engine_statements(SchemaOptions(database=database), "broker:9092", "ch-kafka"):
        client.command(_queue_as_plain_table(statement) if "ENGINE = Kafka" in statement else statement)
    yield client, database
    clients.close()


def _row(offset: int, raw: str, error: str = "", **fields: str) -> dict:
    values = {"window_start": W, "window_end": W_5, "user_id": "7", "total_actions": "3",
              "version": "1764000000000", **fields}
    return {**values, "_topic": "user_aggregations_realtime", "_partition": 0, "_offset": offset, "_key": "",
            "_raw_message": raw, "_error": error}


def test_a_poison_record_goes_to_the_dead_letters_and_its_neighbours_load(engine) -> None:
    client, db = engine
    rows = [
        _row(0, "good-0", user_id="1"),
        _row(1, "v 2^63", version="9223372036854775808"),
        _row(2, "1e300", window_end="1e300"),
        _row(3, "20 digits", user_id="12345678901234567890"),
        _row(4, "year 0", window_start="0000-01-01 00:00:00", window_end="0000-01-01 00:05:00"),
        _row(5, "2 hours", window_end=W_2H),
        _row(6, "{not json", error="Cannot parse input"),
        _row(7, "user 0", user_id="0"),
        _row(8, "epoch", user_id="2", window_start=str(EPOCH[0]), window_end=str(EPOCH[1])),
        _row(9, "good-9", user_id="3"),
    ]
    columns = list(rows[0])
    client.insert(f"{db}.user_aggregations_realtime_queue", [[r[c] for c in columns] for r in rows],
                  column_names=columns)
    loaded = client.query(f"SELECT user_id, window_start, total_actions FROM {db}.user_aggregations_realtime FINAL "
                          "ORDER BY user_id").result_rows
    assert [(u, str(w)[:19], n) for u, w, n in loaded] == [
        (1, W, 3), (2, f"{_START - timedelta(hours=1):%Y-%m-%d %H:%M:%S}", 3), (3, W, 3)]
    rejects = dict(client.query(f"SELECT offset, reason FROM {db}.aggregate_rejects FINAL "
                                "WHERE topic = 'user_aggregations_realtime' ORDER BY offset").result_rows)
    assert sorted(rejects) == [1, 2, 3, 4, 5, 6, 7]
    assert rejects[1].startswith("version out of range") and rejects[3].startswith("user_id out of range")
    assert rejects[2].startswith("window_end is neither") and rejects[4].startswith("window_start is neither")
    assert rejects[5] == "window is not 5 minutes" and rejects[6].startswith("unparseable: Cannot parse")
    raw = dict(client.query(f"SELECT offset, raw_value FROM {db}.aggregate_rejects FINAL").result_rows)
    assert raw[2] == "1e300"  # the record as read, to inspect or replay


def test_the_action_type_aggregate_checks_its_key_too(engine) -> None:
    client, db = engine
    columns = ["window_start", "window_end", "user_id", "action_type", "actions", "version", "_topic", "_partition",
               "_offset", "_key", "_raw_message", "_error"]
    rows = [[W, W_2H, "5", "login", "2", "9", "user_action_aggregations", 0, 0, "", "ok", ""],
            [W, W_2H, "5", "", "2", "9", "user_action_aggregations", 0, 1, "", "no type", ""]]
    client.insert(f"{db}.user_action_aggregations_queue", rows, column_names=columns)
    assert client.query(f"SELECT action_type, actions FROM {db}.user_action_aggregations FINAL").result_rows == [
        ("login", 2)]
    assert client.query(f"SELECT offset, reason FROM {db}.aggregate_rejects FINAL "
                        "WHERE topic = 'user_action_aggregations'").result_rows == [(1, "empty action_type")]
