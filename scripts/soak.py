"""Soak run: the producer at a steady rate into the streaming job for --minutes, then the figures.

    .venv/bin/python -m scripts.soak --minutes 10 --rate 2000
    .venv/bin/python -m scripts.soak --minutes 30 --rate 25000 --sim-rate 1500 --maintenance   # see bench_maintenance

With --sim-rate the simulated clock runs faster than the wall clock (rate / sim-rate times), so 2-hour slots
close during the run; with --maintenance `pipeline lake maintain` runs beside the job (its own process).
At the end: data files, snapshots, the closed slots' layout, the job's and the maintenance's CPU per event,
and a full-scan and a one-user query on the table as it was left (--result-json writes them all).

Runs on its own topics, warehouse and checkpoint directory (under --work-dir, default a temporary directory),
against the running local Kafka. Reports, every --every seconds and at the end: RSS (/proc) of the job
(driver + mini-cluster JVM) and of the producer, Kafka lag of the job's consumer group (offsets are committed
on checkpoints), checkpoint durations (from the Flink log lines of this job), Paimon data files and snapshots.
At the end it waits for the job to catch up, then checks that the lake holds exactly the acknowledged events
and that the job's RSS grew by at most --rss-bound (a fraction of its RSS after warm-up).
Stops everything it started, by PID. Exit code 0 if both checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from base.config import PROJECT_ROOT, Settings
from flink_job.job_config import JobConfig
from local_services.kafka import group_lag
from scripts import faults

_COMPLETED = re.compile(r"Completed checkpoint (\d+) for job ([0-9a-f]{32}) .*?checkpointDuration=(\d+) ms")
MIB = 1024 * 1024


def checkpoint_durations(job_id: str | None, log_dir: Path) -> list[int]:
    """Durations of this job's completed checkpoints, from its own Flink log (scripts.faults.start_job)."""
    if not job_id:
        return []
    text = "".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log*")))
    return [int(m.group(3)) for m in _COMPLETED.finditer(text) if m.group(2) == job_id]


def paimon_files(warehouse: Path) -> tuple[int, int]:
    table = warehouse / "lake.db" / "user_actions"
    return len(list(table.glob("event_date=*/event_hour=*/bucket-*/*.parquet"))), \
        len(list((table / "snapshot").glob("snapshot-*")))


