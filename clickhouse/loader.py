"""The loader: aggregate topics -> ClickHouse, in batches, offsets committed only after the insert.

At-least-once by design: a crash between insert and commit replays the batch, and the
ReplacingMergeTree key + version make that replay invisible to FINAL reads.

One batch is parsed and inserted on a worker thread while the next one is consumed (pyarrow and
the engine release the GIL), so the loader runs at about the pace of the slower of the two.
Offsets are committed from the consumer's thread once the batch's insert has finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from base.contract import AGGREGATE_TOPICS
from clickhouse.records import KINDS, parse

log = logging.getLogger(__name__)

DEFAULT_GROUP = "clickhouse-loader"


@dataclass(frozen=True)
class LoaderOptions:
    group_id: str = DEFAULT_GROUP
    batch_rows: int = 200_000          # flush when this many records are pending ...
    max_latency_s: float = 1.0         # ... or when the oldest pending record is this old
    # topic -> table (the table names the record kind); default: each topic into its namesake
    topics: Mapping[str, str] | None = None
    database: str = "analytics"

    def topic_tables(self) -> dict[str, str]:
        mapping = dict(self.topics or {t: t for t in AGGREGATE_TOPICS})
        for topic, table in mapping.items():
            if table not in KINDS:
                raise ValueError(f"topic {topic}: unknown aggregate table {table}")
        return mapping


class LoaderMetrics:
    """Counters shared with the HTTP threads; snapshot() is a consistent copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()  # (time, rows) of recent inserts
        self.rows_inserted = 0
        self.rows_rejected = 0
        self.tombstones = 0
        self.batches = 0
        self.insert_failures = 0
        self.lag: dict[str, int] = {}
        self.last_insert_at: float | None = None
        self.first_message_at: float | None = None
        self.last_error: str | None = None
        self.started_at = time.time()

    def inserted(self, rows: int, rejected: int) -> None:
        now = time.time()
        with self._lock:
            self.rows_inserted += rows
            self.rows_rejected += rejected
            self.batches += 1
            self.last_insert_at = now
            self._recent.append((now, rows + rejected))
            while self._recent and self._recent[0][0] < now - 10:
                self._recent.popleft()

    def set(self, **values: object) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self, k, v)

    def snapshot(self) -> dict:
        now = time.time()
        with self._lock:
            recent = [n for t, n in self._recent if t >= now - 10]
            span = min(10.0, max(now - self.started_at, 1e-3))
            return {
                "rows_inserted": self.rows_inserted,
                "rows_rejected": self.rows_rejected,
                "tombstones_skipped": self.tombstones,
                "batches": self.batches,
                "insert_failures": self.insert_failures,
                "rows_per_second": round(sum(recent) / span, 1),
                "lag": dict(self.lag),
                "lag_total": sum(self.lag.values()),
                "last_insert_at": self.last_insert_at,
                "first_message_at": self.first_message_at,
                "last_error": self.last_error,
            }


