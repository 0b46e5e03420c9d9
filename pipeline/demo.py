"""``./run.sh``: the whole pipeline on this machine, with a compact live status and a summary.

Starts (or reuses) Kafka and, with --s3, the S3 server; starts the ClickHouse service (loader,
dashboard, API), the Flink job (local mini-cluster, or a standalone cluster with --flink-cluster)
and the producer. Ctrl-C, or the end of --duration, stops what it started in reverse order after
the job has drained, then prints the summary. Exit 0 only if every produced event is in Paimon
(raw or rejected) and everything it started was stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from base.config import PROJECT_ROOT, Settings
from base.contract import AGGREGATE_TOPICS, RAW_TOPIC
from base.errors import UserError
from local_services import kafka
from local_services.process import ManagedProcess

STATUS_EVERY_S = 5.0
SLOT_MS = 2 * 3600 * 1000  # the lake's 2-hour slot
LOADER_DRAIN_TIMEOUT_S = 120.0  # at drain, the longest wait for the ClickHouse loader to load the last aggregates

# `./run.sh --help`: what the script does, set-up included (pipeline/cli.py's run_sh starts the demo under that name).
RUN_SH_DESCRIPTION = (
    "The whole pipeline on this machine. Sets up what it needs first (scripts/setup.sh: .venv, the JVM jars, the job's "
    "format, the S3 server; idempotent, a second run takes about a second), then starts (or reuses) Kafka, the "
    "ClickHouse service (loader, dashboard and JSON API on DASHBOARD_PORT, the lake maintenance), the Flink job and "
    "the producer, and prints a live status line. Ctrl-C (or SIGTERM, or the end of --duration) stops the producer, "
    "waits until the job has written every event to Paimon and the loader has loaded every aggregate, stops what it "
    "started in reverse order and prints the summary. Exit 0 only if every produced event is in Paimon (raw or "
    "rejected) and everything it started was stopped. Environment variables as for `pipeline` (.venv/bin/pipeline "
    "--help), e.g. LOG_LEVEL=debug ./run.sh.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="bounded demo: produce for this long, drain, print the summary and exit "
                        "(default: run until Ctrl-C)")
    p.add_argument("--rate", type=int, default=2000, metavar="EV_PER_S",
                   help="producer events per second (default: 2000, light for a 2-core machine)")
    p.add_argument("--speedup", type=float, metavar="X",
                   help="simulated time runs X times faster than the wall clock, ending at now, so windows "
                        "close within the demo (default: 150 with --duration, so 2-hour windows close "
                        "too; 1 = real time without --duration)")
    p.add_argument("--invalid-fraction", type=float, default=0.001, metavar="F",
                   help="share of malformed records, to show the rejected table (default: 0.001)")
    p.add_argument("--s3", action="store_true", help="keep the Paimon warehouse on the local S3 server")
    p.add_argument("--flink-cluster", action="store_true",
                   help="start a standalone Flink cluster and submit with `flink run` (web UI on FLINK_REST_PORT)")
    p.add_argument("--no-maintenance", action="store_true",
                   help="do not run the lake maintenance (compaction of closed slots, snapshot expiry, orphan "
                        "cleanup, restatement) in the ClickHouse service")
    p.add_argument("--drain-timeout", type=float, default=240.0, metavar="SECONDS",
                   help="how long to wait for the job to write every produced event (default: 240)")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON here")


@dataclass
class Summary:
    produced: int = 0
    producer_failed: int = 0
    backlog: int = 0  # events already in Kafka but not yet consumed by the job when the demo started
    raw_rows: int = 0  # new rows in the lake during this run
    rejected_rows: int = 0
    aggregate_rows: dict[str, int] = field(default_factory=dict)
    freshness_s: float | None = None
    speedup: float = 1.0
    drained: bool = False
    # Aggregate records not loaded into ClickHouse at the end: 0 = all; -1 = not known; None = no loader to wait for.
    aggregates_left: int | None = None
    # The final restatement of the slots the run closed: (slots, keys changed), or a line saying why it failed;
    # None when it did not run (maintenance off, or a ClickHouse service this demo did not start).
    restated: tuple[int, int] | str | None = None

    @property
    def balanced(self) -> bool:
        return self.produced + self.backlog == self.raw_rows + self.rejected_rows

    @property
    def ok(self) -> bool:
        return self.drained and self.producer_failed == 0 and self.balanced

    def lines(self) -> list[str]:
        rows: list[tuple[str, str]] = [
            ("events produced (acknowledged)", f"{self.produced:,}"
             + (f"  ({self.producer_failed:,} NOT acknowledged)" if self.producer_failed else "")),
            *([("earlier backlog consumed", f"{self.backlog:,}")] if self.backlog else []),
            ("new raw rows in Paimon", f"{self.raw_rows:,}"),
            ("new rejected rows in Paimon", f"{self.rejected_rows:,}"),
            ("produced = raw + rejected", "yes" if self.balanced else "NO"),
            *((f"analytics.{table}", f"{n:,} rows") for table, n in self.aggregate_rows.items()),
            *([("aggregates loaded into ClickHouse", "yes" if self.aggregates_left == 0 else "NO" + (
                f" ({self.aggregates_left:,} records left)" if self.aggregates_left > 0 else ""))]
              if self.aggregates_left is not None else []),
        ]
        if isinstance(self.restated, tuple):
            slots, keys = self.restated
            rows.append(("closed slots restated", f"{slots} (ClickHouse = lake; {keys:,} keys changed, late events "
                                                  "included)" if slots else "none closed in this run"))
        elif self.restated is not None:
            rows.append(("closed slots restated", f"NO: {self.restated}"))
        if self.freshness_s is not None and self.speedup == 1.0:
            rows.append(("freshness of 5-minute aggregates", f"{self.freshness_s:.1f} s (now - latest window_end)"))
        elif self.freshness_s is not None:
            rows.append(("freshness", f"n/a: simulated time ran {self.speedup:g}x the wall clock "
                                      "(run without --speedup for real-time freshness)"))
        width = max(len(label) for label, _ in rows) + 2
        return ["summary", *(f"  {label:<{width}}{value}" for label, value in rows)]


def paimon_counts(settings: Settings) -> tuple[int, int]:
    """(raw rows, rejected rows) from Paimon file metadata; (0, 0) before the job created the tables."""
    from lakehouse import queries
    from lakehouse.catalog import open_table
    from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED

    counts = []
    for table in (USER_ACTIONS, USER_ACTIONS_REJECTED):
        try:
            counts.append(queries.ScanStats.of(queries.plan(open_table(settings, table.name))).rows)
        except UserError:
            counts.append(0)
    return counts[0], counts[1]


class Demo:
    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.stop_order: list[tuple[str, object]] = []  # (label, stop callable), stopped in reverse
        self.producer = ManagedProcess("producer", settings.run_dir, settings.logs_dir)
        self.summary_path = settings.data_dir / "demo" / "producer-summary.json"
        self.started_at = time.monotonic()
        self.summary: Summary | None = None
        self.history_start_ms = int(time.time() * 1000)  # event time of the run's first event (simulated: earlier)
        self.speedup = args.speedup or (150.0 if args.duration else 1.0)
        if self.speedup != 1.0 and not args.duration:
            raise UserError("--speedup needs --duration: simulated time ends at now when the run ends, and without "
                            "an end it would run ahead of the wall clock")

    def say(self, line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        from clickhouse import service_process
        from local_services import s3

        if not kafka.healthy(self.settings):
            self.say(kafka.start(self.settings))
            self.stop_order.append(("kafka", lambda: kafka.stop(self.settings)))
        else:
            self.say(f"kafka: using the broker on {self.settings.kafka_bootstrap}")
        created = kafka.ensure_topics(self.settings)
        if created:
            self.say(f"kafka: created topics {', '.join(created)}")
        if self.args.s3:
            if not s3.healthy(self.settings):
                self.say(s3.start(self.settings))
                self.stop_order.append(("s3", lambda: s3.stop(self.settings)))
            s3.ensure_bucket(self.settings)

        if not service_process.healthy(self.settings):
            self.say(service_process.start(self.settings, self.maintenance_args()))
            if not self.args.no_maintenance:
                # Stops run in reverse: this one after the service has stopped (embedded chDB has one owner) and
                # before S3 or Kafka stop.
                self.stop_order.append(("final restatement", self.restate_closed_slots))
            self.stop_order.append(("clickhouse service", lambda: service_process.stop(self.settings)))
            if not self.args.no_maintenance:
                self.say(f"lake maintenance: in the clickhouse service, every {self.maintenance_interval():.0f} s "
                         "(compacts closed slots, expires snapshots, removes orphans, restates ClickHouse)")
        else:
            self.say(f"clickhouse service: using the one on {service_process.url(self.settings)} "
                     "(lake maintenance only if it was started with it)")

        from flink_job import launcher
        from flink_job.job_config import JobConfig

        # Baseline for the invariant: whatever the job has not consumed yet (an earlier run's backlog)
        # plus what this run produces must all arrive in the lake.
        self.backlog = kafka.group_lag(self.settings, RAW_TOPIC, JobConfig().group_id)
        self.lake_counts_before = paimon_counts(self.settings)
        if self.backlog:
            self.say(f"the job has {self.backlog:,} earlier events to catch up on first")
        self.say(launcher.start(self.settings, cluster=self.args.flink_cluster))
        self.stop_order.append(("flink job", lambda: launcher.stop(self.settings, cluster=self.args.flink_cluster)))

        self.raw_offsets_before = kafka.end_offsets(self.settings, RAW_TOPIC)
        self.summary_path.parent.mkdir(parents=True, exist_ok=True)
        self.summary_path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "pipeline", "produce",
                "--backend", "confluent", "--rate", str(self.args.rate),
                "--invalid-fraction", str(self.args.invalid_fraction),
                "--summary-json", str(self.summary_path), "--quiet"]
        speedup = self.speedup
        if self.args.duration:
            argv += ["--duration", str(self.args.duration)]
        if speedup != 1.0:
            # Simulated time ends at "now" when the bounded run ends: it never runs ahead of the wall clock (the
            # records' Kafka time is the simulated one, and Kafka and the job refuse times far in the future).
            from producer.generator import start_for

            end_ms = int((time.time() + self.args.duration) * 1000)
            start_ms = start_for(end_ms, int(self.args.rate * self.args.duration), self.args.rate / speedup)
            self.history_start_ms = start_ms
            argv += ["--sim-rate", str(self.args.rate / speedup), "--start-time", str(start_ms)]
        # the whole environment passed on (no variable read here), the settings on top
        pid = self.producer.start(argv, env={**os.environ, **self.settings.to_env()}, cwd=PROJECT_ROOT)
        self.stop_order.append(("producer", self.stop_producer))
        self.say(f"producer started (pid {pid}) at {self.args.rate:,} events/s; log {self.producer.log_file}")
        self.print_where_to_look(service_process.url(self.settings))

    def maintenance_interval(self) -> float:
        # Simulated time runs `speedup` times faster: a 2-hour slot closes every 7200/speedup seconds.
        return 300.0 if self.speedup <= 1.0 else max(10.0, min(300.0, 7200.0 / self.speedup / 2))

    def maintenance_args(self) -> list[str]:
        if self.args.no_maintenance:
            return []
        return ["--with", f"lake-maintenance --interval {self.maintenance_interval():.0f}"]

    def print_where_to_look(self, dashboard: str) -> None:
        s = self.settings
        lines = [
            f"dashboard      {dashboard}/   (JSON API: {dashboard}/api/status, {dashboard}/openapi.json)",
        ]
        if self.args.flink_cluster:
            lines.append(f"Flink web UI   http://127.0.0.1:{s.flink_rest_port}/")
        lines += [
            f"Paimon         .venv/bin/pipeline{' --warehouse ' + s.paimon_warehouse if self.args.s3 else ''}"
            " lake describe",
            "               .venv/bin/pipeline lake query partitions",
            "ClickHouse     .venv/bin/pipeline clickhouse sql \"SELECT count() FROM "
            "analytics.user_aggregations_realtime FINAL\"",
            f"logs           {s.logs_dir}/",
            "stop           Ctrl-C" + (f" (or wait {self.args.duration:.0f} s)" if self.args.duration else ""),
        ]
        for line in lines:
            print("  " + line, flush=True)

    # -- run -----------------------------------------------------------------------------------
    def status_line(self) -> str:
        from clickhouse import service_process

        produced = kafka.end_offsets(self.settings, RAW_TOPIC) - self.raw_offsets_before
        raw, rejected = (n - b for n, b in zip(paimon_counts(self.settings), self.lake_counts_before, strict=True))
        status = service_process.fetch_status(self.settings) or {}
        rows = _aggregate_rows(status)
        fresh = _realtime_freshness(status)
        agg = " ".join(f"{t.split('_', 1)[1]}={n:,}" for t, n in rows.items())
        return (f"produced {produced:,} | paimon +raw {raw:,} +rejected {rejected:,} | clickhouse {agg or '-'}"
                + (f" | freshness {fresh:.0f}s" if isinstance(fresh, (int, float)) and self.speedup == 1.0 else ""))

    def wait(self) -> None:
        deadline = time.monotonic() + self.args.duration if self.args.duration else None
        next_status = time.monotonic() + STATUS_EVERY_S
        while True:
            if self.producer.pid() is None:
                return  # the producer finished (--duration) or died: drain and summarise
            if deadline is not None and time.monotonic() > deadline + 30:
                return
            if time.monotonic() >= next_status:
                try:
                    self.say(self.status_line())
                except Exception as exc:  # a status hiccup must not end the demo
                    self.say(f"status unavailable: {exc}")
                next_status = time.monotonic() + STATUS_EVERY_S
            time.sleep(0.5)

    def stop_producer(self) -> str:
        pid = self.producer.pid()
        if pid is not None:
            import os

            os.kill(pid, signal.SIGINT)  # the producer flushes in-flight records and writes its summary
            for _ in range(120):
                if self.producer.pid() is None:
                    break
                time.sleep(0.5)
            self.producer.stop()
        return "producer stopped"

    # -- finish --------------------------------------------------------------------------------
    def drain_and_summarise(self) -> Summary:
        from clickhouse import service_process

        self.stop_producer()
        summary = self.summary = Summary(speedup=self.speedup)
        try:
            produced = json.loads(self.summary_path.read_text())
            summary.produced = int(produced.get("acked", 0))
            summary.producer_failed = int(produced.get("failed", 0)) + int(produced.get("unacked", 0) or 0)
        except (FileNotFoundError, ValueError):
            self.say("producer wrote no summary; counting the raw topic's new offsets instead")
            summary.produced = kafka.end_offsets(self.settings, RAW_TOPIC) - self.raw_offsets_before
        summary.backlog = self.backlog
        expected = summary.produced + summary.backlog
        self.say(f"draining: waiting for the job to write {expected:,} events to Paimon")
        deadline = time.monotonic() + self.args.drain_timeout
        raw_before, rejected_before = self.lake_counts_before
        while True:
            raw, rejected = paimon_counts(self.settings)
            summary.raw_rows, summary.rejected_rows = raw - raw_before, rejected - rejected_before
            if summary.raw_rows + summary.rejected_rows >= expected:
                summary.drained = True
                break
            if time.monotonic() > deadline:
                self.say("drain timed out: the job did not write every event in time; see its log")
                break
            time.sleep(2)
        summary.aggregates_left = self.wait_for_loader()
        status = service_process.fetch_status(self.settings) or {}
        summary.aggregate_rows = _aggregate_rows(status)
        summary.freshness_s = _realtime_freshness(status)
        return summary

    def wait_for_loader(self) -> int | None:
        """Until the ClickHouse loader has inserted (and committed) every aggregate record in Kafka, i.e. every
        window the job has closed by now, so the summary and ClickHouse are complete up to the job's watermark.
        Returns 0 when caught up; at the timeout the records still not loaded (-1 if not known); None without a
        loader."""
        from clickhouse import service_process
        from clickhouse.loader import DEFAULT_GROUP

        loader = (service_process.fetch_status(self.settings) or {}).get("loader") or {}
        if not loader.get("running"):
            self.say("clickhouse: no loader runs in the service; not waiting for the aggregates")
            return None
        group = loader.get("group_id") or DEFAULT_GROUP
        self.say(f"draining: waiting for the clickhouse loader (group {group}) to load every aggregate record")
        deadline = time.monotonic() + LOADER_DRAIN_TIMEOUT_S
        last_written, left, problem = -1, None, ""
        while True:
            try:
                written = sum(kafka.end_offsets(self.settings, t) for t in AGGREGATE_TOPICS)
                left = sum(kafka.group_lag(self.settings, t, group) for t in AGGREGATE_TOPICS)
                problem = ""
            except Exception as exc:  # a broker hiccup: look again within the same deadline
                written, left, problem = -1, None, f" ({exc})"
            # Caught up, and the job wrote nothing since the last look: a window it fired a moment ago (its
            # watermark is periodic) is not missed.
            if left == 0 and written == last_written:
                self.say(f"clickhouse: the loader has loaded all {written:,} aggregate records in Kafka")
                return 0
            if time.monotonic() > deadline:
                why = ("the aggregate topics were still being written" if left == 0 else
                       f"the loader still had {left if left is not None else 'an unknown number of'} aggregate "
                       "records to load")
                log = service_process.process(self.settings).log_file
                self.say(f"clickhouse: gave up after {LOADER_DRAIN_TIMEOUT_S:.0f} s: {why}{problem}; the newest "
                         f"windows may be incomplete in ClickHouse; see {log}")
                return left or -1  # -1: not known to be caught up
            last_written = written
            time.sleep(1)

    def restate_closed_slots(self) -> str:
        """What lake maintenance does once a slot has closed, done now for the slots this run closed: their
        aggregates in ClickHouse made equal to the lake, events the windows dropped as late included. Its passes
        run on an interval (and at --speedup a slot closes every few seconds), so the last closed slots may not
        have had their turn. Only after a drain that loaded every aggregate (otherwise the stop is an abort)."""
        from lakehouse.catalog import open_table
        from lakehouse.health import table_health
        from lakehouse.restate import restate_slot
        from lakehouse.tables import USER_ACTIONS

        if self.summary is None or not self.summary.drained or self.summary.aggregates_left != 0:
            return "final restatement skipped: the run did not drain completely"
        started = time.monotonic()
        try:
            table = open_table(self.settings, USER_ACTIONS.name)
            health = table_health(table, 0)
            slots = sorted(p.slot_end_ms - SLOT_MS for p in health.partitions
                           if p.closed and p.slot_end_ms and p.slot_end_ms > self.history_start_ms)
            client = _clickhouse_client(self.settings)
            try:
                results = [restate_slot(table, client, slot) for slot in slots]
            finally:
                client.close()
        except Exception as exc:  # said in the summary; the rest of the stop goes on
            self.summary.restated = f"{exc}"
            return f"final restatement failed: {exc}; run `pipeline lake restate` over the run's closed slots"
        self.summary.restated = (len(results), sum(r.changed for r in results))
        return (f"restated the {len(results)} slots this run closed in {time.monotonic() - started:.1f} s "
                f"({self.summary.restated[1]:,} keys changed)")

    def stop_all(self) -> list[str]:
        """Stop what the demo started, in reverse order; the labels of those whose stop failed (each said in a
        line), so that the exit code can say a process may have been left running."""
        failed = []
        for label, stop in reversed(self.stop_order):
            try:
                self.say(stop())
            except Exception as exc:
                self.say(f"stopping {label} failed: {exc}")
                failed.append(label)
        self.stop_order.clear()
        return failed


def _clickhouse_client(settings: Settings):
    from clickhouse.store import connect

    return connect(settings.clickhouse_dsn)


def _aggregate_rows(status: dict) -> dict[str, int]:
    """Rows per aggregate table from the ClickHouse service's /api/status."""
    rows = {t.get("table"): int(t.get("rows", 0)) for t in status.get("tables") or [] if isinstance(t, dict)}
    return {name: rows[name] for name in AGGREGATE_TOPICS if name in rows}


