package local.pipeline.metrics;

import java.util.Properties;

import org.apache.flink.metrics.reporter.MetricReporterFactory;
import org.apache.flink.util.PortRange;

/**
 * Flink's Prometheus reporter with its HTTP endpoint bound to one address (default 127.0.0.1). The stock
 * {@code PrometheusReporter} of flink-metrics-prometheus 2.0.2 listens on every interface; the project's rule is that
 * local services listen on loopback only. Naming, labels and metric types stay Flink's ({@code
 * AbstractPrometheusReporter}), so the series are the same as the stock reporter's in containers.
 *
 * <pre>
 *   metrics.reporter.prom.factory.class: local.pipeline.metrics.LoopbackPrometheusReporterFactory
 *   metrics.reporter.prom.host: 127.0.0.1      (default)
 *   metrics.reporter.prom.port: 9249-9251      (default 9249; the first free port of the range)
 * </pre>
 *
 * <p>A Flink plugin: it must sit in one plugin folder with flink-metrics-prometheus-2.0.2.jar, whose classes it
 * extends (scripts/setup.sh puts both in .cache/jars/plugins/metrics-prometheus).
 */
public final class LoopbackPrometheusReporterFactory implements MetricReporterFactory {

    static final String ARG_HOST = "host";
    static final String ARG_PORT = "port";
    static final String DEFAULT_HOST = "127.0.0.1";
    static final String DEFAULT_PORT = "9249";

    @Override
    public LoopbackPrometheusReporter createMetricReporter(Properties properties) {
        String host = properties.getProperty(ARG_HOST, DEFAULT_HOST).trim();
        PortRange ports = new PortRange(properties.getProperty(ARG_PORT, DEFAULT_PORT).trim());
        return new LoopbackPrometheusReporter(host, ports);
    }
}
