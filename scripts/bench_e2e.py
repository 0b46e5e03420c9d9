"""End-to-end sustained rate: producer -> Kafka -> Flink job (Paimon + aggregates) -> ClickHouse, on this box.

    .venv/bin/python scripts/bench_e2e.py [--rates 10000,25000,50000] [--minutes 5] [--baseline-seconds 15]

For each producer rate in the ladder (lowest first) the whole local pipeline runs in real time (event time =
wall time) for --minutes, and the step passes if
  - the Flink job's Kafka lag stays bounded: the mean lag over the step's last third is below rate x 30 s and
    either at most 1.5x the first third's mean or within what checkpoint granularity alone produces
    (rate x (checkpoint interval + 5 s)); lag = end offsets - the job group's committed offsets, and the job
    commits on checkpoints (every 10 s here), so lag is measured at checkpoint granularity;
  - the producer reached at least 90 % of the rate (else the box, not the pipeline, was the limit);
  - the job and the ClickHouse service are still alive.
The ladder stops at the first failing rate; the figure is the highest rate that passed.

Freshness of the 5-minute aggregates: /api/status is polled once a second; when a new window_end appears in
analytics.user_aggregations_realtime, (wall time seen - window_end) is recorded ("first row visible"), and
when that table's row count stops growing, (time of the last growth - window_end) ("window complete"). A
window fires only once the watermark (max event time - 5 s) passes its end, so both include that delay.
p50/p95 are over the windows that ended after the measurement began (a --minutes 1 ladder sees few).

Baseline (same run, before the pipeline starts): the producer alone into Kafka at full speed (confluent,
2 workers) for --baseline-seconds: the ingest ceiling of this box. The ratio = sustained rate / baseline is
the share of that ceiling the whole pipeline keeps up with. (The Flink job's catch-up rate is measured by
scripts/bench_flink.py.)

Everything is private to the run: a temporary DATA_DIR (Paimon warehouse, checkpoints, chDB), unique topics
and consumer groups, dashboard port --port (default 18051). Only the running Kafka (KAFKA_BOOTSTRAP) is shared.
Processes are started with PID files under the temporary DATA_DIR and stopped by PID at the end (also on
Ctrl-C or an error); the bench topics are deleted. Other work on the box shares the 2 cores: the load average
is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.config import Settings  # noqa: E402
from local_services.process import ManagedProcess, wait_until  # noqa: E402
from scripts.faults import descendants  # noqa: E402

REALTIME_TABLE = "user_aggregations_realtime"
CHECKPOINT_S = 10
PARTITIONS = 6
SAMPLE_EVERY_S = 3.0
LAG_LIMIT_S = 30  # lag above rate x this many seconds is not "bounded" whatever its trend


@dataclass
class Names:
    """Unique topics and consumer groups of one bench run."""

    prefix: str = field(default_factory=lambda: f"bench_e2e_{uuid.uuid4().hex[:8]}")

    @property
    def source(self) -> str:
        return f"{self.prefix}_src"

    @property
    def aggregates(self) -> dict[str, str]:
        """aggregate topic -> ClickHouse table"""
        return {f"{self.prefix}_ua": "user_aggregations", f"{self.prefix}_uaa": "user_action_aggregations",
                f"{self.prefix}_uar": REALTIME_TABLE}

    @property
    def baseline(self) -> str:
        return f"{self.prefix}_baseline"

    @property
    def job_group(self) -> str:
        return f"{self.prefix}_job"

    @property
    def loader_group(self) -> str:
        return f"{self.prefix}_loader"


@dataclass
class Window:
    end: float  # epoch s
    seen_at: float
    rows_at_seen: int
    last_growth_at: float
    complete_at: float | None = None

    @property
    def first_row_s(self) -> float:
        return self.seen_at - self.end

    @property
    def complete_s(self) -> float | None:
        return None if self.complete_at is None else self.last_growth_at - self.end


@dataclass
class Step:
    rate: int
    seconds: float = 0.0
    achieved: float = 0.0  # events/s written to the source topic during the step (end offsets)
    processed: float = 0.0  # events/s the job committed during the step (achieved - lag growth)
    producer_summary: dict = field(default_factory=dict)
    lag: list[tuple[float, int]] = field(default_factory=list)  # (seconds into step, lag)
    load: list[float] = field(default_factory=list)
    job_rss_mb: list[float] = field(default_factory=list)
    service_rss_mb: list[float] = field(default_factory=list)
    job_cores: float = 0.0
    service_cores: float = 0.0
    windows: list[Window] = field(default_factory=list)
    failure: str | None = None

    def thirds(self) -> tuple[float, float]:
        if not self.lag:
            return float("nan"), float("nan")
        span = self.seconds or max(t for t, _ in self.lag)
        first = [n for t, n in self.lag if t <= span / 3] or [self.lag[0][1]]
        last = [n for t, n in self.lag if t >= 2 * span / 3] or [self.lag[-1][1]]
        return statistics.fmean(first), statistics.fmean(last)

    def judge(self) -> None:
        if self.failure:
            return
        first, last = self.thirds()
        if last >= self.rate * LAG_LIMIT_S:
            self.failure = f"lag {last:,.0f} >= rate x {LAG_LIMIT_S} s"
        elif last > 1.5 * first and last > self.rate * (CHECKPOINT_S + 5):
            self.failure = f"lag growing: last third {last:,.0f} > 1.5 x first third {first:,.0f}"
        elif self.achieved < 0.9 * self.rate:
            self.failure = f"producer reached only {self.achieved:,.0f} ev/s"


# -- processes ---------------------------------------------------------------------------------------
def tree_usage(root: int | None) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process tree; (0, 0) if it is gone."""
    if root is None:
        return 0.0, 0.0
    rss_kb, ticks = 0, 0
    for pid in [root, *descendants(root)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb += int(line.split()[1])
        ticks += int(stat[11]) + int(stat[12])  # utime + stime
    return rss_kb / 1024, ticks / os.sysconf("SC_CLK_TCK")


class Pipeline:
    """The bench's own producer, Flink job and ClickHouse service; stop() ends them all by PID."""

    def __init__(self, settings: Settings, names: Names) -> None:
        self.settings = settings
        self.names = names
        run, logs = settings.run_dir, settings.logs_dir
        self.job = ManagedProcess("flink-job", run, logs)
        self.service = ManagedProcess("clickhouse", run, logs)
        self.producer = ManagedProcess("producer", run, logs)
        self.env = {**os.environ, "DATA_DIR": str(settings.data_dir), "DASHBOARD_PORT": str(settings.dashboard_port),
                    "KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
        self.env.pop("PAIMON_WAREHOUSE", None)
        self.env.pop("CLICKHOUSE_URL", None)
        from confluent_kafka import Consumer

        # Never subscribes: only reads the job group's committed offsets and the end offsets.
        self.offsets = Consumer({**settings.kafka_client_config(), "group.id": names.job_group,
                                 "enable.auto.commit": False})

    # -- Kafka --------------------------------------------------------------------------------------
    def create_topics(self) -> None:
        from local_services import kafka

        kafka.ensure_topics(self.settings, {t: PARTITIONS for t in
                                            (self.names.source, self.names.baseline, *self.names.aggregates)})
        # The offsets client learns of new topics from metadata: wait until it sees every partition.
        for topic in (self.names.source, self.names.baseline):
            wait_until(lambda t=topic: self._known(t), 30, f"kafka metadata of {topic}")

    def _known(self, topic: str) -> bool:
        meta = self.offsets.list_topics(topic, timeout=5).topics.get(topic)
        if meta is None or meta.error is not None or len(meta.partitions) < PARTITIONS:
            time.sleep(0.5)
            return False
        return True

    def delete_topics(self) -> None:
        from local_services import kafka

        kafka.delete_topics(self.settings, [self.names.source, self.names.baseline, *self.names.aggregates])

    def _partitions(self, topic: str) -> list:
        from confluent_kafka import TopicPartition

        return [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def end_offsets(self, topic: str) -> int:
        return _retry(lambda: sum(self.offsets.get_watermark_offsets(tp, timeout=10, cached=False)[1]
                                  for tp in self._partitions(topic)))

    def job_lag(self) -> tuple[int, bool]:
        return _retry(self._job_lag)

    def _job_lag(self) -> tuple[int, bool]:
        """(records not yet committed by the job group, whether every partition has a commit)."""
        lag, committed_all = 0, True
        for tp in self.offsets.committed(self._partitions(self.names.source), timeout=10):
            low, high = self.offsets.get_watermark_offsets(tp, timeout=10, cached=False)
            committed_all &= tp.offset >= 0
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag, committed_all

    # -- processes ------------------------------------------------------------------------------------
    def produce(self, rate: int | None, seconds: float, topic: str, summary: Path, workers: int) -> int:
        argv = [sys.executable, "-m", "pipeline", "produce", "--backend", "confluent", "--topic", topic,
                "--workers", str(workers), "--duration", str(seconds), "--summary-json", str(summary), "--quiet"]
        if rate:
            argv += ["--rate", str(rate)]  # --rate alone: event time = wall time, so freshness is real
        summary.unlink(missing_ok=True)
        return self.producer.start(argv, env=self.env, cwd=ROOT)

    def wait_producer(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.producer.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        self.stop_producer()

    def stop_producer(self) -> None:
        pid = self.producer.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)  # the producer flushes what is in flight and writes its summary
        for _ in range(60):
            if self.producer.pid() is None:
                return
            time.sleep(0.5)
        self.producer.stop()

    def start_service(self) -> None:
        argv = [sys.executable, __file__, "--serve-child", "--prefix", self.names.prefix]
        self.service.start(argv, env=self.env, cwd=ROOT)
        wait_until(lambda: self.status(timeout=2) is not None, 120, "clickhouse service", self.service)

    def start_job(self) -> None:
        s, n = self.settings, self.names
        topics = list(n.aggregates)
        argv = [sys.executable, "-m", "flink_job", "--kafka-bootstrap", s.kafka_bootstrap,
                "--warehouse", s.paimon_warehouse, "--source-topic", n.source,
                "--user-aggregations-topic", topics[0], "--user-action-aggregations-topic", topics[1],
                "--realtime-aggregations-topic", topics[2], "--group-id", n.job_group,
                "--checkpoint-interval", f"{CHECKPOINT_S} s", "--parallelism", "2",
                "--checkpoint-dir", (s.data_dir / "flink" / "checkpoints").as_uri(), "--job-name", "bench-e2e"]
        self.job.start(argv, env=self.env, cwd=ROOT)

    def status(self, timeout: float = 5.0) -> dict | None:
        try:
            url = f"http://127.0.0.1:{self.settings.dashboard_port}/api/status"
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        for label, stop in (("producer", self.stop_producer), ("flink job", lambda: self.job.stop(timeout=30)),
                            ("clickhouse service", lambda: self.service.stop(timeout=30))):
            try:
                stop()
            except Exception as exc:
                print(f"stopping {label} failed: {exc}", flush=True)
        self.offsets.close()


def _retry(read, attempts: int = 20):
    """A Kafka read, retried while a new topic's partition leaders are still being elected."""
    from confluent_kafka import KafkaException

    for attempt in range(attempts):
        try:
            return read()
        except KafkaException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def realtime(status: dict) -> tuple[float | None, int]:
    """(latest window_end as epoch s, rows) of the 5-minute table from /api/status."""
    for t in status.get("tables") or []:
        if t.get("table") == REALTIME_TABLE:
            end = t.get("latest_window_end")
            epoch = datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp() if end else None
            return epoch, int(t.get("rows") or 0)
    return None, 0


class Freshness:
    """Watches /api/status once a second: new 5-minute window_ends and when their rows stop growing."""

    def __init__(self, not_before: float) -> None:
        self.not_before = not_before  # windows that ended before the measurement began are not counted
        self.latest: float | None = None
        self.rows = 0
        self.open: Window | None = None

    def observe(self, status: dict | None, now: float) -> Window | None:
        """Feed one status; returns a window the moment it is first seen."""
        if status is None:
            return None
        end, rows = realtime(status)
        new = None
        if end is not None and (self.latest is None or end > self.latest):
            if self.open is not None and self.open.complete_at is None:
                self.open.complete_at = now  # the next window arrived: the previous one is done
            if end >= self.not_before:
                new = self.open = Window(end, now, rows, now)
            self.latest = end
        elif rows > self.rows and self.open is not None:
            self.open.last_growth_at = now
        if self.open is not None and self.open.complete_at is None and now - self.open.last_growth_at >= 5:
            self.open.complete_at = now
        self.rows = rows
        return new


# -- the run ----------------------------------------------------------------------------------------
def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def baseline(p: Pipeline, seconds: float, out: Path) -> dict:
    say(f"baseline: producer alone into Kafka at full speed, confluent, 2 workers, {seconds:g} s")
    summary = out / "baseline.json"
    before = p.end_offsets(p.names.baseline)
    start = time.monotonic()
    p.produce(None, seconds, p.names.baseline, summary, workers=2)
    load = []
    while p.producer.pid() is not None and time.monotonic() - start < seconds + 60:
        load.append(os.getloadavg()[0])
        time.sleep(1)
    p.stop_producer()
    data = json.loads(summary.read_text()) if summary.exists() else {}
    acked = p.end_offsets(p.names.baseline) - before
    rate = data.get("acked_per_s") or acked / max(time.monotonic() - start, 1e-3)
    say(f"baseline: {rate:,.0f} events/s ({acked:,} events), load average {_mean(load):.1f}")
    return {"rate": rate, "load": _mean(load)}


WARMUP_RATE = 1000


def warm_up(p: Pipeline, out: Path, timeout: float) -> None:
    """A trickle of events until the job has committed a checkpoint on every partition, then until it has
    caught up (lag 0): each step starts from a running, idle job rather than measuring its start-up."""
    say(f"warm-up: job starting; producer at {WARMUP_RATE:,} ev/s until the job's first checkpoint commits")
    p.produce(WARMUP_RATE, timeout, p.names.source, out / "warmup.json", 1)
    start = time.monotonic()
    next_line = start + 30
    producing = True
    while time.monotonic() < start + timeout:
        if p.job.pid() is None:
            raise SystemExit(f"the Flink job exited during start-up; see {p.job.log_file}:\n{p.job.log_tail()}")
        lag, committed = p.job_lag()
        if committed and producing:
            p.stop_producer()
            producing = False
            say(f"  first checkpoint committed after {time.monotonic() - start:.0f} s; waiting for lag 0")
            continue
        if committed and lag == 0:
            say(f"warm-up done after {time.monotonic() - start:.0f} s: job idle, lag 0")
            return
        if time.monotonic() >= next_line:
            say(f"  {time.monotonic() - start:.0f} s: job lag {lag:,}, {'committed' if committed else 'no commit yet'}"
                f", load {os.getloadavg()[0]:.1f}")
            next_line += 30
        time.sleep(2)
    raise SystemExit(f"the job did not start and catch up within {timeout:.0f} s (load average "
                     f"{os.getloadavg()[0]:.1f}); see {p.job.log_file}")


def run_step(p: Pipeline, step: Step, seconds: float, out: Path, workers: int, fresh: Freshness) -> None:
    say(f"step {step.rate:,} ev/s for {seconds:.0f} s")
    before = p.end_offsets(p.names.source)
    lag_start, _ = p.job_lag()
    _, job_cpu0 = tree_usage(p.job.pid())
    _, svc_cpu0 = tree_usage(p.service.pid())
    start = time.monotonic()
    p.produce(step.rate, seconds, p.names.source, out / f"producer-{step.rate}.json", workers)
    next_sample = start
    next_line = start + 30
    while (elapsed := time.monotonic() - start) < seconds:
        window = fresh.observe(p.status(timeout=2), time.time())
        if window is not None:
            step.windows.append(window)
            say(f"  window ending {time.strftime('%H:%M:%S', time.localtime(window.end))} visible "
                f"{window.first_row_s:.1f} s after its end")
        if time.monotonic() >= next_sample:
            lag, _ = p.job_lag()
            step.lag.append((elapsed, lag))
            step.load.append(os.getloadavg()[0])
            step.job_rss_mb.append(tree_usage(p.job.pid())[0])
            step.service_rss_mb.append(tree_usage(p.service.pid())[0])
            next_sample += SAMPLE_EVERY_S
            if p.job.pid() is None:
                step.failure = "the Flink job died"
                break
            if p.service.pid() is None:
                step.failure = "the ClickHouse service died"
                break
        if time.monotonic() >= next_line:
            say(f"  {elapsed:.0f} s: job lag {step.lag[-1][1]:,}, load {step.load[-1]:.1f}, "
                f"job RSS {step.job_rss_mb[-1]:,.0f} MiB")
            next_line += 30
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start - elapsed)))
    step.seconds = time.monotonic() - start
    step.achieved = (p.end_offsets(p.names.source) - before) / step.seconds
    lag_end, _ = p.job_lag()
    step.processed = step.achieved - (lag_end - lag_start) / step.seconds
    step.job_cores = (tree_usage(p.job.pid())[1] - job_cpu0) / step.seconds
    step.service_cores = (tree_usage(p.service.pid())[1] - svc_cpu0) / step.seconds
    p.wait_producer(timeout=30)
    summary = out / f"producer-{step.rate}.json"
    step.producer_summary = json.loads(summary.read_text()) if summary.exists() else {}
    step.judge()
    first, last = step.thirds()
    say(f"step {step.rate:,}: {'PASS' if step.failure is None else 'FAIL (' + step.failure + ')'}; "
        f"achieved {step.achieved:,.0f} ev/s, job processed {step.processed:,.0f} ev/s, "
        f"lag first/last third {first:,.0f}/{last:,.0f}")


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _s(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds:.1f} s"  # nan: no window seen


