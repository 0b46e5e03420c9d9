-- The raw topic. The value format 'user-action-json' (flink_job/format, compiled Java) parses and validates each
-- record once and emits exactly one row per record, never dropping one: the typed contract fields of a valid
-- event, or NULL fields with `reason` and the bytes as read (raw_value) for an invalid one. The reasons and
-- their order are listed in flink_job/format/.../UserActionParser.java; the one rule that needs the record's
-- Kafka timestamp is applied in 02_checked_records.sql.
-- event_time: the event's timestamp, NULL when the record has no usable one (a NULL never moves the watermark).
-- The watermark is pushed into the Kafka source, so it is tracked per partition, and
-- table.exec.source.idle-timeout keeps an idle partition from holding windows back.
CREATE TEMPORARY TABLE kafka_user_actions (
  raw_key         BYTES,
  event_id        STRING,
  user_id         BIGINT,
  action_type     STRING,
  `timestamp`     BIGINT,
  metadata        STRING,
  device_info     STRING,
  event_time      TIMESTAMP_LTZ(3),
  reason          STRING,
  raw_value       BYTES,
  kafka_partition INT              METADATA FROM 'partition' VIRTUAL,
  kafka_offset    BIGINT           METADATA FROM 'offset' VIRTUAL,
  kafka_timestamp TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  -- A timestamp a day or more past its record's Kafka timestamp is rejected (02_checked_records.sql) and must not
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
  'value.format' = 'user-action-json',
  'value.user-action-json.action-types' = '{{action_types}}',
  'value.user-action-json.max-user-id' = '{{max_user_id}}',
  'value.fields-include' = 'EXCEPT_KEY'{{kafka_source_security_options}}
);
