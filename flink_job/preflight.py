"""Checks before a job starts, so a user sees one clear line instead of a Flink stack trace."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from base.config import Settings, under_flink_run
from base.errors import UserError
from flink_job.job_config import JobConfig
from local_services.flink_runtime import connector_jars


def check(settings: Settings, job: JobConfig) -> None:
    from local_services.flink_cluster import require_flink

    require_flink()
    job.validate()
    job.valid_action_types()
    connector_jars(settings)
    check_kafka(settings, (job.source_topic, *job.aggregate_topics))
    check_warehouse(settings)
    check_metrics_port(settings)


def check_metrics_port(settings: Settings) -> None:
    """The mini-cluster's metrics port is free (a reporter that cannot bind only logs it, and serves nothing)."""
    from local_services.flink_runtime import prometheus_reporter_options
    from local_services.process import require_port_free

    if settings.flink_metrics_port is not None and not under_flink_run():
        prometheus_reporter_options(settings, str(settings.flink_metrics_port))  # the plugin is there
        require_port_free("flink metrics (FLINK_METRICS_PORT, --metrics-port)", settings.flink_metrics_port)


def check_kafka(settings: Settings, topics: tuple[str, ...]) -> None:
    from base.kafka_access import admin_and_topics

    _, existing = admin_and_topics(settings, timeout_s=8)
    missing = [t for t in topics if t not in existing]
    if missing:
        raise UserError(f"Kafka topics missing on {settings.kafka_bootstrap}: {', '.join(missing)} "
                        "(pipeline services start creates the standard ones)")


def check_warehouse(settings: Settings) -> None:
    uri = urlparse(settings.paimon_warehouse)
    if uri.scheme == "file":
        if uri.netloc not in ("", "localhost"):
            raise UserError(f"PAIMON_WAREHOUSE '{settings.paimon_warehouse}': use file:///absolute/path")
        path = Path(uri.path)
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or not existing.is_dir():
            raise UserError(f"PAIMON_WAREHOUSE '{settings.paimon_warehouse}': {existing} is not a directory")
        return
    from local_services import s3

    try:
        s3.client(settings).head_bucket(Bucket=settings.s3_bucket)
    except Exception as exc:
        raise UserError(
            f"PAIMON_WAREHOUSE '{settings.paimon_warehouse}': bucket {settings.s3_bucket} is not reachable at "
            f"{settings.s3_endpoint} ({type(exc).__name__})"
        ) from None
