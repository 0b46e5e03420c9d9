-- The checking SELECT of one aggregate's Kafka-engine queue (see kafka_engine.sql): every record read, its fields
-- converted with ...OrNull functions and its reason ('' for a valid record). Rendered by clickhouse/schema.py. The
-- converted values keep names of their own (ws, we, uid, n, v): an alias named like a source column would shadow it.
WITH
    '^(19[7-9][0-9]|2[0-2][0-9][0-9])-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]:[0-9][0-9](\\.[0-9]{1,3})?Z?$$'
        AS time_text,
    if(match(window_start, '^[0-9]{1,14}$$') AND toInt64OrZero(window_start) < 10413792000000,
       fromUnixTimestamp64Milli(toInt64OrZero(window_start), 'UTC'),
       if(match(window_start, time_text), parseDateTime64BestEffortOrNull(window_start, 3, 'UTC'), NULL)) AS ws,
    if(match(window_end, '^[0-9]{1,14}$$') AND toInt64OrZero(window_end) < 10413792000000,
       fromUnixTimestamp64Milli(toInt64OrZero(window_end), 'UTC'),
       if(match(window_end, time_text), parseDateTime64BestEffortOrNull(window_end, 3, 'UTC'), NULL)) AS we,
    toUInt32OrNull(user_id) AS uid,
    toUInt32OrNull(${count_column}) AS n,
    toUInt64OrNull(version) AS v
SELECT
    ws, we, uid,${action_type_select} n, v,
    _topic AS topic, _partition AS partition, _offset AS offset, _key AS raw_key, _raw_message AS raw_value,
    multiIf(
        length(_error) > 0, concat('unparseable: ', _error),
        ws IS NULL, 'window_start is neither a time 1970..2299 nor epoch millis',
        we IS NULL, 'window_end is neither a time 1970..2299 nor epoch millis',
        dateDiff('millisecond', ws, we) != ${window_minutes} * 60000, 'window is not ${window_minutes} minutes',
        uid IS NULL OR uid = 0, 'user_id out of range 1..4294967295',
        n IS NULL, '${count_column} out of range 0..4294967295',
        v IS NULL OR v > 9223372036854775807, 'version out of range 0..9223372036854775807',${action_type_reason}
        '') AS reason
FROM ${db}.${name}_queue
