"""A Flink TableEnvironment with the pinned connector jars, UTC time, checkpointing and the state backend.

Memory on this 2-core, 24 GiB box (see scripts/services/flink_cluster.py for the standalone cluster): one
TaskManager of 8 GiB process memory with 2 slots; 40 % of Flink memory is managed memory, which RocksDB uses
for its block cache and write buffers (state.backend.rocksdb.memory.managed), the rest is heap for the Paimon
writers (one per partition and bucket) and network buffers. The local mini-cluster runs inside the PyFlink
gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to cap it), with 2 GiB managed memory set below
for RocksDB: against 512 MiB, its larger write buffers cut memtable flushes and the job's catch-up time by 15 %
(scripts/bench_flink.py, 1M events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.errors import UserError

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment, TableEnvironment

    from flink_job.job_config import JobConfig


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


def job_options(settings: Settings, job: JobConfig) -> dict[str, str]:
    """Flink configuration of the pipeline job (all of it configurable through JobConfig)."""
    checkpoint_dir = job.checkpoint_dir or (settings.data_dir / "flink" / "checkpoints").as_uri()
    restore = {"execution.state-recovery.path": job.restore_from} if job.restore_from else {}
    return {
        **restore,
        "pipeline.name": job.job_name,
        # All date/hour derivation and window bounds in UTC, whatever the machine's zone.
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": job.idle_timeout,
        # Records are not kept across operator calls in this SQL-only job, so reuse saves copies.
        "pipeline.object-reuse": "true",
        # Keys are users (up to 30M): a local pre-aggregation before the shuffle finds almost nothing to combine
        # and costs a second window operator on the hot path, so aggregate in one phase after the shuffle.
        "table.optimizer.agg-phase-strategy": "ONE_PHASE",
        "execution.checkpointing.interval": job.checkpoint_interval,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_dir,
        "execution.checkpointing.incremental": "true",
        # Keep the last checkpoint when the job is cancelled or dies, so it can be restored (--restore-from).
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": job.state_backend,
        # Window aggregation buffers records per key and window in managed memory and flushes them to state only
        # when a window may fire, at a checkpoint, or when the buffer is full. With Zipf users a larger buffer folds
        # more of a heavy user's events into one state write: the three windows' CPU fell from ~34 to ~24 us/event
        # against the default 100,000 records (scripts/bench_flink.py, README). Managed memory still bounds it.
        "table.exec.window-agg.buffer-size-limit": "5000000",
        # Every new window key is a RocksDB lookup that misses: bloom filters answer those without reading blocks
        # once the state outgrows the block cache (neutral at the benchmark's size, see README).
        "state.backend.rocksdb.use-bloom-filter": "true",
        # Mini-cluster only (a standalone cluster takes its own config.yaml): room for RocksDB.
        "taskmanager.memory.managed.size": "2g",
    }
