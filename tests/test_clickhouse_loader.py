"""Loader against the real local Kafka: exact rows, every bad record in the dead-letter table and never fatal,
offsets committed after insert, a replay of the same offsets leaves the query results unchanged, an insert the
server refuses for its size is split, and a ClickHouse outage longer than max.poll.interval.ms loses nothing."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clickhouse.loader import Loader, LoaderOptions
from clickhouse.records import KINDS, parse
from clickhouse.schema import SchemaOptions
from clickhouse.store import ThreadClients, apply_schema
from clickhouse.testing import scratch_settings
from local_services.kafka import ensure_topics

pytestmark = pytest.mark.integration

DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def fmt(t: datetime, millis: bool = False) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if millis else t.strftime("%Y-%m-%d %H:%M:%S")


def records():
    """(table, key, value) triples: valid rows in both time forms, re-emissions, and bad ones."""
    out = []
    w, w_end = DAY + timedelta(hours=8), DAY + timedelta(hours=10)
    for user in range(1, 301):
        key = json.dumps({"window_start": fmt(w), "user_id": user})
        for version, n in ((1, user), (2, user + 1)):  # re-emitted: version 2 wins
            out.append(("user_aggregations", key, json.dumps({
                "window_start": fmt(w), "window_end": fmt(w_end, millis=True), "user_id": user,
                "total_actions": n, "version": 1_700_000_000_000 + version})))
        out.append(("user_action_aggregations", key, json.dumps({
            "window_start": int(w.timestamp() * 1000), "window_end": int(w_end.timestamp() * 1000),  # epoch ms
            "user_id": user, "action_type": f"type_{user % 3}", "actions": 2, "version": 5})))
        rt = w + timedelta(minutes=5 * (user % 4))
        out.append(("user_aggregations_realtime", key, json.dumps({
            "window_start": fmt(rt), "window_end": fmt(rt + timedelta(minutes=5)), "user_id": user,
            "total_actions": 1, "version": 7})))
    bad = [b"not json", b'{"window_start": "2024-13-45 99:00:00", "window_end": "x", "user_id": 1,'
           b' "total_actions": 1, "version": 1}', b'{"user_id": 5}', b"[1, 2]",
           json.dumps({"window_start": fmt(w), "window_end": fmt(w_end), "user_id": -3, "total_actions": 1,
                       "version": 1}).encode()]
    out += [("user_aggregations", "bad", v.decode()) for v in bad]
    return out, len(bad)


@pytest.fixture(scope="module")
def env(services):
    unique_name = f"t_{uuid.uuid4().hex[:10]}"
    settings = scratch_settings(services)
    topics = {f"{unique_name}_{t}": t for t in KINDS}
    ensure_topics(services, {t: 3 for t in topics})
    by_table = {v: k for k, v in topics.items()}
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "linger.ms": 5})
    recs, bad = records()
    for table, key, value in recs:
        producer.produce(by_table[table], key=key.encode(), value=value.encode())
    producer.produce(by_table["user_aggregations"], key=b"tomb", value=None)  # a tombstone: a dead letter too
    assert producer.flush(30) == 0
    clients = ThreadClients(settings.clickhouse_dsn)
    apply_schema(clients.get(), SchemaOptions(database=unique_name))
    yield {"settings": settings, "topics": topics, "db": unique_name, "clients": clients,
           "produced": len(recs) + 1, "bad": bad + 1}
    clients.close()


def run_loader(env, group: str) -> Loader:
    options = LoaderOptions(group_id=group, batch_rows=500, max_latency_s=0.3, topics=env["topics"],
                            database=env["db"])
    loader = Loader(env["settings"].kafka_client_config(), env["clients"].get, options)
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + 90
    target = env["produced"]
    while time.monotonic() < deadline:
        m = loader.metrics.snapshot()
        if m["rows_inserted"] + m["rows_rejected"] >= target:
            break
        time.sleep(0.2)
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    return loader


def results(env) -> dict:
    c, db = env["clients"].get(), env["db"]
    q = {
        "agg": f"SELECT count(), sum(total_actions) FROM {db}.user_aggregations FINAL",
        "act": f"SELECT action_type, count(), sum(actions), min(window_start) FROM {db}.user_action_aggregations FINAL "
               "GROUP BY action_type ORDER BY action_type",
        "rt": f"SELECT window_start, sum(total_actions) FROM {db}.user_aggregations_realtime FINAL "
              "GROUP BY window_start ORDER BY window_start",
    }
    return {k: c.query(v).result_rows for k, v in q.items()}


def committed(env, group: str) -> dict:
    consumer = Consumer({"bootstrap.servers": env["settings"].kafka_bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(t, p) for t in env["topics"] for p in range(3)]
        return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
    finally:
        consumer.close()


def test_loader_inserts_exact_rows_and_replay_changes_nothing(env):
    unique_name = env["db"]
    loader = run_loader(env, f"{unique_name}_g1")
    m = loader.metrics.snapshot()
    assert m["rows_rejected"] == env["bad"] and m["rejected_by_topic"] == {
        next(t for t, k in env["topics"].items() if k == "user_aggregations"): env["bad"]}
    assert m["rows_inserted"] == env["produced"] - env["bad"]
    assert m["lag_total"] == 0
    # every bad record is a dead letter: its place in Kafka, its bytes, and why
    dead = env["clients"].get().query(f"SELECT raw_value, reason FROM {env['db']}.aggregate_rejects FINAL "
                                      "ORDER BY partition, offset").result_rows
    w = DAY + timedelta(hours=8)
    negative = json.dumps({"window_start": fmt(w), "window_end": fmt(w + timedelta(hours=2)), "user_id": -3,
                           "total_actions": 1, "version": 1})
    assert len(dead) == env["bad"] and dict(dead) == {
        "": "null value (a tombstone): an aggregate table has nothing to delete by key",
        "not json": "invalid literal, expected 'null': line 1 column 1 (char 0)",  # orjson's words (pinned)
        '{"window_start": "2024-13-45 99:00:00", "window_end": "x", "user_id": 1, "total_actions": 1, "version": 1}':
            "window_start '2024-13-45 99:00:00' is neither 'yyyy-MM-dd HH:mm:ss[.SSS]' nor epoch millis",
        '{"user_id": 5}': "missing or null field 'window_start'",
        "[1, 2]": "not a JSON object but list",
        negative: "user_id -3 out of range 1..4294967295",
    }, dead
    first = results(env)
    assert first["agg"] == [(300, sum(u + 1 for u in range(1, 301)))]
    assert [(t, n, s) for t, n, s, _ in first["act"]] == [("type_0", 100, 200), ("type_1", 100, 200),
                                                         ("type_2", 100, 200)]
    assert first["act"][0][3].replace(tzinfo=UTC) == w  # epoch-millis window times read correctly
    assert [s for _, s in first["rt"]] == [75, 75, 75, 75]

    # offsets committed = the end of every partition (everything inserted, nothing pending)
    consumer = Consumer({"bootstrap.servers": env["settings"].kafka_bootstrap, "group.id": "probe"})
    try:
        ends = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in env["topics"] for p in range(3)}
    finally:
        consumer.close()
    assert committed(env, f"{unique_name}_g1") == ends

    # A crash after insert and before commit = the same offsets read again: simulate with a new group.
    replay = run_loader(env, f"{unique_name}_g2").metrics.snapshot()
    assert replay["rows_inserted"] == env["produced"] - env["bad"]  # everything really written a second time
    assert results(env) == first


def test_parse_tolerates_both_time_forms_and_names_the_bad_record():
    kind = KINDS["user_aggregations"]
    good = b'{"window_start":"2026-01-01 10:00:00","window_end":"2026-01-01 12:00:00.000","user_id":1,' \
           b'"total_actions":3,"version":9}'
    epoch = b'{"window_start":1767261600000,"window_end":1767268800000,"user_id":2,"total_actions":4,"version":9}'
    fast = parse([good, good], kind)
    assert fast.table.num_rows == 2 and not fast.rejects
    mixed = parse([good, epoch, b"{oops", b'{"window_start":"2026-01-01 10:00:00","user_id":3}'], kind)
    assert mixed.table.num_rows == 2
    assert mixed.table.column("window_start").to_pylist()[0] == mixed.table.column("window_start").to_pylist()[1]
    assert [i for i, _ in mixed.rejects] == [2, 3]
    assert "window_end" in mixed.rejects[1][1]


def test_service_runs_the_loader_and_reports_lag_and_rate(env):
    """The service process's composition: loader thread + API, with the loader's metrics in /api/status."""
    import urllib.request

    from clickhouse.service import Service

    options = LoaderOptions(group_id=f"{env['db']}_svc", batch_rows=1000, max_latency_s=0.3, topics=env["topics"],
                            database=env["db"])
    service = Service(env["settings"], SchemaOptions(database=env["db"]), options, port=0)
    service.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with urllib.request.urlopen(service.url + "/api/status", timeout=10) as resp:
                loader = json.loads(resp.read())["loader"]
            done = loader["rows_inserted"] + loader["rows_rejected"] >= env["produced"]
            if done and loader["lag_total"] == 0 and loader["lag"]:
                break
            time.sleep(0.5)
        assert loader["running"] and loader["group_id"] == f"{env['db']}_svc"
        assert loader["rows_rejected"] == env["bad"]
        assert loader["lag_total"] == 0 and set(loader["lag"]) == set(env["topics"])
        # rows_per_second = rows of the batches inserted in the last 10 s / min(10 s, time since the loader started).
        total = loader["rows_inserted"] + loader["rows_rejected"]
        asked = time.time()
        with urllib.request.urlopen(service.url + "/api/status", timeout=10) as resp:
            rate = json.loads(resp.read())["loader"]
        answered = time.time()
        assert rate["rows_inserted"] + rate["rows_rejected"] == total and rate["last_insert_at"] <= asked
        # The rate over the API is the loader's own metrics; their arithmetic is checked exactly, whatever the box's
        # speed, in test_rows_per_second_counts_exactly_the_last_10_seconds. Here: every row inserted within the
        # last 10 s counts, so the rate is at least those rows over the longest possible span (10 s).
        assert rate["rows_per_second"] >= round(
            sum(n for t, n in service.metrics._recent if t >= answered - 10) / 10, 1), rate
        # and once the last batch is 10 s old, nothing is in the window: the rate is exactly 0, not a lifetime mean
        while time.time() - rate["last_insert_at"] <= 10.5:
            time.sleep(0.5)
        with urllib.request.urlopen(service.url + "/api/status", timeout=10) as resp:
            idle = json.loads(resp.read())["loader"]
        assert idle["rows_inserted"] + idle["rows_rejected"] == total and idle["rows_per_second"] == 0.0
    finally:
        service.stop()


# -- hostile records and a hostile server ---------------------------------------------------------------------------
def _topic_and_db(services, name: str, partitions: int = 1) -> tuple[str, str, ThreadClients]:
    unique = f"t_{uuid.uuid4().hex[:10]}"
    topic = f"{unique}_{name}"
    ensure_topics(services, {topic: partitions})
    clients = ThreadClients(scratch_settings(services).clickhouse_dsn)
    apply_schema(clients.get(), SchemaOptions(database=unique))
    return topic, unique, clients


def _send(services, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap, "linger.ms": 5})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _run_until(loader: Loader, done, timeout: float, during=None) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=loader.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done(loader.metrics.snapshot()):
            if during is not None:
                during(loader.metrics.snapshot())
            assert thread.is_alive() and time.monotonic() < deadline, loader.metrics.snapshot()
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()


def _realtime(start: datetime, user: int, version: int = 1) -> bytes:
    return json.dumps({"window_start": fmt(start), "window_end": fmt(start + timedelta(minutes=5)), "user_id": user,
                       "total_actions": user, "version": version}).encode()


def test_poison_records_are_dead_lettered_and_their_neighbours_loaded(services):
    """The records that once stopped the loader (a version of 2^63, 1e300 as a time, a 20-digit user_id, year 0),
    between good ones in one batch: every good record is loaded, each poison is a dead letter, lag 0."""
    topic, db, clients = _topic_and_db(services, "user_aggregations_realtime")
    w = DAY + timedelta(hours=9)
    poison = [
        _realtime(w, 1)[:-1] + b', "version": 9223372036854775808}',
        json.dumps({"window_start": fmt(w), "window_end": 1e300, "user_id": 1, "total_actions": 1,
                    "version": 1}).encode(),
        _realtime(w, 1).replace(b'"user_id": 1', b'"user_id": 12345678901234567890'),
        json.dumps({"window_start": "0000-01-01 00:00:00", "window_end": "0000-01-01 00:05:00", "user_id": 1,
                    "total_actions": 1, "version": 1}).encode(),
    ]
    values = [_realtime(w, u) for u in range(1, 11)] + poison + [_realtime(w, u) for u in range(11, 21)]
    _send(services, topic, values)
    options = LoaderOptions(group_id=f"{db}_g", batch_rows=1000, max_latency_s=0.3, database=db,
                            topics={topic: "user_aggregations_realtime"})
    loader = Loader(services.kafka_client_config(), clients.get, options)
    _run_until(loader, lambda m: m["rows_inserted"] + m["rows_rejected"] >= len(values) and m["lag_total"] == 0, 90)
    m = loader.metrics.snapshot()
    assert (m["rows_inserted"], m["rows_rejected"], m["lag_total"]) == (20, 4, 0), m
    client = clients.get()
    assert client.query(f"SELECT user_id FROM {db}.user_aggregations_realtime FINAL ORDER BY user_id").result_rows \
        == [(u,) for u in range(1, 21)]
    dead = client.query(f"SELECT offset, reason FROM {db}.aggregate_rejects FINAL ORDER BY offset").result_rows
    assert [o for o, _ in dead] == [10, 11, 12, 13]
    assert [r.split(" ", 2)[:2] for _, r in dead] == [
        ["version", "9223372036854775808"], ["window_end", "1e+300"], ["user_id", "12345678901234567890"],
        ["window_start", "'0000-01-01"]]
    clients.close()


def test_a_batch_spanning_101_days_is_split_and_loaded(services):
    """More partitions than one INSERT may create (ClickHouse's max_partitions_per_insert_block, 100): the server
    refuses the block for what it holds, the loader halves it until each part is accepted; nothing dead-lettered."""
    topic, db, clients = _topic_and_db(services, "user_aggregations")
    first = DAY - timedelta(days=120)
    values = [json.dumps({"window_start": fmt(first + timedelta(days=d)),
                          "window_end": fmt(first + timedelta(days=d, hours=2)), "user_id": 7, "total_actions": d + 1,
                          "version": 1}).encode() for d in range(101)]
    _send(services, topic, values)
    options = LoaderOptions(group_id=f"{db}_g", batch_rows=1000, max_latency_s=1.0, database=db,
                            topics={topic: "user_aggregations"})
    loader = Loader(services.kafka_client_config(), clients.get, options)
    _run_until(loader, lambda m: m["rows_inserted"] + m["rows_rejected"] >= 101 and m["lag_total"] == 0, 90)
    m = loader.metrics.snapshot()
    assert (m["rows_inserted"], m["rows_rejected"]) == (101, 0) and m["splits"] >= 1, m
    assert clients.get().query(f"SELECT count(), sum(total_actions) FROM {db}.user_aggregations FINAL").result_rows \
        == [(101, sum(range(1, 102)))]
    clients.close()


def test_a_clickhouse_outage_longer_than_max_poll_interval_loses_nothing(services):
    """The target table is taken away (DETACH) while records arrive, for longer than the consumer may go without
    polling (max.poll.interval.ms 7 s here); inserts fail as the server refuses them, the loader keeps its group
    membership by polling paused partitions, and once the table is back every record is loaded, once."""
    topic, db, clients = _topic_and_db(services, "user_aggregations_realtime", partitions=2)
    w = DAY + timedelta(hours=11)
    options = LoaderOptions(group_id=f"{db}_g", batch_rows=100, max_latency_s=0.2, database=db, retry_max_s=1.0,
                            topics={topic: "user_aggregations_realtime"},
                            kafka={"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000",
                                   "max.poll.interval.ms": "7000"})
    loader = Loader(services.kafka_client_config(), clients.get, options)
    admin = clients.get()
    phase = {"detached_at": None, "attached": False}

    def during(m: dict) -> None:
        if phase["detached_at"] is None and m["rows_inserted"] >= 50:
            admin.command(f"DETACH TABLE {db}.user_aggregations_realtime")
            phase["detached_at"] = time.monotonic()
            _send(services, topic, [_realtime(w, u) for u in range(51, 301)])  # arrive during the outage
        elif (phase["detached_at"] is not None and not phase["attached"]
              and time.monotonic() - phase["detached_at"] > 15):
            assert m["waiting_for_clickhouse_s"] and m["insert_failures"] > 0, m
            admin.command(f"ATTACH TABLE {db}.user_aggregations_realtime")
            phase["attached"] = True

    _send(services, topic, [_realtime(w, u) for u in range(1, 51)])
    _run_until(loader, lambda m: phase["attached"] and m["rows_inserted"] >= 300 and m["lag_total"] == 0, 180,
               during=during)
    m = loader.metrics.snapshot()
    assert (m["rows_inserted"], m["rows_rejected"], m["waiting_for_clickhouse_s"]) == (300, 0, None), m
    assert "UNKNOWN_TABLE" in m["last_error"] or "60" in m["last_error"]
    assert admin.query(f"SELECT count(), uniqExact(user_id) FROM {db}.user_aggregations_realtime FINAL").result_rows \
        == [(300, 300)]
    clients.close()


def test_rows_per_second_counts_exactly_the_last_10_seconds(monkeypatch):
    """rows_per_second = rows of the inserts in the last 10 s / min(10 s, time since the loader started), on a
    clock of the test's own, so every figure is exact however slow the box."""
    from clickhouse import loader

    clock = [1_000.0]
    monkeypatch.setattr(loader.time, "time", lambda: clock[0])
    metrics = loader.LoaderMetrics()  # started at 1000.0

    def rate_at(t: float) -> float:
        clock[0] = t
        return metrics.snapshot()["rows_per_second"]

    assert rate_at(1_000.5) == 0.0
    clock[0] = 1_001.0
    metrics.inserted(300, 20, "t", "user_aggregations", 0.01)  # rejected rows count too: 320 rows handled
    assert rate_at(1_002.0) == 160.0  # 320 over the 2 s since the start
    clock[0] = 1_006.0
    metrics.inserted(100, 0, "t", "user_aggregations", 0.01)
    assert rate_at(1_010.0) == 42.0  # 420 over 10 s
    assert rate_at(1_011.0) == 42.0  # the first insert is exactly 10 s old: still in the window
    assert rate_at(1_011.5) == 10.0  # ... and then out of it: 100 over 10 s
    assert rate_at(1_016.5) == 0.0  # nothing in the last 10 s: 0, not a lifetime mean
    assert metrics.snapshot()["rows_inserted"] == 400 and metrics.snapshot()["rows_rejected"] == 20
