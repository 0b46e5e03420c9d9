package local.pipeline.windows;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

/** The heap buffer: exact counts per (user, slot), one visit per user at a flush, bounded by records. */
class PreAggregationBufferTest {

    /** (user, slot) -> count, as a flush hands them over; each user visited once. */
    private static Map<String, Long> drain(PreAggregationBuffer buffer) throws Exception {
        Map<String, Long> out = new HashMap<>();
        Map<Long, Integer> visits = new HashMap<>();
        buffer.flush((user, slots, counts, n) -> {
            visits.merge(user, 1, Integer::sum);
            for (int i = 0; i < n; i++) {
                Long before = out.put(user + "/" + slots[i], counts[i]);
                assertEquals(null, before, "a slot handed over twice");
            }
        });
        visits.values().forEach(v -> assertEquals(1, v));
        return out;
    }

    @Test
    void countsPerUserAndSlotAndEmptiesOnFlush() throws Exception {
        PreAggregationBuffer buffer = new PreAggregationBuffer(100);
        assertTrue(buffer.isEmpty());
        buffer.add(7, 10, 1_000);
        buffer.add(7, 10, 1_000);
        buffer.add(7, 11, 2_000);
        buffer.add(8, 10, 500);
        assertEquals(500, buffer.minWindowEnd());
        assertEquals(Map.of("7/10", 2L, "7/11", 1L, "8/10", 1L), drain(buffer));
        assertTrue(buffer.isEmpty());
        assertEquals(Long.MAX_VALUE, buffer.minWindowEnd());
        assertEquals(Map.of(), drain(buffer));
    }

    @Test
    void fullAfterItsRecordLimit() throws Exception {
        PreAggregationBuffer buffer = new PreAggregationBuffer(3);
        for (int i = 0; i < 3; i++) {
            assertFalse(buffer.isFull());
            buffer.add(1, 1, 1);
            buffer.recordAdded();
        }
        assertTrue(buffer.isFull());
        drain(buffer);
        assertFalse(buffer.isFull());
        assertEquals(0, buffer.records());
        assertThrows(IllegalArgumentException.class, () -> new PreAggregationBuffer(0));
    }

    @Test
    void growsPastItsInitialSizeWithoutLosingACount() throws Exception {
        PreAggregationBuffer buffer = new PreAggregationBuffer(Integer.MAX_VALUE);
        Map<String, Long> expected = new HashMap<>();
        // 50,000 users with 1 to 3 slots each, 3 rounds: several growths of every array and index
        for (int round = 0; round < 3; round++) {
            for (long user = 1; user <= 50_000; user++) {
                for (long slot = 0; slot <= user % 3; slot++) {
                    buffer.add(user * 1_000_003L, slot << 12, 5);
                    expected.merge(user * 1_000_003L + "/" + (slot << 12), 1L, Long::sum);
                }
            }
        }
        assertEquals(expected, drain(buffer));
        // and it is reusable after the flush
        buffer.add(42, 1, 1);
        assertEquals(Map.of("42/1", 1L), drain(buffer));
    }
}
