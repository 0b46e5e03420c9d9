-- Every other record, byte for byte, with the reason: records read = user_actions + user_actions_rejected.
INSERT INTO paimon.lake.user_actions_rejected
SELECT
  raw_key,
  raw_value,
  reason,
  kafka_partition,
  kafka_offset,
  CAST(kafka_timestamp AS TIMESTAMP(3)) AS kafka_timestamp,
  CAST(CURRENT_ROW_TIMESTAMP() AS TIMESTAMP(3)) AS ingest_time,
  DATE_FORMAT(CURRENT_ROW_TIMESTAMP(), 'yyyy-MM-dd') AS ingest_date
FROM checked_records
WHERE reason IS NOT NULL;
