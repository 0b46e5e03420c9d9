"""The loader: aggregate topics -> ClickHouse, in batches, offsets committed only after the insert.

At-least-once by design: a crash between insert and commit replays the batch, and the
ReplacingMergeTree key + version make that replay invisible to FINAL reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from clickhouse.records import KINDS, parse
from pipeline.config import AGGREGATE_TOPICS

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
                "last_error": self.last_error,
            }


class Loader:
    """Consume the aggregate topics and insert them into ClickHouse until ``stop`` is set."""

    def __init__(self, bootstrap: str, client_factory: Callable[[], Client], options: LoaderOptions,
                 metrics: LoaderMetrics | None = None) -> None:
        self.bootstrap = bootstrap
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

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, until_idle_s: float | None = None) -> None:
        """Run until ``stop`` is set (or, with ``until_idle_s``, until nothing arrived for that long)."""
        self._client = self.client_factory()
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": self.options.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.min.messages": 200_000,
        })
        self._consumer.subscribe(list(self.tables), on_revoke=self._on_revoke)
        last_lag = 0.0
        last_message = time.monotonic()
        try:
            while not stop.is_set():
                wait = self.options.max_latency_s
                if self._oldest is not None:
                    wait = max(0.0, self._oldest + self.options.max_latency_s - time.monotonic())
                room = max(1, min(100_000, self.options.batch_rows - self._pending_count))
                messages = self._consumer.consume(num_messages=room, timeout=min(wait, 0.5))
                if messages:
                    last_message = time.monotonic()
                    self._add(messages)
                due = self._oldest is not None and time.monotonic() >= self._oldest + self.options.max_latency_s
                if self._pending_count >= self.options.batch_rows or due:
                    self.flush(stop)
                if time.monotonic() - last_lag > 2.0:
                    self._update_lag()
                    last_lag = time.monotonic()
                if until_idle_s is not None and not self._pending and time.monotonic() - last_message > until_idle_s:
                    break
            self.flush(stop)
            self._update_lag()
        finally:
            self._consumer.close()

    def _add(self, messages: list[Message]) -> None:
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err)
                    self.metrics.set(last_error=f"kafka: {err}")
                continue
            self._pending.setdefault(m.topic(), []).append(m)
        self._pending_count = sum(len(v) for v in self._pending.values())
        if self._pending_count and self._oldest is None:
            self._oldest = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Insert and commit what we hold before another member takes the partitions over.
        self.flush(None)

    # -- insert, then commit -------------------------------------------------------------------
    def flush(self, stop: threading.Event | None) -> None:
        if not self._pending:
            self._oldest = None
            return
        offsets: dict[tuple[str, int], int] = {}
        for topic, messages in self._pending.items():
            self._insert_topic(topic, messages, stop)
            for m in messages:
                key = (topic, m.partition())
                if m.offset() >= offsets.get(key, -1):
                    offsets[key] = m.offset()
        commit = [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]
        self._commit(commit, stop)
        self._committed.update({(t, p): o + 1 for (t, p), o in offsets.items()})
        self._pending.clear()
        self._pending_count = 0
        self._oldest = None

    def _insert_topic(self, topic: str, messages: list[Message], stop: threading.Event | None) -> None:
        kind = KINDS[self.tables[topic]]
        values = []
        kept: list[Message] = []
        tombstones = 0
        for m in messages:
            v = m.value()
            if v is None:  # a tombstone (upsert delete) has nothing to add to an aggregate table
                tombstones += 1
                continue
            values.append(v)
            kept.append(m)
        batch = parse(values, kind)
        for n, (index, reason) in enumerate(batch.rejects):
            if n < 5:
                m = kept[index]
                log.warning("bad aggregate record %s[%d]@%d: %s: %.200r", topic, m.partition(), m.offset(),
                            reason, m.value())
        if len(batch.rejects) > 5:
            log.warning("... and %d more bad records in this batch of %s", len(batch.rejects) - 5, topic)
        if batch.table.num_rows:
            self._retry(lambda: self._client.insert_arrow(f"{self.options.database}.{kind.table}", batch.table),
                        f"insert into {kind.table}", stop)
        self.metrics.inserted(batch.table.num_rows, len(batch.rejects))
        if tombstones:
            self.metrics.set(tombstones=self.metrics.tombstones + tombstones)

    def _commit(self, offsets: list[TopicPartition], stop: threading.Event | None) -> None:
        self._retry(lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "offset commit", stop)

    def _retry(self, action: Callable[[], object], what: str, stop: threading.Event | None) -> None:
        """Retry until it works: a failed insert must neither lose the batch nor commit it.

        If the service is stopped meanwhile, the exception propagates: nothing was committed, so
        the batch is read again on the next start.
        """
        delay = 0.5
        while True:
            try:
                action()
                return
            except (KafkaException, Exception) as exc:  # noqa: B014 - both named for the reader
                self.metrics.set(insert_failures=self.metrics.insert_failures + 1, last_error=f"{what}: {exc}")
                log.error("%s failed (retrying in %.1fs): %s", what, delay, exc)
                if stop is not None and stop.wait(delay):
                    raise
                if stop is None:
                    time.sleep(delay)
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
