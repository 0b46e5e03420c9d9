-- parsed_records (computed once, like decoded_records): typed fields, all NULL unless every field has the
-- contract's JSON type (strings without escapes, objects, integers). A nested "metadata" key could make the object split ambiguous; then the two
-- objects are read with JSON_QUERY instead.
SELECT
  raw_key, raw_value, kafka_partition, kafka_offset, kafka_timestamp, event_time AS source_event_time,
  CAST(raw_value AS STRING) AS json_text,
  REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 3) AS event_id,
  TRY_CAST(REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 6) AS BIGINT) AS user_id,
  REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 1) AS action_type,
  TRY_CAST(REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 5) AS BIGINT) AS event_ms,
  CASE WHEN CHAR_LENGTH(fields_json) - CHAR_LENGTH(REPLACE(fields_json, '"metadata":', '')) > 11
       THEN JSON_QUERY(CAST(raw_value AS STRING), '$.metadata')
       ELSE REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 4) END AS metadata,
  CASE WHEN CHAR_LENGTH(fields_json) - CHAR_LENGTH(REPLACE(fields_json, '"metadata":', '')) > 11
       THEN JSON_QUERY(CAST(raw_value AS STRING), '$.device_info')
       ELSE REGEXP_EXTRACT(fields_json, '{{fields_pattern}}', 2) END AS device_info
FROM decoded_records
