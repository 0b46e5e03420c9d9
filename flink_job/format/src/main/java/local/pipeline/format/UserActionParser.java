package local.pipeline.format;

import java.io.IOException;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

/**
 * Parses and validates one Kafka record value against the event contract, in one pass of Jackson's streaming
 * parser. Pure logic (no Flink types), so every rule is unit-tested on its own.
 *
 * <p>The rules, in the order their reasons win (the same reasons and order the job's SQL used before this format):
 * null value; invalid UTF-8; unparseable JSON; not a JSON object; a missing (or JSON null) field, in contract
 * order; a field of the wrong JSON type, in contract order; an escape-only character ({@code "}, {@code \} or a
 * control character) in event_id or action_type; user_id out of range; unknown action_type; timestamp out of
 * range (before 1970 or more than 13 digits); <em>[the job's SQL checks here: a timestamp too far ahead of or behind
 * the record's Kafka timestamp]</em>; ambiguous timestamp (non-null top-level "timestamp" keys with different values);
 * event_id empty or longer than 64 characters.
 *
 * <p>One JSON document per record: content after the object (a second document, stray text) and a byte order
 * mark are "unparseable JSON". Duplicate top-level keys other than "timestamp": the last one wins, as in Jackson's and Python's object
 * model. Only top-level keys are contract fields: keys inside metadata or device_info are never mistaken for them.
 *
 * <p>metadata and device_info come out as the JSON text of the object, not re-serialised: a slice of the input
 * bytes when the object has no whitespace between its tokens (what producers send), else the same bytes with
 * that whitespace removed. Escapes, key order and numbers stay exactly as sent.
 *
 * <p>Not thread-safe: one instance per deserializer (a Flink task runs one record at a time).
 */
public final class UserActionParser {

    public static final String NULL_VALUE = "null value";
    public static final String INVALID_UTF8 = "invalid UTF-8";
    public static final String UNPARSEABLE = "unparseable JSON";
    public static final String NOT_OBJECT = "not a JSON object";
    public static final String ESCAPED = "escaped characters in event_id or action_type";
    public static final String USER_ID_RANGE = "user_id out of range";
    public static final String UNKNOWN_ACTION = "unknown action_type";
    public static final String TIMESTAMP_RANGE = "timestamp out of range";
    public static final String AMBIGUOUS_TIMESTAMP = "ambiguous timestamp";
    public static final String EVENT_ID_LENGTH = "event_id empty or longer than 64 characters";

    /** Largest timestamp with 13 digits (epoch ms): beyond it the SQL's TO_TIMESTAMP_LTZ would overflow. */
    public static final long MAX_TIMESTAMP = 9_999_999_999_999L;
    public static final int MAX_EVENT_ID_CHARS = 64;

    // Contract fields, in the order their "missing" and "wrong type" reasons are checked.
    static final int EVENT_ID = 0, USER_ID = 1, ACTION_TYPE = 2, TIMESTAMP = 3, METADATA = 4, DEVICE_INFO = 5;
    static final String[] FIELD_NAMES = {"event_id", "user_id", "action_type", "timestamp", "metadata", "device_info"};
    private static final String[] MISSING = new String[6];
    private static final String[] WRONG_TYPE = {
        "wrong type: event_id is not a string", "wrong type: user_id is not an integer",
        "wrong type: action_type is not a string", "wrong type: timestamp is not an integer",
        "wrong type: metadata is not an object", "wrong type: device_info is not an object"};

    static {
        for (int i = 0; i < 6; i++) {
            MISSING[i] = "missing field: " + FIELD_NAMES[i];
        }
    }

    // What a field held after the last occurrence of its key.
    private static final byte ABSENT = 0, WRONG = 1, STRING = 2, INT = 3, BIG_INT = 4, OBJECT = 5;

    private final JsonFactory factory = new JsonFactory();
    private final Map<String, String> actionTypes = new HashMap<>();
    private final long maxUserId;

    // Per-record scratch state, reset by parse().
    private final byte[] kinds = new byte[6];
    private final String[] strings = new String[6];
    private final int[] objectStart = new int[6];
    private final int[] objectEnd = new int[6];
    private long userId;
    private long timestamp;
    private boolean timestampConflict;
    private int timestampKeys;
    private byte firstTimestampKind;  // the first non-null "timestamp" key's kind and value
    private long firstTimestamp;

    public UserActionParser(Collection<String> actionTypes, long maxUserId) {
        for (String name : actionTypes) {
            this.actionTypes.put(name, name);
        }
        this.maxUserId = maxUserId;
    }

    /** Parses {@code value} (the record's bytes, possibly null) into {@code out}, which is overwritten. */
    public void parse(byte[] value, ParsedEvent out) {
        out.clear();
        if (value == null) {
            out.reason = NULL_VALUE;
            return;
        }
        int utf8 = Utf8.check(value);
        if (utf8 == Utf8.INVALID) {
            out.reason = INVALID_UTF8;
            return;
        }
        // A NUL byte is never valid JSON, and at the start it would make Jackson guess UTF-16/32. A byte order mark
        // is not JSON either (RFC 8259), though Jackson would skip it.
        if (utf8 == Utf8.HAS_NUL || startsWithByteOrderMark(value)) {
            out.reason = UNPARSEABLE;
            return;
        }
        Arrays.fill(kinds, ABSENT);
        Arrays.fill(strings, null);
        timestampConflict = false;
        timestampKeys = 0;
        try (JsonParser parser = factory.createParser(value)) {
            JsonToken root = parser.nextToken();
            if (root == null) {
                out.reason = UNPARSEABLE;
                return;
            }
            if (root != JsonToken.START_OBJECT) {
                parser.skipChildren();
                out.reason = parser.nextToken() == null ? NOT_OBJECT : UNPARSEABLE;
                return;
            }
            readFields(parser);
            if (parser.nextToken() != null) {  // content after the object
                out.reason = UNPARSEABLE;
                return;
            }
        } catch (IOException e) {  // JsonParseException, or a read constraint (nesting, number length) exceeded
            out.reason = UNPARSEABLE;
            return;
        }
        out.reason = validate(out);
        if (out.reason == null) {
            JsonText.compactSlice(value, objectStart[METADATA], objectEnd[METADATA], out.metadata);
            JsonText.compactSlice(value, objectStart[DEVICE_INFO], objectEnd[DEVICE_INFO], out.deviceInfo);
        }
    }

