"""``pipeline produce``: simulated mobile-app events into Kafka (also ``python -m producer``)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from base.config import Settings
from base.contract import MAX_USERS, RAW_TOPIC
from base.errors import UserError
from producer.delivery import BACKENDS, DeliveryOptions
from producer.generator import SimulationConfig

if TYPE_CHECKING:
    from producer.metrics import MetricsServer

COMPRESSIONS = ("none", "lz4", "zstd", "gzip", "snappy")
MIN_START_MS, MAX_START_MS = 1_000_000_000_000, 9_000_000_000_000  # 2001..2255: 13-digit epoch ms


def _number(kind: type, low: float | None = None, high: float | None = None, what: str = "") -> callable:
    def parse(text: str):
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{text}' is not a {'whole ' if kind is int else ''}number{what}"
            ) from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({bounds}){what}")
        return value

    return parse


def _start_time(text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 instant (UTC unless it names a zone)."""
    try:
        ms = int(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is neither epoch ms nor an ISO-8601 time") from None
        ms = int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)
    if not MIN_START_MS <= ms < MAX_START_MS:
        raise argparse.ArgumentTypeError(f"'{text}' is outside 2001..2255")
    return ms


def _one_line_error(message: str) -> NoReturn:
    print(f"error: {message} (see: pipeline produce --help)", file=sys.stderr)
    sys.exit(2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.error = _one_line_error  # a bad flag is one line, not usage + error
    p.epilog = (
        "Exit code: 0 if every record was acknowledged, 1 if any was not (or a worker failed), 2 for a bad flag or an "
        "unreachable broker, 130 after Ctrl-C (which flushes what is in flight and prints the summary)."
    )
    g = p.add_argument_group("volume and pace")
    g.add_argument("--rate", type=_number(float, 1, what=" (events/s)"), metavar="EV_PER_S",
                   help="target events per second over all workers (default: as fast as possible)")
    g.add_argument("--count", type=_number(int, 0), metavar="N", help="stop after N events")
    g.add_argument("--duration", type=_number(float, 0, what=" (seconds)"), metavar="SECONDS",
                   help="stop after this many seconds (default: run until --count or Ctrl-C)")
    g.add_argument("--workers", type=_number(int, 1, 64), default=1,
                   help="producer processes, each with its own client and share of the users (default: 1)")
    g = p.add_argument_group("simulation")
    g.add_argument("--users", type=_number(int, 1, MAX_USERS), default=MAX_USERS,
                   help=f"simulated users/devices, ids 1..N (default: {MAX_USERS:,})")
    g.add_argument("--seed", type=_number(int, 0), help="make the run reproducible (with --start-time)")
    g.add_argument("--start-time", type=_start_time, metavar="TIME",
                   help="simulated time of the first event: epoch ms or ISO-8601 (default: now). With it (or "
                        "--sim-rate) time is simulated and each record's Kafka timestamp is the simulated moment "
                        "it was sent, as a replay of that history carries it; Kafka deletes records older than the "
                        "topic's retention (7 days by default)")
    g.add_argument("--sim-rate", type=_number(float, 0.001, what=" (events per simulated second)"),
                   metavar="EV_PER_SIM_S",
                   help="average events per simulated second; the simulated clock runs faster at night "
                        "(diurnal curve). Without it, --rate keeps event time = wall time (real time); "
                        "without either, 10000")
    g.add_argument("--zipf", type=_number(float, 0.0, 3.0), default=1.0, metavar="S",
                   help="skew of user activity: P(rank r) ~ r^-S (default: 1.0; 0 = uniform)")
    g.add_argument("--jitter-ms", type=_number(int, 0, 60_000), default=50,
                   help="timestamps are in order within +-this many ms (default: 50)")
    g.add_argument("--late-fraction", type=_number(float, 0, 1), default=0.0, metavar="F",
                   help="share of events stamped up to --max-lateness in the past, on purpose (default: 0)")
    g.add_argument("--max-lateness", type=_number(int, 0), default=0, metavar="MS",
                   help="how late a late event can be, in ms (default: 0; needed with --late-fraction)")
    g.add_argument("--invalid-fraction", type=_number(float, 0, 1), default=0.0, metavar="F",
                   help="share of malformed records (bad JSON, missing field, wrong type, out-of-range "
                        "user_id, unknown action type); exactly round-down(F x count) (default: 0)")
    g = p.add_argument_group("kafka")
    g.add_argument("--topic", default=RAW_TOPIC, help=f"target topic, created if missing (default: {RAW_TOPIC})")
    g.add_argument("--partitions", type=_number(int, 1, 10_000),
                   help="partitions when the topic is created (default: KAFKA_PARTITIONS, 6)")
    g.add_argument("--backend", choices=BACKENDS, default="kafka-python",
                   help="kafka-python (default, pure Python) or confluent (librdkafka, fastest)")
    g.add_argument("--linger-ms", type=_number(int, 0, 10_000), default=20, help="batching delay (default: 20)")
    g.add_argument("--batch-bytes", type=_number(int, 1024, 16_000_000), default=1_000_000,
                   help="max bytes of a producer batch per partition (default: 1000000)")
    g.add_argument("--compression", choices=COMPRESSIONS, default="none", help="(default: none)")
    g.add_argument("--delivery-timeout", type=_number(float, 1, 3600, what=" (seconds)"), default=120.0,
                   metavar="SECONDS", help="give up on a record after this long (default: 120)")
    g = p.add_argument_group("output")
    g.add_argument("--summary-json", type=Path, metavar="PATH", help="also write the final summary as JSON here")
    g.add_argument("--quiet", action="store_true", help="no live progress line on stderr")
    g = p.add_argument_group("metrics (Prometheus)")
    g.add_argument("--metrics-port", type=_number(int, 1, 65535), metavar="PORT",
                   help="serve /metrics in the Prometheus text format on this port for the run's duration: events "
                        "sent, acknowledged, failed, send rate, delivery latency (default: no metrics)")
    g.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                   help="address /metrics listens on (default: 127.0.0.1, this machine only; a container sets "
                        "0.0.0.0 so that Prometheus can reach it)")
    g.add_argument("--metrics-linger", type=_number(float, 0, 3600, what=" (seconds)"), default=0.0,
                   metavar="SECONDS",
                   help="after the summary, keep serving /metrics this long so that a last scrape sees the final "
                        "counts; Ctrl-C ends it early (default: 0)")


