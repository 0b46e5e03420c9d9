package local.pipeline.windows;

import java.util.Arrays;

/**
 * What one user's state holds, and the arithmetic of its windows. A slot is a window end and what is counted in it:
 * the 5-minute window's total (code 0) or one action type in the 2-hour window (code 1 + the action's index), packed
 * into one long. A user's state is a flat {@code long[]} of (slot, count) pairs in no order. The 2-hour total per user
 * is not stored: it is the sum of that window's per-action counts, added up when the window is emitted.
 *
 * <p>Windows are tumbling and aligned to the epoch in UTC, as Flink's TUMBLE with {@code table.local-time-zone} UTC:
 * a timestamp t belongs to [t - t mod size, t - t mod size + size), and the window fires when the watermark reaches
 * its end - 1.
 */
final class Slots {

    static final long FIVE_MINUTES = 5 * 60_000L;
    static final long TWO_HOURS = 2 * 3_600_000L;
    static final int CODE_BITS = 12;
    static final int CODE_MASK = (1 << CODE_BITS) - 1;
    /** Action types an index can stand for (code 0 is the 5-minute total). */
    static final int MAX_ACTION_TYPES = CODE_MASK;

    private Slots() {
    }

    static long windowEnd(long timestamp, long size) {
        return timestamp - Math.floorMod(timestamp, size) + size;
    }

    static long fiveMinute(long windowEnd) {
        return windowEnd << CODE_BITS;
    }

    static long perAction(long windowEnd, int action) {
        return (windowEnd << CODE_BITS) | (action + 1);
    }

    static long end(long slot) {
        return slot >> CODE_BITS;
    }

    static boolean isFiveMinute(long slot) {
        return (slot & CODE_MASK) == 0;
    }

    /** The action's index, for a per-action slot. */
    static int action(long slot) {
        return (int) (slot & CODE_MASK) - 1;
    }

    /**
     * Adds one buffered user's counts to their state: the counts of slots already there are summed, the others
     * appended. One per operator instance (it reuses its array of new window ends).
     */
    static final class Merger {

        private long[] newEnds = new long[16];
        private int newEndCount;

        /** The user's new state; {@link #newEnds()} then holds each window end that had no slot before. */
        long[] merge(long[] state, long[] slots, long[] counts, int n) {
            int size = state == null ? 0 : state.length;
            long[] merged = state == null ? new long[2 * n] : Arrays.copyOf(state, size + 2 * n);
            newEndCount = 0;
            for (int i = 0; i < n; i++) {
                long slot = slots[i];
                int at = indexOf(merged, size, slot);
                if (at >= 0) {
                    merged[at + 1] += counts[i];
                    continue;
                }
                long end = end(slot);
                if (!hasEnd(merged, size, end)) {  // a window new to this user: it needs its timer
                    if (newEndCount == newEnds.length) {
                        newEnds = Arrays.copyOf(newEnds, 2 * newEndCount);
                    }
                    newEnds[newEndCount++] = end;
                }
                merged[size] = slot;
                merged[size + 1] = counts[i];
                size += 2;
            }
            return size == merged.length ? merged : Arrays.copyOf(merged, size);
        }

        long[] newEnds() {
            return newEnds;
        }

        int newEndCount() {
            return newEndCount;
        }
    }

    private static int indexOf(long[] pairs, int size, long slot) {
        for (int i = 0; i < size; i += 2) {
            if (pairs[i] == slot) {
                return i;
            }
        }
        return -1;
    }

    private static boolean hasEnd(long[] pairs, int size, long end) {
        for (int i = 0; i < size; i += 2) {
            if (end(pairs[i]) == end) {
                return true;
            }
        }
        return false;
    }
}