def lake_count(settings: Settings) -> int:
    from pypaimon.catalog.catalog_exception import TableNotExistException

    from lakehouse import queries
    from lakehouse.catalog import open_catalog

    try:
        table = open_catalog(settings).get_table("lake.user_actions")
    except TableNotExistException:  # the job has not created it yet
        return 0
    return sum(f.row_count for s in queries.plan(table) for f in s.files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long the producer runs (default: 10)")
    p.add_argument("--rate", type=int, default=2000, help="events per second (default: 2000)")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples (default: 30)")
    p.add_argument("--checkpoint-interval", default="10 s")
    p.add_argument("--rss-bound", type=float, default=1.0,
                   help="allowed RSS growth of the job after warm-up, as a fraction (default: 1.0)")
    p.add_argument("--work-dir", type=Path, help="where the warehouse and checkpoints go (default: a temp dir)")
    p.add_argument("--sim-rate", type=float, help="events per simulated second (event time runs rate/sim-rate "
                   "times faster than the wall clock; default: real time)")
    p.add_argument("--maintenance", action="store_true", help="run `pipeline lake maintain` beside the job")
    p.add_argument("--maintain-interval", type=float, default=60.0, help="its --interval (default: 60 s)")
    p.add_argument("--result-json", type=Path, help="write the figures here")
    args = p.parse_args(argv)

    base = Settings.from_env()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = replace(base, paimon_warehouse=f"file://{work}/wh", data_dir=work / "data")
    name = f"soak_{uuid.uuid4().hex[:8]}"
    job = JobConfig(source_topic=f"{name}_src", user_aggregations_topic=f"{name}_ua",
                    user_action_aggregations_topic=f"{name}_uaa", realtime_aggregations_topic=f"{name}_uar",
                    group_id=f"{name}_job", startup_mode="earliest-offset", parallelism=2,
                    checkpoint_interval=args.checkpoint_interval,
                    checkpoint_dir=(work / "checkpoints").as_uri())
    from local_services import kafka

    kafka.ensure_topics(base, {job.source_topic: base.kafka_partitions, **{t: 2 for t in job.aggregate_topics}})
    print(f"soak: {args.minutes} min at {args.rate} ev/s into {job.source_topic}; work dir {work}", flush=True)

    job_proc = faults.start_job(settings, job, work / "job.log")
    summary = work / "produce.json"
    timing = []
    if args.sim_rate:  # simulated time ends about now, so no event is in the future
        speedup = args.rate / args.sim_rate
        timing = ["--sim-rate", str(args.sim_rate),
                  "--start-time", str(int((time.time() - args.minutes * 60 * speedup * 1.2) * 1000))]
    producer = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "produce", "--topic", job.source_topic, "--rate", str(args.rate),
         "--duration", str(int(args.minutes * 60)), "--users", "1000000", "--backend", "confluent", "--quiet",
         "--summary-json", str(summary), *timing], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    maintainer = None
    if args.maintenance:
        with open(work / "maintain.log", "ab") as out:
            maintainer = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "--warehouse", settings.paimon_warehouse, "lake", "maintain",
                 "--interval", str(args.maintain_interval), "--no-restate"], cwd=PROJECT_ROOT, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **settings.to_env()})
    samples: list[dict] = []
    job_id = None
    cpu = CpuMeter(job_proc.pid, maintainer.pid if maintainer else None, settings)
    try:
        started = time.monotonic()
        while producer.poll() is None:
            time.sleep(min(args.every, 5) if not samples else args.every)
            if not job_proc.alive():
                print(f"soak: the job exited (rc {job_proc.popen.returncode}); log {job_proc.log}")
                return 1
            ids = [d.name for d in (work / "checkpoints").glob("*") if d.is_dir()]
            job_id = ids[0] if ids else job_id
            files, snapshots = paimon_files(work / "wh")
            sample = {"t_s": round(time.monotonic() - started),
                      "job_rss_mib": faults.tree_rss_bytes(job_proc.pid) / MIB,
                      "producer_rss_mib": faults.tree_rss_bytes(producer.pid) / MIB,
                      "lag": group_lag(base, job.source_topic, job.group_id),
                      "checkpoints": len(checkpoint_durations(job_id, faults.flink_log_dir(job_proc.log))),
                      "files": files,
                      "snapshots": snapshots}
            samples.append(sample)
            cpu.sample(sample["t_s"])
            print("  t={t_s:>5}s  job RSS {job_rss_mib:7.0f} MiB  producer RSS {producer_rss_mib:5.0f} MiB  "
                  "lag {lag:>8}  checkpoints {checkpoints:>4}  data files {files:>5}  snapshots {snapshots:>4}"
                  .format(**sample), flush=True)
        produced = json.loads(summary.read_text()) if summary.exists() else {}
        acked = produced.get("acked", 0)
        # catch-up: lag 0 and the lake holds every acknowledged event (committed on a checkpoint)
        deadline = time.monotonic() + 180
        rows = lake_count(settings)
        while time.monotonic() < deadline and rows < acked:
            time.sleep(5)
            rows = lake_count(settings)
        final_lag = group_lag(base, job.source_topic, job.group_id)
        end_rss = faults.tree_rss_bytes(job_proc.pid) / MIB
        cpu.sample(round(time.monotonic() - started))
        if maintainer is not None:  # one more pass over the slots that closed at the end
            time.sleep(args.maintain_interval * 1.5)
    finally:
        if producer.poll() is None:
            producer.kill()
        job_proc.kill9()
        if maintainer is not None and maintainer.poll() is None:
            os.killpg(maintainer.pid, signal.SIGTERM)
            maintainer.wait(60)
    durations = checkpoint_durations(job_id, faults.flink_log_dir(job_proc.log))
    # warm-up ends with the first Paimon snapshot (first checkpoint): before it the JVM is still starting
    committed = [s for s in samples if s["snapshots"] > 0] or samples[-1:]
    warm = committed[0]["job_rss_mib"] if committed else 0.0
    growth = (end_rss - warm) / warm if warm else 0.0
    files, snapshots = paimon_files(work / "wh")
    print(f"produced: {produced.get('sent', 0):,} sent, {acked:,} acknowledged, {produced.get('failed', 0)} failed "
          f"({produced.get('acked_per_s', 0):,.0f} ev/s)")
    print(f"lake.user_actions rows: {rows:,} (acknowledged {acked:,}); final Kafka lag {final_lag}")
    print(f"job RSS: {samples[0]['job_rss_mib'] if samples else 0:.0f} MiB at start, {warm:.0f} MiB after warm-up, "
          f"{end_rss:.0f} MiB at end: growth {growth:+.1%} (bound {args.rss_bound:.0%}); producer RSS max "
          f"{max((s['producer_rss_mib'] for s in samples), default=0):.0f} MiB")
    if durations:
        print(f"checkpoints: {len(durations)} completed, duration ms min {min(durations)} median "
              f"{statistics.median(durations):.0f} max {max(durations)}")
    print(f"Paimon: {files} data files, {snapshots} snapshots in lake.user_actions")
    ok = rows == acked and acked > 0 and growth <= args.rss_bound
    layout = lake_layout(settings)
    costs = cpu.per_event(samples)
    print(f"closed slots: {layout['closed_slots']}, {layout['closed_files']} files, average "
          f"{layout['closed_avg_file_mb']:.2f} MB, at most {layout['closed_max_files_per_bucket']} per bucket")
    print(f"CPU per event (steady part): job {costs['job_us']:.1f} us, maintenance {costs['maintenance_us']:.1f} us")
    print(f"queries: full scan of the closed slots {layout['full_scan_s']:.2f} s ({layout['full_scan_rows']:,} rows), "
          f"one user {layout['one_user_s']:.3f} s")
    if args.result_json:
        args.result_json.write_text(json.dumps({
            "maintenance": args.maintenance, "minutes": args.minutes, "rate": args.rate, "sim_rate": args.sim_rate,
            "acked": acked, "rows": rows, "files": files, "snapshots": snapshots, "ok": ok,
            "max_snapshots": max((s["snapshots"] for s in samples), default=0),
            "job_rss_end_mib": end_rss, **costs, **layout}, indent=2))
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


