"""The pipeline job's Flink options: what it always sets, and the defaults that yield to the cluster.

Two kinds of option:
- **The job's own** (always set): UTC time, idle partitions, exactly-once checkpoints retained on cancellation (a
  restart resumes from them, see flink_job/checkpoints.py), where its checkpoints go, and the window buffer. Each is
  part of what the job means, not of how a cluster runs it.
- **Defaults** (parallelism, checkpoint interval, state backend and its tuning): under ``flink run`` a value given
  to ``flink run -p/-D`` or in the cluster's config.yaml wins, and the default applies only where neither set the
  key; a flag given to the job itself (``--parallelism``, ``--checkpoint-interval``, ``--state-backend``,
  ``--flink-conf``) wins over both. In the local mini-cluster the defaults apply (its config.yaml is the wheel's
  template, not a cluster's).
- **The mini-cluster's Prometheus reporter** (FLINK_METRICS_PORT or ``--metrics-port``): given with the job's
  configuration, from which the mini-cluster and its metric registry are created. Under ``flink run`` the job adds
  none: reporters are the cluster's (its config.yaml, FLINK_PROPERTIES in compose).

Memory on this 2-core, 24 GiB box (see local_services/flink_cluster.py for the standalone cluster): one
TaskManager of 8 GiB process memory with 2 slots; 40 % of Flink memory is managed memory, which RocksDB uses
for its block cache and write buffers (state.backend.rocksdb.memory.managed), the rest is heap for the Paimon
writers (one per partition and bucket) and network buffers. The local mini-cluster runs inside the PyFlink
gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to cap it), with 2 GiB managed memory set below
for RocksDB: against 512 MiB, its larger write buffers cut memtable flushes and the job's catch-up time by 15 %
(scripts/bench_flink.py, 1M events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from base.config import Settings
from flink_job import checkpoints
from local_services.flink_runtime import prometheus_reporter_options

if TYPE_CHECKING:
    from flink_job.job_config import JobConfig

# The defaults of the tunable options, used where nobody else set them.
DEFAULTS = {
    "parallelism.default": "2",
    "execution.checkpointing.interval": "60 s",
    "state.backend.type": "rocksdb",
    "execution.checkpointing.incremental": "true",
    # Every new window key is a RocksDB lookup that misses: bloom filters answer those without reading blocks
    # once the state outgrows the block cache (neutral at the benchmark's size, see README).
    "state.backend.rocksdb.use-bloom-filter": "true",
}
# Mini-cluster only (a cluster sizes its TaskManagers in its own config.yaml): room for RocksDB.
MINI_CLUSTER_DEFAULTS = {"taskmanager.memory.managed.size": "2g"}


def checkpoint_folders(settings: Settings, job: JobConfig, configured: Mapping[str, str]) -> tuple[str, str]:
    """(checkpoint folder, savepoint folder) of this job: its consumer group's folder under each root."""
    default_checkpoints, default_savepoints = checkpoints.default_roots(settings)
    root = job.checkpoint_dir or configured.get("execution.checkpointing.dir") or default_checkpoints
    savepoints = configured.get("execution.checkpointing.savepoint-dir") or default_savepoints
    return checkpoints.job_folder(root, job.group_id), checkpoints.job_folder(savepoints, job.group_id)


def job_options(settings: Settings, job: JobConfig, configured: Mapping[str, str] | None = None) -> dict[str, str]:
    """Flink configuration of the pipeline job.

    ``configured``: the options the environment already holds under ``flink run`` (the cluster's config.yaml plus
    ``-p``/``-D``); None in the local mini-cluster, where the project's defaults apply.
    """
    under_cluster = configured is not None
    configured = configured or {}
    checkpoint_folder, savepoint_folder = checkpoint_folders(settings, job, configured)
    explicit = {
        "parallelism.default": None if job.parallelism is None else str(job.parallelism),
        "execution.checkpointing.interval": job.checkpoint_interval,
        "state.backend.type": job.state_backend,
    }
    defaults = {**DEFAULTS, **({} if under_cluster else MINI_CLUSTER_DEFAULTS)}
    tunables = {key: value for key, value in defaults.items()
                if explicit.get(key) is None and not (under_cluster and key in configured)}
    tunables.update({key: value for key, value in explicit.items() if value is not None})
    restore = {"execution.state-recovery.path": job.restore_from} if job.restore_from else {}
    # The mini-cluster's reporter (FLINK_METRICS_PORT, --metrics-port); a cluster's is in the cluster's own config.
    metrics = ({} if under_cluster or settings.flink_metrics_port is None
               else prometheus_reporter_options(settings, str(settings.flink_metrics_port)))
    return {
        **tunables,
        **restore,
        **metrics,
        "pipeline.name": job.job_name,
        # All date/hour derivation and window bounds in UTC, whatever the machine's zone.
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": job.idle_timeout,
        # No operator keeps a record across calls (the SQL, nor the window operator of --windows operator, which
        # reads the fields it needs), so reuse saves copies.
        "pipeline.object-reuse": "true",
        # Keys are users (up to 30M): a local pre-aggregation before the shuffle finds almost nothing to combine
        # and costs a second window operator on the hot path, so aggregate in one phase after the shuffle.
        "table.optimizer.agg-phase-strategy": "ONE_PHASE",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_folder,
        "execution.checkpointing.savepoint-dir": savepoint_folder,
        # Keep the last checkpoint when the job is cancelled or dies: a restarted job resumes from it.
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        # Window aggregation buffers records per key and window in managed memory and flushes them to state only
        # when a window may fire, at a checkpoint, or when the buffer is full. With Zipf users a larger buffer folds
        # more of a heavy user's events into one state write: the three windows' CPU fell from ~34 to ~24 us/event
        # against the default 100,000 records (scripts/bench_flink.py, README). Managed memory still bounds it.
        "table.exec.window-agg.buffer-size-limit": "5000000",
        **dict(job.flink_conf),  # the user's --flink-conf options win
    }
