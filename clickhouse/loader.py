"""The loader: aggregate topics -> ClickHouse, in batches, offsets committed only after the insert.

At-least-once by design: a crash between insert and commit replays the batch, and the ReplacingMergeTree key +
version make that replay invisible to FINAL reads.

Nothing lost, nothing stuck: every record read lands in exactly one of its aggregate table or the dead-letter table
``aggregate_rejects`` (topic, partition, offset, raw bytes, reason), and one bad record never stops its topic or its
neighbours in the batch:
- a record that does not parse or breaks the contract is dead-lettered with its reason (clickhouse/records.py);
- an insert the server refuses for the rows themselves is split until the refused rows are alone, and those are
  dead-lettered with the server's reason; an insert that fails because the server is down or not ready is retried
  until it works (clickhouse/insert_errors.py classifies by ClickHouse's error codes);
- while it waits for ClickHouse the consumer pauses its partitions and keeps polling, so an outage longer than
  ``max.poll.interval.ms`` does not cost the group membership.

One batch is parsed and inserted on a worker thread while the next one is consumed (pyarrow and the engine release
the GIL), so the loader runs at about the pace of the slower of the two. Offsets are committed from the consumer's
thread once the batch's insert has finished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from base.contract import AGGREGATE_TOPICS
from clickhouse import insert_errors
from clickhouse.records import KINDS, parse

log = logging.getLogger(__name__)

DEFAULT_GROUP = "clickhouse-loader"
DEAD_LETTER_TABLE = "aggregate_rejects"
DEAD_LETTER_SCHEMA = pa.schema([
    ("topic", pa.string()), ("partition", pa.uint32()), ("offset", pa.uint64()), ("raw_key", pa.binary()),
    ("raw_value", pa.binary()), ("reason", pa.string()), ("rejected_at", pa.timestamp("ms", tz="UTC")),
])
TOMBSTONE = "null value (a tombstone): an aggregate table has nothing to delete by key"


@dataclass(frozen=True)
class LoaderOptions:
    group_id: str = DEFAULT_GROUP
    batch_rows: int = 200_000          # flush when this many records are pending ...
    max_latency_s: float = 1.0         # ... or when the oldest pending record is this old
    # topic -> table (the table names the record kind); default: each topic into its namesake
    topics: Mapping[str, str] | None = None
    database: str = "analytics"
    retry_max_s: float = 10.0          # the longest pause between two attempts of an insert that waits
    unknown_error_retries: int = 3     # attempts of an unclassified error before it counts as the data's
    kafka: Mapping[str, str] = field(default_factory=dict)  # librdkafka settings over the loader's own

    def topic_tables(self) -> dict[str, str]:
        mapping = dict(self.topics or {t: t for t in AGGREGATE_TOPICS})
        for topic, table in mapping.items():
            if table not in KINDS:
                raise ValueError(f"topic {topic}: unknown aggregate table {table}")
        return mapping


class LoaderMetrics:
    """Counters shared with the HTTP threads; snapshot() is a consistent copy (/api/status), and
    clickhouse/metrics.py reads the same figures for /metrics."""

    def __init__(self) -> None:
        from prometheus_client import Histogram

        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int]] = deque()  # (time, rows) of recent inserts
        self.rows_inserted = 0
        self.rows_rejected = 0  # dead-lettered: they are in the dead-letter table
        self.rejected_by_topic: dict[str, int] = {}
        self.rows_by_table: dict[str, int] = {}
        self.inserts_by_table: dict[str, int] = {}  # one insert per table and batch (its splits not counted)
        self.batches = 0
        self.splits = 0  # inserts the server refused for the data, split to find the refused rows
        self.insert_failures = 0
        self.lag: dict[str, int] = {}
        self.partition_lag: dict[tuple[str, int], int] = {}
        # Unregistered: /metrics collects it through its own registry (one per service, so tests can run several).
        self.insert_seconds = Histogram(
            "pipeline_loader_insert_duration_seconds",
            "Time to parse and insert one batch of one table (retries and dead letters included)", ["table"],
            registry=None, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.last_insert_at: float | None = None
        self.first_message_at: float | None = None
        self.waiting_since: float | None = None  # ClickHouse refused inserts since (epoch s); None: it answers
        self.last_error: str | None = None
        self.started_at = time.time()

    def inserted(self, rows: int, rejected: int, topic: str, table: str, seconds: float) -> None:
        now = time.time()
        self.insert_seconds.labels(table).observe(seconds)
        with self._lock:
            self.rows_inserted += rows
            self.rows_rejected += rejected
            self.rows_by_table[table] = self.rows_by_table.get(table, 0) + rows
            self.inserts_by_table[table] = self.inserts_by_table.get(table, 0) + 1
            if rejected:
                self.rejected_by_topic[topic] = self.rejected_by_topic.get(topic, 0) + rejected
            self.last_insert_at = now
            self._recent.append((now, rows + rejected))
            while self._recent and self._recent[0][0] < now - 10:
                self._recent.popleft()

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

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
                "rejected_by_topic": dict(self.rejected_by_topic),
                "rows_by_table": dict(self.rows_by_table),
                "batches": self.batches,
                "splits": self.splits,
                "insert_failures": self.insert_failures,
                "rows_per_second": round(sum(recent) / span, 1),
                "lag": dict(self.lag),
                "lag_total": sum(self.lag.values()),
                "last_insert_at": self.last_insert_at,
                "first_message_at": self.first_message_at,
                "waiting_for_clickhouse_s": None if self.waiting_since is None else round(now - self.waiting_since, 1),
                "last_error": self.last_error,
            }


@dataclass
class _InFlight:
    future: Future
    offsets: list[TopicPartition]


class Loader:
    """Consume the aggregate topics and insert them into ClickHouse until ``stop`` is set."""

    def __init__(self, kafka_config: Mapping[str, str], client_factory: Callable[[], Client], options: LoaderOptions,
                 metrics: LoaderMetrics | None = None, redact: Callable[[str], str] = lambda text: text) -> None:
        # Settings.kafka_client_config(): bootstrap servers with the TLS/SASL settings, the one way to reach Kafka.
        self.kafka_config = dict(kafka_config)
        self.client_factory = client_factory
        self.options = options
        self.tables = options.topic_tables()
        self.metrics = metrics or LoaderMetrics()
        self.redact = redact  # takes secrets (the DSN's password) out of anything shown in /api/status
        self._pending: dict[str, list[Message]] = {}
        self._pending_count = 0
        self._oldest: float | None = None
        self._committed: dict[tuple[str, int], int] = {}
        self._revoked: set[tuple[str, int]] = set()  # given up while a batch was in flight: not ours to commit
        self._paused: list[TopicPartition] = []
        self._consumer: Consumer | None = None
        self._client: Client | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None
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
            **self.options.kafka,
        })
        self._consumer.subscribe(list(self.tables), on_revoke=self._on_revoke)
        last_lag = last_report = time.monotonic()
        try:
            while not stop.is_set():
                if self._in_flight is not None and self._in_flight.future.done():
                    self._finish_in_flight()  # commit promptly, not only at the next flush
                if self._batch_due() and self._in_flight is not None:
                    self._wait_polling()  # ClickHouse is behind (or down): hold the partitions, keep the group
                else:
                    self._resume()
                    wait = self.options.max_latency_s
                    if self._oldest is not None:
                        wait = max(0.0, self._oldest + self.options.max_latency_s - time.monotonic())
                    room = max(1, min(100_000, self.options.batch_rows - self._pending_count))
                    messages = self._consumer.consume(num_messages=room, timeout=min(wait, 0.5))
                    if messages:
                        self._add(messages)
                    if self._batch_due() and self._in_flight is None:
                        self._hand_over()
                if time.monotonic() - last_lag > 2.0:
                    self._update_lag()
                    last_lag = time.monotonic()
                if time.monotonic() - last_report > 30.0:
                    m = self.metrics.snapshot()
                    log.info("loader: %d rows inserted, %d dead-lettered, %.0f rows/s, lag %d", m["rows_inserted"],
                             m["rows_rejected"], m["rows_per_second"], m["lag_total"])
                    last_report = time.monotonic()
            # Stopping: what was consumed is inserted and committed, unless ClickHouse cannot take it now.
            if self._in_flight is not None:
                self._in_flight.future.exception()  # the worker gives up promptly once stop is set
                self._finish_in_flight()
            if self._pending:
                self._hand_over()
                self._in_flight.future.exception()
                self._finish_in_flight()
            self._update_lag()
        finally:
            self._consumer.close()
            self._worker.shutdown(wait=True)

    def _batch_due(self) -> bool:
        if not self._pending_count:
            return False
        due = self._oldest is not None and time.monotonic() >= self._oldest + self.options.max_latency_s
        return due or self._pending_count >= self.options.batch_rows

    def _wait_polling(self) -> None:
        """The next batch is ready but the last one is still being inserted: pause the partitions and poll (no
        records come, the group membership stays) until the insert finishes or the loader stops."""
        if not self._paused:
            self._paused = self._consumer.assignment()
            self._consumer.pause(self._paused)
        # Paused partitions return nothing; should a record fetched before the pause come, it is kept, not skipped.
        self._add(self._consumer.consume(num_messages=100, timeout=0.5) or [])

    def _resume(self) -> None:
        if self._paused:
            assigned = set((tp.topic, tp.partition) for tp in self._consumer.assignment())
            self._consumer.resume([tp for tp in self._paused if (tp.topic, tp.partition) in assigned])
            self._paused = []

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
                self.metrics.set(last_error=self.redact(f"kafka: {m.error()}"))
        self._pending_count = sum(len(v) for v in pending.values())
        if self._pending_count and self._oldest is None:
            self._oldest = time.monotonic()
            if self.metrics.first_message_at is None:
                self.metrics.set(first_message_at=time.time())

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Another member takes these partitions over: records of them not yet handed to the insert worker are
        dropped (the new owner reads them from the committed offset); a batch already inserted is committed now;
        one still in flight is left to finish, but not committed for these partitions (its rows reach ClickHouse,
        and the new owner's replay of them is deduplicated by the tables' keys)."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for topic in list(self._pending):
            self._pending[topic] = [m for m in self._pending[topic] if (m.topic(), m.partition()) not in gone]
            if not self._pending[topic]:
                del self._pending[topic]
        self._pending_count = sum(len(v) for v in self._pending.values())
        if not self._pending_count:
            self._oldest = None
        if self._in_flight is not None and self._in_flight.future.done() and not self._stopping():
            self._finish_in_flight()
        self._revoked |= gone
        self._paused = [tp for tp in self._paused if (tp.topic, tp.partition) not in gone]

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # -- insert, then commit -------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the pending records to the insert worker once the previous batch is committed (tests, shutdown)."""
        if self._in_flight is not None:
            self._in_flight.future.exception()
            self._finish_in_flight()
        if self._pending:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the pending records to the insert worker; the previous batch must be finished."""
        if not self._pending:
            self._oldest = None
            return
        assert self._in_flight is None, "one batch in flight at a time"
        batch = self._pending
        # The consumer's position = one past the last record handed to us, per partition: exactly what to commit
        # once this batch (and every earlier one) is in ClickHouse.
        offsets = [tp for tp in self._consumer.position(self._consumer.assignment()) if tp.offset >= 0]
        self._pending, self._pending_count, self._oldest = {}, 0, None
        self._revoked = set()
        self._in_flight = _InFlight(self._worker.submit(self._insert_batch, batch), offsets)

    def _finish_in_flight(self) -> None:
        if self._in_flight is None:
            return
        in_flight, self._in_flight = self._in_flight, None
        in_flight.future.result()  # re-raises if the insert gave up (the loader is stopping): nothing is committed
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        offsets = [tp for tp in in_flight.offsets
                   if (tp.topic, tp.partition) in assigned and (tp.topic, tp.partition) not in self._revoked]
        if offsets:
            self._retry(lambda: self._consumer.commit(offsets=offsets, asynchronous=False), "offset commit")
            self._committed.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def _insert_batch(self, batch: dict[str, list[Message]]) -> None:
        for topic, messages in batch.items():
            self._insert_topic(topic, messages)
        self.metrics.add(batches=1)

    def _insert_topic(self, topic: str, messages: list[Message]) -> None:
        started = time.monotonic()
        kind = KINDS[self.tables[topic]]
        tombstones = [m for m in messages if m.value() is None]
        records = [m for m in messages if m.value() is not None]
        batch = parse([m.value() for m in records], kind)
        dead = [(m, TOMBSTONE) for m in tombstones] + [(records[i], reason) for i, reason in batch.rejects]
        rejected_index = {i for i, _ in batch.rejects}
        valid = [m for i, m in enumerate(records) if i not in rejected_index]
        if batch.table.num_rows:
            dead += self._insert_or_split(f"{self.options.database}.{kind.table}", batch.table, valid)
        if dead:
            self._dead_letter(topic, dead)
        self.metrics.inserted(len(messages) - len(dead), len(dead), topic, kind.table, time.monotonic() - started)

    def _insert_or_split(self, table: str, rows: pa.Table, messages: list[Message]) -> list[tuple[Message, str]]:
        """Insert ``rows``; the records the server refuses for what they hold, with its reason."""
        try:
            self._retry(lambda: self._client.insert_arrow(table, rows), f"insert into {table}",
                        data_errors_raise=True)
            return []
        except _DataError as refused:
            if rows.num_rows == 1:
                log.warning("dead-lettering %s[%d]@%d: the server refused it: %s", messages[0].topic(),
                            messages[0].partition(), messages[0].offset(), refused.reason)
                return [(messages[0], f"insert refused: {refused.reason}")]
            self.metrics.add(splits=1)
            half = rows.num_rows // 2
            return (self._insert_or_split(table, rows.slice(0, half), messages[:half])
                    + self._insert_or_split(table, rows.slice(half), messages[half:]))

    def _dead_letter(self, topic: str, dead: list[tuple[Message, str]]) -> None:
        for message, reason in dead[:5]:
            log.warning("dead letter %s[%d]@%d: %s: %.200r", topic, message.partition(), message.offset(), reason,
                        message.value())
        if len(dead) > 5:
            log.warning("... and %d more dead letters of %s in this batch", len(dead) - 5, topic)
        now = time.time() * 1000
        rows = pa.Table.from_pylist([
            {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(), "raw_key": m.key() or b"",
             "raw_value": m.value() or b"", "reason": reason, "rejected_at": int(now)} for m, reason in dead
        ], schema=DEAD_LETTER_SCHEMA)
        table = f"{self.options.database}.{DEAD_LETTER_TABLE}"
        self._retry(lambda: self._client.insert_arrow(table, rows), f"insert into {table}")

    def _retry(self, action: Callable[[], object], what: str, data_errors_raise: bool = False) -> None:
        """Run ``action`` until it works: a failed insert must neither lose the batch nor commit it. With
        ``data_errors_raise``, an error of the data (or an unclassified one that keeps coming) is raised as
        _DataError for the caller to split the batch.

        If the loader is stopped meanwhile, the exception propagates: nothing was committed, so the batch is read
        again on the next start.
        """
        delay, unknown = 0.5, 0
        while True:
            try:
                action()
                if self.metrics.waiting_since is not None:
                    self.metrics.set(waiting_since=None)
                return
            except Exception as exc:
                kind = insert_errors.classify(exc)
                if kind is insert_errors.Kind.UNKNOWN:
                    unknown += 1
                    if unknown > self.options.unknown_error_retries:
                        kind = insert_errors.Kind.DATA
                if data_errors_raise and kind is insert_errors.Kind.DATA:
                    raise _DataError(self.redact(insert_errors.reason(exc))) from None
                message = self.redact(f"{what}: {insert_errors.reason(exc)}")
                self.metrics.add(insert_failures=1)
                self.metrics.set(last_error=message)
                if self.metrics.waiting_since is None:
                    self.metrics.set(waiting_since=time.time())
                log.error("%s (%s error, retrying in %.1fs)", message, kind.value, delay)
                if self._stop is not None and self._stop.wait(delay):
                    raise
                delay = min(delay * 2, self.options.retry_max_s)

    def _update_lag(self) -> None:
        """Records in Kafka not yet committed by this group, per topic."""
        lag: dict[str, int] = {}
        partition_lag: dict[tuple[str, int], int] = {}
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
            partition_lag[(tp.topic, tp.partition)] = max(0, high - committed)
            lag[tp.topic] = lag.get(tp.topic, 0) + partition_lag[(tp.topic, tp.partition)]
        self.metrics.set(lag=lag, partition_lag=partition_lag)


class _DataError(Exception):
    """The server refused an insert for what the rows hold."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