def _realtime_freshness(status: dict) -> float | None:
    for t in status.get("tables") or []:
        if isinstance(t, dict) and t.get("table") == "user_aggregations_realtime":
            fresh = t.get("freshness_seconds")
            return float(fresh) if isinstance(fresh, (int, float)) else None
    return None


def _stop_like_ctrl_c(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, settings: Settings) -> int:
    # `kill PID` (SIGTERM) stops the demo as Ctrl-C does: drain, stop what it started, summary. Without this
    # it would die and leave Kafka, the job, ClickHouse and the producer running. SIGINT is set explicitly
    # because a shell that starts the demo in the background (no job control) passes SIGINT on as ignored.
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be a positive number of seconds")
    if args.rate <= 0:
        raise UserError("--rate must be a positive number of events per second")
    if not 0 <= args.invalid_fraction < 1:
        raise UserError("--invalid-fraction must be in [0, 1)")
    if args.s3 and not settings.warehouse_is_s3:
        settings = replace(settings, paimon_warehouse=f"s3://{settings.s3_bucket}/warehouse")
    demo = Demo(settings, args)
    interrupted = False
    try:
        demo.start()
        demo.wait()
    except KeyboardInterrupt:
        interrupted = True
        print()
        demo.say("Ctrl-C (or SIGTERM): stopping the producer, draining the job, then stopping what this demo "
                 "started")
    except BaseException:
        demo.stop_all()
        raise
    try:
        summary = demo.drain_and_summarise()
    except KeyboardInterrupt:
        demo.stop_all()
        return 130
    stop_failed = demo.stop_all()
    for line in summary.lines():
        print(line, flush=True)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.__dict__ | {"ok": summary.ok}, indent=2) + "\n")
    if interrupted:
        demo.say("stopped by Ctrl-C or SIGTERM")
    if stop_failed:
        # A stop that failed may have left a process running (and its port taken): not a clean exit.
        demo.say(f"exit 1: stopping {', '.join(stop_failed)} failed (see above); check for processes left running")
        return 1
    return 0 if summary.ok else 1
