-- 2-hour tumbling windows per user. Kafka key = JSON of (window_start, window_end, user_id); version = epoch ms
-- of emission, so a replayed window replaces the earlier row in ClickHouse (ReplacingMergeTree).
CREATE TEMPORARY TABLE user_aggregations_sink (
  window_start  STRING,
  window_end    STRING,
  user_id       BIGINT,
  total_actions BIGINT,
  version       BIGINT
) WITH (
  {{kafka_sink_options}},
  'topic' = '{{user_aggregations_topic}}',
  'key.fields' = 'window_start;window_end;user_id'
);

INSERT INTO user_aggregations_sink
SELECT window_start, window_end, user_id, total_actions,
       EXTRACT(EPOCH FROM emitted_at) * 1000 + MOD(EXTRACT(MILLISECOND FROM emitted_at), 1000) AS version
FROM (
  SELECT
    DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss') AS window_start,
    DATE_FORMAT(window_end, 'yyyy-MM-dd HH:mm:ss') AS window_end,
    user_id,
    COUNT(*) AS total_actions,
    CURRENT_ROW_TIMESTAMP() AS emitted_at
  FROM TABLE(TUMBLE(TABLE valid_events, DESCRIPTOR(event_time), INTERVAL '2' HOUR))
  GROUP BY window_start, window_end, user_id
);
