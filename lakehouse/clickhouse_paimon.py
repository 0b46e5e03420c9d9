"""The Paimon tables as ClickHouse sees them: ``paimonLocal`` / ``paimonS3`` table functions.

ClickHouse 26.x (chDB 4.4) reads Paimon tables natively (listed in system.table_functions: paimon,
paimonLocal, paimonS3, paimonHDFS, paimonAzure and *Cluster variants), so one SQL statement can join
lake rows with the aggregates, e.g.::

    SELECT a.window_start, a.user_id, a.total_actions, count() AS lake_events
    FROM analytics.user_aggregations AS a FINAL
    JOIN paimonLocal('/data/warehouse/lake.db/user_actions') AS e
      ON e.user_id = a.user_id AND toStartOfInterval(e.event_time, INTERVAL 2 HOUR) = a.window_start
    WHERE e.event_date = '2026-11-23'
    GROUP BY ALL  -- total_actions = lake_events on every row when the two agree

Embedded chDB reads local files only under the process's working directory (its user_files_path is
"."): run from a directory that contains the warehouse (the project directory for the default
./.data/warehouse). A ClickHouse server reads local paths under its own user_files_path instead, and
S3 warehouses have no such limit.
"""

from __future__ import annotations

from urllib.parse import urlparse

from base.config import Settings
from lakehouse.catalog import DATABASE


def table_path(settings: Settings, table: str) -> str:
    """The table's directory: a local path for file:// warehouses, an http(s) S3 URL for s3:// ones."""
    parsed = urlparse(settings.paimon_warehouse)
    suffix = f"{DATABASE}.db/{table}/"
    if settings.warehouse_is_s3:
        prefix = parsed.path.strip("/")
        return f"{settings.s3_endpoint.rstrip('/')}/{parsed.netloc}/{prefix + '/' if prefix else ''}{suffix}"
    return f"{parsed.path.rstrip('/')}/{suffix}"


def table_function(settings: Settings, table: str = "user_actions", reveal: bool = True) -> str:
    """``paimonLocal('<path>')`` or ``paimonS3('<url>', '<key>', '<secret>')`` for ``lake.<table>``. Without
    ``reveal`` the S3 keys are written as ``${S3_ACCESS_KEY}`` / ``${S3_SECRET_KEY}`` references (what the CLI
    prints: a secret never lands in a terminal or a shell history; envsubst fills them in)."""
    path = table_path(settings, table)
    if settings.warehouse_is_s3:
        key, secret = ((settings.s3_access_key, settings.s3_secret_key) if reveal
                       else ("${S3_ACCESS_KEY}", "${S3_SECRET_KEY}"))
        return f"paimonS3({_quote(path)}, {_quote(key)}, {_quote(secret)})"
    return f"paimonLocal({_quote(path)})"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
