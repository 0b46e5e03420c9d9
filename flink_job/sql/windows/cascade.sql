-- `pipeline job --windows cascade`: the three aggregates from one first stage, instead of three window operators
-- over every event (05..07 declare the sinks; their own INSERTs are left out). The first stage counts events per
-- (5-minute window, user, action type); the 5-minute total per user and the 2-hour count per action type are window
-- aggregates over its rows (their rowtime is its window_time, the window's end - 1 ms), and the 2-hour total per user
-- one over the 2-hour per-action rows. Each later stage sees fewer rows than events when users repeat actions.
-- Late data: an event behind the watermark for its 5-minute window is dropped by the first stage, so it misses the
-- 2-hour aggregates too, even when its 2-hour window is still open (the SQL and operator variants count it there).
-- A later stage windows a view by its rowtime (window_time AS rowtime), and the view must not carry window_start and
-- window_end of its own (the TUMBLE adds them again).
CREATE TEMPORARY VIEW five_minute_action_counts AS
SELECT window_time AS rowtime, user_id, action_type, COUNT(*) AS actions
FROM TABLE(TUMBLE(TABLE valid_events, DESCRIPTOR(event_time), INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, window_time, user_id, action_type;

CREATE TEMPORARY VIEW two_hour_action_counts AS
SELECT window_start, window_end, window_time, user_id, action_type, SUM(actions) AS actions
FROM TABLE(TUMBLE(TABLE five_minute_action_counts, DESCRIPTOR(rowtime), INTERVAL '2' HOUR))
GROUP BY window_start, window_end, window_time, user_id, action_type;

CREATE TEMPORARY VIEW two_hour_action_rows AS
SELECT window_time AS rowtime, user_id, actions FROM two_hour_action_counts;

INSERT INTO user_aggregations_realtime_sink
SELECT window_start, window_end, user_id, total_actions,
       EXTRACT(EPOCH FROM emitted_at) * 1000 + MOD(EXTRACT(MILLISECOND FROM emitted_at), 1000) AS version
FROM (
  SELECT
    DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss') AS window_start,
    DATE_FORMAT(window_end, 'yyyy-MM-dd HH:mm:ss') AS window_end,
    user_id,
    SUM(actions) AS total_actions,
    CURRENT_ROW_TIMESTAMP() AS emitted_at
  FROM TABLE(TUMBLE(TABLE five_minute_action_counts, DESCRIPTOR(rowtime), INTERVAL '5' MINUTE))
  GROUP BY window_start, window_end, user_id
);

INSERT INTO user_action_aggregations_sink
SELECT window_start, window_end, user_id, action_type, actions,
       EXTRACT(EPOCH FROM emitted_at) * 1000 + MOD(EXTRACT(MILLISECOND FROM emitted_at), 1000) AS version
FROM (
  SELECT
    DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss') AS window_start,
    DATE_FORMAT(window_end, 'yyyy-MM-dd HH:mm:ss') AS window_end,
    user_id,
    action_type,
    actions,
    CURRENT_ROW_TIMESTAMP() AS emitted_at
  FROM two_hour_action_counts
);

INSERT INTO user_aggregations_sink
SELECT window_start, window_end, user_id, total_actions,
       EXTRACT(EPOCH FROM emitted_at) * 1000 + MOD(EXTRACT(MILLISECOND FROM emitted_at), 1000) AS version
FROM (
  SELECT
    DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss') AS window_start,
    DATE_FORMAT(window_end, 'yyyy-MM-dd HH:mm:ss') AS window_end,
    user_id,
    SUM(actions) AS total_actions,
    CURRENT_ROW_TIMESTAMP() AS emitted_at
  FROM TABLE(TUMBLE(TABLE two_hour_action_rows, DESCRIPTOR(rowtime), INTERVAL '2' HOUR))
  GROUP BY window_start, window_end, user_id
);
