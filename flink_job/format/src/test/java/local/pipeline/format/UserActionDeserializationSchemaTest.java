package local.pipeline.format;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.BigIntType;
import org.apache.flink.table.types.logical.IntType;
import org.apache.flink.table.types.logical.LocalZonedTimestampType;
import org.apache.flink.table.types.logical.VarCharType;
import org.apache.flink.util.Collector;
import org.junit.jupiter.api.Test;

/** Rows out of the format: one per record, never null, columns in the table's order. */
class UserActionDeserializationSchemaTest {

    private static final Column[] ALL = Column.values();

    private final UserActionDeserializationSchema schema =
            new UserActionDeserializationSchema(ALL, null, List.of("back_press"), 30_000_000L);

    @Test
    void validEventFillsTypedColumnsAndNoReason() {
        byte[] value = UserActionParserTest.GOOD.getBytes(StandardCharsets.UTF_8);
        RowData row = schema.deserialize(value);
        assertEquals(ALL.length, row.getArity());
        assertEquals("7f8f7aa2-36eb-4409-8e40-1bf36785e4b5", row.getString(0).toString());
        assertEquals(13822035L, row.getLong(1));
        assertEquals("back_press", row.getString(2).toString());
        assertEquals(1750000007712L, row.getLong(3));
        assertEquals(UserActionParserTest.METADATA, row.getString(4).toString());
        assertEquals(UserActionParserTest.DEVICE, row.getString(5).toString());
        assertEquals(TimestampData.fromEpochMillis(1750000007712L), row.getTimestamp(6, 3));
        assertTrue(row.isNullAt(7));
        assertSame(value, row.getBinary(8));
    }

    @Test
    void invalidRecordKeepsItsBytesAndReasonAndNullFields() {
        byte[] value = {'[', ']'};
        RowData row = schema.deserialize(value);
        for (int i = 0; i < 7; i++) {
            assertTrue(row.isNullAt(i), ALL[i].columnName());
        }
        assertEquals("not a JSON object", row.getString(7).toString());
        assertArrayEquals(value, row.getBinary(8));
    }

    @Test
    void aRejectionRankedBelowTheKafkaTimeRuleKeepsEventTime() {
        String dup = UserActionParserTest.GOOD.replace("\"device_info\"", "\"timestamp\":1,\"device_info\"");
        RowData row = schema.deserialize(dup.getBytes(StandardCharsets.UTF_8));
        assertEquals("ambiguous timestamp", row.getString(7).toString());
        assertEquals(TimestampData.fromEpochMillis(1L), row.getTimestamp(6, 3));
        assertTrue(row.isNullAt(0));
    }

    @Test
    void tombstoneGivesOneRowNeverNull() {
        List<RowData> out = new ArrayList<>();
        schema.deserialize(null, new Collector<>() {
            @Override
            public void collect(RowData record) {
                out.add(record);
            }

            @Override
            public void close() {}
        });
        assertEquals(1, out.size());
        assertEquals("null value", out.get(0).getString(7).toString());
        assertNull(out.get(0).getBinary(8));
    }

    @Test
    void columnsAreTakenInTheTablesOrderAndSubset() {
        Column[] some = {Column.REASON, Column.USER_ID};
        UserActionDeserializationSchema s = new UserActionDeserializationSchema(some, null, List.of("back_press"), 30_000_000L);
        RowData row = s.deserialize(UserActionParserTest.GOOD.getBytes(StandardCharsets.UTF_8));
        assertEquals(2, row.getArity());
        assertTrue(row.isNullAt(0));
        assertEquals(13822035L, row.getLong(1));
    }

    @Test
    void unknownColumnOrWrongTypeIsAPlanningError() {
        assertEquals(Column.USER_ID, Column.of("user_id", new BigIntType()));
        IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class,
                () -> Column.of("userid", new BigIntType()));
        assertTrue(unknown.getMessage().contains("'userid' is not one the user-action-json format fills"));
        IllegalArgumentException type = assertThrows(IllegalArgumentException.class,
                () -> Column.of("user_id", new IntType()));
        assertTrue(type.getMessage().contains("must be BIGINT"), type.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Column.of("event_time", new LocalZonedTimestampType(6)));
        assertEquals(Column.METADATA, Column.of("metadata", VarCharType.STRING_TYPE));
    }
}
