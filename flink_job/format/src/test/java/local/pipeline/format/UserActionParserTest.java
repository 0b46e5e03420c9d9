package local.pipeline.format;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Every reason the format gives, and valid events that look unusual but keep the contract. */
class UserActionParserTest {

    static final String METADATA = "{\"screen\":\"home\",\"session_id\":\"14c3eb6e5c3c2651\",\"duration_ms\":1424}";
    static final String DEVICE = "{\"device_id\":\"0fdd12d470904eaa\",\"os\":\"android\",\"model\":\"Samsung Galaxy S24\"}";
    static final String GOOD = "{\"event_id\":\"7f8f7aa2-36eb-4409-8e40-1bf36785e4b5\",\"user_id\":13822035,"
            + "\"action_type\":\"back_press\",\"metadata\":" + METADATA + ",\"timestamp\":1750000007712,"
            + "\"device_info\":" + DEVICE + "}";

    private final UserActionParser parser = new UserActionParser(List.of("back_press", "scroll"), 30_000_000L);

    private ParsedEvent parse(byte[] value) {
        ParsedEvent out = new ParsedEvent();
        parser.parse(value, out);
        return out;
    }

    private ParsedEvent parse(String value) {
        return parse(value.getBytes(StandardCharsets.UTF_8));
    }

    private String reason(String value) {
        return parse(value).reason;
    }

    /** GOOD with the value of {@code field} replaced by the JSON text {@code json} (null: key removed). */
    static String with(String field, String json) {
        String[][] fields = {
            {"event_id", "\"7f8f7aa2-36eb-4409-8e40-1bf36785e4b5\""}, {"user_id", "13822035"},
            {"action_type", "\"back_press\""}, {"metadata", METADATA}, {"timestamp", "1750000007712"},
            {"device_info", DEVICE}};
        StringBuilder sb = new StringBuilder("{");
        for (String[] f : fields) {
            String value = f[0].equals(field) ? json : f[1];
            if (value != null) {
                sb.append(sb.length() > 1 ? "," : "").append('"').append(f[0]).append("\":").append(value);
            }
        }
        return sb.append('}').toString();
    }

    @Test
    void validEventHasTypedFieldsAndTheObjectsAsSent() {
        ParsedEvent e = parse(GOOD);
        assertNull(e.reason);
        assertEquals("7f8f7aa2-36eb-4409-8e40-1bf36785e4b5", e.eventId);
        assertEquals(13822035L, e.userId);
        assertEquals("back_press", e.actionType);
        assertEquals(1750000007712L, e.timestamp);
        assertEquals(METADATA, e.metadata.toString());
        assertEquals(DEVICE, e.deviceInfo.toString());
        assertTrue(e.timestampChecked);
    }

    @Test
    void compactObjectsAreSlicesOfTheRecordNotCopies() {
        byte[] value = GOOD.getBytes(StandardCharsets.UTF_8);
        ParsedEvent e = parse(value);
        assertTrue(e.metadata.bytes == value && e.deviceInfo.bytes == value);
    }

    @Test
    void nullValue() {
        assertEquals("null value", parse((byte[]) null).reason);
    }

