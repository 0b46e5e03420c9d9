"""The ClickHouse service's /metrics, in the Prometheus text format (prometheus_client).

Three sources, one registry per service:
- the loader's own counters (clickhouse/loader.py LoaderMetrics): rows loaded and inserts per table, dead letters per
  topic, splits, failed attempts, insert latency, consumer lag per topic and partition, time spent waiting for
  ClickHouse; read at scrape time, so the hot path pays nothing for them;
- what ClickHouse holds, queried at scrape time (at most once per ``CACHE_S``, through the API's bounded clients):
  freshness per table (now - newest window end), rows, stored dead letters, the last restatement and the last lake
  maintenance pass (analytics.maintenance_passes, recorded by the maintenance wherever it runs);
- the API's requests and latency by endpoint (the route, never the raw path: bounded label values) and status.

Names start with ``pipeline_``; docs/operations.md lists them with the alerts built on them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from clickhouse.loader import LoaderMetrics
from clickhouse.queries import Queries
from clickhouse.store import ThreadClients

log = logging.getLogger(__name__)

CACHE_S = 5.0  # scrapes closer together than this reuse the last answer: a busy scraper cannot load ClickHouse
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    """The registry behind /metrics; ``observe`` is called by the web app once per request."""

    def __init__(self, clients: ThreadClients, database: str, loader: LoaderMetrics | None,
                 loader_running: Callable[[], bool] = lambda: False) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("pipeline_api_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("pipeline_api_request_duration_seconds", "Time to answer an HTTP request",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.registry.register(_LoaderCollector(loader, loader_running))
        self.registry.register(_StoreCollector(clients, database))

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LoaderCollector:
    def __init__(self, loader: LoaderMetrics | None, running: Callable[[], bool]) -> None:
        self.loader = loader
        self.running = running

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("pipeline_loader_up", "1 while the loader runs in this service")
        up.add_metric([], 1.0 if self.loader is not None and self.running() else 0.0)
        yield up
        if self.loader is None:
            return
        m = self.loader
        with m._lock:  # one consistent copy
            rows, inserts = dict(m.rows_by_table), dict(m.inserts_by_table)
            dead, lag = dict(m.rejected_by_topic), dict(m.partition_lag)
            splits, failures, waiting = m.splits, m.insert_failures, m.waiting_since
            last_insert = m.last_insert_at
        yield _counter("pipeline_loader_rows_loaded", "Aggregate rows inserted into ClickHouse", "table", rows)
        yield _counter("pipeline_loader_inserts", "Inserts (one per table and batch)", "table", inserts)
        yield _counter("pipeline_loader_dead_letters", "Aggregate records set aside in analytics.aggregate_rejects",
                       "topic", dead)
        yield _counter("pipeline_loader_insert_splits", "Inserts refused for their rows and split to find them",
                       None, {(): splits})
        yield _counter("pipeline_loader_insert_failures", "Insert attempts that failed and were retried", None,
                       {(): failures})
        yield from m.insert_seconds.collect()
        g = GaugeMetricFamily("pipeline_loader_lag_records", "Records in Kafka not yet committed by the loader",
                              labels=["topic", "partition"])
        for (topic, partition), n in sorted(lag.items()):
            g.add_metric([topic, str(partition)], n)
        yield g
        g = GaugeMetricFamily("pipeline_loader_waiting_seconds", "How long ClickHouse has refused inserts (0: it takes "
                                                                 "them)")
        g.add_metric([], 0.0 if waiting is None else time.time() - waiting)
        yield g
        if last_insert is not None:
            g = GaugeMetricFamily("pipeline_loader_last_insert_timestamp_seconds", "When the last insert finished")
            g.add_metric([], last_insert)
            yield g


class _StoreCollector:
    """Figures ClickHouse holds, cached for CACHE_S; if ClickHouse does not answer, pipeline_clickhouse_up is 0 and
    the rest is left out (an absent series, not a wrong zero)."""

    def __init__(self, clients: ThreadClients, database: str) -> None:
        self.clients = clients
        self.database = database
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > CACHE_S:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("pipeline_clickhouse_up", "1 if ClickHouse answered this scrape's queries")
        try:
            with self.clients.borrow() as client:
                q = Queries(client, self.database)
                tables, restated, dead, maintenance = q.table_stats(), q.restatements(1), q.dead_letters(0), \
                    q.maintenance()
        except Exception as exc:  # noqa: BLE001 - an unreachable server is a metric, not a failed scrape
            log.warning("/metrics: ClickHouse did not answer: %s", str(exc).splitlines()[0][:200])
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        out: list[Metric] = [up]
        fresh = GaugeMetricFamily("pipeline_table_freshness_seconds", "Now minus the newest window end of the table",
                                  labels=["table"])
        newest = GaugeMetricFamily("pipeline_table_latest_window_end_timestamp_seconds",
                                   "The newest window end of the table", labels=["table"])
        rows = GaugeMetricFamily("pipeline_table_rows", "Rows stored (before deduplication)", labels=["table"])
        for t in tables:
            rows.add_metric([t["table"]], t["rows"])
            if t["latest_window_end"] is not None:
                fresh.add_metric([t["table"]], t["freshness_seconds"])
                newest.add_metric([t["table"]], _epoch(t["latest_window_end"]))
        out += [fresh, newest, rows]
        stored = GaugeMetricFamily("pipeline_dead_letters_stored", "Records in analytics.aggregate_rejects, by topic",
                                   labels=["topic"])
        for topic, n in dead["by_topic"].items():
            stored.add_metric([topic], n)
        out.append(stored)
        if restated:
            last = restated[0]
            g = GaugeMetricFamily("pipeline_restatement_last_timestamp_seconds", "When a slot was last restated")
            g.add_metric([], _epoch(last["restated_at"]))
            out.append(g)
            g = GaugeMetricFamily("pipeline_restatement_last_slot_timestamp_seconds",
                                  "Start of the newest restated 2-hour slot")
            g.add_metric([], _epoch(last["slot_start"]))
            out.append(g)
            g = GaugeMetricFamily("pipeline_restatement_last_rows", "Rows the newest restated slot changed",
                                  labels=["change"])
            g.add_metric(["upserted"], last["rows_upserted"])
            g.add_metric(["deleted"], last["rows_deleted"])
            out.append(g)
        if maintenance is not None:
            p = maintenance["last_pass"]
            g = GaugeMetricFamily("pipeline_maintenance_last_pass_timestamp_seconds",
                                  "When the last lake maintenance pass finished")
            g.add_metric([], _epoch(p["finished_at"]))
            out.append(g)
            g = GaugeMetricFamily("pipeline_maintenance_last_pass_duration_seconds", "How long the last pass took")
            g.add_metric([], p["duration_s"])
            out.append(g)
            g = GaugeMetricFamily("pipeline_maintenance_last_pass", "What the last lake maintenance pass did",
                                  labels=["result"])
            for result in ("compacted_slots", "snapshots_expired", "partitions_expired", "orphans_removed",
                           "restated_slots", "errors"):
                g.add_metric([result], p[result])
            out.append(g)
            files = GaugeMetricFamily("pipeline_lake_files", "Data files of lake.user_actions after the last "
                                      "maintenance pass, in open and closed 2-hour slots", labels=["slot_state"])
            slots = GaugeMetricFamily("pipeline_lake_slots", "2-hour slots of lake.user_actions after the last "
                                      "maintenance pass (uncompacted: closed, still waiting for compaction)",
                                      labels=["slot_state"])
            for state in ("open", "closed"):
                files.add_metric([state], p[f"{state}_files"])
                slots.add_metric([state], p[f"{state}_slots"])
            slots.add_metric(["uncompacted"], p["uncompacted_slots"])
            out += [files, slots]
            g = GaugeMetricFamily("pipeline_maintenance_passes_24h", "Lake maintenance passes recorded in 24 hours")
            g.add_metric([], maintenance["passes"])
            out.append(g)
        return out


def _counter(name: str, doc: str, label: str | None, values: dict) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label] if label else [])
    for key, value in sorted(values.items()):
        family.add_metric([key] if label else [], value)
    return family


def _epoch(iso: str) -> float:
    """Queries' times ("...Z", UTC) as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