def _linger(metrics: MetricsServer, seconds: float, quiet: bool) -> None:
    sys.stdout.flush()  # the summary first: a reader of the output knows the final counts are being served
    if not quiet:
        print(f"metrics: serving the final counts on {metrics.url} for {seconds:g} s (Ctrl-C ends it)",
              file=sys.stderr)
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass  # the run is over and complete: ending the linger changes nothing in the exit code


def run(args: argparse.Namespace, settings: Settings) -> int:
    from producer import topics

    if args.late_fraction > 0 and args.max_lateness <= 0:
        raise UserError("--late-fraction needs --max-lateness MS (how late a late event may be)")
    if args.metrics_linger and args.metrics_port is None:
        raise UserError("--metrics-linger needs --metrics-port PORT")
    topics.check_topic_name(args.topic)
    # Bound before anything else: a port in use fails the run before a record is sent.
    metrics = None
    if args.metrics_port is not None:
        from producer.metrics import MetricsServer

        metrics = MetricsServer(args.metrics_host, args.metrics_port)
    try:
        return _produce(args, settings, metrics)
    finally:
        if metrics:
            metrics.close()


def _produce(args: argparse.Namespace, settings: Settings, metrics: MetricsServer | None) -> int:
    from producer import runner, topics

    created = topics.ensure_topic(settings, args.topic, args.partitions or settings.kafka_partitions)
    if created and not args.quiet:
        print(f"created topic {args.topic}", file=sys.stderr)
    start_ms = args.start_time if args.start_time is not None else int(time.time() * 1000)
    opts = runner.RunOptions(
        backend=args.backend,
        delivery=DeliveryOptions(
            topic=args.topic,
            linger_ms=args.linger_ms,
            batch_bytes=args.batch_bytes,
            compression=args.compression,
            delivery_timeout_ms=int(args.delivery_timeout * 1000),
            simulated_time=args.start_time is not None or args.sim_rate is not None,
        ),
        simulation=SimulationConfig(
            users=args.users,
            seed=args.seed,
            start_ms=start_ms,
            events_per_sim_second=args.sim_rate or args.rate or 10_000.0,
            # --rate alone is real time: timestamps keep pace with the wall clock whatever the hour.
            diurnal_pace=not (args.rate and args.sim_rate is None),
            zipf_exponent=args.zipf,
            jitter_ms=args.jitter_ms,
            late_fraction=args.late_fraction,
            max_lateness_ms=args.max_lateness,
            invalid_fraction=args.invalid_fraction,
        ),
        workers=min(args.workers, args.users),
        rate=args.rate,
        count=args.count,
        duration_s=args.duration,
        flush_timeout_s=args.delivery_timeout,
        progress=not args.quiet,
    )
    if metrics and not args.quiet:
        print(f"metrics: {metrics.url}", file=sys.stderr)
    summary = runner.run(opts, settings, metrics)
    for line in summary.lines():
        print(line)
    if args.summary_json:
        runner.write_summary_json(summary, args.summary_json)
    if summary.interrupted:
        return 130
    if metrics and args.metrics_linger:
        _linger(metrics, args.metrics_linger, args.quiet)
    complete = args.count is None or summary.sent == args.count
    return 0 if complete and not summary.errors and summary.failed == 0 and summary.acked == summary.sent else 1


COMMANDS = {
    "produce": ("generate simulated user actions into Kafka (30M devices, 153 action types)", add_arguments, run),
}
