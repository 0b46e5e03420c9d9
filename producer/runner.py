"""A produce run: workers (processes), rate control, live progress, Ctrl-C handling, the final summary.

Each worker generates and delivers its share of the stream independently (its own generator,
its own Kafka client) and publishes its counts in shared memory, so the parent can show one live
progress line and add up exact totals at the end.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError
from producer.counters import DeliveryClock, SharedCounters
from producer.delivery import DeliveryOptions, open_backend
from producer.encoding import encode
from producer.generator import EventGenerator, SimulationConfig

if TYPE_CHECKING:  # prometheus_client is imported only by a run that serves /metrics
    from producer.metrics import MetricsServer

MAX_BATCH = 10_000  # events per generated batch: ~4 MB of JSON, stays in the allocator's cache


@dataclass(frozen=True)
class RunOptions:
    backend: str
    delivery: DeliveryOptions
    simulation: SimulationConfig
    workers: int = 1
    rate: float | None = None  # events/s over all workers; None = as fast as possible
    count: int | None = None
    duration_s: float | None = None
    flush_timeout_s: float = 60.0
    progress: bool = True


@dataclass
class Summary:
    backend: str
    topic: str
    workers: int
    sent: int = 0
    acked: int = 0
    failed: int = 0
    invalid: int = 0
    late: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    max_rss_mib: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def acked_per_s(self) -> float:
        return self.acked / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "acked_per_s": round(self.acked_per_s, 1)}

    def lines(self) -> list[str]:
        status = "interrupted" if self.interrupted else "done"
        return [
            f"{status}: {self.backend} -> {self.topic}, {self.workers} worker(s), {self.elapsed_s:.1f} s",
            f"  sent {self.sent:,}  acknowledged {self.acked:,}  failed {self.failed:,}"
            f"  (malformed on purpose {self.invalid:,}, late on purpose {self.late:,})",
            f"  {self.acked_per_s:,.0f} events/s acknowledged; max RSS {self.max_rss_mib:,.0f} MiB",
            *(f"  error: {e}" for e in self.errors),
        ]


def _share(total: int, workers: int, w: int) -> tuple[int, int]:
    """(start position, count) of worker w's part of ``total`` records."""
    start = total * w // workers
    return start, total * (w + 1) // workers - start


def _worker(
    opts: RunOptions, settings: Settings, w: int, counters: SharedCounters, stop, in_process: bool
) -> str | None:
    """Generate and deliver worker ``w``'s share; returns an error message or None."""
    if not in_process:
        # The parent decides when to stop (its Ctrl-C sets ``stop``); a worker always flushes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    position, quota = _share(opts.count, opts.workers, w) if opts.count is not None else (0, None)
    gen = EventGenerator(opts.simulation, worker=w, workers=opts.workers, position=position)
    try:
        backend = open_backend(opts.backend, settings, opts.delivery)
    except UserError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a client that cannot start: one line, not a traceback
        return f"worker {w}: {opts.backend} client failed to start: {exc.__class__.__name__}: {exc}"
    rate = opts.rate / opts.workers if opts.rate else None
    batch = MAX_BATCH if rate is None else int(min(MAX_BATCH, max(1, rate / 50)))  # >= 50 batches/s
    clock = DeliveryClock(counters, w)
    invalid = late = produced = 0
    error = None
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            n = batch if quota is None else min(batch, quota - produced)
            if n <= 0 or (opts.duration_s is not None and time.monotonic() - t0 >= opts.duration_s):
                break
            encoded = encode(gen.next_batch(n))
            backend.send(encoded)
            handed_over = time.monotonic()
            produced += n
            invalid += encoded.invalid
            late += encoded.late
            counts = backend.poll()
            clock.sent(counts.sent, handed_over)
            clock.answered(counts.acked + counts.failed)
            counters.publish(w, counts.sent, counts.acked, counts.failed, invalid, late)
            if rate is not None:  # pace: sleep until this batch is due, serving delivery reports
                while (ahead := t0 + produced / rate - time.monotonic()) > 0 and not stop.is_set():
                    time.sleep(min(ahead, 0.05))
                    counts = backend.poll()
                    clock.answered(counts.acked + counts.failed)
    except Exception as exc:  # noqa: BLE001 - reported as one line; the counts stay exact
        error = f"worker {w}: {exc.__class__.__name__}: {exc}"
    finally:
        counts = backend.flush(opts.flush_timeout_s)
        backend.close()
        clock.answered(counts.acked + counts.failed)  # after the flush every record is answered: the last batches
        counters.publish(w, counts.sent, counts.acked, counts.failed, invalid, late)
    if counts.failed and counts.first_error:
        error = error or f"worker {w}: {counts.failed} record(s) not acknowledged, first error: {counts.first_error}"
    return error


