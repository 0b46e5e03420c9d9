"""Delivery backends: one interface over kafka-python (the default) and confluent-kafka (librdkafka).

Both are idempotent producers with acks=all, and both partition by murmur2 of the key like the Java
client, so a user's events land in the same partition whichever backend sent them.

Counting: ``sent`` is every record handed to the client, ``acked`` every record the broker
acknowledged, ``failed`` every record the client reported as failed; after ``flush`` a record still
unacknowledged counts as failed. So at the end sent == acked + failed, exactly.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from base.config import Settings
from base.errors import UserError
from producer.encoding import EncodedBatch
from producer.partitioning import partitions_for_user_ids

BACKENDS = ("kafka-python", "confluent")


@dataclass(frozen=True)
class DeliveryOptions:
    topic: str
    linger_ms: int = 20
    batch_bytes: int = 1_000_000
    compression: str = "none"
    delivery_timeout_ms: int = 120_000
    # Simulated time (--start-time, --sim-rate): each record's Kafka timestamp is the simulated moment its batch was
    # sent, as a replay of that history would carry it, so the job's event-time bounds (relative to the Kafka time)
    # hold for a sped-up or past simulation as for the real stream. False: the client stamps the wall clock.
    simulated_time: bool = False


@dataclass
class DeliveryCounts:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    first_error: str | None = None


class DeliveryBackend(Protocol):
    name: str

    def send(self, batch: EncodedBatch) -> None:
        """Hand every record of the batch to the client (blocks only while its buffer is full)."""

    def poll(self) -> DeliveryCounts:
        """Serve delivery reports without blocking; the counts so far."""

    def flush(self, timeout_s: float) -> DeliveryCounts:
        """Wait for every record in flight (up to ``timeout_s``); the leftovers count as failed."""

    def close(self) -> None: ...


def open_backend(name: str, settings: Settings, options: DeliveryOptions) -> DeliveryBackend:
    if name == "confluent":
        return ConfluentBackend(settings, options)
    if name == "kafka-python":
        return KafkaPythonBackend(settings, options)
    raise UserError(f"--backend: '{name}' is not one of {', '.join(BACKENDS)}")


class ConfluentBackend:
    """librdkafka: the C client does batching and I/O in its own threads, Python only enqueues."""

    name = "confluent"

    def __init__(self, settings: Settings, options: DeliveryOptions) -> None:
        from confluent_kafka import Producer

        self.topic = options.topic
        self.simulated_time = options.simulated_time
        self.counts = DeliveryCounts()
        self._producer = Producer(
            {
                **settings.kafka_client_config(),  # bootstrap + TLS/SASL from configuration
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": options.linger_ms,
                "batch.size": options.batch_bytes,
                "batch.num.messages": 100_000,
                "compression.type": options.compression,
                "partitioner": "murmur2_random",  # the Java client's (and kafka-python's) key hashing
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 262_144,  # bounds memory: at most 256 MiB queued
                "message.timeout.ms": options.delivery_timeout_ms,
                # Success reports would cost a Python callback per record; only failures are reported,
                # and acked = sent - failed - still queued is exact (every record gets exactly one report).
                "delivery.report.only.error": True,
                "on_delivery": self._on_failure,
                "error_cb": self._on_error,
                "logger": _QUIET,
            }
        )

    def _on_failure(self, err: object, msg: object) -> None:
        self.counts.failed += 1
        if self.counts.first_error is None:
            self.counts.first_error = str(err)

    def _on_error(self, err: object) -> None:
        # Client-level errors (broker down ...) are retried by librdkafka; records that finally
        # fail arrive in _on_failure. Keep the first for the summary.
        if self.counts.first_error is None and getattr(err, "fatal", lambda: False)():
            self.counts.first_error = str(err)

    def send(self, batch: EncodedBatch) -> None:
        values, keys = batch.records()
        produce, topic, poll = self._producer.produce, self.topic, self._producer.poll
        # 0: librdkafka stamps the wall clock
        stamps = batch.sent_ms.tolist() if self.simulated_time else itertools.repeat(0, len(values))
        done = 0
        try:
            for value, key, stamp in zip(values, keys, stamps, strict=False):
                try:
                    produce(topic, value, key, timestamp=stamp)
                except BufferError:  # local queue full: let librdkafka drain, then retry
                    while True:
                        poll(0.05)
                        try:
                            produce(topic, value, key, timestamp=stamp)
                            break
                        except BufferError:
                            continue
                done += 1
        finally:
            self.counts.sent += done
        poll(0)

    def _refresh(self) -> DeliveryCounts:
        self.counts.acked = self.counts.sent - self.counts.failed - len(self._producer)
        return self.counts

    def poll(self) -> DeliveryCounts:
        self._producer.poll(0)
        return self._refresh()

    def flush(self, timeout_s: float) -> DeliveryCounts:
        left = self._producer.flush(timeout_s)
        if left:  # never acknowledged within the timeout: purge so they cannot be counted twice
            self._producer.purge()
            self._producer.flush(5)
        self._producer.poll(0)
        counts = self._refresh()
        counts.failed += len(self._producer)
        counts.acked = counts.sent - counts.failed
        return counts

    def close(self) -> None:
        pass  # librdkafka's producer closes when garbage-collected (after flush)


class KafkaPythonBackend:
    """kafka-python: pure Python, one future per record; futures are tallied in send order."""

    name = "kafka-python"

    def __init__(self, settings: Settings, options: DeliveryOptions) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError, KafkaTimeoutError

        self.topic = options.topic
        self.simulated_time = options.simulated_time
        self.counts = DeliveryCounts()
        self._pending: deque[list] = deque()
        self._done_in_head = 0
        try:
            self._producer = KafkaProducer(
                **settings.kafka_python_config(),  # bootstrap + TLS/SASL from configuration
                acks="all",
                enable_idempotence=True,
                linger_ms=options.linger_ms,
                batch_size=min(options.batch_bytes, 1_000_000),
                compression_type=None if options.compression == "none" else options.compression,
                max_in_flight_requests_per_connection=5,
                delivery_timeout_ms=options.delivery_timeout_ms,
                # kafka-python insists on delivery_timeout >= linger + request_timeout
                request_timeout_ms=max(1, min(30_000, options.delivery_timeout_ms - options.linger_ms)),
            )
        except KafkaTimeoutError:  # kafka-python 3: 'Unable to bootstrap'
            raise UserError(f"kafka: cannot reach a broker at {settings.kafka_bootstrap}") from None
        except KafkaError as exc:
            raise UserError(f"kafka-python: {exc.__class__.__name__}: {exc}") from None
        self._partitions = len(self._producer.partitions_for(self.topic))

    def send(self, batch: EncodedBatch) -> None:
        values, keys = batch.records()
        # Same partitions as kafka-python's murmur2 partitioner would pick, computed for the whole batch.
        partitions = partitions_for_user_ids(batch.user_id, self._partitions).tolist()
        send, topic = self._producer.send, self.topic
        # None: the client stamps the wall clock
        stamps = batch.sent_ms.tolist() if self.simulated_time else itertools.repeat(None, len(values))
        futures = []
        try:
            for value, key, partition, stamp in zip(values, keys, partitions, stamps, strict=False):
                try:
                    futures.append(send(topic, value=value, key=key, partition=partition, timestamp_ms=stamp))
                except Exception as exc:  # rejected before queuing (buffer timeout, too large ...)
                    self.counts.failed += 1
                    self.counts.first_error = self.counts.first_error or str(exc)
        finally:
            self.counts.sent += len(futures)
            if futures:
                self._pending.append(futures)
        self._reap()

    def _reap(self) -> None:
        """Tally finished futures from the oldest; stops at the first one still in flight."""
        counts = self.counts
        while self._pending:
            head = self._pending[0]
            i = self._done_in_head
            while i < len(head) and head[i].is_done:
                if head[i].succeeded():
                    counts.acked += 1
                else:
                    counts.failed += 1
                    counts.first_error = counts.first_error or str(head[i].exception)
                i += 1
            if i < len(head):
                self._done_in_head = i
                return
            self._pending.popleft()
            self._done_in_head = 0

    def poll(self) -> DeliveryCounts:
        self._reap()
        return self.counts

    def flush(self, timeout_s: float) -> DeliveryCounts:
        from kafka.errors import KafkaError

        flush_error = None
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:  # timeout, or batches failed for good: the futures tell which records
            flush_error = f"{exc.__class__.__name__}: {exc}"
        self._reap()
        self.counts.first_error = self.counts.first_error or flush_error
        # Anything still not done after the flush timeout was never acknowledged.
        for i, head in enumerate(self._pending):
            self.counts.failed += len(head) - (self._done_in_head if i == 0 else 0)
        self._pending.clear()
        return self.counts

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception:  # noqa: BLE001
            # kafka-python 3.0 raises from close() when a batch failed for good (its flush finds a
            # future never completed) and would raise again from __del__ at exit: stop its I/O thread
            # and mark it closed. Every record is already counted by then.
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            self._producer._closed = True


_QUIET = logging.getLogger("producer.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
