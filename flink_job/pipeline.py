"""The job: DDL for the sources and sinks, then one statement set with the five INSERTs.

Python only wires configuration: the SQL is in flink_job/sql/. Runs in a local mini-cluster (waits for a
bounded run to finish) or under ``flink run -py`` (submits and returns; never waits on the cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flink_job import sql_text
from flink_job.environment import create_stream_table_env, job_options
from flink_job.job_config import JobConfig
from lakehouse import catalog as lake_catalog
from lakehouse.tables import TABLES
from pipeline.config import Settings

if TYPE_CHECKING:
    from pyflink.table import StatementSet, StreamTableEnvironment, TableEnvironment, TableResult

MAX_USER_ID = 30_000_000

# Types of the contract fields as canonical JSON (see 03_classified_records.sql): groups 1-6 are action_type,
# device_info, event_id, metadata, timestamp, user_id.
FIELDS_PATTERN = (
    r'^\{"action_type":"([^"\\]*)","device_info":(\{.*\}),"event_id":"([^"\\]*)",'
    r'"metadata":(\{.*\}),"timestamp":(-?[0-9]+),"user_id":(-?[0-9]+)\}$'
)


# flink-sql-connector-kafka relocates Kafka's classes; the JAAS login module must be named with this prefix.
KAFKA_SHADED_PREFIX = "org.apache.flink.kafka.shaded."


def kafka_security_options(settings: Settings) -> dict[str, str]:
    """TLS/SASL settings from the configuration as Kafka table options (empty for a PLAINTEXT broker)."""
    return {f"properties.{k}": v for k, v in settings.kafka_java_properties(KAFKA_SHADED_PREFIX).items()}


def _options_sql(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{sql_text.sql_literal(k)} = {sql_text.sql_literal(v)}" for k, v in options.items())


def sql_params(settings: Settings, job: JobConfig) -> dict[str, str]:
    security = kafka_security_options(settings)
    kafka_sink = {
        "connector": "kafka",
        "properties.bootstrap.servers": settings.kafka_bootstrap,
        "key.format": "json",
        "value.format": "json",
        "value.fields-include": "ALL",
        # At-least-once is enough: a row carries its key and version, and ClickHouse keeps the newest
        # version per key, so a replayed row replaces rather than adds (no Kafka transactions needed).
        "sink.delivery-guarantee": "at-least-once",
        "properties.linger.ms": "50",
        "properties.compression.type": "lz4",
        **security,
    }
    return {
        "source_topic": job.source_topic,
        "bootstrap": settings.kafka_bootstrap,
        "group_id": job.group_id,
        "startup_mode": job.startup_mode,
        "bounded_mode": "latest-offset" if job.bounded else "unbounded",
        "watermark_delay_seconds": str(job.watermark_delay_seconds),
        "fields_pattern": FIELDS_PATTERN.replace("'", "''"),
        "max_user_id": str(MAX_USER_ID),
        "action_types": ", ".join(sql_text.sql_literal(a) for a in job.valid_action_types()),
        "kafka_sink_options": _options_sql(kafka_sink),
        "kafka_source_security_options": "".join(f",\n  {_options_sql({k: v})}" for k, v in security.items()),
        "user_aggregations_topic": job.user_aggregations_topic,
        "user_action_aggregations_topic": job.user_action_aggregations_topic,
        "realtime_aggregations_topic": job.realtime_aggregations_topic,
    }


def create_lake_tables(t_env: TableEnvironment, settings: Settings) -> None:
    """The Paimon catalog, database and both tables (IF NOT EXISTS: definitions in lakehouse/tables.py)."""
    t_env.execute_sql(lake_catalog.flink_create_catalog_sql(settings))
    t_env.execute_sql(f"CREATE DATABASE IF NOT EXISTS {lake_catalog.CATALOG_NAME}.{lake_catalog.DATABASE}")
    for table in TABLES:
        t_env.execute_sql(table.flink_ddl())


def build(settings: Settings, job: JobConfig, lake_only: bool = False) -> tuple[TableEnvironment, StatementSet]:
    """A table environment with every source, view and sink declared, and the statement set of INSERTs.

    ``lake_only`` leaves out the three aggregate sinks: scripts/bench_flink.py measures what they cost.
    """
    job.validate()
    t_env = create_stream_table_env(settings, parallelism=job.parallelism, extra=job_options(settings, job))
    create_lake_tables(t_env, settings)
    params = sql_params(settings, job)
    statement_set = t_env.create_statement_set()
    for path in sql_text.sql_files():
        if lake_only and "_aggregations" in path.stem:
            continue
        for statement in sql_text.statements(sql_text.render(path.read_text(), params)):
            if _is_insert(statement):
                statement_set.add_insert_sql(statement)
            elif _is_select(statement):
                _create_computed_once_view(t_env, path.stem.split("_", 1)[1], statement)
            else:
                t_env.execute_sql(statement)
    return t_env, statement_set


def _create_computed_once_view(t_env: StreamTableEnvironment, name: str, query: str) -> None:
    """Register ``query`` as view ``name``, computed once for all sinks.

    The planner inlines a view into each consumer and does not share common subexpressions, so the JSON parse
    in 02_decoded_records.sql would run once per use. A round trip through a DataStream (Java only, no Python
    at run time) is a boundary the planner keeps; event time and the per-partition watermarks of the Kafka
    source pass through it (SOURCE_WATERMARK()).
    """
    from pyflink.table import Schema

    stream = t_env.to_data_stream(t_env.sql_query(query))
    schema = (
        Schema.new_builder()
        .column_by_metadata("event_time", "TIMESTAMP_LTZ(3)", "rowtime")
        .watermark("event_time", "SOURCE_WATERMARK()")
        .build()
    )
    t_env.create_temporary_view(name, t_env.from_data_stream(stream, schema))


def explain(settings: Settings, job: JobConfig) -> str:
    return build(settings, job)[1].explain()


def run(settings: Settings, job: JobConfig, wait: bool) -> TableResult:
    """Submit the statement set; with ``wait`` (mini-cluster) block until a bounded run has finished."""
    _, statement_set = build(settings, job)
    result = statement_set.execute()
    if wait:
        result.wait()
    return result


def _first_word(statement: str) -> str:
    code = " ".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
    return code.split(None, 1)[0].upper()


def _is_insert(statement: str) -> bool:
    return _first_word(statement) == "INSERT"


def _is_select(statement: str) -> bool:
    return _first_word(statement) == "SELECT"
