"""``--windows operator``: the three aggregates from one keyed Java operator instead of three SQL window operators.

The operator (``local.pipeline.windows.UserWindows`` in flink_job/format) is a DataStream operator, and a table
handed to the DataStream API is planned on its own: converting only the valid events would plan the Kafka source a
second time (two scans of the topic in one job). So every record goes through one DataStream: ``checked_records``
becomes a stream of the planner's own rows (no conversion, RowData in and out) and back a table with the source's
watermark, and the lake INSERTs and the operator both read that. The operator's three output streams become the
views that flink_job/sql/windows/operator.sql inserts into the three Kafka sinks. Everything is planned into the one
statement set, so the job stays one job with one name, under the mini-cluster and ``flink run`` alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from base.contract import AGGREGATE_TOPICS

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment

    from flink_job.job_config import JobConfig

# Records the operator folds on the heap before writing them to state (a flush also happens before a window fires
# and before every checkpoint). The heap buffer takes about 60 bytes per distinct (user, window, action) in it, so
# 1M records is at most ~120 MB per subtask; scripts/bench_flink.py measures others with
# --conf user-windows.buffer-size-limit=N.
BUFFER_RECORDS = 1_000_000
BUFFER_OPTION = "user-windows.buffer-size-limit"
VIEW_PREFIX = "operator_"


def buffer_records(job: JobConfig) -> int:
    """The operator's buffer limit: BUFFER_OPTION among the job's --flink-conf options, else BUFFER_RECORDS."""
    value = dict(job.flink_conf).get(BUFFER_OPTION)
    return int(value) if value else BUFFER_RECORDS


def route_through_datastream(t_env: StreamTableEnvironment, valid_events_sql: str) -> None:
    """Replace the ``checked_records`` view with the same rows passed once through a DataStream, and define
    ``valid_events`` again over it (``valid_events_sql``: its CREATE statement from flink_job/sql/02)."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Table

    jvm = get_gateway().jvm
    j_tenv = t_env._j_tenv
    names = t_env.from_path("checked_records").get_schema().get_field_names()
    # The rowtime attribute becomes a plain column: a record rejected before its timestamp was read has a NULL
    # event_time, which the conversion to a stream cannot turn into a record timestamp.
    columns = ", ".join("CAST(event_time AS TIMESTAMP_LTZ(3)) AS event_time" if n == "event_time" else f"`{n}`"
                        for n in names)
    checked = t_env.sql_query(f"SELECT {columns} FROM checked_records")._j_table
    stream = j_tenv.toDataStream(checked, _internal_rows(jvm, checked))
    # ... and back, with event_time the rowtime again and the source's watermarks passed on (the lake writer commits
    # the watermark, by which the maintenance knows a slot is closed).
    schema = (jvm.org.apache.flink.table.api.Schema.newBuilder().fromResolvedSchema(checked.getResolvedSchema())
              .watermark("event_time", "SOURCE_WATERMARK()").build())
    routed = Table(j_tenv.fromDataStream(stream, schema), t_env)
    t_env.drop_temporary_view("valid_events")
    t_env.drop_temporary_view("checked_records")
    t_env.create_temporary_view("checked_records", routed)
    t_env.execute_sql(valid_events_sql)


def attach(t_env: StreamTableEnvironment, job: JobConfig) -> None:
    """Put the operator on the valid events and register its three outputs as the views operator.sql reads."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Table

    gateway = get_gateway()
    jvm = gateway.jvm
    j_tenv = t_env._j_tenv
    events = t_env.sql_query("SELECT user_id, action_type, event_time FROM valid_events")._j_table
    stream = j_tenv.toDataStream(events, _internal_rows(jvm, events))
    action_types = job.valid_action_types()
    names = gateway.new_array(jvm.java.lang.String, len(action_types))
    for i, name in enumerate(action_types):
        names[i] = name
    outputs = jvm.local.pipeline.windows.UserWindows.apply(stream, names, buffer_records(job))
    for name, output in zip(AGGREGATE_TOPICS, outputs, strict=True):
        t_env.create_temporary_view(VIEW_PREFIX + name, Table(j_tenv.fromDataStream(output), t_env))


def _internal_rows(jvm, j_table):
    """The table's row type as the planner's own RowData: a stream of it needs no conversion either way."""
    row_data = jvm.java.lang.Class.forName("org.apache.flink.table.data.RowData", True,
                                           jvm.java.lang.Thread.currentThread().getContextClassLoader())
    return j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(row_data)
