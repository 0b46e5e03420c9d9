package local.pipeline.format;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code COUNTED_REASON(reason)}: returns {@code reason} unchanged and counts it in the calling operator's metric
 * group {@code reason=<reason>}, counter {@value #COUNTER}; Flink's Prometheus reporter serves it as
 * {@code flink_taskmanager_job_task_operator_reason_numRecordsRejected{reason="...",...}}. The job calls it on the
 * rejected path only (flink_job/sql/04_sink_user_actions_rejected.sql), so a valid event never reaches it.
 *
 * <p>Reasons are a fixed catalogue (about 25, see UserActionParser and 02_checked_records.sql), but every distinct
 * value is a series of its own, so at most {@value #MAX_REASONS} reasons per subtask get one; any further reason (a
 * rule added with a value in it, say) is counted under {@value #OTHER}, and its text stays in the rejected table.
 * A NULL is returned as NULL and not counted. Not deterministic: it counts, so the planner must neither fold nor
 * reorder it.
 */
public final class CountedReason extends ScalarFunction {

    public static final String GROUP = "reason";
    public static final String COUNTER = "numRecordsRejected";
    public static final String OTHER = "other";
    public static final int MAX_REASONS = 64;

    private static final Logger LOG = LoggerFactory.getLogger(CountedReason.class);

    private transient MetricGroup metrics;
    private transient Map<String, Counter> counters;
    private transient Counter other;

    @Override
    public void open(FunctionContext context) {
        metrics = context.getMetricGroup();
        counters = new HashMap<>();
        other = null;
    }

    public String eval(String reason) {
        if (reason != null) {
            Counter counter = counters.get(reason);
            (counter != null ? counter : register(reason)).inc();
        }
        return reason;
    }

    private Counter register(String reason) {
        // MAX_REASONS series in all, "other" included.
        if (counters.size() < MAX_REASONS - 1 && !OTHER.equals(reason)) {
            Counter counter = metrics.addGroup(GROUP, reason).counter(COUNTER);
            counters.put(reason, counter);
            return counter;
        }
        if (other == null) {
            LOG.warn("More than {} distinct rejection reasons: '{}' and any further one are counted as '{}'",
                    MAX_REASONS - 1, reason, OTHER);
            other = metrics.addGroup(GROUP, OTHER).counter(COUNTER);
        }
        return other;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
