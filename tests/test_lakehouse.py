"""lakehouse on a local warehouse: pruned queries, describe, outputs, CLI, ClickHouse's paimon table
functions, and reconciliation against real (embedded) ClickHouse tables."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import clickhouse_connect
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lakehouse import queries, synthetic
from lakehouse.bucketing import bucket_of, buckets_of
from lakehouse.clickhouse_paimon import table_function
from lakehouse.describe import describe
from lakehouse.reconcile import reconcile
from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED
from pipeline import cli
from tests.lakehouse_fixtures import DAY_MS, HOUR_MS, analytics_schema, chdb_settings, create, warehouse, write

pytestmark = pytest.mark.integration

# Three recent days (recent: inside the ClickHouse tables' TTL), two commits.
BASE_MS = (int(time.time() * 1000) // DAY_MS - 3) * DAY_MS
DAYS = [datetime.fromtimestamp((BASE_MS + i * DAY_MS) / 1000, UTC).date() for i in range(3)]
EVENTS = 6000
USERS = 60


@pytest.fixture(scope="module")
def lake(settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("lakehouse")
    local = warehouse(settings, f"file://{root}/wh")
    events = create(local, USER_ACTIONS)
    half = EVENTS // 2
    write(events, synthetic.user_actions(half, BASE_MS, 3 * DAY_MS, users=USERS, seed=1))
    write(events, synthetic.user_actions(half, BASE_MS, 3 * DAY_MS, users=USERS, seed=2, first_offset=half))
    rejected = create(local, USER_ACTIONS_REJECTED)
    write(rejected, synthetic.rejected(30, BASE_MS + DAY_MS))
    return local, events, rejected, root


@pytest.fixture(scope="module")
def everything(lake) -> pa.Table:
    """Every row, read once (thousands of tiny files: pypaimon opens each)."""
    events = lake[1]
    return queries.read(events, queries.plan(events))


def test_bucket_of_is_paimons_bucket(lake):
    local, events, _, _ = lake
    keys = np.concatenate([np.arange(1, 300), [30_000_000, 2**40, -7]])
    assert buckets_of(keys, 128).tolist() == [bucket_of(events, int(k)) for k in keys]
    # pypaimon's own writer (write_arrow, row by row) places every row in that bucket.
    from pypaimon.schema.schema import Schema

    from lakehouse import catalog as lake_catalog

    catalog = lake_catalog.open_catalog(local)
    catalog.create_table("lake.placement", Schema.from_pyarrow_schema(
        USER_ACTIONS.arrow_schema(), partition_keys=list(USER_ACTIONS.partition_keys),
        options=dict(USER_ACTIONS.options)), False)
    table = catalog.get_table("lake.placement")
    builder = table.new_batch_write_builder()
    w, c = builder.new_write(), builder.new_commit()
    w.write_arrow(synthetic.user_actions(300, BASE_MS, HOUR_MS, users=5000, seed=7))
    c.commit(w.prepare_commit())
    w.close()
    c.close()
    for split in queries.plan(table):
        users = queries.read(table, [split], columns=["user_id"])["user_id"].to_numpy()
        assert set(buckets_of(users, 128).tolist()) == {split.bucket}


def test_user_query_reads_only_the_users_bucket_in_the_date_range(lake, everything):
    _, events, _, _ = lake
    user = int(pc.mode(everything["user_id"])[0]["mode"].as_py())
    bucket = bucket_of(events, user)

    pruned = queries.user_events(events, user, DAYS[1], DAYS[2])
    full = queries.user_events(events, user, DAYS[1], DAYS[2], prune=False)

    expected = everything.filter(pc.and_(pc.equal(everything["user_id"], user),
                                         pc.greater_equal(everything["event_date"], DAYS[1].isoformat())))
    assert pruned.rows.num_rows == full.rows.num_rows == expected.num_rows > 0
    assert sorted(pruned.rows["event_id"].to_pylist()) == sorted(expected["event_id"].to_pylist())
    assert pruned.rows["timestamp"].to_pylist() == sorted(pruned.rows["timestamp"].to_pylist())

    splits = queries.plan(events, [("event_date", "between", (DAYS[1].isoformat(), DAYS[2].isoformat()))],
                          bucket=bucket)
    assert all(s.bucket == bucket for s in splits)
    assert {s.partition.values[0] for s in splits} <= {DAYS[1].isoformat(), DAYS[2].isoformat()}
    assert all(f"/bucket-{bucket}/" in f.file_path for s in splits for f in s.files)
    # One bucket per partition: exactly the slots of the two days where some row fell in that bucket, and one file
    # per commit that wrote to it there; unpruned, every (slot, bucket, commit) that got a row.
    files = written_files(everything)
    days = {DAYS[1].isoformat(), DAYS[2].isoformat()}
    in_bucket = {f for f in files if f[0] in days and f[2] == bucket}
    assert pruned.stats.buckets == pruned.stats.partitions == len({f[:2] for f in in_bucket})
    assert pruned.stats.files == len(in_bucket)
    assert full.stats.rows == EVENTS and full.stats.files == len(files)


def written_files(rows: pa.Table) -> set[tuple[str, int, int, int]]:
    """(event_date, event_hour, bucket, commit) of every data file the fixture's two commits wrote: one per slot,
    bucket and commit that got a row (commit 1 wrote the offsets below EVENTS // 2)."""
    buckets = buckets_of(rows["user_id"].to_numpy(), 128).tolist()
    commits = [int(o >= EVENTS // 2) for o in rows["kafka_offset"].to_pylist()]
    return set(zip(rows["event_date"].to_pylist(), rows["event_hour"].to_pylist(), buckets, commits, strict=True))


def test_partition_counts_come_from_metadata_and_are_exact(lake, everything):
    _, events, _, _ = lake
    rows = everything
    actual = {(r["event_date"], r["event_hour"]): r["n"] for r in
              rows.group_by(["event_date", "event_hour"]).aggregate([("user_id", "count")])
              .rename_columns(["event_date", "event_hour", "n"]).to_pylist()}
    result = queries.partition_counts(events).rows
    assert {(r["event_date"], r["event_hour"]): r["rows"] for r in result.to_pylist()} == actual
    assert len(actual) == 36 and sum(result["rows"].to_pylist()) == EVENTS
    one_day = queries.partition_counts(events, DAYS[0], DAYS[0]).rows
    assert set(one_day["event_date"].to_pylist()) == {DAYS[0].isoformat()} and one_day.num_rows == 12


def test_action_counts_for_one_slot(lake, everything):
    _, events, _, _ = lake
    rows = everything
    slot = rows.filter(pc.and_(pc.equal(rows["event_date"], DAYS[1].isoformat()), pc.equal(rows["event_hour"], 4)))
    result = queries.action_counts(events, DAYS[1], 4)
    assert result.stats.partitions == 1
    counts = dict(zip(result.rows["action_type"].to_pylist(), result.rows["actions"].to_pylist(), strict=True))
    expected = slot.group_by("action_type").aggregate([("action_type", "count")]).to_pylist()
    assert counts == {r["action_type"]: r["action_type_count"] for r in expected}
    assert result.rows["actions"].to_pylist() == sorted(counts.values(), reverse=True)


def test_rejected_sample_shows_reasons_and_raw_text(lake):
    _, _, rejected, _ = lake
    result = queries.rejected_sample(rejected, limit=5)
    assert result.rows.num_rows == 5
    assert set(result.rows["reason"].to_pylist()) <= {"invalid JSON", "user_id out of range",
                                                      "unknown action_type", "missing field: timestamp"}
    assert all(v.startswith('{"user_id": ') for v in result.rows["raw_value"].to_pylist())


def test_describe_reports_files_rows_sizes_and_snapshots(lake):
    _, events, _, root = lake
    d = describe(events, "lake.user_actions")
    on_disk = [p for p in (root / "wh" / "lake.db" / "user_actions").glob("event_date=*/event_hour=*/bucket-*/*")
               if p.is_file()]
    assert d.snapshots == 2 and d.latest_snapshot_id == 2
    assert d.rows == EVENTS and d.partitions.num_rows == 36
    assert d.files == len(on_disk) and d.bytes == sum(p.stat().st_size for p in on_disk)
    assert d.bucket == 128 and d.bucket_key == "user_id" and d.schema.names == USER_ACTIONS.arrow_schema().names
    assert sum(n for _, n in d.size_histogram) == d.files == d.small_files  # all tiny: compaction advised
    text = "\n".join(d.lines())
    assert f"files        {d.files}" in text and "consider `lake compact`" in text


def test_cli_query_formats(lake, everything, tmp_path, capsys, monkeypatch):
    local, events, _, _ = lake
    monkeypatch.setenv("PAIMON_WAREHOUSE", local.paimon_warehouse)
    user = int(pc.mode(everything["user_id"])[0]["mode"].as_py())
    base = ["lake", "query", "user", "--user-id", str(user), "--from", DAYS[0].isoformat(), "--to",
            DAYS[2].isoformat()]
    expected = queries.user_events(events, user, DAYS[0], DAYS[2]).rows

    assert cli.main(base) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split()[:3] == ["event_id", "user_id", "action_type"]
    assert f"({expected.num_rows} rows)" in out and "buckets" in err

    assert cli.main([*base, "--format", "parquet", "--output", str(tmp_path / "u.parquet")]) == 0
    assert pq.read_table(tmp_path / "u.parquet").equals(expected)
    assert cli.main([*base, "--format", "jsonl", "--output", str(tmp_path / "u.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "u.jsonl").read_text().splitlines()]
    assert [x["event_id"] for x in lines] == expected["event_id"].to_pylist()
    assert cli.main([*base, "--format", "csv", "--output", str(tmp_path / "u.csv")]) == 0
    import pyarrow.csv as csv

    assert csv.read_csv(tmp_path / "u.csv")["kafka_offset"].to_pylist() == expected["kafka_offset"].to_pylist()

    assert cli.main(["lake", "query", "partitions", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 37
    assert cli.main(["lake", "query", "rejected", "--limit", "3", "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli.main(["lake", "describe", "--partitions"]) == 0
    assert "snapshots    2" in capsys.readouterr().out
    # User mistakes are one line and a non-zero exit.
    assert cli.main([*base, "--format", "parquet"]) == 2
    assert cli.main(["lake", "query", "actions", "--date", DAYS[0].isoformat(), "--hour", "3"]) == 2
    assert "even hour" in capsys.readouterr().err


# --- ClickHouse ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ch(settings, tmp_path_factory):
    ch_settings = chdb_settings(settings, tmp_path_factory)
    client = clickhouse_connect.get_client(dsn=ch_settings.clickhouse_dsn)
    yield client, ch_settings
    client.close()


def test_clickhouse_reads_the_paimon_table_and_joins_it_with_aggregates(lake, ch, unique_name, monkeypatch):
    local, events, _, root = lake
    client, _ = ch
    monkeypatch.chdir(root)  # embedded chDB reads local files only under the working directory
    functions = {r[0] for r in client.query(
        "SELECT name FROM system.table_functions WHERE name ILIKE 'paimon%'").result_rows}
    assert {"paimon", "paimonLocal", "paimonS3"} <= functions

    source = table_function(local, "user_actions")
    assert source.startswith("paimonLocal(")
    by_partition = client.query(f"SELECT event_date, event_hour, count() FROM {source} GROUP BY ALL").result_rows
    expected = {(r["event_date"], r["event_hour"]): r["rows"]
                for r in queries.partition_counts(events).rows.to_pylist()}
    assert {(d, h): n for d, h, n in by_partition} == expected

    analytics_schema(client, unique_name)
    _fill_aggregates(client, unique_name, source)
    joined = client.query(
        f"""SELECT a.window_start, a.user_id, a.total_actions, count() AS lake_events
        FROM {unique_name}.user_aggregations AS a FINAL
        JOIN {source} AS e
          ON e.user_id = a.user_id AND toStartOfInterval(e.event_time, INTERVAL 2 HOUR) = a.window_start
        WHERE e.event_date = '{DAYS[1]}' GROUP BY ALL"""
    ).result_rows
    assert joined and all(total == n for _, _, total, n in joined)


def _fill_aggregates(client, db: str, source: str) -> None:
    """The three aggregates computed by ClickHouse itself over the Paimon table (an independent
    path from the reconciler's Arrow one), plus stale older versions that FINAL must hide."""
    for version, bump in ((1, 5), (2, 0)):
        client.command(f"""INSERT INTO {db}.user_aggregations
            SELECT toStartOfInterval(event_time, INTERVAL 2 HOUR) AS ws, ws + INTERVAL 2 HOUR, user_id,
                   count() + {bump}, {version} FROM {source} GROUP BY ws, user_id""")
        client.command(f"""INSERT INTO {db}.user_action_aggregations
            SELECT toStartOfInterval(event_time, INTERVAL 2 HOUR) AS ws, ws + INTERVAL 2 HOUR, user_id,
                   action_type, count() + {bump}, {version} FROM {source} GROUP BY ws, user_id, action_type""")
        client.command(f"""INSERT INTO {db}.user_aggregations_realtime
            SELECT toStartOfInterval(event_time, INTERVAL 5 MINUTE) AS ws, ws + INTERVAL 5 MINUTE, user_id,
                   count() + {bump}, {version} FROM {source} GROUP BY ws, user_id""")


def test_reconcile_passes_on_correct_data_and_names_exactly_the_altered_keys(lake, everything, ch, unique_name,
                                                                           monkeypatch, capsys):
    local, events, _, root = lake
    client, ch_settings = ch
    monkeypatch.chdir(root)  # embedded chDB reads local files only under the working directory
    analytics_schema(client, unique_name)
    _fill_aggregates(client, unique_name, table_function(local, "user_actions"))
    start = datetime.fromtimestamp((BASE_MS + DAY_MS) / 1000, UTC)
    end = start + timedelta(hours=6)

    result = reconcile(events, client, start, end, database=unique_name)
    assert result.ok, result.lines()
    ts = everything["timestamp"]
    in_range = everything.filter(pc.and_(pc.greater_equal(ts, _ms(start)), pc.less(ts, _ms(end))))
    assert result.events_scanned == in_range.num_rows
    assert [t.table for t in result.tables] == ["user_aggregations", "user_action_aggregations",
                                                "user_aggregations_realtime"]
    assert all(t.lake_keys == t.clickhouse_keys == t.matching > 0 for t in result.tables)
    # only the three slots' files: each (slot, bucket, commit) of the rows in them
    assert result.files_read == len(written_files(in_range))

    # Alter one row (a newer version with a wrong count), drop one, invent one.
    ws = start + timedelta(hours=2)
    victim = client.query(f"SELECT user_id, total_actions FROM {unique_name}.user_aggregations FINAL "
                          f"WHERE window_start = '{ws:%Y-%m-%d %H:%M:%S}' ORDER BY user_id LIMIT 1").result_rows[0]
    client.command(f"INSERT INTO {unique_name}.user_aggregations VALUES "
                   f"('{ws:%Y-%m-%d %H:%M:%S}', '{ws + timedelta(hours=2):%Y-%m-%d %H:%M:%S}', {victim[0]}, "
                   f"{victim[1] + 1}, 99)")
    gone = client.query(f"SELECT window_start, user_id, action_type, actions FROM "
                        f"{unique_name}.user_action_aggregations FINAL WHERE window_start = '{start:%Y-%m-%d %H:%M:%S}'"
                        " ORDER BY user_id, action_type LIMIT 1").result_rows[0]
    client.command(f"DELETE FROM {unique_name}.user_action_aggregations WHERE window_start = "
                   f"'{start:%Y-%m-%d %H:%M:%S}' AND user_id = {gone[1]} AND action_type = '{gone[2]}'")
    client.command(f"INSERT INTO {unique_name}.user_aggregations_realtime VALUES "
                   f"('{start:%Y-%m-%d %H:%M:%S}', '{start + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}', 777777, 3, 1)")

    result = reconcile(events, client, start, end, database=unique_name)
    assert not result.ok
    got = {(m.table, m.window_start, m.user_id, m.action_type, m.lake, m.clickhouse) for m in result.mismatches}
    assert got == {
        ("user_aggregations", ws, victim[0], None, victim[1], victim[1] + 1),
        ("user_action_aggregations", start, gone[1], gone[2], gone[3], None),
        ("user_aggregations_realtime", start, 777777, None, None, 3),
    }

    # The CLI prints the keys and exits 1 (same chDB directory: this process's engine).
    monkeypatch.setenv("PAIMON_WAREHOUSE", local.paimon_warehouse)
    monkeypatch.setenv("DATA_DIR", str(ch_settings.data_dir))
    rc = cli.main(["lake", "reconcile", "--from", f"{start:%Y-%m-%d %H:%M}", "--to", f"{end:%Y-%m-%d %H:%M}",
                   "--database", unique_name])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert f"user_aggregations: window_start={ws:%Y-%m-%d %H:%M} user_id={victim[0]}: " \
           f"lake={victim[1]} clickhouse={victim[1] + 1}" in out
    assert "user_id=777777: lake=missing clickhouse=3" in out and "result: 3 mismatching keys" in out

    # --json: one document with the figures of the text and every mismatching key; the exit code is the same
    rc = cli.main(["lake", "reconcile", "--from", f"{start:%Y-%m-%d %H:%M}", "--to", f"{end:%Y-%m-%d %H:%M}",
                   "--database", unique_name, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["ok"] is False and doc["mismatch_count"] == 3
    import re

    header = re.search(r": (\d+) lake events in (\d+) files", out)
    assert (doc["events_scanned"], doc["files_read"]) == tuple(map(int, header.groups()))
    per_table = re.findall(r"^  (\w+) +windows .* lake keys +(\d+) +clickhouse keys +(\d+) +matching +(\d+) +"
                           r"(OK|(\d+) MISMATCHES)$", out, re.MULTILINE)
    assert [(t["table"], t["lake_keys"], t["clickhouse_keys"], t["matching"], t["mismatches"])
            for t in doc["tables"]] == [(name, int(lk), int(ck), int(m), int(n or 0))
                                        for name, lk, ck, m, _, n in per_table]
    assert sum(t["mismatches"] for t in doc["tables"]) == 3
    assert {(m["table"], m["window_start"], m["user_id"], m["action_type"], m["lake"], m["clickhouse"])
            for m in doc["mismatches"]} == {(t, w.isoformat(), u, a, lk, ck) for t, w, u, a, lk, ck in got}


def test_restate_makes_clickhouse_equal_the_lake_and_a_second_run_changes_nothing(lake, ch, unique_name,
                                                                                  monkeypatch, capsys):
    """What late events leave behind (counts one short, a key never emitted) plus a key the lake never had:
    restate writes exactly those keys, reconcile is clean after it, and a second run writes no row."""
    from clickhouse.queries import Queries
    from lakehouse.restate import restate

    local, events, _, root = lake
    client, ch_settings = ch
    monkeypatch.chdir(root)  # embedded chDB reads local files only under the working directory
    db = unique_name
    analytics_schema(client, db)
    _fill_aggregates(client, db, table_function(local, "user_actions"))
    start = datetime.fromtimestamp((BASE_MS + DAY_MS) / 1000, UTC)  # midnight: three whole slots to 06:00
    end = start + timedelta(hours=6)
    ws = start + timedelta(hours=2)

    def first(sql: str) -> tuple:
        return client.query(sql).result_rows[0]

    # A late event missing from a 2-hour count and from a 5-minute count (the job emitted one less) ...
    short = first(f"SELECT user_id, total_actions FROM {db}.user_aggregations FINAL "
                  f"WHERE window_start = '{ws:%Y-%m-%d %H:%M:%S}' ORDER BY user_id LIMIT 1")
    client.command(f"INSERT INTO {db}.user_aggregations VALUES ('{ws:%Y-%m-%d %H:%M:%S}', "
                   f"'{ws + timedelta(hours=2):%Y-%m-%d %H:%M:%S}', {short[0]}, {short[1] - 1}, 50)")
    rt = first(f"SELECT window_start, user_id, total_actions FROM {db}.user_aggregations_realtime FINAL "
               f"WHERE window_start >= '{start:%Y-%m-%d %H:%M:%S}' AND total_actions > 1 "
               "ORDER BY window_start, user_id LIMIT 1")
    client.command(f"INSERT INTO {db}.user_aggregations_realtime VALUES ('{rt[0]:%Y-%m-%d %H:%M:%S}', "
                   f"'{rt[0] + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}', {rt[1]}, {rt[2] - 1}, 50)")
    # ... a key whose only events were late (never emitted), and a key ClickHouse has and the lake has not.
    gone = first(f"SELECT user_id, action_type, actions FROM {db}.user_action_aggregations FINAL "
                 f"WHERE window_start = '{start:%Y-%m-%d %H:%M:%S}' ORDER BY user_id, action_type LIMIT 1")
    client.command(f"DELETE FROM {db}.user_action_aggregations WHERE window_start = '{start:%Y-%m-%d %H:%M:%S}' "
                   f"AND user_id = {gone[0]} AND action_type = '{gone[1]}'")
    client.command(f"INSERT INTO {db}.user_aggregations_realtime VALUES ('{start:%Y-%m-%d %H:%M:%S}', "
                   f"'{start + timedelta(minutes=5):%Y-%m-%d %H:%M:%S}', 777777, 3, 1)")
    assert len(reconcile(events, client, start, end, database=db).mismatches) == 4

    result = restate(events, client, start, end, database=db)
    assert [s.slot_start for s in result.slots] == [start, ws, ws + timedelta(hours=2)]
    by_table = {t: (sum(s.upserted[t] for s in result.slots), sum(s.deleted[t] for s in result.slots))
                for t in result.slots[0].upserted}
    assert by_table == {"user_aggregations": (1, 0), "user_action_aggregations": (1, 0),
                        "user_aggregations_realtime": (1, 1)}
    assert result.changed == 4
    assert reconcile(events, client, start, end, database=db).ok
    assert first(f"SELECT total_actions FROM {db}.user_aggregations FINAL WHERE window_start = "
                 f"'{ws:%Y-%m-%d %H:%M:%S}' AND user_id = {short[0]}") == (short[1],)
    assert first(f"SELECT actions FROM {db}.user_action_aggregations FINAL WHERE window_start = "
                 f"'{start:%Y-%m-%d %H:%M:%S}' AND user_id = {gone[0]} AND action_type = '{gone[1]}'") == (gone[2],)
    # The restated rows carry a newer version than anything the slot held.
    assert first(f"SELECT max(version) FROM {db}.user_aggregations WHERE user_id = {short[0]}")[0] == \
        result.slots[1].version > 50

    # A second run finds nothing to change and writes no aggregate row; the CLI's dry run says the same.
    stored = {t: first(f"SELECT count() FROM {db}.{t}")[0] for t in by_table}
    again = restate(events, client, start, end, database=db)
    assert again.changed == 0 and len(again.slots) == 3
    assert {t: first(f"SELECT count() FROM {db}.{t}")[0] for t in by_table} == stored
    restated = Queries(client, db).restatements()
    assert [(r["slot_start"][:16], r["rows_upserted"] + r["rows_deleted"]) for r in restated] == [
        (f"{s:%Y-%m-%dT%H:%M}", 0) for s in (ws + timedelta(hours=2), ws, start)]  # the second run is the latest
    monkeypatch.setenv("PAIMON_WAREHOUSE", local.paimon_warehouse)
    monkeypatch.setenv("DATA_DIR", str(ch_settings.data_dir))
    capsys.readouterr()
    assert cli.main(["lake", "restate", "--from", f"{start:%Y-%m-%d %H:%M}", "--to", f"{end:%Y-%m-%d %H:%M}",
                     "--database", db, "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("would restate 0 keys in 3 slots")
    # The CLI writes too: a wrong count with a newer version than any in the slot, restated through the CLI
    client.command(f"INSERT INTO {db}.user_aggregations VALUES ('{ws:%Y-%m-%d %H:%M:%S}', "
                   f"'{ws + timedelta(hours=2):%Y-%m-%d %H:%M:%S}', {short[0]}, 12345, {10**15})")
    assert not reconcile(events, client, start, end, database=db).ok
    assert cli.main(["lake", "restate", "--from", f"{start:%Y-%m-%d %H:%M}", "--to", f"{end:%Y-%m-%d %H:%M}",
                     "--database", db]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("restated 1 keys in 3 slots"), lines
    assert f"slot {ws:%Y-%m-%d %H:%M}: " in lines[1] and "user_aggregations +1/-0" in lines[1], lines
    assert first(f"SELECT total_actions, version > {10**15} FROM {db}.user_aggregations FINAL WHERE window_start = "
                 f"'{ws:%Y-%m-%d %H:%M:%S}' AND user_id = {short[0]}") == (short[1], 1)
    assert cli.main(["lake", "reconcile", "--from", f"{start:%Y-%m-%d %H:%M}", "--to", f"{end:%Y-%m-%d %H:%M}",
                     "--database", db]) == 0  # clean
    capsys.readouterr()
    assert cli.main(["lake", "restate", "--from", f"{start:%Y-%m-%d} 01:00", "--to", f"{start:%Y-%m-%d} 02:30",
                     "--database", db]) == 2
    assert "holds no whole 2-hour slot" in capsys.readouterr().err

    # A slot the lake holds nothing of while ClickHouse has rows (its partition expired by retention): refused,
    # nothing written, unless --force, which then deletes exactly those rows.
    empty = start - timedelta(days=2)
    client.command(f"INSERT INTO {db}.user_aggregations VALUES ('{empty:%Y-%m-%d %H:%M:%S}', "
                   f"'{empty + timedelta(hours=2):%Y-%m-%d %H:%M:%S}', 4242, 9, 1)")
    span = ["--from", f"{empty:%Y-%m-%d %H:%M}", "--to", f"{empty + timedelta(hours=2):%Y-%m-%d %H:%M}"]
    assert cli.main(["lake", "restate", *span, "--database", db]) == 2
    refused = capsys.readouterr().err
    assert "holds no event of slot" in refused and "has 1 rows for it" in refused and "--force" in refused, refused
    assert first(f"SELECT count() FROM {db}.user_aggregations FINAL WHERE user_id = 4242") == (1,)
    assert cli.main(["lake", "restate", *span, "--database", db, "--force"]) == 0
    assert first(f"SELECT count() FROM {db}.user_aggregations FINAL WHERE user_id = 4242") == (0,)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def test_reconcile_rejects_an_empty_range(lake, ch):
    from base.errors import UserError

    _, events, _, _ = lake
    client, _ = ch
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(UserError):
        reconcile(events, client, moment, moment)
    with pytest.raises(UserError, match="2-hour|120-minute"):
        reconcile(events, client, moment, moment + timedelta(minutes=30))


def test_query_and_describe_json_carry_the_figures_of_the_text(lake, everything, capsys, monkeypatch):
    """`lake query ... --json` is one document: the rows --format jsonl prints line by line, and the read figures the
    other formats print on stderr. `lake describe --json` has the figures of the text, per partition too."""
    import re

    local, events, _, _ = lake
    monkeypatch.setenv("PAIMON_WAREHOUSE", local.paimon_warehouse)
    user = int(pc.mode(everything["user_id"])[0]["mode"].as_py())
    base = ["lake", "query", "user", "--user-id", str(user), "--from", DAYS[0].isoformat(), "--to",
            DAYS[2].isoformat()]
    capsys.readouterr()
    assert cli.main([*base, "--format", "jsonl"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert cli.main([*base, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == lines and len(lines) > 1
    read = re.fullmatch(r"read (\d+) files \((\d+) bytes, (\d+) rows\) in (\d+) partitions, (\d+) buckets\n", err)
    assert tuple(doc["read"].values()) == tuple(map(int, read.groups()))
    assert list(doc["read"]) == ["files", "bytes", "rows", "partitions", "buckets"]
    with pytest.raises(SystemExit) as both:  # one or the other
        cli.main([*base, "--json", "--format", "csv"])
    assert both.value.code == 2 and "not allowed with argument --json" in capsys.readouterr().err

    assert cli.main(["lake", "describe", "--partitions"]) == 0
    text = capsys.readouterr().out
    assert cli.main(["lake", "describe", "--partitions", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    figures = dict(re.findall(r"^(table|snapshots|partitions|files|rows) +(\S+)", text, re.MULTILINE))
    assert figures == {"table": doc["table"], "snapshots": str(doc["snapshots"]),
                       "partitions": str(doc["partition_count"]), "files": str(doc["files"]), "rows": str(doc["rows"])}
    assert (doc["rows"], doc["partition_count"], doc["bucket"], doc["bucket_key"]) == (EVENTS, 36, 128, "user_id")
    assert f"small files  {doc['small_files']} of {doc['files']} " in text
    health = re.findall(r"^  (event_date=\S+) +(\d+) +(\d+) +\S+ \S+ +(\d+)  (open|compacted|NOT COMPACTED)$", text,
                        re.MULTILINE)
    assert [(p["partition"], p["rows"], p["files"], p["max_files_per_bucket"], p["state"])
            for p in doc["health"]["partitions"]] == [(label, int(r), int(f), int(m), state.lower())
                                                      for label, r, f, m, state in health]
    assert len(health) == 36 and sum(p["rows"] for p in doc["partitions"]) == EVENTS
    assert [c["partition"] for c in doc["health"]["closed_not_compacted"]] == re.findall(
        r"^WARNING closed partition (\S+) ", text, re.MULTILINE)
