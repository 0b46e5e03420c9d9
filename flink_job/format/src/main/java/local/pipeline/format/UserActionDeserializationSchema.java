package local.pipeline.format;

import java.util.List;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.util.Collector;

/**
 * One row per Kafka record value, never null and never an exception (a null row would be a silent drop in the
 * Kafka connector): the typed contract fields of a valid event, or NULL fields, the reason and the raw bytes of
 * an invalid one. Which columns the table declares, and in which order, is worked out once at planning time
 * ({@link Column}); per record this only parses and fills the row.
 */
public final class UserActionDeserializationSchema implements DeserializationSchema<RowData> {

    private static final long serialVersionUID = 1L;

    private final Column[] columns;
    private final TypeInformation<RowData> producedType;
    private final List<String> actionTypes;
    private final long maxUserId;

    private transient UserActionParser parser;
    private transient ParsedEvent parsed;

    public UserActionDeserializationSchema(
            Column[] columns, TypeInformation<RowData> producedType, List<String> actionTypes, long maxUserId) {
        this.columns = columns;
        this.producedType = producedType;
        this.actionTypes = List.copyOf(actionTypes);
        this.maxUserId = maxUserId;
    }

    @Override
    public void open(InitializationContext context) {
        parser = new UserActionParser(actionTypes, maxUserId);
        parsed = new ParsedEvent();
    }

    @Override
    public RowData deserialize(byte[] message) {
        if (parser == null) {  // used without open(), e.g. by a test
            open(null);
        }
        parser.parse(message, parsed);
        GenericRowData row = new GenericRowData(columns.length);
        boolean valid = parsed.reason == null;
        for (int i = 0; i < columns.length; i++) {
            row.setField(i, value(columns[i], valid, message));
        }
        return row;
    }

    private Object value(Column column, boolean valid, byte[] message) {
        switch (column) {
            case REASON:
                return parsed.reason == null ? null : StringData.fromString(parsed.reason);
            case RAW_VALUE:
                return message;  // the record's own array: no copy
            case EVENT_TIME:
                // Set whenever the timestamp passed its range rule, so the SQL can rank its Kafka-time rule
                // above the reasons that come after it (see ParsedEvent.timestampChecked).
                return parsed.timestampChecked ? TimestampData.fromEpochMillis(parsed.timestamp) : null;
            default:
                break;
        }
        if (!valid) {
            return null;
        }
        switch (column) {
            case EVENT_ID:
                return StringData.fromString(parsed.eventId);
            case USER_ID:
                return parsed.userId;
            case ACTION_TYPE:
                return StringData.fromString(parsed.actionType);
            case TIMESTAMP:
                return parsed.timestamp;
            case METADATA:
                return slice(parsed.metadata);
            case DEVICE_INFO:
                return slice(parsed.deviceInfo);
            default:
                throw new IllegalStateException(column.name());
        }
    }

    private static StringData slice(ParsedEvent.Slice s) {
        return BinaryStringData.fromBytes(s.bytes, s.offset, s.length);
    }

    @Override
    public void deserialize(byte[] message, Collector<RowData> out) {
        out.collect(deserialize(message));
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
