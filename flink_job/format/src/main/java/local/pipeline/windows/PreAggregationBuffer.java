package local.pipeline.windows;

import java.util.Arrays;

/**
 * Counts per (user, slot) on the heap between two flushes to keyed state, as Flink's window aggregation buffers
 * records in memory ({@code table.exec.window-agg.buffer-size-limit}): a heavy user's events fold into one state
 * write per flush instead of one per event. Primitive arrays and open addressing, so an event costs two hash probes
 * and no allocation; the entries of a user are chained, so a flush visits one user at a time (one state read and one
 * write per user for all three aggregates).
 *
 * <p>Bounded by a record count: {@link #isFull()} once that many records were added since the last flush.
 */
final class PreAggregationBuffer {

    /** Receives one user's buffered counts at a flush; the arrays are reused, valid for {@code n} entries. */
    interface UserCounts {
        void accept(long user, long[] slots, long[] counts, int n) throws Exception;
    }

    private static final int EMPTY = -1;

    private final int maxRecords;
    private int records;
    private long minWindowEnd = Long.MAX_VALUE;

    // Entries (user, slot, count), each linked to the previous entry of the same user.
    private long[] entryUser = new long[1024];
    private long[] entrySlot = new long[1024];
    private int[] entryCount = new int[1024];
    private int[] entryNext = new int[1024];
    private int entries;
    // Users, each with its latest entry.
    private long[] userKey = new long[512];
    private int[] userLast = new int[512];
    private int users;
    // Open-addressing indexes into the two, sized to at most half full.
    private int[] entryIndex = newIndex(2048);
    private int[] userIndex = newIndex(1024);

    PreAggregationBuffer(int maxRecords) {
        if (maxRecords < 1) {
            throw new IllegalArgumentException("the buffer must hold at least one record, not " + maxRecords);
        }
        this.maxRecords = maxRecords;
    }

    /** Counts one record of {@code user} in {@code slot}. */
    void add(long user, long slot, long windowEnd) {
        int mask = entryIndex.length - 1;
        int pos = mix(user * 0x9E3779B97F4A7C15L + slot) & mask;
        int e;
        while ((e = entryIndex[pos]) != EMPTY) {
            if (entrySlot[e] == slot && entryUser[e] == user) {
                entryCount[e]++;
                return;
            }
            pos = (pos + 1) & mask;
        }
        if (entries == entryUser.length) {
            growEntries();
        }
        e = entries++;
        entryUser[e] = user;
        entrySlot[e] = slot;
        entryCount[e] = 1;
        int u = userOf(user);
        entryNext[e] = userLast[u];
        userLast[u] = e;
        entryIndex[pos] = e;
        if (2 * entries > entryIndex.length) {
            entryIndex = rehash(entryIndex, entries, i -> mix(entryUser[i] * 0x9E3779B97F4A7C15L + entrySlot[i]));
        }
        minWindowEnd = Math.min(minWindowEnd, windowEnd);
    }

    /** Marks one record as added (an event adds up to two slots). */
    void recordAdded() {
        records++;
    }

    boolean isFull() {
        return records >= maxRecords;
    }

    boolean isEmpty() {
        return entries == 0;
    }

    /** The earliest window end among the buffered counts ({@code Long.MAX_VALUE} when empty). */
    long minWindowEnd() {
        return minWindowEnd;
    }

    int records() {
        return records;
    }

    /** Hands every user's counts to {@code sink}, one user at a time, then empties the buffer. */
    void flush(UserCounts sink) throws Exception {
        long[] slots = new long[16];
        long[] counts = new long[16];
        for (int u = 0; u < users; u++) {
            int n = 0;
            for (int e = userLast[u]; e != EMPTY; e = entryNext[e]) {
                if (n == slots.length) {
                    slots = Arrays.copyOf(slots, 2 * n);
                    counts = Arrays.copyOf(counts, 2 * n);
                }
                slots[n] = entrySlot[e];
                counts[n++] = entryCount[e];
            }
            sink.accept(userKey[u], slots, counts, n);
        }
        clear();
    }

    private void clear() {
        Arrays.fill(entryIndex, EMPTY);
        Arrays.fill(userIndex, EMPTY);
        entries = 0;
        users = 0;
        records = 0;
        minWindowEnd = Long.MAX_VALUE;
    }

    private int userOf(long user) {
        int mask = userIndex.length - 1;
        int pos = mix(user) & mask;
        int u;
        while ((u = userIndex[pos]) != EMPTY) {
            if (userKey[u] == user) {
                return u;
            }
            pos = (pos + 1) & mask;
        }
        if (users == userKey.length) {
            userKey = Arrays.copyOf(userKey, 2 * users);
            userLast = Arrays.copyOf(userLast, 2 * users);
        }
        u = users++;
        userKey[u] = user;
        userLast[u] = EMPTY;
        userIndex[pos] = u;
        if (2 * users > userIndex.length) {
            userIndex = rehash(userIndex, users, i -> mix(userKey[i]));
        }
        return u;
    }

    private void growEntries() {
        int size = 2 * entryUser.length;
        entryUser = Arrays.copyOf(entryUser, size);
        entrySlot = Arrays.copyOf(entrySlot, size);
        entryCount = Arrays.copyOf(entryCount, size);
        entryNext = Arrays.copyOf(entryNext, size);
    }

    private interface Hash {
        int of(int item);
    }

    private static int[] rehash(int[] index, int items, Hash hash) {
        int[] bigger = newIndex(2 * index.length);
        int mask = bigger.length - 1;
        for (int i = 0; i < items; i++) {
            int pos = hash.of(i) & mask;
            while (bigger[pos] != EMPTY) {
                pos = (pos + 1) & mask;
            }
            bigger[pos] = i;
        }
        return bigger;
    }

    private static int[] newIndex(int size) {
        int[] index = new int[size];
        Arrays.fill(index, EMPTY);
        return index;
    }

    /** MurmurHash3's 64-bit finaliser: user ids and window ends are sequential, their low bits alone would cluster. */
    private static int mix(long x) {
        x ^= x >>> 33;
        x *= 0xff51afd7ed558ccdL;
        x ^= x >>> 33;
        x *= 0xc4ceb9fe1a85ec53L;
        x ^= x >>> 33;
        return (int) x;
    }
}
