-- COUNTED_REASON (flink_job/format, CountedReason.java) returns the reason unchanged and counts it per reason as a
-- Flink metric (group reason=<reason>, counter numRecordsRejected): rejects by reason in Prometheus without reading
-- the table. Called here only, after the filter, so a valid event never reaches it.
CREATE TEMPORARY SYSTEM FUNCTION COUNTED_REASON AS 'local.pipeline.format.CountedReason' LANGUAGE JAVA;

-- Every other record, byte for byte, with the reason: records read = user_actions + user_actions_rejected.
INSERT INTO paimon.lake.user_actions_rejected
SELECT
  raw_key,
  raw_value,
  COUNTED_REASON(reason) AS reason,
  kafka_partition,
  kafka_offset,
  CAST(kafka_timestamp AS TIMESTAMP(3)) AS kafka_timestamp,
  CAST(CURRENT_ROW_TIMESTAMP() AS TIMESTAMP(3)) AS ingest_time,
  DATE_FORMAT(CURRENT_ROW_TIMESTAMP(), 'yyyy-MM-dd') AS ingest_date
FROM checked_records
WHERE reason IS NOT NULL;
