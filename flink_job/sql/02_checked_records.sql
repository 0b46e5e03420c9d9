-- checked_records: every record read, with its final reason (NULL for a valid event). The format gave every
-- reason but two, which need the record's Kafka timestamp (a metadata column): event time is trusted within bounds
-- of it. An event {{max_event_ahead_minutes}} minutes or more ahead of its Kafka time (a device clock set wrong) is
-- rejected; so is one {{max_event_behind_minutes}} minutes or more behind it: the restatement looks back that far, so
-- every accepted event can reach the aggregates, and decades-old events cannot open a Paimon partition per 2-hour
-- slot since 1970. (TIMESTAMPDIFF counts whole minutes.) They rank after the format's timestamp range rule and before
-- its last two rules (ambiguous timestamp, event_id length): the format sets event_time exactly for records that
-- reached that point.
CREATE TEMPORARY VIEW checked_records AS
SELECT
  raw_key, raw_value, event_id, user_id, action_type, `timestamp`, metadata, device_info, event_time,
  kafka_partition, kafka_offset, kafka_timestamp,
  CASE
    WHEN TIMESTAMPDIFF(MINUTE, kafka_timestamp, event_time) >= {{max_event_ahead_minutes}}
      THEN 'timestamp too far ahead of its Kafka time'
    WHEN TIMESTAMPDIFF(MINUTE, event_time, kafka_timestamp) >= {{max_event_behind_minutes}}
      THEN 'timestamp too far behind its Kafka time'
    ELSE reason END AS reason
FROM kafka_user_actions;

-- valid_events: the contract's fields, typed; event_time stays the rowtime attribute for the windows.
CREATE TEMPORARY VIEW valid_events AS
SELECT
  event_id, user_id, action_type, `timestamp`, metadata, device_info, event_time,
  CAST(event_time AS TIMESTAMP(3)) AS event_ts, kafka_partition, kafka_offset
FROM checked_records
WHERE reason IS NULL;
