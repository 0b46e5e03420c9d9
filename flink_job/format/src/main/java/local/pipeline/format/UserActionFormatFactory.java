package local.pipeline.format;

import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.factories.FactoryUtil;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.RowType;

/**
 * {@code 'value.format' = 'user-action-json'}: the Kafka value format of the pipeline's source, which parses and
 * validates each user-action event once, in compiled code, and never drops a record (see
 * {@link UserActionParser} for the rules). Options are checked when the table is planned, like flink-json's.
 *
 * <pre>
 *   'value.format' = 'user-action-json',
 *   'value.user-action-json.action-types' = 'app_open;app_close;...',   -- the contract's names, ';'-separated
 *   'value.user-action-json.max-user-id' = '30000000'
 * </pre>
 */
public final class UserActionFormatFactory implements DeserializationFormatFactory {

    public static final String IDENTIFIER = "user-action-json";

    public static final ConfigOption<List<String>> ACTION_TYPES = ConfigOptions.key("action-types")
            .stringType()
            .asList()
            .noDefaultValue()
            .withDescription("The valid action_type names, separated by ';'.");

    public static final ConfigOption<Long> MAX_USER_ID = ConfigOptions.key("max-user-id")
            .longType()
            .defaultValue(30_000_000L)
            .withDescription("The largest valid user_id (the smallest is 1).");

    @Override
    public DecodingFormat<DeserializationSchema<RowData>> createDecodingFormat(
            DynamicTableFactory.Context context, ReadableConfig formatOptions) {
        FactoryUtil.validateFactoryOptions(this, formatOptions);
        List<String> actionTypes = formatOptions.get(ACTION_TYPES);
        Set<String> seen = new HashSet<>();
        for (String name : actionTypes) {
            if (name.isEmpty() || !seen.add(name)) {
                throw new ValidationException(IDENTIFIER + ": action-types has an empty or repeated name '"
                        + name + "'");
            }
        }
        long maxUserId = formatOptions.get(MAX_USER_ID);
        if (maxUserId < 1) {
            throw new ValidationException(IDENTIFIER + ": max-user-id must be at least 1, got " + maxUserId);
        }
        return new DecodingFormat<>() {
            @Override
            public DeserializationSchema<RowData> createRuntimeDecoder(
                    DynamicTableSource.Context sourceContext, DataType physicalDataType) {
                RowType rowType = (RowType) physicalDataType.getLogicalType();
                Column[] columns = new Column[rowType.getFieldCount()];
                for (int i = 0; i < columns.length; i++) {
                    try {
                        columns[i] = Column.of(rowType.getFieldNames().get(i), rowType.getTypeAt(i));
                    } catch (IllegalArgumentException e) {
                        throw new ValidationException(e.getMessage());
                    }
                }
                TypeInformation<RowData> producedType = sourceContext.createTypeInformation(physicalDataType);
                return new UserActionDeserializationSchema(columns, producedType, actionTypes, maxUserId);
            }

            @Override
            public ChangelogMode getChangelogMode() {
                return ChangelogMode.insertOnly();
            }
        };
    }

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(ACTION_TYPES);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of(MAX_USER_ID);
    }
}
