"""Everything that spells out an aggregate agrees with the one contract (base/contract.py): the Flink sink DDL,
the three ClickHouse DDL variants, the loader's record kinds, reconciliation and the API's window tables. A
fourth aggregate is one AggregateSpec plus its SQL, and this test names any place that was forgotten."""

from __future__ import annotations

import re

import pytest

from base import contract
from base.contract import AGGREGATES, AggregateSpec

SCHEMA_VARIANTS = {"analytics.sql": "{name}", "cluster.sql": "{name}_local", "kafka_engine.sql": "{name}_queue"}


def _columns(ddl: str, table: str) -> list[str]:
    """Column names of ``CREATE ... TABLE <...>.table (...)`` in ``ddl``."""
    m = re.search(rf"CREATE (?:TEMPORARY )?TABLE (?:IF NOT EXISTS )?(?:\S+\.)?{table}\b[^(]*\((.*?)\n\)", ddl, re.S)
    assert m, f"no CREATE TABLE {table}"
    return [line.split()[0] for line in m.group(1).splitlines() if line.strip()]


def test_contract_basics() -> None:
    assert len(contract.ACTION_TYPES) == 153
    assert contract.EVENT_FIELDS == ("event_id", "user_id", "action_type", "timestamp", "metadata", "device_info")
    assert contract.AGGREGATE_TOPICS == ("user_aggregations", "user_action_aggregations",
                                         "user_aggregations_realtime")


@pytest.mark.parametrize("spec", AGGREGATES, ids=lambda a: a.name)
def test_flink_sink_matches_the_contract(spec: AggregateSpec) -> None:
    from flink_job import sql_text

    path = next(p for p in sql_text.sql_files() if p.stem.endswith(f"_sink_{spec.name}"))
    text = path.read_text()
    assert _columns(text, f"{spec.name}_sink") == list(spec.columns)
    assert f"'key.fields' = '{';'.join(['window_start', 'window_end', *spec.key_columns])}'" in text
    unit, size = ("HOUR", spec.window_minutes // 60) if spec.window_minutes % 60 == 0 else ("MINUTE",
                                                                                             spec.window_minutes)
    assert f"INTERVAL '{size}' {unit}" in text
    group_by = re.search(r"GROUP BY (.*)", text).group(1)
    assert [c.strip() for c in group_by.split(",")] == ["window_start", "window_end", *spec.key_columns]


@pytest.mark.parametrize("variant", SCHEMA_VARIANTS)
def test_clickhouse_ddl_variants_match_the_contract(variant: str) -> None:
    from clickhouse.schema import SCHEMA_DIR, SchemaOptions, kafka_engine_statements

    text = (SCHEMA_DIR / variant).read_text()
    if variant == "kafka_engine.sql":  # a template of one aggregate, rendered for each of the contract's
        text = ";\n".join(kafka_engine_statements(SchemaOptions(), "broker:9092", "group"))
    for spec in AGGREGATES:
        assert _columns(text, SCHEMA_VARIANTS[variant].format(name=spec.name)) == list(spec.columns), spec.name
        if variant != "kafka_engine.sql":
            order_by = re.search(rf"{spec.name}\S*\s.*?ORDER BY \(([^)]*)\)", text, re.S).group(1)
            assert [c.strip() for c in order_by.split(",")] == ["window_start", *spec.key_columns]
        else:
            assert f"kafka_topic_list = '{spec.name}'" in text


def test_loader_reconcile_and_api_follow_the_contract() -> None:
    from clickhouse.queries import WINDOW_TABLES
    from clickhouse.records import KINDS
    from clickhouse.schema import TABLES
    from lakehouse.reconcile import AGGREGATES as RECONCILED

    assert TABLES == contract.AGGREGATE_TOPICS
    assert {name: kind.columns for name, kind in KINDS.items()} == {a.name: list(a.columns) for a in AGGREGATES}
    assert [(a.table, a.window_ms, a.keys, a.count) for a in RECONCILED] == [
        (a.name, a.window_minutes * 60_000, a.key_columns, a.count_column) for a in AGGREGATES]
    assert WINDOW_TABLES == {"2h": "user_aggregations", "5m": "user_aggregations_realtime"}
