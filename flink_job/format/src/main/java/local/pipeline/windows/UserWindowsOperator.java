package local.pipeline.windows;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeutils.base.LongSerializer;
import org.apache.flink.api.common.typeutils.base.array.LongPrimitiveArraySerializer;
import org.apache.flink.metrics.Counter;
import org.apache.flink.runtime.state.StateInitializationContext;
import org.apache.flink.runtime.state.StateSnapshotContext;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.runtime.state.VoidNamespaceSerializer;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.InternalTimer;
import org.apache.flink.streaming.api.operators.InternalTimerService;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.Triggerable;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.util.OutputTag;

/**
 * The job's three window aggregates in one keyed operator (keyed by user_id): the 2-hour count per user, the 2-hour
 * count per user and action type, and the 5-minute count per user, as flink_job/sql/05..07 compute them with three
 * TUMBLE window operators (three shuffles, three states, three sets of timers). Here an event costs one shuffle and
 * two increments in a heap buffer; a flush writes each buffered user's counts with one state read and one write, and
 * registers one event-time timer per (user, window end) the first time the user has a count there.
 *
 * <p>Input rows: (user_id BIGINT, action_type STRING, event_time TIMESTAMP_LTZ(3)), valid events only. Output rows,
 * exactly the columns of the three Kafka sinks, on the side outputs {@link UserWindows#USER_AGGREGATIONS},
 * {@link UserWindows#USER_ACTION_AGGREGATIONS} and {@link UserWindows#USER_AGGREGATIONS_REALTIME}: window_start and
 * window_end as 'yyyy-MM-dd HH:mm:ss' in UTC, the key, the count, and version = epoch ms of emission.
 *
 * <p>Late events, as Flink's window operators treat them: an event whose window has fired (the watermark reached
 * its end - 1) is left out of that window's aggregates and counted in {@code numLateRecordsDropped}, once per
 * aggregate it misses (so the counter equals the sum of the three SQL window operators' counters). An event can be
 * late for its 5-minute window and still on time for its 2-hour ones.
 *
 * <p>The buffer is flushed to state before a watermark may fire a timer (it reached the earliest buffered window's
 * end - 1), before every checkpoint barrier ({@link #prepareSnapshotPreBarrier}), and when it holds its record limit;
 * so it is empty whenever timers fire or state is snapshotted, and needs no state of its own.
 */
