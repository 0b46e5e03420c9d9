-- checked_records: every record read, with its final reason (NULL for a valid event). The format gave every
-- reason but one: a timestamp a day or more past the record's Kafka timestamp, which needs the metadata column.
-- It ranks after the format's timestamp range rule and before its last two rules (ambiguous timestamp, event_id
-- length): the format sets event_time exactly for records that reached that point.
CREATE TEMPORARY VIEW checked_records AS
SELECT
  raw_key, raw_value, event_id, user_id, action_type, `timestamp`, metadata, device_info, event_time,
  kafka_partition, kafka_offset, kafka_timestamp,
  CASE WHEN event_time >= kafka_timestamp + INTERVAL '1' DAY THEN 'timestamp out of range' ELSE reason END AS reason
FROM kafka_user_actions;

-- valid_events: the contract's fields, typed; event_time stays the rowtime attribute for the windows.
CREATE TEMPORARY VIEW valid_events AS
SELECT
  event_id, user_id, action_type, `timestamp`, metadata, device_info, event_time,
  CAST(event_time AS TIMESTAMP(3)) AS event_ts, kafka_partition, kafka_offset
FROM checked_records
WHERE reason IS NULL;