class Loader:
    """Consume the aggregate topics and insert them into ClickHouse until ``stop`` is set."""

    def __init__(self, kafka_config: Mapping[str, str], client_factory: Callable[[], Client], options: LoaderOptions,
                 metrics: LoaderMetrics | None = None) -> None:
        # Settings.kafka_client_config(): bootstrap servers with the TLS/SASL settings, the one way to reach Kafka.
        self.kafka_config = dict(kafka_config)
        self.client_factory = client_factory
        self.options = options
        self.tables = options.topic_tables()
        self.metrics = metrics or LoaderMetrics()
        self._pending: dict[str, list[Message]] = {}
        self._pending_count = 0
        self._oldest: float | None = None
        self._committed: dict[tuple[str, int], int] = {}
        self._consumer: Consumer | None = None
        self._client: Client | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._in_flight: tuple[Future, list[TopicPartition]] | None = None
        self._stop: threading.Event | None = None

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; what was consumed by then is inserted and committed."""
        self._stop = stop
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader-insert")
        self._client = self._worker.submit(self.client_factory).result()  # the worker's own client
        self._consumer = Consumer({
            **self.kafka_config,
            "group.id": self.options.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.min.messages": 500_000,
        })
        self._consumer.subscribe(list(self.tables), on_revoke=self._on_revoke)
        last_lag = last_report = time.monotonic()
        try:
            while not stop.is_set():
                wait = self.options.max_latency_s
                if self._oldest is not None:
                    wait = max(0.0, self._oldest + self.options.max_latency_s - time.monotonic())
                room = max(1, min(100_000, self.options.batch_rows - self._pending_count))
                messages = self._consumer.consume(num_messages=room, timeout=min(wait, 0.5))
                if messages:
                    self._add(messages)
                due = self._oldest is not None and time.monotonic() >= self._oldest + self.options.max_latency_s
                if self._pending_count >= self.options.batch_rows or due:
                    self.flush()
                elif self._in_flight is not None and self._in_flight[0].done():
                    self._finish_in_flight()  # commit promptly, not only at the next flush
                if time.monotonic() - last_lag > 2.0:
                    self._update_lag()
                    last_lag = time.monotonic()
                if time.monotonic() - last_report > 30.0:
                    m = self.metrics.snapshot()
                    log.info("loader: %d rows inserted, %d rejected, %.0f rows/s, lag %d", m["rows_inserted"],
                             m["rows_rejected"], m["rows_per_second"], m["lag_total"])
                    last_report = time.monotonic()
            self.flush()
            self._finish_in_flight()
            self._update_lag()
        finally:
            self._consumer.close()
            self._worker.shutdown(wait=True)

    def _add(self, messages: list[Message]) -> None:
        pending = self._pending
        for m in messages:
            if m.error() is None:
                topic = m.topic()
                if topic in pending:
                    pending[topic].append(m)
                else:
                    pending[topic] = [m]
            elif m.error().code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: %s", m.error())
                self.metrics.set(last_error=f"kafka: {m.error()}")
        self._pending_count = sum(len(v) for v in pending.values())
        if self._pending_count and self._oldest is None:
            self._oldest = time.monotonic()
            if self.metrics.first_message_at is None:
                self.metrics.set(first_message_at=time.time())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Insert and commit what we hold before another member takes the partitions over.
        self.flush()
        self._finish_in_flight()

    # -- insert, then commit -------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the pending records to the insert worker (after the previous batch was committed)."""
        if not self._pending:
            self._oldest = None
            return
        batch = self._pending
        # The consumer's position = one past the last record handed to us, per partition: exactly
        # what to commit once this batch (and every earlier one) is in ClickHouse.
        offsets = [tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0]
        self._pending = {}
        self._pending_count = 0
        self._oldest = None
        self._finish_in_flight()
        self._in_flight = (self._worker.submit(self._insert_batch, batch), offsets)

    def _finish_in_flight(self) -> None:
        if self._in_flight is None:
            return
        future, offsets = self._in_flight
        self._in_flight = None
        future.result()  # re-raises if the insert gave up (service stopping): nothing is committed
        if offsets:
            self._retry(lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "offset commit")
            self._committed.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def _insert_batch(self, batch: dict[str, list[Message]]) -> None:
        for topic, messages in batch.items():
            self._insert_topic(topic, messages)

    def _insert_topic(self, topic: str, messages: list[Message]) -> None:
        kind = KINDS[self.tables[topic]]
        values = [m.value() for m in messages]
        tombstones = values.count(None)
        if tombstones:  # a tombstone (upsert delete) has nothing to add to an aggregate table
            messages = [m for m, v in zip(messages, values, strict=True) if v is not None]
            values = [v for v in values if v is not None]
        batch = parse(values, kind)
        for n, (index, reason) in enumerate(batch.rejects):
            if n < 5:
                m = messages[index]
                log.warning("bad aggregate record %s[%d]@%d: %s: %.200r", topic, m.partition(), m.offset(),
                            reason, m.value())
        if len(batch.rejects) > 5:
            log.warning("... and %d more bad records in this batch of %s", len(batch.rejects) - 5, topic)
        if batch.table.num_rows:
            table = f"{self.options.database}.{kind.table}"
            self._retry(lambda: self._client.insert_arrow(table, batch.table), f"insert into {kind.table}")
        self.metrics.inserted(batch.table.num_rows, len(batch.rejects))
        if tombstones:
            self.metrics.set(tombstones=self.metrics.tombstones + tombstones)

    def _retry(self, action: Callable[[], object], what: str) -> None:
        """Retry until it works: a failed insert must neither lose the batch nor commit it.

        If the loader is stopped meanwhile, the exception propagates: nothing was committed, so
        the batch is read again on the next start.
        """
        delay = 0.5
        while True:
            try:
                action()
                return
            except Exception as exc:
                self.metrics.set(insert_failures=self.metrics.insert_failures + 1, last_error=f"{what}: {exc}")
                log.error("%s failed (retrying in %.1fs): %s", what, delay, exc)
                if self._stop is not None and self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 10.0)

    def _update_lag(self) -> None:
        """Records in Kafka not yet committed by this group, per topic."""
        lag: dict[str, int] = {}
        try:
            assignment = self._consumer.assignment()
        except KafkaException:
            return
        for tp in assignment:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            except KafkaException:
                continue
            committed = self._committed.get((tp.topic, tp.partition))
            if committed is None:
                try:
                    (c,) = self._consumer.committed([tp], timeout=2.0)
                    committed = c.offset if c.offset >= 0 else low
                except KafkaException:
                    committed = low
                self._committed[(tp.topic, tp.partition)] = committed
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - committed)
        self.metrics.set(lag=lag)
