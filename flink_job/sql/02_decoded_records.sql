-- The one JSON parse per record: the value's six contract fields re-rendered as canonical JSON (keys sorted,
-- no spaces, e.g. {"action_type":"scroll","device_info":{..},"event_id":"..","metadata":{..},
-- "timestamp":1700000000000,"user_id":42}), which one regular expression then types exactly.
-- The job computes this query once and hands it on as the view decoded_records (pipeline.py): Flink does not
-- share common subexpressions, so every later use of fields_json would otherwise parse the record again.
SELECT
  raw_key,
  raw_value,
  kafka_partition,
  kafka_offset,
  kafka_timestamp,
  event_time AS source_event_time,
  JSON_QUERY(CAST(raw_value AS STRING),
    '$[''action_type'',''device_info'',''event_id'',''metadata'',''timestamp'',''user_id'']') AS fields_json
FROM kafka_user_actions