def _child(opts, settings, w, counters, stop, errors, metrics) -> None:
    if metrics is not None:  # the parent's listening socket, inherited by the fork: only the parent serves it
        metrics.close()
    errors.put((w, _worker(opts, settings, w, counters, stop, in_process=False)))


def _progress_line(counters: SharedCounters, elapsed: float) -> str:
    t = counters.totals()
    rate = t.acked / elapsed if elapsed > 0 else 0.0
    return f"{elapsed:6.1f}s  {rate:10,.0f} ev/s acked  sent {t.sent:,}  acked {t.acked:,}  failed {t.failed:,}"


def run(opts: RunOptions, settings: Settings, metrics: MetricsServer | None = None) -> Summary:
    """Run to the count, the duration, or Ctrl-C; always flushes and returns exact counts.

    ``metrics``: a bound /metrics server, served from this process once the workers run (the caller closes it).
    """
    counters = SharedCounters(opts.workers)
    ctx = mp.get_context("fork")  # fork: children start in milliseconds and inherit the imports
    stop = ctx.Event()
    errors: list[str] = []
    interrupted = False
    t0 = time.monotonic()
    tty = sys.stderr.isatty()

    def report(final: bool = False) -> None:
        line = _progress_line(counters, time.monotonic() - t0)
        sys.stderr.write(("\r" + line + ("\n" if final else "")) if tty else line + "\n")
        sys.stderr.flush()

    done = threading.Event()

    def progress() -> None:
        interval = 0.5 if tty else 5.0
        while not done.wait(interval):
            report()

    ticker = threading.Thread(target=progress, daemon=True) if opts.progress else None
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: give up waiting for the flush
            raise KeyboardInterrupt
        interrupted = True
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        if opts.workers == 1:
            if metrics:
                metrics.serve(counters, opts.delivery.topic, opts.backend)
            if ticker:
                ticker.start()
            err = _worker(opts, settings, 0, counters, stop, in_process=True)
            errors += [err] if err else []
        else:
            queue = ctx.SimpleQueue()
            procs = [
                ctx.Process(target=_child, args=(opts, settings, w, counters, stop, queue, metrics), daemon=True)
                for w in range(opts.workers)
            ]
            for p in procs:
                p.start()
            if metrics:  # threads started after the forks: none is copied into a child
                metrics.serve(counters, opts.delivery.topic, opts.backend)
            if ticker:
                ticker.start()
            for p in procs:
                while p.is_alive():
                    p.join(0.2)
            results = dict(queue.get() for _ in range(sum(1 for p in procs if p.exitcode == 0)))
            for w, p in enumerate(procs):
                if p.exitcode != 0:
                    errors.append(f"worker {w} died (exit code {p.exitcode}); its counts are the last reported")
                elif results.get(w):
                    errors.append(results[w])
    finally:
        signal.signal(signal.SIGINT, previous)
        done.set()
        if ticker and ticker.is_alive():
            ticker.join()
            report(final=True)

    t = counters.totals()
    summary = Summary(opts.backend, opts.delivery.topic, opts.workers, t.sent, t.acked, t.failed, t.invalid, t.late)
    summary.elapsed_s = time.monotonic() - t0
    summary.interrupted = interrupted
    summary.errors = errors
    # ru_maxrss is KiB on Linux: the largest of this process and of any (waited-for) worker.
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    summary.max_rss_mib = rss / 1024
    if summary.sent != summary.acked + summary.failed:  # a died worker: the gap was never acknowledged
        summary.failed = summary.sent - summary.acked
    return summary


def write_summary_json(summary: Summary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_json(), indent=2) + "\n")
