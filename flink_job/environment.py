"""The pipeline job's Flink options: UTC time, checkpointing, the state backend and its tuning (the table
environment itself comes from local_services/flink_runtime.py).

Memory on this 2-core, 24 GiB box (see local_services/flink_cluster.py for the standalone cluster): one
TaskManager of 8 GiB process memory with 2 slots; 40 % of Flink memory is managed memory, which RocksDB uses
for its block cache and write buffers (state.backend.rocksdb.memory.managed), the rest is heap for the Paimon
writers (one per partition and bucket) and network buffers. The local mini-cluster runs inside the PyFlink
gateway JVM (default heap: a quarter of RAM; set JVM_ARGS=-Xmx... to cap it), with 2 GiB managed memory set below
for RocksDB: against 512 MiB, its larger write buffers cut memtable flushes and the job's catch-up time by 15 %
(scripts/bench_flink.py, 1M events).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from base.config import Settings

if TYPE_CHECKING:
    from flink_job.job_config import JobConfig


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
        **dict(job.flink_conf),  # the user's --flink-conf options win
    }
