-- classified_records (computed once, like decoded_records): does the canonical JSON have the contract's types
-- (strings without escapes, objects, integers: one full match of FIELDS_PATTERN), and is the split of
-- device_info / event_id / metadata ambiguous (a second, nested "metadata" key)? Computed here, behind their
-- own boundary, because parsed_records tests them in several columns and the planner would otherwise inline
-- (and evaluate) each regular expression once per use.
SELECT
  raw_key, raw_value, kafka_partition, kafka_offset, kafka_timestamp, event_time AS source_event_time, fields_json,
  REGEXP(fields_json, '{{fields_pattern}}') AS typed,
  REGEXP_COUNT(fields_json, '"metadata":') > 1 AS ambiguous
FROM decoded_records
