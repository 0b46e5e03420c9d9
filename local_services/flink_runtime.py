"""The Flink runtime with the project's jars: table environments for the local mini-cluster (the job, and the
lake's maintenance procedures) whose jars also ship to a standalone cluster as pipeline.jars.

The mini-cluster runs inside the PyFlink gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to
cap it); the standalone cluster is local_services/flink_cluster.py.
"""

from __future__ import annotations

from collections.abc import Callable
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
    settings: Settings, options: Callable[[dict[str, str] | None], dict[str, str]],
    under_cluster: bool = False,
) -> StreamTableEnvironment:
    """A streaming TableEnvironment that can also hand tables to and from DataStreams.

    ``options`` receives what the environment is already configured with when ``under_cluster`` (``flink run``:
    the cluster's config.yaml plus ``-p``/``-D``), None in the local mini-cluster, and returns the job's options,
    which are applied on top (flink_job/environment.py decides which of them yield).
    """
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    def as_configuration(values: dict[str, str]) -> Configuration:
        config = Configuration()
        for key, value in values.items():
            config.set_string(key, value)
        return config

    if under_cluster:
        env = StreamExecutionEnvironment.get_execution_environment()
        job_options = options(dict(env._j_stream_execution_environment.getConfiguration().toMap()))
        env.configure(as_configuration(job_options))
    else:  # the mini-cluster is created from the configuration given here (managed memory, restore path)
        job_options = options(None)
        env = StreamExecutionEnvironment.get_execution_environment(as_configuration(job_options))
    env.add_jars(*connector_jars(settings))  # also puts them on the client's class loader (catalog creation)
    return _configure(StreamTableEnvironment.create(env), settings, None, job_options)


def _configure(t_env, settings: Settings, parallelism: int | None, extra: dict[str, str] | None):
    conf = t_env.get_config()
    # pipeline.jars are shipped with the job, so the same setting serves the mini-cluster and `flink run`.
    conf.set("pipeline.jars", ";".join(connector_jars(settings)))
    if parallelism is not None:
        conf.set("parallelism.default", str(parallelism))
    for key, value in (extra or {}).items():
        conf.set(key, value)
    return t_env
