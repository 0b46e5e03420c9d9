package local.pipeline.metrics;

import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.util.Iterator;

import com.sun.net.httpserver.HttpServer;
import io.prometheus.client.CollectorRegistry;
import io.prometheus.client.exporter.HTTPServer;
import org.apache.flink.metrics.prometheus.AbstractPrometheusReporter;
import org.apache.flink.util.PortRange;

/**
 * {@code PrometheusReporter} of flink-metrics-prometheus 2.0.2, except that the HTTP server binds {@code host}, not
 * every interface. Everything else (metric names, labels, types) is {@link AbstractPrometheusReporter}'s.
 */
final class LoopbackPrometheusReporter extends AbstractPrometheusReporter {

    private final HttpServer bound;
    private final HTTPServer server;

    LoopbackPrometheusReporter(String host, PortRange ports) {
        CollectorRegistry registry = registryOf(this);
        HttpServer found = null;
        IOException last = null;
        for (Iterator<Integer> it = ports.getPortsIterator(); found == null && it.hasNext(); ) {
            int port = it.next();
            try {
                // Bound here rather than by HTTPServer(InetSocketAddress, ...): the reporter keeps the socket's
                // real address, which the test checks.
                found = HttpServer.create(new InetSocketAddress(host, port), 3);
            } catch (IOException e) {
                last = e;
                log.debug("Could not start the Prometheus reporter's HTTP server on {}:{}.", host, port, e);
            }
        }
        if (found == null) {
            throw new RuntimeException("Could not start the Prometheus reporter's HTTP server on " + host
                    + ", ports " + ports, last);
        }
        bound = found;
        try {
            server = new HTTPServer(bound, registry, false);
        } catch (IOException e) {
            bound.stop(0);
            throw new RuntimeException("Could not start the Prometheus reporter's HTTP server", e);
        }
        log.info("Started the Prometheus reporter's HTTP server on {}.", address());
    }

    /** Where the endpoint listens (host and the port taken from the range). */
    InetSocketAddress address() {
        return bound.getAddress();
    }

    @Override
    public void close() {
        server.stop();
        super.close();
    }

    /**
     * The reporter's registry: package-private in AbstractPrometheusReporter, and the only way to serve the
     * collectors it keeps. Fails at start, naming the version, if a Flink upgrade moved it.
     */
    private static CollectorRegistry registryOf(AbstractPrometheusReporter reporter) {
        try {
            Field field = AbstractPrometheusReporter.class.getDeclaredField("registry");
            field.setAccessible(true);
            return (CollectorRegistry) field.get(reporter);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new IllegalStateException("AbstractPrometheusReporter has no field 'registry' as in "
                    + "flink-metrics-prometheus 2.0.2, which this reporter is built for", e);
        }
    }
}
