package local.pipeline.windows;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.runtime.checkpoint.OperatorSubtaskState;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.state.rocksdb.EmbeddedRocksDBStateBackend;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.KeyedOneInputStreamOperatorTestHarness;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.util.OutputTag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The operator in Flink's own test harness, on RocksDB as in the job: the three aggregates equal counts computed
 * from the events, late events are dropped and counted as Flink's window operators do, the heap buffer reaches
 * state before a checkpoint, and a restored operator goes on exactly (state, timers and watermark).
 */
class UserWindowsOperatorTest {

    private static final long T0 = 1_772_323_200_000L;  // 2026-03-01 00:00:00 UTC
    private static final long MIN = 60_000L;
    private static final List<String> ACTIONS = List.of("app_open", "back_press", "search", "purchase");
    private static final DateTimeFormatter FORMAT =
            DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss").withZone(ZoneOffset.UTC);

    private record Event(long user, String action, long timestamp) {
    }

    private static final class Run implements AutoCloseable {
        final UserWindowsOperator operator;
        final KeyedOneInputStreamOperatorTestHarness<Long, RowData, RowData> harness;

        Run(int bufferRecords, OperatorSubtaskState restoreFrom) throws Exception {
            operator = new UserWindowsOperator(ACTIONS, bufferRecords);
            harness = new KeyedOneInputStreamOperatorTestHarness<>(operator, new UserWindows.UserId(), Types.LONG);
            harness.setStateBackend(new EmbeddedRocksDBStateBackend());
            harness.setup();
            if (restoreFrom != null) {
                harness.initializeState(restoreFrom);
            }
            harness.open();
        }

        /** Users with counts in keyed state (RocksDB: the harness's own count works on heap state only). */
        long stateEntries() throws Exception {
            try (var keys = operator.<Long>getKeyedStateBackend().getKeys("counts", VoidNamespace.INSTANCE)) {
                return keys.count();
            }
        }

        void send(Event... events) throws Exception {
            for (Event e : events) {
                harness.processElement(new StreamRecord<>(GenericRowData.of(e.user, StringData.fromString(e.action),
                        TimestampData.fromEpochMillis(e.timestamp))));
            }
        }

        void watermark(long timestamp) throws Exception {
            harness.processWatermark(new Watermark(timestamp));
        }

        /** What a checkpoint does: the barrier's preparation, then the snapshot. */
        OperatorSubtaskState checkpoint(long id) throws Exception {
            harness.prepareSnapshotPreBarrier(id);
            return harness.snapshot(id, id);
        }

        /** Every row emitted so far, as "aggregate|window_start|window_end|user_id[|action_type]|count". */
        List<String> rows() {
            List<String> rows = new ArrayList<>();
            long now = System.currentTimeMillis();
            collect(rows, UserWindows.USER_AGGREGATIONS, false, now);
            collect(rows, UserWindows.USER_ACTION_AGGREGATIONS, true, now);
            collect(rows, UserWindows.USER_AGGREGATIONS_REALTIME, false, now);
            rows.sort(null);
            return rows;
        }

        private void collect(List<String> rows, OutputTag<RowData> tag, boolean perAction, long now) {
            var records = harness.getSideOutput(tag);
            if (records == null) {
                return;
            }
            for (StreamRecord<RowData> record : records) {
                RowData row = record.getValue();
                int count = perAction ? 4 : 3;
                long version = row.getLong(count + 1);
                assertTrue(Math.abs(version - now) < 60_000, "version is the emission time in epoch ms: " + version);
                rows.add(tag.getId() + "|" + row.getString(0) + "|" + row.getString(1) + "|" + row.getLong(2)
                        + (perAction ? "|" + row.getString(3) : "") + "|" + row.getLong(count));
            }
        }

        @Override
        public void close() throws Exception {
            harness.close();
        }
    }

    /** The rows the SQL's three TUMBLE aggregates produce for these events: counted here independently. */
    private static List<String> expected(List<Event> events) {
        Map<String, Long> counts = new HashMap<>();
        for (Event e : events) {
            String twoHours = window(e.timestamp, 120 * MIN);
            counts.merge("user_aggregations|" + twoHours + "|" + e.user, 1L, Long::sum);
            counts.merge("user_action_aggregations|" + twoHours + "|" + e.user + "|" + e.action, 1L, Long::sum);
            counts.merge("user_aggregations_realtime|" + window(e.timestamp, 5 * MIN) + "|" + e.user, 1L, Long::sum);
        }
        List<String> rows = new ArrayList<>();
        counts.forEach((key, n) -> rows.add(key + "|" + n));
        rows.sort(null);
        return rows;
    }

    private static String window(long timestamp, long size) {
        long start = timestamp - Math.floorMod(timestamp, size);
        return FORMAT.format(Instant.ofEpochMilli(start)) + "|" + FORMAT.format(Instant.ofEpochMilli(start + size));
    }

    @ParameterizedTest(name = "buffer of {0} records")
    @ValueSource(ints = {1, 37, 1_000_000})
    void countsPerWindowAreExact(int bufferRecords) throws Exception {
        // 3,000 events of 25 users over 5 hours, a watermark 5 s behind every 40th: nothing is late, every window
        // boundary (5-minute and 2-hour) is crossed while counts sit in the buffer
        Random random = new Random(7);
        List<Event> events = new ArrayList<>();
        long t = T0 + 1;
        for (int i = 0; i < 3_000; i++) {
            t += random.nextInt(12_000);
            events.add(new Event(1 + random.nextInt(25), ACTIONS.get(random.nextInt(ACTIONS.size())),
                    t - random.nextInt(4_000)));
        }
        try (Run run = new Run(bufferRecords, null)) {
            for (int i = 0; i < events.size(); i++) {
                run.send(events.get(i));
                if (i % 40 == 39) {
                    run.watermark(t(events, i) - 5_000);
                }
            }
            run.watermark(Long.MAX_VALUE);
            assertEquals(expected(events), run.rows());
            assertEquals(0, run.operator.lateRecordsDropped());
            assertEquals(0, run.harness.numEventTimeTimers());
            assertEquals(0, run.stateEntries(), "every fired window's counts are cleared");
        }
    }

