package local.pipeline.metrics;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.HttpURLConnection;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Optional;

import org.apache.flink.metrics.CharacterFilter;
import org.apache.flink.metrics.LogicalScopeProvider;
import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.metrics.SimpleCounter;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.junit.jupiter.api.Test;

/** The reporter binds loopback (or the configured host), takes a free port of its range, and serves Flink's names. */
class LoopbackPrometheusReporterFactoryTest {

    @Test
    void servesARegisteredCounterOnLoopbackOnly() throws Exception {
        int port = freePort();
        LoopbackPrometheusReporter reporter = create(Map.of("port", String.valueOf(port)));
        try {
            assertEquals(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), port), reporter.address());
            SimpleCounter rejected = new SimpleCounter();
            rejected.inc(3);
            Map<String, String> variables = new LinkedHashMap<>();
            variables.put("<job_name>", "user-actions-pipeline");
            variables.put("<subtask_index>", "0");
            variables.put("<reason>", "missing field: user_id");
            reporter.notifyOfAddedMetric(rejected, "numRecordsRejected",
                    new ScopedGroup("taskmanager.job.task.operator.reason", variables));

            String body = get("http://127.0.0.1:" + port + "/metrics");
            // Flink's default label filter: characters other than [a-zA-Z0-9:_] become '_'.
            String series = "flink_taskmanager_job_task_operator_reason_numRecordsRejected{job_name=\"user_actions_"
                    + "pipeline\",subtask_index=\"0\",reason=\"missing_field:_user_id\",} 3.0";
            assertTrue(body.contains(series), body);

            // Nothing answers on the machine's other addresses.
            Optional<InetAddress> external = nonLoopbackAddress();
            if (external.isPresent()) {
                assertThrows(ConnectException.class, () -> {
                    try (Socket s = new Socket()) {
                        s.connect(new InetSocketAddress(external.get(), port), 2000);
                    }
                });
            }
        } finally {
            reporter.close();
        }
    }

    @Test
    void labelValuesKeptAsTheyAreWhenFilteringIsOff() throws Exception {
        int port = freePort();
        LoopbackPrometheusReporter reporter =
                create(Map.of("port", String.valueOf(port), "filterLabelValueCharacters", "false"));
        try {
            SimpleCounter rejected = new SimpleCounter();
            rejected.inc();
            reporter.notifyOfAddedMetric(rejected, "numRecordsRejected", new ScopedGroup(
                    "taskmanager.job.task.operator.reason", Map.of("<reason>", "wrong type: user_id is not \"an\" int")));
            assertTrue(get("http://127.0.0.1:" + port + "/metrics").contains(
                    "{reason=\"wrong type: user_id is not \\\"an\\\" int\",} 1.0"));
        } finally {
            reporter.close();
        }
    }

    @Test
    void takesTheNextPortOfTheRangeWhenTheFirstIsTaken() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            int first = taken.getLocalPort();
            LoopbackPrometheusReporter reporter = create(Map.of("port", first + "-" + (first + 20)));
            try {
                int port = reporter.address().getPort();
                assertTrue(port > first && port <= first + 20, String.valueOf(port));
                assertTrue(get("http://127.0.0.1:" + port + "/metrics").isEmpty());
            } finally {
                reporter.close();
            }
        }
    }

    @Test
    void failsWhenNoPortOfTheRangeIsFree() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            int port = taken.getLocalPort();
            RuntimeException e = assertThrows(RuntimeException.class,
                    () -> create(Map.of("port", String.valueOf(port))));
            assertTrue(e.getMessage().contains("127.0.0.1, ports " + port), e.getMessage());
        }
    }

    @Test
    void isFoundAsAMetricReporterFactoryService() {
        boolean found = false;
        for (var factory : java.util.ServiceLoader.load(
                org.apache.flink.metrics.reporter.MetricReporterFactory.class)) {
            found |= factory instanceof LoopbackPrometheusReporterFactory;
        }
        assertTrue(found);
    }

    private static LoopbackPrometheusReporter create(Map<String, String> options) {
        MetricConfig config = new MetricConfig();
        config.putAll(options);
        LoopbackPrometheusReporter reporter = new LoopbackPrometheusReporterFactory().createMetricReporter(config);
        reporter.open(config);
        return reporter;
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    private static String get(String url) throws IOException {
        HttpURLConnection connection = (HttpURLConnection) new URL(url).openConnection();
        try (InputStream in = connection.getInputStream()) {
            assertEquals(200, connection.getResponseCode());
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } finally {
            connection.disconnect();
        }
    }

    private static Optional<InetAddress> nonLoopbackAddress() throws IOException {
        for (NetworkInterface nic : Collections.list(NetworkInterface.getNetworkInterfaces())) {
            if (!nic.isUp() || nic.isLoopback()) {
                continue;
            }
            for (InetAddress address : Collections.list(nic.getInetAddresses())) {
                if (address instanceof Inet4Address) {
                    return Optional.of(address);
                }
            }
        }
        return Optional.empty();
    }

    /** A metric group as Flink's runtime hands it to reporters: variables and a logical scope. */
    private static final class ScopedGroup extends UnregisteredMetricsGroup implements LogicalScopeProvider {
        private final String scope;
        private final Map<String, String> variables;

        ScopedGroup(String scope, Map<String, String> variables) {
            this.scope = scope;
            this.variables = variables;
        }

        @Override
        public Map<String, String> getAllVariables() {
            return variables;
        }

        @Override
        public String getLogicalScope(CharacterFilter filter) {
            return getLogicalScope(filter, '.');
        }

        @Override
        public String getLogicalScope(CharacterFilter filter, char delimiter) {
            return filter.filterCharacters(scope.replace('.', delimiter));
        }

        @Override
        public MetricGroup getWrappedMetricGroup() {
            return this;
        }
    }
}
