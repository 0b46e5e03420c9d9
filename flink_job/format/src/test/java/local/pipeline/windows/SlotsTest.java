package local.pipeline.windows;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;

import org.junit.jupiter.api.Test;

/** Window arithmetic and the merge of buffered counts into a user's state. */
class SlotsTest {

    private static final long T0 = 1_772_323_200_000L;  // 2026-03-01 00:00:00 UTC

    @Test
    void windowsAreAlignedToTheEpochAndHalfOpen() {
        assertEquals(T0 + Slots.FIVE_MINUTES, Slots.windowEnd(T0, Slots.FIVE_MINUTES));
        assertEquals(T0 + Slots.FIVE_MINUTES, Slots.windowEnd(T0 + Slots.FIVE_MINUTES - 1, Slots.FIVE_MINUTES));
        assertEquals(T0 + 2 * Slots.FIVE_MINUTES, Slots.windowEnd(T0 + Slots.FIVE_MINUTES, Slots.FIVE_MINUTES));
        assertEquals(T0 + Slots.TWO_HOURS, Slots.windowEnd(T0 + Slots.TWO_HOURS - 1, Slots.TWO_HOURS));
        assertEquals(T0 + 2 * Slots.TWO_HOURS, Slots.windowEnd(T0 + Slots.TWO_HOURS, Slots.TWO_HOURS));
        assertEquals(Slots.FIVE_MINUTES, Slots.windowEnd(0, Slots.FIVE_MINUTES));
    }

    @Test
    void slotsCarryTheirWindowEndAndAction() {
        long end = T0 + Slots.TWO_HOURS;
        long five = Slots.fiveMinute(end);
        long first = Slots.perAction(end, 0);
        long last = Slots.perAction(end, Slots.MAX_ACTION_TYPES - 1);
        assertTrue(Slots.isFiveMinute(five));
        assertFalse(Slots.isFiveMinute(first));
        assertEquals(end, Slots.end(five));
        assertEquals(end, Slots.end(first));
        assertEquals(end, Slots.end(last));
        assertEquals(0, Slots.action(first));
        assertEquals(Slots.MAX_ACTION_TYPES - 1, Slots.action(last));
        assertFalse(five == first);
    }

    @Test
    void mergeSumsKnownSlotsAppendsNewOnesAndNamesEachNewWindowEndOnce() {
        long end5 = T0 + Slots.FIVE_MINUTES;
        long end2 = T0 + Slots.TWO_HOURS;
        Slots.Merger merger = new Slots.Merger();
        long[] state = merger.merge(null, new long[] {Slots.fiveMinute(end5), Slots.perAction(end2, 3)},
                new long[] {2, 2}, 2);
        assertArrayEquals(new long[] {Slots.fiveMinute(end5), 2, Slots.perAction(end2, 3), 2}, state);
        assertArrayEquals(new long[] {end5, end2}, Arrays.copyOf(merger.newEnds(), merger.newEndCount()));

        long next5 = end5 + Slots.FIVE_MINUTES;
        state = merger.merge(state, new long[] {Slots.perAction(end2, 3), Slots.perAction(end2, 4),
            Slots.fiveMinute(next5)}, new long[] {5, 1, 7}, 3);
        assertArrayEquals(new long[] {Slots.fiveMinute(end5), 2, Slots.perAction(end2, 3), 7,
            Slots.perAction(end2, 4), 1, Slots.fiveMinute(next5), 7}, state);
        // end2 already has a timer (action 3 is there); only the new 5-minute window needs one
        assertArrayEquals(new long[] {next5}, Arrays.copyOf(merger.newEnds(), merger.newEndCount()));
    }

    @Test
    void theLastFiveMinuteWindowAndItsTwoHourWindowShareOneTimer() {
        long end = T0 + Slots.TWO_HOURS;
        Slots.Merger merger = new Slots.Merger();
        merger.merge(null, new long[] {Slots.fiveMinute(end), Slots.perAction(end, 0)}, new long[] {1, 1}, 2);
        assertArrayEquals(new long[] {end}, Arrays.copyOf(merger.newEnds(), merger.newEndCount()));
    }

    @Test
    void manyNewWindowsGrowTheListOfNewEnds() {
        int n = 40;
        long[] slots = new long[n];
        long[] counts = new long[n];
        for (int i = 0; i < n; i++) {
            slots[i] = Slots.fiveMinute(T0 + (i + 1) * Slots.FIVE_MINUTES);
            counts[i] = 1;
        }
        Slots.Merger merger = new Slots.Merger();
        assertEquals(2 * n, merger.merge(null, slots, counts, n).length);
        assertEquals(n, merger.newEndCount());
    }
}