class CpuMeter:
    """CPU seconds of the job's process tree and of the maintenance's, sampled with the lake's row count."""

    def __init__(self, job_pid: int, maintenance_pid: int | None, settings: Settings) -> None:
        self.pids = (job_pid, maintenance_pid)
        self.settings = settings
        self.points: list[tuple[int, float, float, int]] = []  # (t_s, job cpu s, maintenance cpu s, lake rows)

    def sample(self, t_s: int) -> None:
        job, maint = (faults.tree_cpu_seconds(p) if p else 0.0 for p in self.pids)
        self.points.append((t_s, job, maint, lake_count(self.settings)))

    def per_event(self, samples: list[dict]) -> dict:
        """Microseconds per lake event from the first sample after warm-up (first snapshot) to the last."""
        warm = next((i for i, s in enumerate(samples) if s["snapshots"] > 0), 0)
        points = self.points[warm:] if len(self.points) > warm + 1 else self.points
        if len(points) < 2 or points[-1][3] <= points[0][3]:
            return {"job_us": 0.0, "maintenance_us": 0.0, "steady_events": 0}
        events = points[-1][3] - points[0][3]
        return {"job_us": (points[-1][1] - points[0][1]) * 1e6 / events,
                "maintenance_us": (points[-1][2] - points[0][2]) * 1e6 / events, "steady_events": events}


def lake_layout(settings: Settings) -> dict:
    """Closed 2-hour slots' files, and a full scan of them and a one-user query, timed (pypaimon)."""
    from datetime import date

    from lakehouse import queries
    from lakehouse.catalog import open_table
    from lakehouse.health import table_health

    table = open_table(settings, "user_actions")
    closed = [p for p in table_health(table).partitions if p.closed]
    files = sum(p.files for p in closed)
    out = {"closed_slots": len(closed), "closed_files": files,
           "closed_avg_file_mb": sum(p.bytes for p in closed) / files / MIB if files else 0.0,
           "closed_max_files_per_bucket": max((p.max_files_per_bucket for p in closed), default=0),
           "full_scan_s": 0.0, "full_scan_rows": 0, "one_user_s": 0.0}
    if not closed:
        return out
    slots = {tuple(p.values) for p in closed}
    t0 = time.perf_counter()
    splits = [s for s in queries.plan(table) if tuple(s.partition.values) in slots]
    rows = queries.read(table, splits, columns=["user_id", "action_type", "timestamp"])
    out["full_scan_s"], out["full_scan_rows"] = time.perf_counter() - t0, rows.num_rows
    first, last = date.fromisoformat(min(s[0] for s in slots)), date.fromisoformat(max(s[0] for s in slots))
    times = []
    for _ in range(3):  # user 1: the most active user of the Zipf generator
        t0 = time.perf_counter()
        queries.user_events(table, 1, first, last)
        times.append(time.perf_counter() - t0)
    out["one_user_s"] = statistics.median(times)
    return out


if __name__ == "__main__":
    sys.exit(main())