public final class UserWindowsOperator extends AbstractStreamOperator<RowData>
        implements OneInputStreamOperator<RowData, RowData>, Triggerable<Long, VoidNamespace> {

    private static final long serialVersionUID = 1L;

    /** Flink's window operators' metric name: dashboards and the late-data test read it. */
    static final String LATE_RECORDS_DROPPED = "numLateRecordsDropped";
    private static final DateTimeFormatter WINDOW_FORMAT =
            DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss").withZone(ZoneOffset.UTC);

    private final List<String> actionTypes;
    private final int bufferRecords;

    private transient Map<StringData, Integer> actionIndex;
    private transient StringData[] actionNames;
    private transient PreAggregationBuffer buffer;
    private transient Slots.Merger merger;
    private transient ValueState<long[]> counts;
    private transient InternalTimerService<VoidNamespace> timers;
    private transient ListState<Long> watermarkState;
    private transient long currentWatermark;
    private transient Counter lateRecordsDropped;
    private transient StreamRecord<RowData> out;
    private transient Map<Long, StringData> windowText;

    /**
     * @param actionTypes the contract's action types (the value format accepts no other)
     * @param bufferRecords records buffered on the heap before a flush to state
     */
    public UserWindowsOperator(List<String> actionTypes, int bufferRecords) {
        if (actionTypes.size() > Slots.MAX_ACTION_TYPES) {
            throw new IllegalArgumentException("at most " + Slots.MAX_ACTION_TYPES + " action types");
        }
        this.actionTypes = List.copyOf(actionTypes);
        this.bufferRecords = bufferRecords;
        this.currentWatermark = Long.MIN_VALUE;
    }

    @Override
    public void initializeState(StateInitializationContext context) throws Exception {
        super.initializeState(context);
        currentWatermark = Long.MIN_VALUE;
        // The watermark at the checkpoint: without it, a restored job would take an event for a window that already
        // fired as on time and emit that window again with only the late count (Flink's WindowAggOperator keeps it
        // so too, the smallest of all subtasks' after rescaling).
        watermarkState = context.getOperatorStateStore()
                .getUnionListState(new ListStateDescriptor<>("watermark", LongSerializer.INSTANCE));
        if (context.isRestored()) {
            long restored = Long.MAX_VALUE;
            for (Long watermark : watermarkState.get()) {
                restored = Math.min(restored, watermark);
            }
            if (restored != Long.MAX_VALUE) {
                currentWatermark = restored;
            }
        }
    }

    @Override
    public void open() throws Exception {
        super.open();
        actionIndex = new HashMap<>();
        actionNames = new StringData[actionTypes.size()];
        for (int i = 0; i < actionTypes.size(); i++) {
            actionNames[i] = BinaryStringData.fromString(actionTypes.get(i));
            actionIndex.put(actionNames[i], i);
        }
        buffer = new PreAggregationBuffer(bufferRecords);
        merger = new Slots.Merger();
        counts = getPartitionedState(new ValueStateDescriptor<>("counts", LongPrimitiveArraySerializer.INSTANCE));
        timers = getInternalTimerService("user-windows-timers", VoidNamespaceSerializer.INSTANCE, this);
        lateRecordsDropped = getMetricGroup().counter(LATE_RECORDS_DROPPED);
        out = new StreamRecord<>(null);
        windowText = new HashMap<>();
    }

    @Override
    public void processElement(StreamRecord<RowData> element) throws Exception {
        RowData event = element.getValue();
        long user = event.getLong(0);
        int action = actionOf(event.getString(1));
        long timestamp = event.getTimestamp(2, 3).getMillisecond();
        long fiveMinuteEnd = Slots.windowEnd(timestamp, Slots.FIVE_MINUTES);
        long twoHourEnd = Slots.windowEnd(timestamp, Slots.TWO_HOURS);
        if (isFired(fiveMinuteEnd)) {
            lateRecordsDropped.inc();
        } else {
            buffer.add(user, Slots.fiveMinute(fiveMinuteEnd), fiveMinuteEnd);
        }
        if (isFired(twoHourEnd)) {
            lateRecordsDropped.inc(2);  // both 2-hour aggregates
        } else {
            buffer.add(user, Slots.perAction(twoHourEnd, action), twoHourEnd);
        }
        buffer.recordAdded();
        if (buffer.isFull()) {
            flush();
        }
    }

    private boolean isFired(long windowEnd) {
        return currentWatermark >= windowEnd - 1;
    }

    private int actionOf(StringData name) {
        Integer index = actionIndex.get(name);
        if (index == null) {  // the value format rejects any other action type: this is a wiring error
            throw new IllegalStateException("action_type '" + name + "' is not one of the contract's");
        }
        return index;
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        if (mark.getTimestamp() <= currentWatermark) {
            return;  // after a restore, until the watermark passes the checkpoint's
        }
        if (!buffer.isEmpty() && mark.getTimestamp() >= buffer.minWindowEnd() - 1) {
            flush();  // this watermark fires a window the buffer holds counts of
        }
        currentWatermark = mark.getTimestamp();
        super.processWatermark(mark);  // fires the timers up to it, then passes it on
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        super.prepareSnapshotPreBarrier(checkpointId);
        flush();
    }

    @Override
    public void snapshotState(StateSnapshotContext context) throws Exception {
        super.snapshotState(context);
        watermarkState.update(Collections.singletonList(currentWatermark));
    }

    private void flush() throws Exception {
        if (buffer.isEmpty()) {
            return;
        }
        buffer.flush((user, slots, added, n) -> {
            setCurrentKey(user);
            long[] merged = merger.merge(counts.value(), slots, added, n);
            long[] newEnds = merger.newEnds();
            for (int i = 0; i < merger.newEndCount(); i++) {
                timers.registerEventTimeTimer(VoidNamespace.INSTANCE, newEnds[i] - 1);
            }
            counts.update(merged);
        });
    }

    @Override
    public void onEventTime(InternalTimer<Long, VoidNamespace> timer) throws Exception {
        long[] state = counts.value();
        if (state == null) {
            return;
        }
        long user = timer.getKey();
        long firedUpTo = timer.getTimestamp() + 1;  // every window ending at or before this has fired
        long version = System.currentTimeMillis();
        long[] totals = null;  // (2-hour window end, total) pairs of the windows emitted now
        int totalsSize = 0;
        int kept = 0;
        for (int i = 0; i < state.length; i += 2) {
            long slot = state[i];
            long end = Slots.end(slot);
            if (end > firedUpTo) {
                state[kept++] = slot;
                state[kept++] = state[i + 1];
                continue;
            }
            long count = state[i + 1];
            if (Slots.isFiveMinute(slot)) {
                emit(UserWindows.USER_AGGREGATIONS_REALTIME,
                        GenericRowData.of(windowText(end - Slots.FIVE_MINUTES), windowText(end), user, count, version));
                continue;
            }
            emit(UserWindows.USER_ACTION_AGGREGATIONS, GenericRowData.of(windowText(end - Slots.TWO_HOURS),
                    windowText(end), user, actionNames[Slots.action(slot)], count, version));
            if (totals == null) {
                totals = new long[4];
            }
            int at = 0;
            while (at < totalsSize && totals[at] != end) {
                at += 2;
            }
            if (at == totalsSize) {
                if (at == totals.length) {
                    totals = java.util.Arrays.copyOf(totals, 2 * at);
                }
                totals[at] = end;
                totals[at + 1] = 0;
                totalsSize += 2;
            }
            totals[at + 1] += count;
        }
        for (int i = 0; i < totalsSize; i += 2) {
            long end = totals[i];
            emit(UserWindows.USER_AGGREGATIONS,
                    GenericRowData.of(windowText(end - Slots.TWO_HOURS), windowText(end), user, totals[i + 1], version));
        }
        if (kept == 0) {
            counts.clear();
        } else if (kept < state.length) {
            counts.update(java.util.Arrays.copyOf(state, kept));
        }
    }

    private void emit(OutputTag<RowData> tag, RowData row) {
        output.collect(tag, out.replace(row));
    }

    /** 'yyyy-MM-dd HH:mm:ss' in UTC, as DATE_FORMAT gives it in the SQL; a few windows are live at a time. */
    private StringData windowText(long epochMillis) {
        StringData text = windowText.get(epochMillis);
        if (text == null) {
            if (windowText.size() > 4096) {
                windowText.clear();
            }
            text = StringData.fromString(WINDOW_FORMAT.format(Instant.ofEpochMilli(epochMillis)));
            windowText.put(epochMillis, text);
        }
        return text;
    }

    @Override
    public void onProcessingTime(InternalTimer<Long, VoidNamespace> timer) {
        throw new IllegalStateException("the windows are on event time");
    }

    /** Records dropped as late, for tests. */
    long lateRecordsDropped() {
        return lateRecordsDropped.getCount();
    }
}
