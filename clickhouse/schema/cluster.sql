-- Cluster variant of analytics.sql for a production ClickHouse cluster: each shard keeps its
-- rows in a ReplicatedReplacingMergeTree (same key, version, partitioning and TTL), and a
-- Distributed table per aggregate spreads inserts by user_id and fans queries out.
-- Substituted by clickhouse/schema.py: ${db}, ${cluster}, ${realtime_ttl_days}, ${window_ttl_days}.
-- Apply with: pipeline clickhouse schema --cluster NAME   (CLICKHOUSE_URL pointing at the cluster)
-- Sharding by user_id keeps every version of a key on one shard, so FINAL on the Distributed
-- table still deduplicates correctly (each shard finalises its own keys).
-- For server-side Kafka ingestion on a cluster, point the materialized views of
-- kafka_engine.sql at the *_local tables on each node (or at the Distributed tables).

CREATE DATABASE IF NOT EXISTS ${db} ON CLUSTER '${cluster}';

CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_local ON CLUSTER '${cluster}'
(
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${db}/user_aggregations', '{replica}', version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id)
TTL toDateTime(window_start) + INTERVAL ${window_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS ${db}.user_aggregations ON CLUSTER '${cluster}'
AS ${db}.user_aggregations_local
ENGINE = Distributed('${cluster}', '${db}', 'user_aggregations_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS ${db}.user_action_aggregations_local ON CLUSTER '${cluster}'
(
    window_start DateTime64(3, 'UTC'),
    window_end   DateTime64(3, 'UTC'),
    user_id      UInt32,
    action_type  LowCardinality(String),
    actions      UInt32,
    version      UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${db}/user_action_aggregations', '{replica}', version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id, action_type)
TTL toDateTime(window_start) + INTERVAL ${window_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS ${db}.user_action_aggregations ON CLUSTER '${cluster}'
AS ${db}.user_action_aggregations_local
ENGINE = Distributed('${cluster}', '${db}', 'user_action_aggregations_local', cityHash64(user_id));

CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_realtime_local ON CLUSTER '${cluster}'
(
    window_start  DateTime64(3, 'UTC'),
    window_end    DateTime64(3, 'UTC'),
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${db}/user_aggregations_realtime', '{replica}', version)
PARTITION BY toDate(window_start)
ORDER BY (window_start, user_id)
TTL toDateTime(window_start) + INTERVAL ${realtime_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_realtime ON CLUSTER '${cluster}'
AS ${db}.user_aggregations_realtime_local
ENGINE = Distributed('${cluster}', '${db}', 'user_aggregations_realtime_local', cityHash64(user_id));

-- When each 2-hour slot was last restated (see analytics.sql): tiny, so one replicated copy on every
-- node (one ZooKeeper path for all shards) instead of a Distributed table.
CREATE TABLE IF NOT EXISTS ${db}.restatements ON CLUSTER '${cluster}'
(
    slot_start    DateTime64(3, 'UTC'),
    restated_at   DateTime64(3, 'UTC'),
    lake_events   UInt64,
    rows_upserted UInt64,
    rows_deleted  UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/${db}/restatements', '{replica}', restated_at)
PARTITION BY toDate(slot_start)
ORDER BY slot_start
TTL toDateTime(slot_start) + INTERVAL ${window_ttl_days} DAY;

CREATE TABLE IF NOT EXISTS ${db}.aggregate_rejects ON CLUSTER '${cluster}'
(
    topic       LowCardinality(String),
    partition   UInt32,
    offset      UInt64,
    raw_key     String,
    raw_value   String,
    reason      String,
    rejected_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/${db}/aggregate_rejects', '{replica}', rejected_at)
ORDER BY (topic, partition, offset)
TTL toDateTime(rejected_at) + INTERVAL 90 DAY;

CREATE TABLE IF NOT EXISTS ${db}.maintenance_passes ON CLUSTER '${cluster}'
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/${db}/maintenance_passes', '{replica}')
ORDER BY finished_at
TTL toDateTime(finished_at) + INTERVAL 30 DAY;
