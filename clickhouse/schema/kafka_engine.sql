-- Server-side ingestion: the production alternative to `pipeline clickhouse load`.
-- A ClickHouse server consumes the three aggregate topics itself through Kafka-engine tables;
-- materialized views parse each record into the same ReplacingMergeTree tables as analytics.sql
-- (apply that first). Records that do not parse land in ${db}.aggregate_rejects instead of
-- stopping the consumer (kafka_handle_error_mode = 'stream').
-- Only for a ClickHouse server (the embedded chDB engine has no background Kafka consumer):
--   pipeline clickhouse schema --kafka-engine --kafka-brokers broker:9092   (with CLICKHOUSE_URL set)
-- ${kafka_brokers} and ${consumer_group} are substituted by clickhouse/schema.py.
-- (A doubled dollar sign is a literal one after substitution.) Window times arrive as 'yyyy-MM-dd HH:mm:ss[.SSS]' strings or as epoch milliseconds;
-- both are read as String and converted below.

CREATE TABLE IF NOT EXISTS ${db}.aggregate_rejects
(
    topic       LowCardinality(String),
    partition   UInt64,
    offset      UInt64,
    raw         String,
    error       String,
    received_at DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (topic, received_at)
TTL received_at + INTERVAL 30 DAY;

-- user_aggregations -------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_queue
(
    window_start  String,
    window_end    String,
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${kafka_brokers}',
         kafka_topic_list = 'user_aggregations',
         kafka_group_name = '${consumer_group}',
         kafka_format = 'JSONEachRow',
         kafka_num_consumers = 1,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_aggregations_queue_mv TO ${db}.user_aggregations AS
SELECT
    if(match(window_start, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_start), 'UTC'),
       parseDateTime64BestEffort(window_start, 3, 'UTC')) AS window_start,
    if(match(window_end, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_end), 'UTC'),
       parseDateTime64BestEffort(window_end, 3, 'UTC')) AS window_end,
    user_id, total_actions, version
FROM ${db}.user_aggregations_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_aggregations_queue_rejects_mv TO ${db}.aggregate_rejects AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _raw_message AS raw, _error AS error
FROM ${db}.user_aggregations_queue
WHERE length(_error) > 0;

-- user_action_aggregations ------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS ${db}.user_action_aggregations_queue
(
    window_start String,
    window_end   String,
    user_id      UInt32,
    action_type  String,
    actions      UInt32,
    version      UInt64
)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${kafka_brokers}',
         kafka_topic_list = 'user_action_aggregations',
         kafka_group_name = '${consumer_group}',
         kafka_format = 'JSONEachRow',
         kafka_num_consumers = 1,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_action_aggregations_queue_mv TO ${db}.user_action_aggregations AS
SELECT
    if(match(window_start, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_start), 'UTC'),
       parseDateTime64BestEffort(window_start, 3, 'UTC')) AS window_start,
    if(match(window_end, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_end), 'UTC'),
       parseDateTime64BestEffort(window_end, 3, 'UTC')) AS window_end,
    user_id, action_type, actions, version
FROM ${db}.user_action_aggregations_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_action_aggregations_queue_rejects_mv TO ${db}.aggregate_rejects AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _raw_message AS raw, _error AS error
FROM ${db}.user_action_aggregations_queue
WHERE length(_error) > 0;

-- user_aggregations_realtime ----------------------------------------------------------------
CREATE TABLE IF NOT EXISTS ${db}.user_aggregations_realtime_queue
(
    window_start  String,
    window_end    String,
    user_id       UInt32,
    total_actions UInt32,
    version       UInt64
)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${kafka_brokers}',
         kafka_topic_list = 'user_aggregations_realtime',
         kafka_group_name = '${consumer_group}',
         kafka_format = 'JSONEachRow',
         kafka_num_consumers = 1,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_aggregations_realtime_queue_mv TO ${db}.user_aggregations_realtime AS
SELECT
    if(match(window_start, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_start), 'UTC'),
       parseDateTime64BestEffort(window_start, 3, 'UTC')) AS window_start,
    if(match(window_end, '^[0-9]+$$'), fromUnixTimestamp64Milli(toInt64(window_end), 'UTC'),
       parseDateTime64BestEffort(window_end, 3, 'UTC')) AS window_end,
    user_id, total_actions, version
FROM ${db}.user_aggregations_realtime_queue
WHERE length(_error) = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.user_aggregations_realtime_queue_rejects_mv TO ${db}.aggregate_rejects AS
SELECT _topic AS topic, _partition AS partition, _offset AS offset, _raw_message AS raw, _error AS error
FROM ${db}.user_aggregations_realtime_queue
WHERE length(_error) > 0;
