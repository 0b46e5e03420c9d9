-- `pipeline job` (--windows operator, the default): the three aggregates come from one keyed operator
-- (UserWindowsOperator in flink_job/format, keyed by user_id), which flink_job/user_windows.py puts on the valid
-- events and registers as the views below, rows already in the sinks' columns (05..07 declare the sinks; their own
-- INSERTs are left out).
INSERT INTO user_aggregations_sink
SELECT window_start, window_end, user_id, total_actions, version FROM operator_user_aggregations;

INSERT INTO user_action_aggregations_sink
SELECT window_start, window_end, user_id, action_type, actions, version FROM operator_user_action_aggregations;

INSERT INTO user_aggregations_realtime_sink
SELECT window_start, window_end, user_id, total_actions, version FROM operator_user_aggregations_realtime;