def report(steps: list[Step], base: dict, minutes: float) -> None:
    print()
    print(f"end-to-end sustained rate, {minutes:g} min per step, checkpoints every {CHECKPOINT_S} s "
          f"(lag measured at checkpoint granularity), 2 cores shared with other work")
    head = (f"{'rate':>8} {'achieved':>9} {'job did':>8} {'lag 1st/3':>10} {'lag last/3':>10} {'win':>3} "
            f"{'fresh p50':>9} {'p95':>6} {'complete p95':>12} {'job RSS':>8} {'job cpu':>7} {'ch cpu':>6} "
            f"{'load':>5}  result")
    print(head)
    print("-" * len(head))
    for s in steps:
        first, last = s.thirds()
        f1 = [w.first_row_s for w in s.windows]
        fc = [w.complete_s for w in s.windows if w.complete_s is not None]
        print(f"{s.rate:>8,} {s.achieved:>9,.0f} {s.processed:>8,.0f} {first:>10,.0f} {last:>10,.0f} "
              f"{len(s.windows):>3} {_s(_pct(f1, .5)):>9} {_s(_pct(f1, .95)):>6} {_s(_pct(fc, .95)):>12} "
              f"{max(s.job_rss_mb, default=0):>5,.0f}MiB {s.job_cores:>7.2f} {s.service_cores:>6.2f} "
              f"{_mean(s.load):>5.1f}  {'pass' if s.failure is None else 'FAIL: ' + s.failure}")
    passed = [s for s in steps if s.failure is None]
    sustained = max((s.rate for s in passed), default=0)
    windows = [w for s in steps for w in s.windows]
    f1 = [w.first_row_s for w in windows]
    fc = [w.complete_s for w in windows if w.complete_s is not None]
    print()
    print(f"sustained rate (highest passing step)   {sustained:,} events/s"
          + ("" if len(passed) < len(steps) else "  (every step passed: the ceiling is higher)"))
    print(f"freshness of 5-minute aggregates        first row p50 {_s(_pct(f1, .5))}, p95 {_s(_pct(f1, .95))}; "
          f"window complete p50 {_s(_pct(fc, .5))}, p95 {_s(_pct(fc, .95))}  ({len(windows)} windows)")
    best = max((s.processed for s in steps), default=0.0)
    print(f"job throughput seen (best step)         {best:,.0f} events/s committed")
    print(f"baseline: producer alone, full speed    {base['rate']:,.0f} events/s (load average {base['load']:.1f})")
    ratio = sustained / base["rate"] if base["rate"] else float("nan")
    print(f"ratio sustained / baseline              {ratio:.2f}x")
    ok_rate, ok_fresh = sustained >= 20_000, bool(f1) and _pct(f1, .95) < 15
    print(f"targets: >= 20,000 ev/s {'met' if ok_rate else 'NOT met'}; p95 freshness < 15 s "
          f"{'met' if ok_fresh else 'NOT met' if f1 else 'not measured (no window ended during the run)'}")
    print(f"load average (1 min) during the steps   mean {_mean([x for s in steps for x in s.load]):.1f}, "
          f"max {max((x for s in steps for x in s.load), default=float('nan')):.1f} on {os.cpu_count()} cores")


