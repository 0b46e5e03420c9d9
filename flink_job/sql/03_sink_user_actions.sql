-- Valid events into the Paimon raw table (DDL from lakehouse/tables.py). Partitions in UTC:
-- event_date yyyy-MM-dd and event_hour = start of the 2-hour slot (0, 2, ..., 22); Paimon hashes user_id
-- into one of 128 fixed buckets.
INSERT INTO paimon.lake.user_actions
SELECT
  event_id,
  user_id,
  action_type,
  `timestamp`,
  metadata,
  device_info,
  event_ts AS event_time,
  DATE_FORMAT(event_ts, 'yyyy-MM-dd') AS event_date,
  CAST(HOUR(event_ts) - MOD(HOUR(event_ts), 2) AS INT) AS event_hour,
  kafka_partition,
  kafka_offset,
  CAST(CURRENT_ROW_TIMESTAMP() AS TIMESTAMP(3)) AS ingest_time
FROM valid_events;
