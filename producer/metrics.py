"""The producer's /metrics, in the Prometheus text format (prometheus_client), served by the parent process.

Every figure is read from the workers' shared counters (producer/counters.py) when Prometheus scrapes, so the
workers pay nothing for the exposition. Names start with ``pipeline_producer_``; every series has the labels topic and
backend. The socket is bound before the workers are forked (a port in use fails the run before anything is sent) and
served after, so no thread is copied into a child.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.utils import floatToGoString

from base.errors import UserError
from producer.counters import LATENCY_BUCKETS, SharedCounters

RATE_WINDOW_S = 10.0  # the send-rate gauge: acknowledged events/s over about this long
_SAMPLE_S = 1.0

_COUNTERS = (  # (Totals field, name, help)
    ("sent", "pipeline_producer_events_sent", "Events handed to the Kafka client"),
    ("acked", "pipeline_producer_events_acked", "Events the brokers acknowledged (acks=all)"),
    ("failed", "pipeline_producer_events_failed", "Events whose delivery failed or timed out"),
    ("invalid", "pipeline_producer_events_malformed", "Events sent malformed on purpose (--invalid-fraction)"),
    ("late", "pipeline_producer_events_late", "Events stamped late on purpose (--late-fraction)"),
)


class ProducerCollector:
    """Sums the workers' slots at scrape time; a sampler thread keeps the acknowledged count of the last seconds."""

    def __init__(self, counters: SharedCounters, topic: str, backend: str) -> None:
        self.counters = counters
        self.labels = [topic, backend]
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._sample()
        self._sampler = threading.Thread(target=self._sample_every_second, name="metrics-rate", daemon=True)
        self._sampler.start()

    def _sample(self) -> tuple[float, int]:
        now, acked = time.monotonic(), self.counters.totals().acked
        with self._lock:
            self._samples.append((now, acked))
            while len(self._samples) > 1 and now - self._samples[1][0] >= RATE_WINDOW_S:
                self._samples.popleft()  # keep one sample at least RATE_WINDOW_S old
        return now, acked

    def _sample_every_second(self) -> None:
        while not self._stopped.wait(_SAMPLE_S):
            self._sample()

    def send_rate(self) -> float:
        now, acked = self._sample()
        with self._lock:
            then, acked_then = self._samples[0]
        return (acked - acked_then) / (now - then) if now > then else 0.0

    def stop(self) -> None:
        self._stopped.set()

    def collect(self) -> Iterator[Metric]:
        names = ["topic", "backend"]
        t = self.counters.totals()
        for field, name, text in _COUNTERS:
            c = CounterMetricFamily(name, text, labels=names)
            c.add_metric(self.labels, getattr(t, field))
            yield c
        g = GaugeMetricFamily("pipeline_producer_send_rate_events_per_second",
                              f"Events acknowledged per second over the last {RATE_WINDOW_S:g} s", labels=names)
        g.add_metric(self.labels, self.send_rate())
        yield g
        h = HistogramMetricFamily("pipeline_producer_delivery_latency_seconds",
                                  "From a batch handed to the client to the brokers' answer for all of it "
                                  "(one observation per batch)", labels=names)
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), t.latency_buckets, strict=True):
            cumulative += n
            buckets.append((floatToGoString(bound), cumulative))
        h.add_metric(self.labels, buckets, t.latency_sum_s)
        yield h


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per scrape would bury the progress line


class MetricsServer:
    """/metrics on host:port. ``bind`` checks the address first thing; ``serve`` starts answering."""

    def __init__(self, host: str, port: int) -> None:
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
        except socket.gaierror as exc:
            raise UserError(f"--metrics-host {host}: not an address of this machine ({exc.strerror})") from None

        class Server(ThreadingWSGIServer):
            address_family = family

        try:
            self._httpd = make_server(sockaddr[0], port, make_wsgi_app(CollectorRegistry()), Server,
                                      handler_class=_Quiet)
        except OSError as exc:
            raise UserError(_bind_error(host, port, exc)) from None
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None
        self._collector: ProducerCollector | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def serve(self, counters: SharedCounters, topic: str, backend: str) -> None:
        registry = CollectorRegistry(auto_describe=False)
        self._collector = ProducerCollector(counters, topic, backend)
        registry.register(self._collector)
        self._httpd.set_app(make_wsgi_app(registry))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop answering and free the port (also what a forked worker calls on its inherited copy)."""
        if self._thread is not None:
            self._httpd.shutdown()  # only once serving: shutdown() waits for serve_forever to notice
            self._thread.join()
            self._thread = None
        if self._collector is not None:
            self._collector.stop()
        self._httpd.server_close()


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"--metrics-port {port}: already in use on {host}"
    if exc.errno == errno.EACCES:
        return f"--metrics-port {port}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--metrics-host {host}: not an address of this machine"
    return f"--metrics-host {host} --metrics-port {port}: cannot listen ({exc.strerror or exc})"
