-- checked_records: reason IS NULL for a valid event, else why not. The first WHEN is the common case; the
-- rest runs only for invalid records, so it may parse again to name the problem.
CREATE TEMPORARY VIEW checked_records AS
SELECT
  *,
  CASE
    WHEN raw_value IS NULL THEN 'null value'
    WHEN CAST(json_text AS BYTES) <> raw_value THEN 'invalid UTF-8'
    WHEN user_id BETWEEN 1 AND {{max_user_id}} AND action_type IN ({{action_types}})
         AND event_ms BETWEEN 0 AND 9999999999999 AND event_time < kafka_timestamp + INTERVAL '1' DAY
         AND event_time = TO_TIMESTAMP_LTZ(event_ms, 3) AND CHAR_LENGTH(event_id) BETWEEN 1 AND 64
      THEN CAST(NULL AS STRING)
    -- all six fields have the right JSON types, a value is wrong:
    WHEN action_type IS NOT NULL THEN CASE
      WHEN user_id IS NULL OR user_id NOT BETWEEN 1 AND {{max_user_id}} THEN 'user_id out of range'
      WHEN action_type NOT IN ({{action_types}}) THEN 'unknown action_type'
      -- before 1970, more than 13 digits, or a day or more past the record's Kafka timestamp (see 01_source_kafka.sql)
      WHEN event_ms IS NULL OR event_ms NOT BETWEEN 0 AND 9999999999999
        OR event_time >= kafka_timestamp + INTERVAL '1' DAY THEN 'timestamp out of range'
      -- the rowtime (01_source_kafka.sql) is not the typed field, e.g. a duplicate "timestamp" key
      WHEN event_time <> TO_TIMESTAMP_LTZ(event_ms, 3) THEN 'ambiguous timestamp'
      ELSE 'event_id empty or longer than 64 characters' END
    WHEN NOT (json_text IS JSON) THEN 'unparseable JSON'
    WHEN NOT (json_text IS JSON OBJECT) THEN 'not a JSON object'
    WHEN NOT JSON_EXISTS(json_text, '$.event_id') THEN 'missing field: event_id'
    WHEN NOT JSON_EXISTS(json_text, '$.user_id') THEN 'missing field: user_id'
    WHEN NOT JSON_EXISTS(json_text, '$.action_type') THEN 'missing field: action_type'
    WHEN NOT JSON_EXISTS(json_text, '$.timestamp') THEN 'missing field: timestamp'
    WHEN NOT JSON_EXISTS(json_text, '$.metadata') THEN 'missing field: metadata'
    WHEN NOT JSON_EXISTS(json_text, '$.device_info') THEN 'missing field: device_info'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.event_id' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[".*"\]$')
      THEN 'wrong type: event_id is not a string'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.user_id' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[-?[0-9]+\]$')
      THEN 'wrong type: user_id is not an integer'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.action_type' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[".*"\]$')
      THEN 'wrong type: action_type is not a string'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.timestamp' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[-?[0-9]+\]$')
      THEN 'wrong type: timestamp is not an integer'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.metadata' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[\{.*\}\]$')
      THEN 'wrong type: metadata is not an object'
    WHEN NOT REGEXP(JSON_QUERY(json_text, '$.device_info' WITH UNCONDITIONAL ARRAY WRAPPER), '^\[\{.*\}\]$')
      THEN 'wrong type: device_info is not an object'
    ELSE 'escaped characters in event_id or action_type'
  END AS reason
FROM parsed_records;

-- valid_events: the contract's fields, typed; event_time stays the rowtime attribute for the windows.
CREATE TEMPORARY VIEW valid_events AS
SELECT
  event_id, user_id, action_type, event_ms AS `timestamp`, metadata, device_info, event_time,
  CAST(event_time AS TIMESTAMP(3)) AS event_ts, kafka_partition, kafka_offset
FROM checked_records
WHERE reason IS NULL;
