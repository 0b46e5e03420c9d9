"""The job: DDL for the sources and sinks, then one statement set with the five INSERTs.

The three aggregates' INSERTs depend on ``JobConfig.windows``: the sinks of flink_job/sql/05..07 fed by the Java
window operator (operator, the default: flink_job/user_windows.py and sql/windows/operator.sql), or the TUMBLE
windows of 05..07 themselves (sql).

Python only wires configuration: the SQL is in flink_job/sql/, the per-record parsing and validation in the
compiled value format (flink_job/format/), so no Python runs per event. Runs in a local mini-cluster (waits for a
bounded run to finish) or under ``flink run -py`` (submits and returns; never waits on the cluster).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from base.config import Settings, under_flink_run
from base.contract import MAX_USERS
from flink_job import checkpoints, sql_text, user_windows
from flink_job.environment import checkpoint_folders, job_options
from flink_job.job_config import JobConfig
from lakehouse import catalog as lake_catalog
from lakehouse.tables import TABLES
from local_services.flink_cluster import require_flink
from local_services.flink_runtime import create_stream_table_env

if TYPE_CHECKING:
    from pyflink.table import StatementSet, TableEnvironment, TableResult


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
        "max_event_ahead_minutes": str(job.max_event_ahead_minutes),
        "max_event_behind_minutes": str(job.max_event_behind_minutes),
        "max_user_id": str(MAX_USERS),
        # The value format's list option: names separated by ';' (validated by the format at planning time).
        "action_types": ";".join(job.valid_action_types()).replace("'", "''"),
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


def build(settings: Settings, job: JobConfig, lake_only: bool = False,
          extra: dict[str, str] | None = None) -> tuple[TableEnvironment, StatementSet]:
    """A table environment with every source, view and sink declared, and the statement set of INSERTs.

    ``lake_only`` leaves out the three aggregate sinks and ``extra`` overrides Flink options: scripts/bench_flink.py
    measures what the aggregates and each variant cost.
    """
    job.validate()
    require_flink()

    def options(configured: dict[str, str] | None) -> dict[str, str]:
        resumed = with_restore_point(settings, job, configured)
        return {**job_options(settings, resumed, configured), **(extra or {})}

    t_env = create_stream_table_env(settings, options, under_cluster=under_flink_run())
    create_lake_tables(t_env, settings)
    params = sql_params(settings, job)
    statement_set = t_env.create_statement_set()
    windows = None if lake_only else job.windows
    for path in sql_text.sql_files():
        aggregate = "_aggregations" in path.stem
        if lake_only and aggregate:
            continue
        statements = sql_text.statements(sql_text.render(path.read_text(), params))
        # with the operator, 05..07 only declare the sinks; sql/windows/operator.sql holds their INSERTs
        _add(t_env, statement_set, statements, inserts=not aggregate or windows == "sql")
        if windows == "operator" and path.stem.startswith("02_"):
            # before the lake's INSERTs are planned: they must read the one stream the operator reads too
            user_windows.route_through_datastream(t_env, next(s for s in statements if "VIEW valid_events" in s))
    if windows == "operator":
        user_windows.attach(t_env, job)
        variant = sql_text.SQL_DIR / "windows" / "operator.sql"
        _add(t_env, statement_set, sql_text.statements(sql_text.render(variant.read_text(), params)))
    return t_env, statement_set


def _add(t_env: TableEnvironment, statement_set: StatementSet, statements: list[str], inserts: bool = True) -> None:
    """DDL runs now; INSERTs join the statement set (left out when not ``inserts``)."""
    for statement in statements:
        if not _is_insert(statement):
            t_env.execute_sql(statement)
        elif inserts:
            statement_set.add_insert_sql(statement)


def with_restore_point(settings: Settings, job: JobConfig, configured: dict[str, str] | None) -> JobConfig:
    """``job`` restoring from its newest retained checkpoint or savepoint, unless it names one (--restore-from),
    starts fresh (--fresh) or is bounded (a bounded Kafka source restored from a checkpoint never finishes,
    FLINK-31006). Says in one line what it chose."""
    if job.restore_from or not job.resume or job.bounded:
        if job.restore_from:
            print(f"job: restoring from {job.restore_from} (--restore-from)", flush=True)
        return job
    folders = checkpoint_folders(settings, job, configured or {})
    found = checkpoints.latest(settings, folders)
    if found is None:
        print(f"job: no retained checkpoint of consumer group {job.group_id} in {folders[0]}: starting from the "
              f"Kafka group's offsets ({job.startup_mode})", flush=True)
        return job
    print(f"job: resuming from the latest retained {found.kind} of consumer group {job.group_id}: {found.path} "
          f"(taken {_ago(found.taken_at)}; start with --fresh to ignore it)", flush=True)
    return replace(job, restore_from=found.path)


def _ago(epoch_s: float) -> str:
    import time

    seconds = max(0, int(time.time() - epoch_s))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


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

