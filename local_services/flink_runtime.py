"""The Flink runtime with the project's jars: table environments for the local mini-cluster (the job, and the
lake's maintenance procedures) whose jars also ship to a standalone cluster as pipeline.jars.

The mini-cluster runs inside the PyFlink gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to
cap it); the standalone cluster is local_services/flink_cluster.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment, TableEnvironment


def connector_jars(settings: Settings) -> list[str]:
    """file:// URLs of the jars the job ships: the Kafka and Paimon connectors fetched by scripts/setup.sh, and the
    job's own value format (flink_job/format) that it builds."""
    jars = sorted((settings.jars_dir / "flink").glob("*.jar")) + sorted((settings.jars_dir / "format").glob("*.jar"))
    names = " ".join(j.name for j in jars)
    for needed in ("flink-sql-connector-kafka", "paimon-flink", "paimon-s3", "user-action-format"):
        if needed not in names:
            where = "format" if needed == "user-action-format" else "flink"
            raise UserError(
                f"Flink jar {needed}-*.jar is missing in {settings.jars_dir / where}: run scripts/setup.sh"
            )
    return [j.as_uri() for j in jars]


def create_table_env(
    settings: Settings, streaming: bool = True, parallelism: int = 1, extra: dict[str, str] | None = None
) -> TableEnvironment:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env_settings = EnvironmentSettings.in_streaming_mode() if streaming else EnvironmentSettings.in_batch_mode()
    return _configure(TableEnvironment.create(env_settings), settings, parallelism, extra)


def create_stream_table_env(
    settings: Settings, parallelism: int = 1, extra: dict[str, str] | None = None
) -> StreamTableEnvironment:
    """A streaming TableEnvironment that can also hand tables to and from DataStreams."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    config = Configuration()
    for key, value in (extra or {}).items():
        config.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.add_jars(*connector_jars(settings))  # also puts them on the client's class loader (catalog creation)
    return _configure(StreamTableEnvironment.create(env), settings, parallelism, extra)


def _configure(t_env, settings: Settings, parallelism: int, extra: dict[str, str] | None):
    conf = t_env.get_config()
    # pipeline.jars are shipped with the job, so the same setting serves the mini-cluster and `flink run`.
    conf.set("pipeline.jars", ";".join(connector_jars(settings)))
    conf.set("parallelism.default", str(parallelism))
    for key, value in (extra or {}).items():
        conf.set(key, value)
    return t_env
