package local.pipeline.format;

import java.util.Locale;

import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.LocalZonedTimestampType;

/** The columns the format can fill, by name, each with the one SQL type it produces. */
public enum Column {
    EVENT_ID(LogicalTypeRoot.VARCHAR, "STRING"),
    USER_ID(LogicalTypeRoot.BIGINT, "BIGINT"),
    ACTION_TYPE(LogicalTypeRoot.VARCHAR, "STRING"),
    TIMESTAMP(LogicalTypeRoot.BIGINT, "BIGINT"),
    METADATA(LogicalTypeRoot.VARCHAR, "STRING"),
    DEVICE_INFO(LogicalTypeRoot.VARCHAR, "STRING"),
    /** The event's timestamp as the rowtime for the watermark. */
    EVENT_TIME(LogicalTypeRoot.TIMESTAMP_WITH_LOCAL_TIME_ZONE, "TIMESTAMP_LTZ(3)"),
    /** NULL for a valid event, else why not. */
    REASON(LogicalTypeRoot.VARCHAR, "STRING"),
    /** The record value exactly as read (for the rejected table). */
    RAW_VALUE(LogicalTypeRoot.VARBINARY, "BYTES");

    private final LogicalTypeRoot root;
    private final String sqlType;

    Column(LogicalTypeRoot root, String sqlType) {
        this.root = root;
        this.sqlType = sqlType;
    }

    public String columnName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The column called {@code name}, or an error (at planning time) that names what the format offers. */
    public static Column of(String name, LogicalType type) {
        Column column = null;
        for (Column c : values()) {
            if (c.columnName().equals(name)) {
                column = c;
            }
        }
        if (column == null) {
            throw new IllegalArgumentException("column '" + name + "' is not one the user-action-json format "
                    + "fills; it fills " + names());
        }
        boolean typeOk = type.getTypeRoot() == column.root
                && (column != EVENT_TIME || ((LocalZonedTimestampType) type).getPrecision() == 3);
        if (!typeOk) {
            throw new IllegalArgumentException("column '" + name + "' must be " + column.sqlType + " for the "
                    + "user-action-json format, not " + type.asSummaryString());
        }
        return column;
    }

    static String names() {
        StringBuilder sb = new StringBuilder();
        for (Column c : values()) {
            sb.append(sb.length() == 0 ? "" : ", ").append(c.columnName()).append(' ').append(c.sqlType);
        }
        return sb.toString();
    }
}
