package local.pipeline.windows;

import java.util.Arrays;
import java.util.List;

import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.runtime.typeutils.InternalTypeInfo;
import org.apache.flink.table.types.logical.BigIntType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.logical.VarCharType;
import org.apache.flink.util.OutputTag;

/**
 * Puts {@link UserWindowsOperator} on a stream of valid events: what flink_job/pipeline.py calls through the py4j
 * gateway for {@code pipeline job --windows operator}, turning the three returned streams back into tables for the
 * three Kafka sinks' INSERTs.
 */
public final class UserWindows {

    /** The operator's uid: its state (counts, timers, watermark) is restored under it. */
    public static final String UID = "user-windows";
    public static final String NAME = "UserWindows";

    private static final RowType PER_USER = RowType.of(
            new LogicalType[] {string(), string(), bigint(), bigint(), bigint()},
            new String[] {"window_start", "window_end", "user_id", "total_actions", "version"});
    private static final RowType PER_ACTION = RowType.of(
            new LogicalType[] {string(), string(), bigint(), string(), bigint(), bigint()},
            new String[] {"window_start", "window_end", "user_id", "action_type", "actions", "version"});

    static final OutputTag<RowData> USER_AGGREGATIONS =
            new OutputTag<>("user_aggregations", InternalTypeInfo.of(PER_USER));
    static final OutputTag<RowData> USER_ACTION_AGGREGATIONS =
            new OutputTag<>("user_action_aggregations", InternalTypeInfo.of(PER_ACTION));
    static final OutputTag<RowData> USER_AGGREGATIONS_REALTIME =
            new OutputTag<>("user_aggregations_realtime", InternalTypeInfo.of(PER_USER));

    private UserWindows() {
    }

    /**
     * The three aggregates of {@code events} (rows of user_id BIGINT, action_type STRING, event_time
     * TIMESTAMP_LTZ(3)), keyed by user_id: streams of user_aggregations, user_action_aggregations and
     * user_aggregations_realtime rows, in the contract's order.
     */
    public static List<DataStream<RowData>> apply(DataStream<RowData> events, String[] actionTypes, int bufferRecords) {
        SingleOutputStreamOperator<RowData> windows = events
                .keyBy(new UserId(), Types.LONG)
                .transform(NAME, InternalTypeInfo.of(PER_USER),
                        new UserWindowsOperator(Arrays.asList(actionTypes), bufferRecords))
                .uid(UID)
                .name(NAME);
        return List.of(windows.getSideOutput(USER_AGGREGATIONS), windows.getSideOutput(USER_ACTION_AGGREGATIONS),
                windows.getSideOutput(USER_AGGREGATIONS_REALTIME));
    }

    /** The key: user_id, the first column. */
    static final class UserId implements KeySelector<RowData, Long> {
        private static final long serialVersionUID = 1L;

        @Override
        public Long getKey(RowData event) {
            return event.getLong(0);
        }
    }

    private static LogicalType string() {
        return new VarCharType(false, VarCharType.MAX_LENGTH);
    }

    private static LogicalType bigint() {
        return new BigIntType(false);
    }
}
