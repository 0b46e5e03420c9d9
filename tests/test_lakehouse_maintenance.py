"""Maintenance through a real Flink batch job (Paimon's procedures): one test, one Flink runtime.

Also checks that Flink's (Java) Paimon writer puts a user's rows in the bucket ``bucket_of`` names,
which is what the pruned user query relies on.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse import queries, synthetic
from lakehouse.bucketing import bucket_of
from lakehouse.catalog import open_table
from lakehouse.describe import describe
from lakehouse.health import table_health
from lakehouse.maintenance import Maintenance
from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED
from pipeline import cli
from tests.lakehouse_fixtures import DAY_MS, HOUR_MS, create, warehouse, write

pytestmark = pytest.mark.integration

RECENT_MS = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS
RECENT = datetime.fromtimestamp(RECENT_MS / 1000, UTC).date().isoformat()
OLD_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
# The next 2-hour slot: open by the wall clock for two hours yet (a table pypaimon writes carries no watermark, so the
# wall clock decides which slots are closed: lakehouse/health.py).
OPEN_MS = (int(time.time() * 1000) // (2 * HOUR_MS) + 1) * 2 * HOUR_MS
OPEN_DATE = datetime.fromtimestamp(OPEN_MS / 1000, UTC).date().isoformat()
OPEN_HOUR = datetime.fromtimestamp(OPEN_MS / 1000, UTC).hour


def _event_ids(table) -> Counter:
    return Counter(queries.read(table, queries.plan(table), columns=["event_id"])["event_id"].to_pylist())


def test_flink_compaction_and_expiry_keep_rows_and_flink_buckets_match(settings, tmp_path, capsys):
    local = warehouse(settings, f"file://{tmp_path}/wh")
    events = create(local, USER_ACTIONS)
    for i in range(5):  # five small commits into the same buckets: small files to compact
        write(events, synthetic.user_actions(200, RECENT_MS, 4 * HOUR_MS, users=15, seed=i, first_offset=i * 1000))
    write(events, synthetic.user_actions(50, OLD_MS, HOUR_MS, users=15, seed=9, first_offset=9000))

    m = Maintenance(local)
    # Flink's own writer: the bucket of each user is the one bucket_of computes.
    values = ", ".join(
        f"('flink-{u}', CAST({u} AS BIGINT), 'login', CAST({RECENT_MS} AS BIGINT), '{{}}', '{{}}', "
        f"TIMESTAMP '{RECENT} 00:00:00.000', '{RECENT}', 0, 0, CAST({u} AS BIGINT), TIMESTAMP '{RECENT} 00:00:00.000')"
        for u in (101, 202, 30_000_000)
    )
    m.t_env.execute_sql(f"INSERT INTO {USER_ACTIONS.flink_identifier} VALUES {values}").wait()
    events = open_table(local, USER_ACTIONS.name)
    for split in queries.plan(events, [("event_date", "equal", RECENT), ("event_hour", "equal", 0)]):
        users = set(queries.read(events, [split], columns=["user_id"])["user_id"].to_pylist())
        assert all(bucket_of(events, u) == split.bucket for u in users)
    assert sum(r["rows"] for r in queries.partition_counts(events).rows.to_pylist()) == 1053

    before = describe(events, "lake.user_actions")
    ids_before = _event_ids(events)
    slots = [[("event_date", "equal", RECENT), ("event_hour", "equal", hour)] for hour in (0, 2)]
    to_compact = [s for slot in slots for s in queries.plan(events, slot)]
    files_in_slots, buckets_in_slots = sum(len(s.files) for s in to_compact), len(to_compact)
    # Through the CLI, both ways of naming a slot: --date/--hour and --partition.
    wh = ["--warehouse", local.paimon_warehouse, "lake"]
    capsys.readouterr()
    assert cli.main([*wh, "compact", "--date", RECENT, "--hour", "0"]) == 0
    assert cli.main([*wh, "compact", "--partition", f"event_date={RECENT},event_hour=2"]) == 0
    out = capsys.readouterr().out
    assert out.count("compacted lake.user_actions") == 2 and out.count("Success") == 2, out

    events = open_table(local, USER_ACTIONS.name)
    after = describe(events, "lake.user_actions")
    assert _event_ids(events) == ids_before and after.rows == before.rows == 1053
    # each bucket of the two compacted slots is one file now; the other files are untouched
    assert after.files == before.files - files_in_slots + buckets_in_slots, (before.files, files_in_slots,
                                                                             buckets_in_slots, after.files)
    assert files_in_slots > 2 * buckets_in_slots  # there was something to compact
    for split in queries.plan(events, [("event_date", "equal", RECENT)]):
        assert len(split.files) == 1  # every bucket of the compacted slots is one file now
    assert after.snapshots == before.snapshots + 2

    assert cli.main([*wh, "expire-snapshots", "--retain-max", "1", "--retain-min", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"expired snapshots of lake.user_actions: {after.snapshots - 1}"
    events = open_table(local, USER_ACTIONS.name)
    assert describe(events, "lake.user_actions").snapshots == 1 and _event_ids(events) == ids_before
    # `compact --all` over a table with an uncompacted slot: two more commits into the 2020 slot left three files in
    # some of its buckets (more than two: "not compacted", lakehouse/health.py). After it each of those buckets is
    # one file and no bucket of any slot holds more than two (Paimon's full compaction of an append bucket leaves
    # a pair of files as it is); no row changed.
    for seed in (10, 11):
        write(events, synthetic.user_actions(30, OLD_MS, HOUR_MS, users=15, seed=seed, first_offset=seed * 1000))
    events = open_table(local, USER_ACTIONS.name)
    ids_before = _event_ids(events)
    old_slot = [("event_date", "equal", "2020-01-01"), ("event_hour", "equal", 0)]
    crowded = {s.bucket for s in queries.plan(events, old_slot) if len(s.files) == 3}
    assert crowded
    assert cli.main([*wh, "compact", "--all"]) == 0
    assert "compacted lake.user_actions partitions" in capsys.readouterr().out
    events = open_table(local, USER_ACTIONS.name)
    assert {s.bucket: len(s.files) for s in queries.plan(events, old_slot) if s.bucket in crowded} == \
        dict.fromkeys(crowded, 1)
    assert max(len(s.files) for s in queries.plan(events)) <= 2
    assert _event_ids(events) == ids_before and sum(ids_before.values()) == 1053 + 60

    # `lake query actions` as a user types it: per action type in slot 0, the same counts pypaimon reads.
    slot0 = queries.read(events, queries.plan(events, [("event_date", "equal", RECENT), ("event_hour", "equal", 0)]),
                         columns=["action_type", "event_hour", "event_date"])
    want = Counter(a for a, h, d in zip(slot0["action_type"].to_pylist(), slot0["event_hour"].to_pylist(),
                                        slot0["event_date"].to_pylist(), strict=True) if h == 0 and d == RECENT)
    assert cli.main([*wh, "query", "actions", "--date", RECENT, "--hour", "0", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].replace('"', "") == "action_type,actions"
    got = {row.split(",")[0].strip('"'): int(row.split(",")[1]) for row in lines[1:]}
    assert got == dict(want) and sum(got.values()) > 0

    # Through the CLI: drop partitions whose event_date is older than 30 days.
    assert cli.main(["--warehouse", local.paimon_warehouse, "lake", "expire-partitions",
                     "--expiration-time", "30 d"]) == 0
    assert "event_date=2020-01-01" in capsys.readouterr().out
    events = open_table(local, USER_ACTIONS.name)
    dates = set(queries.partition_counts(events).rows["event_date"].to_pylist())
    assert dates == {RECENT} and describe(events, "lake.user_actions").rows == 1003


def test_describe_warns_maintain_compacts_and_expires_and_orphan_cleanup_removes_only_unreferenced_files(
        settings, tmp_path, capsys):
    """`lake describe` names the closed slots not compacted and the command; `lake maintain --once` compacts
    them and keeps exactly the configured snapshots; `lake remove-orphans` lists, then removes, only a file no
    snapshot references and old enough, and every snapshot left reads the same rows as before."""
    local = warehouse(settings, f"file://{tmp_path}/wh")
    events = create(local, USER_ACTIONS)
    create(local, USER_ACTIONS_REJECTED)
    for i in range(4):  # four commits over yesterday's slots 0 and 2 and the next slot: up to four files per bucket
        write(events, pa.concat_tables([
            synthetic.user_actions(200, RECENT_MS, 4 * HOUR_MS, users=20, seed=i, first_offset=i * 1000),
            synthetic.user_actions(100, OPEN_MS, HOUR_MS, users=20, seed=10 + i, first_offset=i * 1000)]))
    wh = ["--warehouse", local.paimon_warehouse, "lake"]
    capsys.readouterr()
    assert cli.main([*wh, "describe", "--grace", "0"]) == 0
    out = capsys.readouterr().out
    for hour in (0, 2):  # closed by the wall clock; the next slot is still open
        assert f"WARNING closed partition event_date={RECENT},event_hour={hour} " in out
        assert f"run `pipeline lake compact --date {RECENT} --hour {hour}`" in out
    assert f"event_date={OPEN_DATE},event_hour={OPEN_HOUR}" in out and out.count("WARNING") == 2, out
    assert cli.main([*wh, "describe", "--grace", "0", "--json"]) == 0  # the same warnings, as data
    assert json.loads(capsys.readouterr().out)["health"]["closed_not_compacted"] == [
        {"partition": f"event_date={RECENT},event_hour={hour}",
         "command": f"pipeline lake compact --date {RECENT} --hour {hour}"} for hour in (0, 2)]

    table_dir = tmp_path / "wh" / "lake.db" / "user_actions"
    bucket = sorted(table_dir.glob(f"event_date={OPEN_DATE}/event_hour={OPEN_HOUR}/bucket-*"))[0]
    old_orphan, young_orphan = bucket / "data-left-by-a-killed-writer.parquet", bucket / "data-in-flight.parquet"
    for path in (old_orphan, young_orphan):
        path.write_bytes(b"not referenced by any snapshot")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old_orphan, (two_days_ago, two_days_ago))
    ids = _event_ids(events)

    assert cli.main([*wh, "remove-orphans", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.removeprefix("file:") for line in out[:-1]] == [str(old_orphan)], out
    assert out[-1].startswith("would remove 1 orphan files of lake.user_actions") and old_orphan.exists()
    assert cli.main([*wh, "remove-orphans"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("removed 1 orphan files")
    assert not old_orphan.exists() and young_orphan.exists()  # too young: a writer may be about to commit it
    young_orphan.unlink()
    m = Maintenance(local)
    for snapshot_id in range(1, 5):  # every snapshot still reads, with the rows it had
        rows = m.t_env.execute_sql(f"SELECT count(*) FROM {USER_ACTIONS.flink_identifier} "
                                   f"/*+ OPTIONS('scan.snapshot-id'='{snapshot_id}') */").collect()
        with rows:
            assert next(rows)[0] == 300 * snapshot_id

    assert cli.main([*wh, "maintain", "--once", "--compact-grace", "0", "--snapshot-retain-max", "2",
                     "--snapshot-retain-min", "1", "--snapshot-retain-hours", "1000", "--no-restate"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("compacted 2 slots, expired ")
    events = open_table(local, USER_ACTIONS.name)
    assert describe(events, "lake.user_actions").snapshots == 2 and _event_ids(events) == ids
    health = {p.values[1]: p for p in table_health(events, 0).partitions}
    assert health[0].compacted and health[2].compacted and health[0].max_files_per_bucket == 1
    assert cli.main([*wh, "describe", "--grace", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().out


def test_the_maintenance_inside_the_clickhouse_service_compacts_restates_and_shows_both(services, tmp_path,
                                                                                        unique_name):
    """What ./run.sh runs: `clickhouse serve --with 'lake-maintenance ...'`. A slot closed a day ago (by the wall
    clock: no streaming job wrote this lake) with three files in its buckets and no aggregates in ClickHouse: the
    first pass compacts it to one file per bucket and restates it; /api/status and `pipeline clickhouse status`
    show both."""
    import signal
    import subprocess
    import sys
    import urllib.request
    from dataclasses import replace

    from base.config import PROJECT_ROOT
    from tests.conftest import free_port

    local = warehouse(services, f"file://{tmp_path}/wh")
    events = create(local, USER_ACTIONS)
    create(local, USER_ACTIONS_REJECTED)  # the schedule waits for both tables
    for i in range(3):  # three commits into the same buckets of the slot RECENT 00:00
        write(events, synthetic.user_actions(200, RECENT_MS, HOUR_MS, users=15, seed=20 + i, first_offset=i * 1000))
    slot = [("event_date", "equal", RECENT), ("event_hour", "equal", 0)]
    assert max(len(s.files) for s in queries.plan(events, slot)) == 3
    ids_before = _event_ids(events)

    settings = replace(local, data_dir=tmp_path / "data", dashboard_port=free_port(), clickhouse_url=None)
    env = {**os.environ, **settings.to_env()}
    env.pop("CLICKHOUSE_URL", None)
    pipeline = str(Path(sys.executable).parent / "pipeline")
    serve = subprocess.Popen([pipeline, "clickhouse", "serve", "--group", unique_name, "--with",
                              "lake-maintenance --interval 5"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{settings.dashboard_port}"

    def status() -> dict:
        try:
            with urllib.request.urlopen(f"{base}/api/status", timeout=10) as resp:
                return json.loads(resp.read())
        except OSError:
            return {}

    try:
        deadline, seen = time.monotonic() + 300, {}
        while time.monotonic() < deadline and serve.poll() is None:
            seen = status()
            last = (seen.get("maintenance") or {}).get("last_pass") or {}
            if last.get("compacted_slots") and seen.get("restatements"):
                break
            time.sleep(2)
        assert serve.poll() is None, serve.stdout.read()[-3000:]
        last = seen["maintenance"]["last_pass"]
        assert (last["compacted_slots"], last["restated_slots"], last["errors"]) == (1, 1, 0), seen["maintenance"]
        restated = seen["restatements"]
        assert [r["slot_start"] for r in restated] == [f"{RECENT}T00:00:00.000Z"], restated
        assert restated[0]["lake_events"] == 600 and restated[0]["rows_upserted"] > 0

        text = subprocess.run([pipeline, "clickhouse", "status"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert text.returncode == 0, text.stdout + text.stderr
        assert f"  {RECENT}T00:00:00.000Z  restated {restated[0]['restated_at']}: 600 lake events" in text.stdout
        assert "lake maintenance: last pass" in text.stdout and "compacted 1 slots" in text.stdout, text.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        out, _ = serve.communicate(timeout=120)
    assert serve.returncode == 0, out[-3000:]
    events = open_table(local, USER_ACTIONS.name)
    assert {len(s.files) for s in queries.plan(events, slot)} == {1}
    assert _event_ids(events) == ids_before
