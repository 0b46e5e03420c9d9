"""What one run of the job reads, writes and how: topics, time semantics, runtime settings.

Services (Kafka, warehouse, S3) come from ``base.config.Settings``; this is the job's own part,
filled from CLI flags. Defaults are the production ones; tests override topics and ``bounded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from base.contract import ACTION_TYPES, AGGREGATE_TOPICS, RAW_TOPIC
from base.errors import UserError

STATE_BACKENDS = ("rocksdb", "hashmap")
# How the three window aggregates are computed (README "Benchmarks"): operator, one keyed Java operator for all
# three (flink_job/user_windows.py), the default since it halves the windows' CPU; sql, three TUMBLE window operators
# (flink_job/sql/05..07), the pure-SQL form kept as the reference the operator is tested against. (A cascade, 5-minute
# counts per user and action type feeding the others, was measured and removed: it cost more than the SQL windows.)
WINDOWS = ("operator", "sql")


@dataclass(frozen=True)
class JobConfig:
    source_topic: str = RAW_TOPIC
    user_aggregations_topic: str = AGGREGATE_TOPICS[0]
    user_action_aggregations_topic: str = AGGREGATE_TOPICS[1]
    realtime_aggregations_topic: str = AGGREGATE_TOPICS[2]
    group_id: str = "flink-user-actions"
    # Bounded: read up to the end offsets seen at start, then finish (tests, benchmark, back-fill).
    bounded: bool = False
    # group-offsets (earliest when none committed) | earliest-offset | latest-offset
    startup_mode: str = "group-offsets"
    # None: the cluster's setting under `flink run`, else the default in flink_job/environment.py (2, 60 s, rocksdb)
    parallelism: int | None = None
    watermark_delay_seconds: int = 5  # bounded out-of-orderness of event time
    # Event time is trusted within bounds of the record's Kafka time (flink_job/sql/02_checked_records.sql): ahead
    # by minutes (a device clock set wrong), behind by as much as the restatement looks back (48 h by default, so
    # every accepted event can reach the aggregates). A backfill of older events raises the second bound.
    max_event_ahead_minutes: int = 10
    max_event_behind_minutes: int = 48 * 60
    idle_timeout: str = "30 s"  # a partition without records this long stops holding back the watermark
    checkpoint_interval: str | None = None
    state_backend: str | None = None
    # Root of the job's checkpoints (its folder is <root>/<group_id>); None: the cluster's, else $DATA_DIR/flink/...
    checkpoint_dir: str | None = None
    # A retained checkpoint (.../chk-N) or savepoint to restore from: Paimon commits on checkpoints, so only
    # a restore from one (not Kafka group offsets alone) resumes a crashed run exactly once. None with ``resume``:
    # the newest retained checkpoint or savepoint of this job, if there is one (flink_job/checkpoints.py).
    restore_from: str | None = None
    resume: bool = True
    job_name: str = "user-actions-pipeline"
    action_types: tuple[str, ...] = field(default=(), repr=False)  # empty = the contract's list
    # Any other Flink option for this job, over the defaults (e.g. rest.port, a state backend tuning option).
    flink_conf: tuple[tuple[str, str], ...] = ()
    windows: str = "operator"

    def validate(self) -> None:
        if self.state_backend is not None and self.state_backend not in STATE_BACKENDS:
            raise UserError(f"state backend '{self.state_backend}' is not one of {', '.join(STATE_BACKENDS)}")
        if self.windows not in WINDOWS:
            raise UserError(f"windows '{self.windows}' is not one of {', '.join(WINDOWS)}")
        if self.parallelism is not None and self.parallelism < 1:
            raise UserError("parallelism must be at least 1")
        if not 0 <= self.watermark_delay_seconds <= 99:
            raise UserError("--watermark-delay must be 0..99 seconds")
        if self.max_event_ahead_minutes < 1 or self.max_event_behind_minutes < 1:
            raise UserError("--max-event-ahead and --max-event-behind must be at least 1 minute")
        if self.startup_mode not in ("group-offsets", "earliest-offset", "latest-offset"):
            raise UserError(f"startup mode '{self.startup_mode}' is not one of group-offsets, earliest-offset, "
                            "latest-offset")
        for key, _ in self.flink_conf:
            if not key or any(c.isspace() for c in key):
                raise UserError(f"--flink-conf: '{key}' is not a Flink option name (KEY=VALUE)")
        for name in (self.source_topic, self.user_aggregations_topic, self.user_action_aggregations_topic,
                     self.realtime_aggregations_topic, self.group_id):
            if not name or "'" in name:
                raise UserError(f"topic or group name '{name}' is empty or contains a quote")

    def valid_action_types(self) -> tuple[str, ...]:
        return self.action_types or ACTION_TYPES

    def to_argv(self) -> list[str]:
        """The CLI flags that reproduce this configuration (for `flink run -py flink_job/__main__.py ...`)."""
        argv = [
            "--source-topic", self.source_topic,
            "--user-aggregations-topic", self.user_aggregations_topic,
            "--user-action-aggregations-topic", self.user_action_aggregations_topic,
            "--realtime-aggregations-topic", self.realtime_aggregations_topic,
            "--group-id", self.group_id,
            "--startup-mode", self.startup_mode,
            "--watermark-delay", str(self.watermark_delay_seconds),
            "--max-event-ahead", f"{self.max_event_ahead_minutes}m",
            "--max-event-behind", f"{self.max_event_behind_minutes}m",
            "--idle-timeout", self.idle_timeout,
            "--job-name", self.job_name,
        ]
        for flag, value in (("--parallelism", self.parallelism), ("--checkpoint-interval", self.checkpoint_interval),
                            ("--state-backend", self.state_backend)):
            if value is not None:
                argv += [flag, str(value)]
        if not self.resume:
            argv.append("--fresh")
        if self.checkpoint_dir:
            argv += ["--checkpoint-dir", self.checkpoint_dir]
        if self.restore_from:
            argv += ["--restore-from", self.restore_from]
        for key, value in self.flink_conf:
            argv += ["--flink-conf", f"{key}={value}"]
        if self.windows != "sql":
            argv += ["--windows", self.windows]
        return argv + (["--bounded"] if self.bounded else [])

    @property
    def aggregate_topics(self) -> tuple[str, str, str]:
        return (self.user_aggregations_topic, self.user_action_aggregations_topic, self.realtime_aggregations_topic)
