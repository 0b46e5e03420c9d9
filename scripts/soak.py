"""Soak run: the producer at a steady rate into the streaming job for --minutes, then the figures.

    .venv/bin/python -m scripts.soak --minutes 10 --rate 2000

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
import re
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
    from lakehouse import queries
    from lakehouse.catalog import open_catalog

    table = open_catalog(settings).get_table("lake.user_actions")
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
    producer = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "produce", "--topic", job.source_topic, "--rate", str(args.rate),
         "--duration", str(int(args.minutes * 60)), "--users", "1000000", "--backend", "confluent", "--quiet",
         "--summary-json", str(summary)], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    samples: list[dict] = []
    job_id = None
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
    finally:
        if producer.poll() is None:
            producer.kill()
        job_proc.kill9()
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
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