    @Test
    void invalidUtf8() {
        assertEquals("invalid UTF-8", parse(new byte[] {(byte) 0xff, (byte) 0xfe, '{', '}'}).reason);
        byte[] inString = with("event_id", "\"a\u00e9b\"").getBytes(StandardCharsets.UTF_8);
        int at = new String(inString, StandardCharsets.ISO_8859_1).indexOf("\u00c3\u00a9");
        inString[at + 1] = 0x28;  // the catalogue's "a\xc3\x28b": a lead byte followed by '('
        assertEquals("invalid UTF-8", parse(inString).reason);
        for (byte[] bad : new byte[][] {
                {'"', (byte) 0xc3, 0x28, '"'},                  // lead byte without its continuation
                {'"', (byte) 0xc0, (byte) 0xaf, '"'},           // overlong '/'
                {'"', (byte) 0xe0, (byte) 0x80, (byte) 0xaf, '"'},  // overlong, 3 bytes
                {'"', (byte) 0xed, (byte) 0xa0, (byte) 0x80, '"'},  // a surrogate
                {'"', (byte) 0xf4, (byte) 0x90, (byte) 0x80, (byte) 0x80, '"'},  // past U+10FFFF
                {'"', (byte) 0x80, '"'},                        // stray continuation
                {'"', (byte) 0xe2, (byte) 0x82},               // truncated at the end
        }) {
            assertEquals("invalid UTF-8", parse(bad).reason);
        }
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "''", "'   '", "hello", "'{\"event_id\": \"x\", \"user_id\": '", "'{\"a\":1,}'", "'{\"a\":1'",
        "'{\"a\":01}'", "'{\"a\":1} x'", "'{\"a\":1} {}'", "'[1, 2'", "'42 43'", "'{a:1}'", "'{\"a\":\"\u0001\"}'"})
    void unparseableJson(String value) {
        assertEquals("unparseable JSON", reason(value));
    }

    @Test
    void nulByteIsUnparseableNotAnotherEncoding() {
        assertEquals("unparseable JSON", parse(new byte[] {0, '{', 0, '}'}).reason);
        assertEquals("unparseable JSON", parse((GOOD + "\u0000").getBytes(StandardCharsets.UTF_8)).reason);
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"'[1, 2, 3]'", "'\"an event\"'", "42", "null", "true", "' [] '"})
    void notAnObject(String value) {
        assertEquals("not a JSON object", reason(value));
    }

    @ParameterizedTest
    @CsvSource({"event_id", "user_id", "action_type", "timestamp", "metadata", "device_info"})
    void missingOrNullField(String field) {
        assertEquals("missing field: " + field, reason(with(field, null)));
        assertEquals("missing field: " + field, reason(with(field, "null")));
    }

    @Test
    void missingFieldsAreReportedInContractOrderBeforeWrongTypes() {
        String noMetadataAndBadUser = with("metadata", null).replace("13822035", "\"x\"");
        assertEquals("missing field: metadata", reason(noMetadataAndBadUser));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "event_id|7|string", "event_id|{}|string", "user_id|'\"5\"'|integer", "user_id|5.5|integer",
        "user_id|5.0|integer", "user_id|1e3|integer", "user_id|true|integer", "action_type|17|string",
        "action_type|[\"scroll\"]|string", "timestamp|'\"2026-01-01T00:00:00Z\"'|integer", "timestamp|1.5|integer",
        "metadata|'\"home\"'|object", "metadata|[]|object", "device_info|[\"android\"]|object",
        "device_info|false|object"})
    void wrongType(String field, String json, String type) {
        String article = type.equals("integer") || type.equals("object") ? "an " : "a ";
        assertEquals("wrong type: " + field + " is not " + article + type, reason(with(field, json)));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "event_id|'\"a\\\"b\"'", "event_id|'\"a\\\\b\"'", "event_id|'\"a\\nb\"'", "action_type|'\"scr\\u0000oll\"'",
        "action_type|'\"back\\tpress\"'"})
    void escapeOnlyCharacters(String field, String json) {
        assertEquals("escaped characters in event_id or action_type", reason(with(field, json)));
    }

    @Test
    void escapesOfOrdinaryCharactersAreFine() {
        ParsedEvent e = parse(with("action_type", "\"scr\\u006fll\"").replace("\"7f8f", "\"\\u00e9\\/7f8f"));
        assertNull(e.reason);
        assertEquals("scroll", e.actionType);
        assertTrue(e.eventId.startsWith("\u00e9/7f8f"));
    }

    @ParameterizedTest
    @CsvSource({"0", "-5", "30000001", "9223372036854775808", "10000000000000000000000000000000000000000", "-0"})
    void userIdOutOfRange(String userId) {
        assertEquals("user_id out of range", reason(with("user_id", userId)));
    }

    @ParameterizedTest
    @CsvSource({"1", "30000000"})
    void userIdBounds(String userId) {
        assertNull(reason(with("user_id", userId)));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"'\"teleport\"'", "'\"\"'", "'\"SCROLL\"'", "'\"scroll \"'"})
    void unknownActionType(String json) {
        assertEquals("unknown action_type", reason(with("action_type", json)));
    }

    @ParameterizedTest
    @CsvSource({"-1000", "-1", "10000000000000", "1000000000000000", "99999999999999999999"})
    void timestampOutOfRange(String ts) {
        ParsedEvent e = parse(with("timestamp", ts));
        assertEquals("timestamp out of range", e.reason);
        assertFalse(e.timestampChecked);
    }

    @ParameterizedTest
    @CsvSource({"0", "9999999999999"})
    void timestampBounds(String ts) {
        assertNull(reason(with("timestamp", ts)));
    }

    @Test
    void twoTimestampKeysWithDifferentValuesAreAmbiguous() {
        ParsedEvent e = parse(GOOD.replace("\"device_info\"", "\"timestamp\":1750000000000,\"device_info\""));
        assertEquals("ambiguous timestamp", e.reason);
        assertTrue(e.timestampChecked);  // ranked below the SQL's Kafka-time rule
        assertEquals("ambiguous timestamp",
                reason(GOOD.replace("{\"event_id\"", "{\"timestamp\":\"x\",\"event_id\"")));
        // the last key decides the type rules, which outrank ambiguity
        assertEquals("wrong type: timestamp is not an integer",
                reason(GOOD.replace("\"device_info\"", "\"timestamp\":\"x\",\"device_info\"")));
        // a JSON null counts as absent: null then a value is not ambiguous, a value then null is missing
        assertNull(reason(GOOD.replace("{\"event_id\"", "{\"timestamp\":null,\"event_id\"")));
        assertEquals("missing field: timestamp",
                reason(GOOD.replace("\"device_info\"", "\"timestamp\":null,\"device_info\"")));
    }

    @Test
    void anEscapedSpellingOfTheTimestampKeyIsTheSameKey() {
        String twice = GOOD.replace("\"device_info\"", "\"time\\u0073tamp\":1,\"device_info\"");
        assertEquals("ambiguous timestamp", reason(twice));
        assertNull(reason(GOOD.replace("\"timestamp\"", "\"time\\u0073tamp\"")));
    }

    @Test
    void theSameTimestampTwiceIsNotAmbiguous() {
        assertNull(reason(GOOD.replace("\"device_info\"", "\"timestamp\":1750000007712,\"device_info\"")));
        // a null between two equal values changes nothing (null counts as absent)
        assertNull(reason(GOOD.replace("\"device_info\"",
                "\"timestamp\":null,\"timestamp\":1750000007712,\"device_info\"")));
    }

    @Test
    void otherDuplicateKeysKeepTheLastValue() {
        ParsedEvent e = parse(GOOD.replace("{\"event_id\"", "{\"user_id\":\"x\",\"action_type\":7,\"event_id\""));
        assertNull(e.reason);
        assertEquals(13822035L, e.userId);
        assertEquals("missing field: user_id", reason(GOOD.replace("\"device_info\"", "\"user_id\":null,\"device_info\"")));
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {"'\"\"'", "'\"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"'"})
    void eventIdLength(String json) {
        ParsedEvent e = parse(with("event_id", json));
        assertEquals("event_id empty or longer than 64 characters", e.reason);
        assertTrue(e.timestampChecked);
    }

    @Test
    void eventIdLengthCountsCharactersNotBytes() {
        String sixtyFourEmoji = "\"" + "\uD83D\uDE00".repeat(64) + "\"";
        assertNull(reason(with("event_id", sixtyFourEmoji)));
        assertEquals("event_id empty or longer than 64 characters",
                reason(with("event_id", "\"" + "\u00e9".repeat(65) + "\"")));
    }

    @Test
    void prettyPrintedEventIsValidAndItsObjectsAreCompacted() {
        String pretty = "{\n  \"event_id\" : \"e1\",\n  \"user_id\" : 42,\n  \"action_type\" : \"scroll\",\n"
                + "  \"timestamp\" : 1750000007712,\n  \"metadata\" : {\n    \"screen\" : \"home page\",\n"
                + "    \"tags\" : [ 1, 2 ],\n    \"q\" : \"a \\\" b\"\n  },\n  \"device_info\" : { }\n}\n";
        ParsedEvent e = parse(pretty);
        assertNull(e.reason);
        assertEquals("{\"screen\":\"home page\",\"tags\":[1,2],\"q\":\"a \\\" b\"}", e.metadata.toString());
        assertEquals("{}", e.deviceInfo.toString());
    }

    @Test
    void otherKeyOrderExtraFieldsAndSurroundingWhitespace() {
        String value = " \t\r\n{\"device_info\":{},\"extra\":{\"user_id\":0,\"timestamp\":[1]},\"timestamp\":5,"
                + "\"metadata\":{},\"action_type\":\"scroll\",\"user_id\":7,\"more\":[null,true],\"event_id\":\"x\"}\n ";
        ParsedEvent e = parse(value);
        assertNull(e.reason);
        assertEquals(7L, e.userId);
        assertEquals(5L, e.timestamp);
        assertEquals("{}", e.metadata.toString());
    }

    @Test
    void decoyKeysInsideMetadataAreNotContractFields() {
        String decoys = "{\"user_id\":0,\"event_id\":7,\"timestamp\":-1,\"metadata\":\"x\",\"device_info\":null,"
                + "\"nested\":{\"timestamp\":\"y\",\"action_type\":\"teleport\"},\"s\":\"\\\"timestamp\\\": 1,\"}";
        ParsedEvent e = parse(with("metadata", decoys));
        assertNull(e.reason);
        assertEquals(13822035L, e.userId);
        assertEquals(1750000007712L, e.timestamp);
        assertEquals(decoys, e.metadata.toString());
    }

    @Test
    void unicodeAndEscapesInMetadataStayAsSent() {
        String metadata = "{\"screen\":\"caf\u00e9 \uD83D\uDE00\",\"esc\":\"\\u00e9\\n\\t\\\\ \\/\",\"n\":1.50e3}";
        ParsedEvent e = parse(with("metadata", metadata));
        assertNull(e.reason);
        assertEquals(metadata, e.metadata.toString());
    }

    @Test
    void largeMetadataAndEmptyObjects() {
        String big = "{\"note\":\"" + "y".repeat(50_000) + "\",\"list\":[" + "1,".repeat(2_000) + "1]}";
        ParsedEvent e = parse(with("metadata", big).replace(DEVICE, "{}"));
        assertNull(e.reason);
        assertEquals(big, e.metadata.toString());
        assertEquals("{}", e.deviceInfo.toString());
    }

    @Test
    void byteOrderMarkIsNotJson() {
        byte[] bom = {(byte) 0xef, (byte) 0xbb, (byte) 0xbf};
        byte[] good = GOOD.getBytes(StandardCharsets.UTF_8);
        byte[] value = new byte[bom.length + good.length];
        System.arraycopy(bom, 0, value, 0, 3);
        System.arraycopy(good, 0, value, 3, good.length);
        assertEquals("unparseable JSON", parse(value).reason);
    }

    @Test
    void deepNestingBeyondJacksonsLimitIsUnparseable() {
        String deep = "{\"a\":" + "[".repeat(2_000) + "]".repeat(2_000) + "}";
        assertEquals("unparseable JSON", reason(deep));
    }

    @Test
    void parserIsReusableAcrossRecords() {
        ParsedEvent e = new ParsedEvent();
        parser.parse(with("user_id", "0").getBytes(StandardCharsets.UTF_8), e);
        assertEquals("user_id out of range", e.reason);
        parser.parse(GOOD.getBytes(StandardCharsets.UTF_8), e);
        assertNull(e.reason);
        parser.parse("[]".getBytes(StandardCharsets.UTF_8), e);
        assertEquals("not a JSON object", e.reason);
        assertNull(e.eventId);
        assertFalse(e.timestampChecked);
    }
}
