"""The Flink runtime with the project's jars: table environments for the local mini-cluster (the job, and the
lake's maintenance procedures) whose jars also ship to a standalone cluster as pipeline.jars.

The mini-cluster runs inside the PyFlink gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to
cap it); the standalone cluster is local_services/flink_cluster.py.

Metrics: set-up puts the project's loopback Prometheus reporter beside the wheel's flink-metrics-prometheus in the
plugin folder ``$JARS_DIR/plugins/metrics-prometheus``, and FLINK_METRICS_PORT switches it on
(``prometheus_reporter_options``). The standalone cluster loads it as a plugin (FLINK_PLUGINS_DIR). The mini-cluster
does not: the one that PyFlink's local executor starts has no plugin manager (MiniClusterConfiguration's is null, so
FLINK_PLUGINS_DIR is never read for it) and finds reporter factories with ServiceLoader on the thread's context class
loader only; so the same jars go on that class loader instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment, TableEnvironment


def connector_jars(settings: Settings) -> list[str]:
    """file:// URLs of the jars the job ships: the Kafka and Paimon connectors fetched by scripts/setup.sh, and the
    job's own value format (flink_job/format) that it builds."""
    jars = sorted((settings.jars_dir / "flink").glob("*.jar")) + sorted(
        j for j in (settings.jars_dir / "format").glob("*.jar")
        if not j.name.endswith("-metrics.jar"))  # the reporter is a plugin, never on the job's class path (pom.xml)
    names = " ".join(j.name for j in jars)
    for needed in ("flink-sql-connector-kafka", "paimon-flink", "paimon-s3", "user-action-format"):
        if needed not in names:
            where = "format" if needed == "user-action-format" else "flink"
            raise UserError(
                f"Flink jar {needed}-*.jar is missing in {settings.jars_dir / where}: run scripts/setup.sh"
            )
    return [j.as_uri() for j in jars]


# The reporter's name in Flink options (metrics.reporter.<name>.*), as in Flink's docs and the compose stack.
REPORTER = "prom"
LOOPBACK_REPORTER_FACTORY = "local.pipeline.metrics.LoopbackPrometheusReporterFactory"


def plugins_dir(settings: Settings) -> Path:
    """The Flink plugins root of the local runtimes (FLINK_PLUGINS_DIR), filled by scripts/setup.sh."""
    return settings.jars_dir / "plugins"


def plugins_env(settings: Settings) -> dict[str, str]:
    """FLINK_PLUGINS_DIR for a local Flink process, if set-up made the folder (else Flink's default stays)."""
    return {"FLINK_PLUGINS_DIR": str(plugins_dir(settings))} if plugins_dir(settings).is_dir() else {}


def reporter_jars(settings: Settings) -> list[Path]:
    """The Prometheus reporter plugin's jars: the project's reporter and the flink-metrics-prometheus it extends."""
    folder = plugins_dir(settings) / "metrics-prometheus"
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("user-action-format-") for j in jars) or not any(
            j.name.startswith("flink-metrics-prometheus-") for j in jars):
        raise UserError(f"the Prometheus reporter plugin is missing in {folder}: run scripts/setup.sh")
    return jars


def prometheus_reporter_options(settings: Settings, ports: str) -> dict[str, str]:
    """Flink options that switch on the project's Prometheus reporter, bound to 127.0.0.1 on ``ports`` (a port, or
    a range 'first-last' of which each process takes the first free one)."""
    reporter_jars(settings)  # there, or a clear line now rather than Flink's warning in a log later
    prefix = f"metrics.reporter.{REPORTER}."
    return {
        prefix + "factory.class": LOOPBACK_REPORTER_FACTORY,
        prefix + "host": "127.0.0.1",
        prefix + "port": ports,
        # Label values as they are ('missing field: user_id', job names with '-'), not with every character outside
        # [a-zA-Z0-9:_] replaced by '_'; the text format escapes what it must. Compose sets the same.
        prefix + "filterLabelValueCharacters": "false",
    }


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
    else:  # the mini-cluster is created from the configuration given here (managed memory, restore path, reporter)
        job_options = options(None)
        env = StreamExecutionEnvironment.get_execution_environment(as_configuration(job_options))
    env.add_jars(*connector_jars(settings))  # also puts them on the client's class loader (catalog creation)
    if not under_cluster and job_options.get(f"metrics.reporter.{REPORTER}.factory.class"):
        from pyflink.util.java_utils import add_jars_to_context_class_loader

        # Where the mini-cluster looks for reporter factories (see the module's doc); not shipped with the job.
        add_jars_to_context_class_loader([j.as_uri() for j in reporter_jars(settings)])
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