    private static boolean startsWithByteOrderMark(byte[] value) {
        return value.length >= 3 && value[0] == (byte) 0xEF && value[1] == (byte) 0xBB && value[2] == (byte) 0xBF;
    }

    private void readFields(JsonParser parser) throws IOException {
        String name;
        while ((name = parser.nextFieldName()) != null) {
            int field = fieldIndex(name);
            JsonToken token = parser.nextToken();
            if (field < 0) {
                parser.skipChildren();
                continue;
            }
            switch (token) {
                case VALUE_NULL:
                    kinds[field] = ABSENT;
                    break;
                case VALUE_STRING:
                    kinds[field] = STRING;
                    strings[field] = parser.getText();
                    break;
                case VALUE_NUMBER_INT:
                    readInteger(parser, field);
                    break;
                case START_OBJECT:
                    kinds[field] = OBJECT;
                    objectStart[field] = (int) parser.getTokenLocation().getByteOffset();
                    parser.skipChildren();
                    objectEnd[field] = (int) parser.getCurrentLocation().getByteOffset();
                    break;
                default:
                    kinds[field] = WRONG;
                    parser.skipChildren();
            }
            if (field == TIMESTAMP && kinds[TIMESTAMP] != ABSENT) {
                // A second non-null "timestamp" key: the same integer again is harmless, anything else leaves it
                // unclear which one the windows should use. (A JSON null counts as absent, as everywhere; the last
                // key still decides the type rules, like for the other fields.)
                boolean same = kinds[TIMESTAMP] == INT && firstTimestampKind == INT && timestamp == firstTimestamp;
                if (timestampKeys++ == 0) {
                    firstTimestampKind = kinds[TIMESTAMP];
                    firstTimestamp = timestamp;
                } else {
                    timestampConflict |= !same;
                }
            }
        }
        if (parser.currentToken() != JsonToken.END_OBJECT) {
            throw new IOException("object not closed");
        }
    }

    private void readInteger(JsonParser parser, int field) throws IOException {
        JsonParser.NumberType type = parser.getNumberType();
        boolean fits = type == JsonParser.NumberType.INT || type == JsonParser.NumberType.LONG;
        long v = fits ? parser.getLongValue() : 0;
        if (field == TIMESTAMP) {
            timestamp = v;
        } else if (field == USER_ID) {
            userId = v;
        }
        kinds[field] = fits ? INT : BIG_INT;
    }

    private static int fieldIndex(String name) {
        switch (name) {
            case "event_id": return EVENT_ID;
            case "user_id": return USER_ID;
            case "action_type": return ACTION_TYPE;
            case "timestamp": return TIMESTAMP;
            case "metadata": return METADATA;
            case "device_info": return DEVICE_INFO;
            default: return -1;
        }
    }

    /** The first rule the parsed fields break, or null; sets the typed fields of {@code out} as it goes. */
    private String validate(ParsedEvent out) {
        for (int f = 0; f < 6; f++) {
            if (kinds[f] == ABSENT) {
                return MISSING[f];
            }
        }
        for (int f = 0; f < 6; f++) {
            byte want = f == EVENT_ID || f == ACTION_TYPE ? STRING : f == METADATA || f == DEVICE_INFO ? OBJECT : INT;
            if (kinds[f] != want && !(want == INT && kinds[f] == BIG_INT)) {
                return WRONG_TYPE[f];
            }
        }
        if (hasEscapeOnlyChar(strings[EVENT_ID]) || hasEscapeOnlyChar(strings[ACTION_TYPE])) {
            return ESCAPED;
        }
        if (kinds[USER_ID] == BIG_INT || userId < 1 || userId > maxUserId) {
            return USER_ID_RANGE;
        }
        String action = actionTypes.get(strings[ACTION_TYPE]);
        if (action == null) {
            return UNKNOWN_ACTION;
        }
        if (kinds[TIMESTAMP] == BIG_INT || timestamp < 0 || timestamp > MAX_TIMESTAMP) {
            return TIMESTAMP_RANGE;
        }
        out.eventId = strings[EVENT_ID];
        out.userId = userId;
        out.actionType = action;
        out.timestamp = timestamp;
        out.timestampChecked = true;  // the rules after this one rank below the SQL's Kafka-time rule
        if (timestampConflict) {
            return AMBIGUOUS_TIMESTAMP;
        }
        int chars = out.eventId.codePointCount(0, out.eventId.length());
        if (chars < 1 || chars > MAX_EVENT_ID_CHARS) {
            return EVENT_ID_LENGTH;
        }
        return null;
    }

    /** A character that JSON can carry only escaped: the event_id and action_type contract forbids them. */
    private static boolean hasEscapeOnlyChar(String s) {
        for (int i = 0, n = s.length(); i < n; i++) {
            char c = s.charAt(i);
            if (c < 0x20 || c == '"' || c == '\\') {
                return true;
            }
        }
        return false;
    }
}
