-- Server-side ingestion: the alternative to the loader (`pipeline clickhouse load`/`serve`). A ClickHouse server
-- consumes an aggregate topic itself through a Kafka-engine table; two materialized views split what it reads:
-- valid records into the aggregate's ReplacingMergeTree table (analytics.sql: apply that first), every other record
-- into ${db}.aggregate_rejects with its reason. The checks are the loader's (clickhouse/records.py): window times as
-- 'yyyy-MM-dd HH:mm:ss[.SSS]' (or ISO with T/Z) or epoch milliseconds within 1970..2299, a window of exactly
-- ${window_minutes} minutes, user_id 1..4294967295, the count 0..4294967295, version 0..2^63-1. Every conversion
-- is an ...OrNull / ...OrZero function, so no record can throw inside the view and stall the topic; a record that is
-- not JSON at all comes with _error (kafka_handle_error_mode = 'stream').
-- Only for a ClickHouse server (the embedded chDB engine has no background Kafka consumer):
--   pipeline clickhouse schema --kafka-engine --kafka-brokers broker:9092   (with CLICKHOUSE_URL set)
-- This file is the template of one aggregate: clickhouse/schema.py renders it for each of base/contract.py's
-- aggregates (${name}, ${count_column}, ${window_minutes}, and the action_type parts where the key has one), with
-- the checking SELECT of kafka_engine_checked.sql in place of the checked placeholder: both views read from it.
-- (A doubled dollar sign is a literal one after substitution.)

CREATE TABLE IF NOT EXISTS ${db}.${name}_queue
(
    window_start  String,
    window_end    String,
    user_id       String,${action_type_column}
    ${count_column} String,
    version       String
)
ENGINE = Kafka
SETTINGS kafka_broker_list = '${kafka_brokers}',
         kafka_topic_list = '${name}',
         kafka_group_name = '${consumer_group}',
         kafka_format = 'JSONEachRow',
         kafka_num_consumers = 1,
         kafka_handle_error_mode = 'stream';

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${name}_queue_mv TO ${db}.${name} AS
SELECT assumeNotNull(ws) AS window_start, assumeNotNull(we) AS window_end, assumeNotNull(uid) AS user_id,${action_type_final}
       assumeNotNull(n) AS ${count_column}, assumeNotNull(v) AS version
FROM (${checked})
WHERE reason = '';

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${name}_queue_rejects_mv TO ${db}.aggregate_rejects AS
SELECT topic, toUInt32(partition) AS partition, offset, raw_key, raw_value, reason, now64(3, 'UTC') AS rejected_at
FROM (${checked})
WHERE reason != '';
