-- The raw topic. The value format 'user-action-json' (flink_job/format, compiled Java) parses and validates each
-- record once and emits exactly one row per record, never dropping one: the typed contract fields of a valid
-- event, or NULL fields with `reason` and the bytes as read (raw_value) for an invalid one. The reasons and
-- their order are listed in flink_job/format/.../UserActionParser.java; the two rules that need the record's
-- Kafka timestamp are applied in 02_checked_records.sql.
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
  -- The watermark follows event time but never runs ahead of the record's Kafka time: an event from a device whose
  -- clock is ahead cannot make the on-time events after it late, nor make the lake's committed watermark (what
  -- closes a slot) run ahead. A record rejected for its timestamp (02_checked_records.sql: too far ahead of or
  -- behind its Kafka time) or without one has a NULL watermark, which is skipped: it moves nothing.
  WATERMARK FOR event_time AS CASE
    WHEN event_time IS NULL
      OR TIMESTAMPDIFF(MINUTE, kafka_timestamp, event_time) >= {{max_event_ahead_minutes}}
      OR TIMESTAMPDIFF(MINUTE, event_time, kafka_timestamp) >= {{max_event_behind_minutes}}
      THEN CAST(NULL AS TIMESTAMP_LTZ(3))
    WHEN event_time <= kafka_timestamp THEN event_time - INTERVAL '{{watermark_delay_seconds}}' SECOND
    ELSE kafka_timestamp - INTERVAL '{{watermark_delay_seconds}}' SECOND END
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
