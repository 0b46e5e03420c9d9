package local.pipeline.format;

import java.nio.charset.StandardCharsets;

/** The outcome of {@link UserActionParser#parse}: a reason (null for a valid event) and the typed fields. */
public final class ParsedEvent {

    /** JSON text as bytes[offset, offset + length): a slice of the record or a compacted copy. */
    public static final class Slice {
        public byte[] bytes;
        public int offset;
        public int length;

        @Override
        public String toString() {
            return bytes == null ? null : new String(bytes, offset, length, StandardCharsets.UTF_8);
        }
    }

    /** Null for a valid event, else the first rule the record breaks. */
    public String reason;
    /**
     * True once the value passed every rule up to the timestamp range: the typed fields are set, and the job's
     * SQL applies its Kafka-time rule, which outranks the later reasons (ambiguous timestamp, event_id length).
     */
    public boolean timestampChecked;
    public String eventId;
    public long userId;
    /** One of the configured action types (the configured instance, so equal names share one object). */
    public String actionType;
    /** Epoch milliseconds, UTC. */
    public long timestamp;
    public final Slice metadata = new Slice();
    public final Slice deviceInfo = new Slice();

    void clear() {
        reason = null;
        timestampChecked = false;
        eventId = null;
        actionType = null;
        metadata.bytes = null;
        deviceInfo.bytes = null;
    }
}
