"""Lake maintenance under continuous load: the same soak with `pipeline lake maintain` off, then on, side by side.

    .venv/bin/python -m scripts.bench_maintenance [--minutes 30] [--rate 25000] [--sim-rate 1500]

Each run (scripts/soak.py) produces at --rate for --minutes into the streaming job on a warehouse of its own,
with event time running rate/sim-rate times faster than the wall clock so that 2-hour slots close during
the run. Printed per run and as the ratio on / off: data files and snapshots, the closed slots' files
(average size, most files in one bucket), the job's CPU per event (the writer), the maintenance's CPU per
event, and a full scan of the closed slots and a one-user query timed on the table as each run left it.
Targets (issue #15): at most 2 files per bucket in closed slots with maintenance, snapshots bounded by the
retention, the job's CPU per event within 10 % of the run without, the full scan at least 3x faster.
Run it on a quiet box: the load average is printed first.

    .venv/bin/python -m scripts.bench_maintenance --compact-after /tmp/bench-maintenance-x/off/wh

compares the same table before and after a full compaction of its closed slots (the query times only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from base.config import PROJECT_ROOT

ROWS = (  # (label, key, format, better when higher)
    ("acknowledged events", "acked", "{:,.0f}", None),
    ("lake rows = acknowledged", "ok", "{}", None),
    ("data files on disk", "files", "{:,.0f}", False),
    ("snapshots at the end", "snapshots", "{:,.0f}", False),
    ("snapshots at most", "max_snapshots", "{:,.0f}", False),
    ("closed 2-hour slots", "closed_slots", "{:,.0f}", None),
    ("files in closed slots", "closed_files", "{:,.0f}", False),
    ("avg file in closed slots, MB", "closed_avg_file_mb", "{:.2f}", True),
    ("most files in one bucket (closed)", "closed_max_files_per_bucket", "{:,.0f}", False),
    ("job CPU per event, us", "job_us", "{:.1f}", False),
    ("maintenance CPU per event, us", "maintenance_us", "{:.1f}", False),
    ("full scan of closed slots, s", "full_scan_s", "{:.2f}", False),
    ("rows in that scan", "full_scan_rows", "{:,.0f}", None),
    ("one-user query, s", "one_user_s", "{:.3f}", False),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_maintenance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="length of each run (default: 30)")
    p.add_argument("--rate", type=int, default=25_000, help="events per second (default: 25,000, the sustained "
                   "end-to-end rate in the README)")
    p.add_argument("--sim-rate", type=float, default=1500.0, help="events per simulated second (default: 1500: "
                   "event time about 17x the wall clock, a 2-hour slot closes every ~7 minutes)")
    p.add_argument("--checkpoint-interval", default="60 s", help="the job's (default: 60 s, its production default)")
    p.add_argument("--only", choices=("off", "on"), help="run one side only")
    p.add_argument("--work-dir", type=Path, help="keep the runs here (default: a temporary directory)")
    p.add_argument("--compact-after", type=Path, metavar="WAREHOUSE",
                   help="instead: time the queries on this warehouse, compact its closed slots, time them again")
    args = p.parse_args(argv)
    if args.compact_after:
        return compare_compaction(args.compact_after)

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs",
          flush=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-maintenance-"))
    results: dict[str, dict] = {}
    for side in ("off", "on"):
        if args.only and side != args.only:
            continue
        out = work / f"{side}.json"
        cmd = [sys.executable, "-m", "scripts.soak", "--minutes", str(args.minutes), "--rate", str(args.rate),
               "--sim-rate", str(args.sim_rate), "--checkpoint-interval", args.checkpoint_interval,
               "--every", "60", "--work-dir", str(work / side), "--result-json", str(out)]
        if side == "on":
            cmd.append("--maintenance")
        print(f"== maintenance {side}: {' '.join(cmd[2:])}", flush=True)
        subprocess.run(cmd, cwd=PROJECT_ROOT, check=False)
        if out.exists():
            results[side] = json.loads(out.read_text())
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n{'':<36} {'off':>14} {'on':>14} {'on/off':>8}")
    for label, key, fmt, _ in ROWS:
        cells = [fmt.format(results[s][key]) if s in results else "-" for s in ("off", "on")]
        off, on = (results.get(s, {}).get(key) for s in ("off", "on"))
        ratio = f"{on / off:.2f}x" if isinstance(off, int | float) and not isinstance(off, bool) and off and on \
            is not None else ""
        print(f"{label:<36} {cells[0]:>14} {cells[1]:>14} {ratio:>8}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {work / 'results.json'}")
    return 0 if all(r.get("ok") for r in results.values()) and results else 1


def compare_compaction(warehouse: Path) -> int:
    """The closed slots' layout and query times of one table, before and after a full compaction of them."""
    from dataclasses import replace

    from base.config import Settings
    from lakehouse.catalog import open_table
    from lakehouse.health import table_health
    from lakehouse.maintenance import Maintenance
    from scripts.soak import lake_layout

    settings = replace(Settings.from_env(), paimon_warehouse=warehouse.resolve().as_uri())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    lake_layout(settings)  # a first read warms the page cache: both timed reads then start warm
    before = lake_layout(settings)
    closed = [p for p in table_health(open_table(settings, "user_actions")).partitions if p.closed]
    Maintenance(settings).compact("user_actions", [p.spec for p in closed], full=True)
    lake_layout(settings)
    after = lake_layout(settings)
    print(f"\n{'':<36} {'as written':>14} {'compacted':>14} {'ratio':>8}")
    for label, key, fmt, _ in ROWS:
        if key in before:
            b, a = before[key], after[key]
            ratio = f"{b / a:.2f}x" if key.endswith("_s") and a else ""
            print(f"{label:<36} {fmt.format(b):>14} {fmt.format(a):>14} {ratio:>8}")
    print("(ratio: how many times faster on the compacted table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
