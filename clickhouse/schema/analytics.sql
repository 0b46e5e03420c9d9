-- The analytics schema, applied on every start of the loader/service (idempotent: IF NOT EXISTS).
-- ${db}, ${realtime_ttl_days} and ${window_ttl_days} are substituted by clickhouse/schema.py
-- (an identifier and two whole numbers, checked before substitution).
--
-- Every table is a ReplacingMergeTree on the aggregate's key with `version` (epoch millis of
-- emission) as the version column: a re-emitted or replayed row replaces the old one, so reads
-- that go through FINAL (the *_final views below, or the queries in clickhouse/queries.py)
-- never double-count. Partitioned by day of window_start; the key is within one partition,
-- so FINAL can run partition by partition (do_not_merge_across_partitions_select_final).

CREATE DATABASE IF NOT EXISTS ${db};

-- 2-hour tumbling windows, per user.
CREATE TABLE IF NOT EXISTS ${db}.user_aggregations
(
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id)
TTL toDateTime(window_start) + INTERVAL ${window_ttl_days} DAY;

-- 2-hour tumbling windows, per user and action type.
CREATE TABLE IF NOT EXISTS ${db}.user_action_aggregations
(
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    user_id      UInt32,
    action_type  LowCardinality(String),
    actions      UInt32,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id, action_type)
TTL toDateTime(window_start) + INTERVAL ${window_ttl_days} DAY;

-- 5-minute tumbling windows, per user (the near-real-time view).
CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_realtime
(
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id)
TTL toDateTime(window_start) + INTERVAL ${realtime_ttl_days} DAY;

-- Deduplicated state: the latest version of every key. Use these (or FINAL) for any ad-hoc query.
CREATE VIEW IF NOT EXISTS ${db}.user_aggregations_final AS
SELECT window_start, window_end, user_id, total_actions, version
FROM ${db}.user_aggregations FINAL;

CREATE VIEW IF NOT EXISTS ${db}.user_action_aggregations_final AS
SELECT window_start, window_end, user_id, action_type, actions, version
FROM ${db}.user_action_aggregations FINAL;

CREATE VIEW IF NOT EXISTS ${db}.user_aggregations_realtime_final AS
SELECT window_start, window_end, user_id, total_actions, version
FROM ${db}.user_aggregations_realtime FINAL;

-- When each 2-hour slot was last restated from the lake (`pipeline lake restate`, or the maintenance
-- schedule once the slot has been closed for its grace period): one row per run and slot, the latest
-- kept. Not an aggregate: nothing loads it from Kafka; the restatement writes it beside its rows.
CREATE TABLE IF NOT EXISTS ${db}.restatements
(
    slot_start    DateTime64(3, 'UTC'),
    restated_at   DateTime64(3, 'UTC'),
    lake_events   UInt64,
    rows_upserted UInt64,
    rows_deleted  UInt64
)
ENGINE = ReplacingMergeTree(restated_at)
PARTITION BY toDate(slot_start)
ORDER BY slot_start
TTL toDateTime(slot_start) + INTERVAL ${window_ttl_days} DAY;

-- The dead letters of the aggregate path: every aggregate record that cannot be loaded (it does not parse, breaks the
-- contract, or the server refuses it for what it holds), with its topic, partition, offset, bytes as read and the
-- reason, written by the loader (clickhouse/loader.py) or the Kafka-engine views (kafka_engine.sql). Keyed by the
-- record's place in Kafka, so a replayed batch does not add a second copy.
CREATE TABLE IF NOT EXISTS ${db}.aggregate_rejects
(
    topic       LowCardinality(String),
    partition   UInt32,
    offset      UInt64,
    raw_key     String,
    raw_value   String,
    reason      String,
    rejected_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(rejected_at)
ORDER BY (topic, partition, offset)
TTL toDateTime(rejected_at) + INTERVAL 90 DAY;

-- One row per lake maintenance pass (`pipeline lake maintain`, or its companion in the ClickHouse service), written
-- by the maintenance when it can reach ClickHouse, so /metrics, /api/status, `clickhouse status` and the dashboard
-- show what the last passes did wherever the maintenance runs. Not an aggregate; kept 30 days.
CREATE TABLE IF NOT EXISTS ${db}.maintenance_passes
(
    finished_at        DateTime64(3, 'UTC'),
    duration_s         Float64,
    compacted_slots    UInt32,
    snapshots_expired  UInt32,
    partitions_expired UInt32,
    orphans_removed    UInt32,
    restated_slots     UInt32,
    errors             UInt32,
    error              String,
    open_slots         UInt32,  -- the raw table's layout after the pass
    open_files         UInt32,
    closed_slots       UInt32,
    closed_files       UInt32,
    uncompacted_slots  UInt32
)
ENGINE = MergeTree
ORDER BY finished_at
TTL toDateTime(finished_at) + INTERVAL 30 DAY;
