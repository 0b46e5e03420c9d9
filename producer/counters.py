"""The run's counters in shared memory: each worker writes its own slots, the parent adds them up.

One ``mp.Array`` of int64 for all workers (no lock: a slot has one writer). Per worker: the five event counts, then
the delivery-latency histogram (one count per bucket, then the sum in microseconds), so the progress line, the
summary and /metrics read the same figures without a message or a Python callback per record.
"""

from __future__ import annotations

import bisect
import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass

FIELDS = ("sent", "acked", "failed", "invalid", "late")
# Seconds from a batch handed to the client to the broker's answer for it. acks=all with linger 20 ms is tens of ms
# on a healthy cluster; the top buckets are a broker in trouble, up to the default delivery timeout (120 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_HIST = len(FIELDS)  # offset of the first bucket in a worker's slots
_SUM = _HIST + len(LATENCY_BUCKETS) + 1  # after the buckets and +Inf
SLOTS = _SUM + 1


@dataclass(frozen=True)
class Totals:
    sent: int
    acked: int
    failed: int
    invalid: int
    late: int
    latency_buckets: tuple[int, ...]  # per bucket (not cumulative), the last one +Inf
    latency_sum_s: float


class SharedCounters:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.array = mp.Array("q", workers * SLOTS, lock=False)

    def publish(self, w: int, sent: int, acked: int, failed: int, invalid: int, late: int) -> None:
        base = w * SLOTS
        self.array[base : base + len(FIELDS)] = [sent, acked, failed, invalid, late]

    def totals(self) -> Totals:
        snap = self.array[:]  # one copy; a worker may be between two writes, each slot is still a whole number
        tot = [sum(snap[w * SLOTS + i] for w in range(self.workers)) for i in range(SLOTS)]
        return Totals(*tot[: len(FIELDS)], tuple(tot[_HIST:_SUM]), tot[_SUM] / 1e6)


class DeliveryClock:
    """Delivery latency per batch, in the worker: no callback per record, whatever the backend.

    After each batch it remembers (records sent so far, now); when the records answered by the broker (acknowledged
    or failed) reach that number, the batch counts as delivered and now - then is observed. Answered rather than
    acknowledged, so a failed record does not hold back every later batch. kafka-python tallies in send order, so that
    is exactly the batch's records; confluent counts records leaving its queue, in any partition order, so it is the
    time until as many records were answered. Resolution: answers are noticed when the worker polls the client, after
    each batch and every <= 50 ms while it paces; so a latency is late by at most that (as fast as possible: by up to
    one batch's generation and hand-over).
    """

    def __init__(self, counters: SharedCounters, w: int) -> None:
        self._array = counters.array
        self._base = w * SLOTS
        self._pending: deque[tuple[int, float]] = deque()

    def sent(self, records_sent: int, at: float) -> None:
        self._pending.append((records_sent, at))

    def answered(self, records_answered: int) -> None:
        pending = self._pending
        if not pending or pending[0][0] > records_answered:
            return
        now = time.monotonic()
        array, base = self._array, self._base
        while pending and pending[0][0] <= records_answered:
            seconds = now - pending.popleft()[1]
            array[base + _HIST + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: upper bound inclusive
            array[base + _SUM] += round(seconds * 1e6)
