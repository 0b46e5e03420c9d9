"""JSON API over seeded aggregates: correct numbers (deduplicated), 4xx for bad input, no injection."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from clickhouse.schema import SchemaOptions
from clickhouse.service import Service
from clickhouse.store import apply_schema
from clickhouse.testing import scratch_settings
from lakehouse.tables import USER_ACTIONS_REJECTED
from tests.lakehouse_fixtures import create, warehouse, write

pytestmark = pytest.mark.integration

DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
RANGE = f"from={DAY:%Y-%m-%dT%H:%M:%SZ}&to={DAY + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"


def seed(client, db: str) -> None:
    two_h = timedelta(hours=2)
    five = timedelta(minutes=5)
    w0, w1 = DAY + timedelta(hours=10), DAY + timedelta(hours=12)
    # user -> actions per 2-hour window (w0, w1); an older version of each row is inserted first.
    totals = {1: (10, 5), 2: (30, 0), 3: (7, 7), 4: (1, 0)}
    old, new = [], []
    for user, (a, b) in totals.items():
        for w, n in ((w0, a), (w1, b)):
            if n:
                old.append([w, w + two_h, user, n + 100, 1])  # superseded by version 2
                new.append([w, w + two_h, user, n, 2])
    cols = ["window_start", "window_end", "user_id", "total_actions", "version"]
    for table in ("user_aggregations", "user_action_aggregations", "user_aggregations_realtime"):
        # no background merge: stored rows stay exactly what was inserted, and FINAL alone deduplicates
        client.command(f"SYSTEM STOP MERGES {db}.{table}")
    client.insert(f"{db}.user_aggregations", old, column_names=cols)
    client.insert(f"{db}.user_aggregations", new, column_names=cols)
    # per action type, 2-hour: user 2 has 20 'view_item' + 10 'add_to_cart' in w0
    acts = [[w0, w0 + two_h, 2, "view_item", 20, 2], [w0, w0 + two_h, 2, "add_to_cart", 10, 2],
            [w0, w0 + two_h, 1, "view_item", 10, 2], [w1, w1 + two_h, 1, "checkout", 5, 2],
            [w0, w0 + two_h, 2, "view_item", 999, 1]]  # stale version
    client.insert(f"{db}.user_action_aggregations", acts,
                  column_names=["window_start", "window_end", "user_id", "action_type", "actions", "version"])
    # 5-minute: user 2 has 3, 4, 5 actions in three windows from 10:00; user 1 has 2 at 13:00
    rt = [[w0 + i * five, w0 + (i + 1) * five, 2, n, 2] for i, n in enumerate((3, 4, 5))]
    rt += [[w1 + timedelta(hours=1), w1 + timedelta(hours=1) + five, 1, 2, 2],
           [w0, w0 + five, 2, 50, 1]]  # stale
    client.insert(f"{db}.user_aggregations_realtime", rt, column_names=cols)


# Rejected records (reason, ingest_time) in lake.user_actions_rejected: four in DAY's 10:00 hour, three in its 12:00
# hour; outside DAY, in partitions of their own: five the evening before, one at the next midnight (the range's end,
# exclusive).
REJECTS = [("unparseable JSON", DAY + timedelta(hours=10, minutes=5)),
           ("user_id out of range", DAY + timedelta(hours=10, minutes=30)),
           ("unparseable JSON", DAY + timedelta(hours=10, minutes=20)),
           ("unparseable JSON", DAY + timedelta(hours=10, minutes=59, seconds=59, milliseconds=999)),
           ("unknown action_type", DAY + timedelta(hours=12, minutes=1)),
           ("unparseable JSON", DAY + timedelta(hours=12, minutes=30)),
           ("unknown action_type", DAY + timedelta(hours=12, minutes=45)),
           *[("missing field: timestamp", DAY - timedelta(minutes=30 + i)) for i in range(5)],
           ("missing field: timestamp", DAY + timedelta(days=1))]


def rejected_rows(records: list[tuple[str, datetime]]) -> pa.Table:
    """Rows of lake.user_actions_rejected with these reasons and ingest times (UTC), as the job writes them."""
    times = pa.array([t.replace(tzinfo=None) for _, t in records], pa.timestamp("ms"))
    n = len(records)
    return pa.table({
        "raw_key": pa.array([b"1"] * n, pa.binary()), "raw_value": pa.array([b"{bad"] * n, pa.binary()),
        "reason": [r for r, _ in records], "kafka_partition": pa.array([0] * n, pa.int32()),
        "kafka_offset": pa.array(range(n), pa.int64()), "kafka_timestamp": times, "ingest_time": times,
        "ingest_date": [t.strftime("%Y-%m-%d") for _, t in records]}, schema=USER_ACTIONS_REJECTED.arrow_schema())


def seed_rejects(settings, root) -> tuple:
    """The settings of a warehouse under ``root`` whose lake.user_actions_rejected holds REJECTS (two commits, so
    more than one file), and the table."""
    lake = warehouse(settings, f"file://{root}")
    table = create(lake, USER_ACTIONS_REJECTED)
    write(table, rejected_rows(REJECTS[:4]))
    write(table, rejected_rows(REJECTS[4:]))
    return lake, table


def lake_routes() -> None:
    """What the front end registers in the ClickHouse service (pipeline/cli.py): /api/rejects from the lake."""
    from pipeline.cli import commands

    commands()


@pytest.fixture(scope="module")
def lake(settings, tmp_path_factory):
    lake_routes()
    return seed_rejects(scratch_settings(settings), tmp_path_factory.mktemp("warehouse"))


@pytest.fixture(scope="module")
def api(lake):
    import uuid

    db = f"t_{uuid.uuid4().hex[:10]}"
    service = Service(lake[0], SchemaOptions(database=db), loader_options=None, port=0)
    apply_schema(service.clients.get(), SchemaOptions(database=db))  # an administrator's: the API runs no DDL
    service.start()
    seed(service.clients.get(), db)
    yield service.url
    service.stop()


def get(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_top_users_are_deduplicated_sums(api):
    status, body = get(api, f"/api/top-users?limit=3&{RANGE}")
    assert status == 200
    assert body["users"] == [{"user_id": 2, "actions": 30}, {"user_id": 1, "actions": 15},
                             {"user_id": 3, "actions": 14}]
    status, body = get(api, f"/api/top-users?window=5m&{RANGE}")
    assert body["users"] == [{"user_id": 2, "actions": 12}, {"user_id": 1, "actions": 2}]


def test_user_activity(api):
    status, body = get(api, f"/api/users/2/activity?{RANGE}")
    assert status == 200
    assert [p["actions"] for p in body["realtime_5m"]] == [3, 4, 5]
    assert body["total_actions_5m"] == 12
    assert body["windows_2h"] == [{"window_start": f"{DAY + timedelta(hours=10):%Y-%m-%dT%H:%M:%S.000Z}",
                                   "total_actions": 30, "by_action_type": {"view_item": 20, "add_to_cart": 10}}]


def test_action_types_events_hourly_distribution(api):
    _, body = get(api, f"/api/action-types?{RANGE}")
    assert [(a["action_type"], a["actions"], a["users"]) for a in body["action_types"]] == [
        ("view_item", 30, 2), ("add_to_cart", 10, 1), ("checkout", 5, 1)]
    _, body = get(api, f"/api/action-types/series?limit=1&{RANGE}")
    assert list(body["series"]) == ["view_item"] and body["series"]["view_item"][0]["actions"] == 30
    _, body = get(api, f"/api/events?{RANGE}")
    assert [p["actions"] for p in body["points"]] == [3, 4, 5, 2]
    _, body = get(api, f"/api/events?window=2h&{RANGE}")
    assert [p["actions"] for p in body["points"]] == [48, 12]
    _, body = get(api, f"/api/hourly?{RANGE}")
    assert len(body["hours"]) == 24 and body["hours"][10]["actions"] == 12 and body["hours"][13]["actions"] == 2
    _, body = get(api, f"/api/distribution?{RANGE}")
    # totals per user over the day: 15, 30, 14, 1 -> buckets 1, 8-15 (x2), 16-31
    assert [(b["min_actions"], b["users"]) for b in body["buckets"]] == [(1, 1), (8, 2), (16, 1)]


def test_status_and_openapi(api):
    asked = time.time()
    status, body = get(api, "/api/status")
    answered = time.time()
    assert status == 200
    tables = {t["table"]: t for t in body["tables"]}
    # stored rows before deduplication (merges stopped in the seed): 6 of version 1 + 6 of version 2 inserted
    # apart; the stale row inserted in the same block as its newer version is replaced on insert (4 of 5, 4 of 5)
    assert {t: s["rows"] for t, s in tables.items()} == {
        "user_aggregations": 12, "user_action_aggregations": 4, "user_aggregations_realtime": 4}
    # the newest 5-minute window ends at 13:05 of DAY (see seed)
    newest_rt = DAY + timedelta(hours=13, minutes=5)
    assert tables["user_aggregations_realtime"]["latest_window_end"].startswith(f"{newest_rt:%Y-%m-%dT%H:%M:%S}")
    # freshness = the service's clock at the query minus that window end, rounded to 0.1 s
    freshness = tables["user_aggregations_realtime"]["freshness_seconds"]
    assert asked - newest_rt.timestamp() - 0.05 <= freshness <= answered - newest_rt.timestamp() + 0.05
    assert body["latest_window_end"].startswith(f"{DAY:%Y-%m-%d}")
    status, doc = get(api, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.") and "/api/top-users" in doc["paths"]
    rejects = doc["paths"]["/api/rejects"]["get"]
    assert {p["name"] for p in rejects["parameters"]} == {"from", "to"}
    assert set(rejects["responses"]) == {"200", "400", "503"}


def _hour(h: int) -> str:
    return f"{DAY + timedelta(hours=h):%Y-%m-%dT%H:%M:%S}.000Z"


def test_rejects_per_reason_and_hour_from_the_lake(api):
    status, body = get(api, f"/api/rejects?{RANGE}")
    assert status == 200, body
    assert body["hours"] == [_hour(h) for h in range(24)]
    # most frequent reason first; the evening before and the next midnight are outside the range
    assert body["totals"] == {"unparseable JSON": 4, "unknown action_type": 2, "user_id out of range": 1}
    assert list(body["series"]) == ["unparseable JSON", "unknown action_type", "user_id out of range"]
    per_hour = {reason: {_hour(h): n for h, n in enumerate(counts) if n} for reason, counts in body["series"].items()}
    assert per_hour == {"unparseable JSON": {_hour(10): 3, _hour(12): 1}, "unknown action_type": {_hour(12): 2},
                        "user_id out of range": {_hour(10): 1}}
    assert body["total"] == 7 and body["time_column"] == "ingest_time"
    # only DAY's partition was read (its 7 rows in 2 files), not the two partitions around it
    read = body["read"]
    assert (read["partitions"], read["files"], read["rows"], read["rows_matched"]) == (1, 2, 7, 7)

    # part of one hour: the bucket is that hour; rows are counted by their exact time
    status, body = get(api, f"/api/rejects?from={_hour(10)[:13]}:15:00Z&to={_hour(10)[:13]}:45:00Z")
    assert status == 200 and body["hours"] == [_hour(10)]
    assert body["series"] == {"unparseable JSON": [1], "user_id out of range": [1]}


def test_rejects_are_cached_per_range(api, lake):
    from lakehouse.quality import CACHE_S

    _, table = lake
    day = DAY - timedelta(days=3)  # a partition of its own: the other tests' figures stay as they are
    write(table, rejected_rows([("null value", day + timedelta(hours=1))]))
    ranged = f"/api/rejects?from={day:%Y-%m-%dT%H:%M:%SZ}&to={day + timedelta(hours=6):%Y-%m-%dT%H:%M:%SZ}"
    first = get(api, ranged)[1]
    assert first["totals"] == {"null value": 1} and first["cached_s"] == 0
    write(table, rejected_rows([("null value", day + timedelta(hours=2))]))
    time.sleep(0.2)
    again = get(api, ranged)[1]
    assert again["totals"] == {"null value": 1} and 0 < again["cached_s"] < CACHE_S  # the cached answer
    other = get(api, ranged.replace(":00:00Z", ":00:01Z", 1))[1]  # another range: read now
    assert other["totals"] == {"null value": 2} and other["cached_s"] == 0


def test_rejects_bad_range_is_400(api):
    status, body = get(api, "/api/rejects?from=yesterday")
    assert status == 400 and body["parameter"] == "from"
    status, body = get(api, "/api/rejects?limit=3")
    assert status == 400 and body["parameter"] == "limit"


def test_rejects_without_the_lake_is_503_saying_why(settings, tmp_path):
    lake_routes()
    empty = warehouse(scratch_settings(settings), f"file://{tmp_path}")  # no lake.user_actions_rejected in it
    service = Service(empty, SchemaOptions(database="t_unused"), loader_options=None, port=0)
    service.start()
    try:
        status, body = get(service.url, f"/api/rejects?{RANGE}")
    finally:
        service.stop()
    assert status == 503
    assert body["error"].startswith("the lake is not reachable from this service: Paimon table "
                                    "lake.user_actions_rejected does not exist"), body


@pytest.mark.parametrize(("path", "parameter", "words"), [
    ("/api/top-users?limit=0", "limit", "between 1 and 1000"),
    ("/api/top-users?limit=100000", "limit", "between 1 and 1000"),
    ("/api/top-users?limit=ten", "limit", "whole number"),
    ("/api/top-users?window=1d", "window", "one of 5m, 2h"),
    ("/api/top-users?from=yesterday", "from", "ISO 8601"),
    ("/api/top-users?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "from", "before 'to'"),
    ("/api/top-users?from=2020-01-01T00:00:00Z&to=2024-05-01T00:00:00Z", "from", "at most 366 days"),
    ("/api/top-users?sql=SELECT%201", "sql", "unknown parameter"),
    ("/api/top-users?limit=1&limit=2", "limit", "more than once"),
    ("/api/users/abc/activity", "user_id", "whole number"),
    ("/api/users/0/activity", "user_id", "whole number"),
    ("/api/users//activity", "user_id", "whole number"),
])
def test_bad_parameters_are_4xx_with_a_clear_message(api, path, parameter, words):
    status, body = get(api, path)
    assert status == 400
    assert body["parameter"] == parameter and words in body["error"]


def test_unknown_path_and_writes_are_refused(api):
    assert get(api, "/api/query?q=SELECT%201")[0] == 404
    req = urllib.request.Request(api + "/api/status", data=b"DROP DATABASE x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 405


@pytest.mark.parametrize("payload", [
    "10'%20OR%201=1--",
    "10;DROP%20TABLE%20x",
    "2024-05-01T00:00:00Z'%20UNION%20SELECT%201--",
])
def test_injection_attempts_are_rejected_not_executed(api, payload):
    for path, parameter in ((f"/api/top-users?limit={payload}", "limit"), (f"/api/top-users?from={payload}", "from"),
                            (f"/api/users/{payload}/activity", "user_id")):
        status, body = get(api, path)
        assert status == 400 and body["parameter"] == parameter, (path, status, body)
    status, body = get(api, f"/api/top-users?{RANGE}")  # still intact
    assert status == 200 and body["users"][0]["user_id"] == 2
