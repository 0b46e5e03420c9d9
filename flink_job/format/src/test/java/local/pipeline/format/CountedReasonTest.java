package local.pipeline.format;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.SimpleCounter;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.apache.flink.table.functions.FunctionContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** COUNTED_REASON: the reason out unchanged, one counter per reason in group reason=<reason>, a bounded number. */
class CountedReasonTest {

    /** What the function registered: "key=value/counter name" to its counter, in registration order. */
    private final Map<String, SimpleCounter> registered = new LinkedHashMap<>();
    private final List<String> groups = new ArrayList<>();
    private final CountedReason function = new CountedReason();

    @BeforeEach
    void open() {
        MetricGroup operator = new UnregisteredMetricsGroup() {
            @Override
            public MetricGroup addGroup(String key, String value) {
                groups.add(key + "=" + value);
                return new UnregisteredMetricsGroup() {
                    @Override
                    public Counter counter(String name) {
                        SimpleCounter counter = new SimpleCounter();
                        registered.put(key + "=" + value + "/" + name, counter);
                        return counter;
                    }
                };
            }
        };
        function.open(new FunctionContext(null) {
            @Override
            public MetricGroup getMetricGroup() {
                return operator;
            }
        });
    }

    @Test
    void returnsTheReasonUnchangedAndCountsItPerReason() {
        String reason = "missing field: user_id";
        assertSame(reason, function.eval(reason));
        function.eval("missing field: user_id");
        function.eval("unparseable JSON");
        assertEquals(2, registered.get("reason=missing field: user_id/numRecordsRejected").getCount());
        assertEquals(1, registered.get("reason=unparseable JSON/numRecordsRejected").getCount());
        assertEquals(List.of("reason=missing field: user_id", "reason=unparseable JSON"), groups);
    }

    @Test
    void nullIsReturnedAndNotCounted() {
        assertNull(function.eval(null));
        assertEquals(Map.of(), registered);
    }

    @Test
    void reasonsBeyondTheCapAreCountedAsOther() {
        int distinct = CountedReason.MAX_REASONS + 10;
        for (int i = 0; i < distinct; i++) {
            assertEquals("reason " + i, function.eval("reason " + i));
        }
        function.eval("reason 0");
        function.eval("reason " + (distinct - 1));
        assertEquals(CountedReason.MAX_REASONS, registered.size());
        assertEquals(2, registered.get("reason=reason 0/numRecordsRejected").getCount());
        // the first MAX_REASONS - 1 reasons have their own series; the other 11 (+1 repeat) share "other"
        assertEquals(12, registered.get("reason=other/numRecordsRejected").getCount());
        long total = registered.values().stream().mapToLong(SimpleCounter::getCount).sum();
        assertEquals(distinct + 2, total);
    }

    @Test
    void isNotDeterministic() {
        assertFalse(function.isDeterministic());
    }
}
