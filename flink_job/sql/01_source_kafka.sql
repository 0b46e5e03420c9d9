-- The raw topic, read as bytes: the connector parses nothing, so no record can be dropped or crash the job;
-- validation is SQL (03_classified_records.sql to 05_checked_records.sql).
-- event_time: the integer "timestamp" field (epoch ms, UTC), or NULL when the record has none; a NULL never
-- moves the watermark. The watermark is pushed into the Kafka source, so it is tracked per partition, and
-- table.exec.source.idle-timeout keeps an idle partition from holding windows back.
CREATE TEMPORARY TABLE kafka_user_actions (
  raw_key         BYTES,
  raw_value       BYTES,
  kafka_partition INT              METADATA FROM 'partition' VIRTUAL,
  kafka_offset    BIGINT           METADATA FROM 'offset' VIRTUAL,
  kafka_timestamp TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  -- Never NULL: the rowtime crosses to_data_stream (pipeline.py), which fails on a NULL rowtime and would restart
  -- the job for ever. No usable timestamp = 1970-01-01, below any watermark; checked_records rejects it (event_ms).
  -- Read with a regular expression when the record has exactly one "timestamp" key (a quoted key cannot occur
  -- inside a JSON string, where quotes are escaped), else with JSON_VALUE: the watermark generator evaluates
  -- this expression once more per record, and a JSON parse here twice per record was a fifth of the source's
  -- CPU. Clamped to 13 digits so TO_TIMESTAMP_LTZ cannot overflow; checked_records requires it to equal the
  -- strictly typed field (event_ms), so a valid event's rowtime is exactly its timestamp.
  event_time AS COALESCE(TO_TIMESTAMP_LTZ(LEAST(GREATEST(TRY_CAST(
      CASE WHEN REGEXP_COUNT(CAST(raw_value AS STRING), '"timestamp"\s*:') = 1
           THEN REGEXP_EXTRACT_ALL(CAST(raw_value AS STRING), '"timestamp"\s*:\s*(-?[0-9]{1,13})\s*[,}]', 1)[1]
           ELSE JSON_VALUE(CAST(raw_value AS STRING), '$.timestamp') END AS BIGINT),
      0), 9999999999999), 3), TO_TIMESTAMP_LTZ(0, 3)),
  -- A timestamp a day or more past its record's Kafka timestamp is rejected (05_checked_records.sql) and must not
  -- move the watermark either: one far-future event would make every later window late. A NULL watermark is skipped.
  WATERMARK FOR event_time AS CASE WHEN event_time < kafka_timestamp + INTERVAL '1' DAY
    THEN event_time - INTERVAL '{{watermark_delay_seconds}}' SECOND END
) WITH (
  'connector' = 'kafka',
  'topic' = '{{source_topic}}',
  'properties.bootstrap.servers' = '{{bootstrap}}',
  'properties.group.id' = '{{group_id}}',
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = '{{startup_mode}}',
  'scan.bounded.mode' = '{{bounded_mode}}',
  'key.format' = 'raw',
  'key.fields' = 'raw_key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'{{kafka_source_security_options}}
);