    private static long t(List<Event> events, int upTo) {
        long max = Long.MIN_VALUE;
        for (int i = 0; i <= upTo; i++) {
            max = Math.max(max, events.get(i).timestamp);
        }
        return max;
    }

    @Test
    void windowsFireWhenTheWatermarkReachesTheirEndMinusOne() throws Exception {
        try (Run run = new Run(1_000, null)) {
            run.send(new Event(7, "search", T0 + MIN));
            run.watermark(T0 + 5 * MIN - 2);
            assertEquals(List.of(), run.rows());
            run.watermark(T0 + 5 * MIN - 1);
            assertEquals(List.of("user_aggregations_realtime|2026-03-01 00:00:00|2026-03-01 00:05:00|7|1"), run.rows());
            run.watermark(T0 + 120 * MIN - 1);
            assertEquals(3, run.rows().size());
        }
    }

    @Test
    void lateEventsAreDroppedFromTheWindowsThatFiredAndCounted() throws Exception {
        try (Run run = new Run(1_000, null)) {
            run.send(new Event(7, "search", T0 + MIN), new Event(7, "search", T0 + MIN + 1),
                    new Event(7, "purchase", T0 + 2 * MIN));
            run.watermark(T0 + 5 * MIN - 1);  // the first 5-minute window fires
            // late for its 5-minute window, on time for its 2-hour window: counted there, dropped (and counted) here
            run.send(new Event(7, "search", T0 + 3 * MIN));
            assertEquals(1, run.operator.lateRecordsDropped());
            run.watermark(T0 + 120 * MIN - 1);  // the 2-hour window fires
            // late for all three: dropped, one count per aggregate it misses
            run.send(new Event(7, "search", T0 + 4 * MIN));
            assertEquals(4, run.operator.lateRecordsDropped());
            run.watermark(Long.MAX_VALUE);
            assertEquals(List.of(
                    "user_action_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|purchase|1",
                    "user_action_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|search|3",
                    "user_aggregations_realtime|2026-03-01 00:00:00|2026-03-01 00:05:00|7|3",
                    "user_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|4"), run.rows());
            assertEquals(0, run.stateEntries(), "a late event leaves no state behind");
        }
    }

    @Test
    void theBufferReachesStateBeforeTheCheckpointAndTheRestoredOperatorEmitsIt() throws Exception {
        List<Event> events = List.of(new Event(1, "app_open", T0 + MIN), new Event(1, "app_open", T0 + 6 * MIN),
                new Event(2, "back_press", T0 + 119 * MIN));
        OperatorSubtaskState snapshot;
        try (Run run = new Run(1_000_000, null)) {
            run.send(events.toArray(Event[]::new));
            assertEquals(0, run.stateEntries(), "still in the heap buffer");
            assertEquals(0, run.harness.numEventTimeTimers());
            snapshot = run.checkpoint(1);
            assertEquals(2, run.stateEntries(), "one state entry per user");
            // user 1: two 5-minute windows and the 2-hour window; user 2: its last 5-minute window shares the end
            // of its 2-hour window, so one timer
            assertEquals(4, run.harness.numEventTimeTimers());
            assertEquals(List.of(), run.rows());
        }
        try (Run restored = new Run(1_000_000, snapshot)) {
            restored.watermark(Long.MAX_VALUE);
            assertEquals(expected(events), restored.rows());
        }
    }

    @Test
    void aRestoredOperatorKeepsTheWatermarkItsCheckpointHad() throws Exception {
        List<Event> before = List.of(new Event(7, "search", T0 + MIN), new Event(7, "search", T0 + 7 * MIN));
        OperatorSubtaskState snapshot;
        try (Run run = new Run(1_000_000, null)) {
            run.send(before.toArray(Event[]::new));
            run.watermark(T0 + 5 * MIN - 1);  // the first 5-minute window fires before the checkpoint
            assertEquals(List.of("user_aggregations_realtime|2026-03-01 00:00:00|2026-03-01 00:05:00|7|1"), run.rows());
            snapshot = run.checkpoint(1);
        }
        try (Run restored = new Run(1_000_000, snapshot)) {
            // replayed after the restore, behind the checkpoint's watermark: late for the window that fired, so that
            // window is not emitted again with a count of 1 that would replace the right one downstream
            restored.send(new Event(7, "back_press", T0 + 2 * MIN));
            assertEquals(1, restored.operator.lateRecordsDropped());
            restored.watermark(T0 + 3 * MIN);  // behind the restored watermark: fires nothing
            restored.watermark(Long.MAX_VALUE);
            assertEquals(List.of(
                    "user_action_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|back_press|1",
                    "user_action_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|search|2",
                    "user_aggregations_realtime|2026-03-01 00:05:00|2026-03-01 00:10:00|7|1",
                    "user_aggregations|2026-03-01 00:00:00|2026-03-01 02:00:00|7|3"), restored.rows());
        }
    }

    @Test
    void anActionTypeOutsideTheContractIsAWiringError() throws Exception {
        try (Run run = new Run(10, null)) {
            Exception error = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                    () -> run.send(new Event(1, "teleport", T0)));
            assertTrue(error.getMessage().contains("teleport"));
        }
    }
}