def serve_child(prefix: str) -> int:
    """The ClickHouse service (loader + API) on the bench's own aggregate topics, group and chDB."""
    import logging

    from clickhouse.loader import LoaderOptions
    from clickhouse.schema import SchemaOptions
    from clickhouse.service import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    names = Names(prefix)
    settings = Settings.from_env()
    Service(settings, SchemaOptions(), LoaderOptions(group_id=names.loader_group, topics=names.aggregates),
            host="127.0.0.1").serve_forever()
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="10000,25000,50000", help="comma-separated events/s, lowest first")
    ap.add_argument("--minutes", type=float, default=5.0, help="length of each step (default: 5)")
    ap.add_argument("--baseline-seconds", type=float, default=15.0)
    ap.add_argument("--warmup-timeout", type=float, default=600.0,
                    help="seconds the job may take to start and commit its first checkpoint (default: 600)")
    ap.add_argument("--workers", type=int, default=2, help="producer processes (default: 2)")
    ap.add_argument("--port", type=int, default=18051, help="the bench's own dashboard/API port")
    ap.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR (logs, lake, chDB)")
    ap.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        return serve_child(args.prefix)
    rates = sorted(int(r) for r in args.rates.split(","))

    from local_services import manage

    # The project's own Kafka (started if it is not running), under the usual DATA_DIR; everything else the
    # bench creates lives in its own temporary DATA_DIR.
    manage.start(Settings.from_env(), ["kafka"])
    data_dir = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    settings = replace(Settings.from_env(), data_dir=data_dir, paimon_warehouse=(data_dir / "warehouse").as_uri(),
                       clickhouse_url=None, dashboard_port=args.port)
    (data_dir / "warehouse").mkdir()
    from local_services.process import require_port_free

    require_port_free("bench dashboard", args.port)
    names = Names()
    say(f"bench run {names.prefix}: DATA_DIR {data_dir}, Kafka {settings.kafka_bootstrap}, port {args.port}; "
        f"load average now {os.getloadavg()[0]:.1f}")
    # SIGTERM ends the run like Ctrl-C, so the finally block stops everything.
    signal.signal(signal.SIGTERM, _interrupt)
    p = Pipeline(settings, names)
    steps: list[Step] = []
    try:
        p.create_topics()
        base = baseline(p, args.baseline_seconds, data_dir)
        p.start_service()
        p.start_job()
        warm_up(p, data_dir, args.warmup_timeout)
        fresh = Freshness(not_before=time.time())
        for rate in rates:
            step = Step(rate)
            steps.append(step)
            run_step(p, step, args.minutes * 60, data_dir, args.workers, fresh)
            if step.failure:
                break
        report(steps, base, args.minutes)
        return 0
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        p.stop()
        p.delete_topics()
        if args.keep:
            say(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
        say("stopped the producer, the Flink job and the ClickHouse service; deleted the bench topics")


if __name__ == "__main__":
    from base.errors import UserError

    try:
        sys.exit(main())
    except UserError as exc:  # an unreachable service or a busy port: one line naming what to fix
        sys.exit(f"bench_e2e: {exc}")
