"""lakehouse on the S3 warehouse (the real local S3 server): pruned reads, describe against the object
listing, and ClickHouse's paimonS3 over the same table."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import clickhouse_connect
import pyarrow.compute as pc
import pytest

from lakehouse import queries, synthetic
from lakehouse.bucketing import bucket_of, buckets_of
from lakehouse.clickhouse_paimon import table_function
from lakehouse.describe import describe
from lakehouse.tables import USER_ACTIONS
from tests.conftest import free_port
from tests.lakehouse_fixtures import DAY_MS, HOUR_MS, chdb_settings, create, warehouse, write

pytestmark = pytest.mark.integration

BASE_MS = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS
DAY = datetime.fromtimestamp(BASE_MS / 1000, UTC).date()


@pytest.fixture(scope="module")
def s3_lake(services):
    from local_services import s3

    prefix = f"lakehouse-{time.time_ns()}"
    on_s3 = warehouse(services, f"s3://{services.s3_bucket}/{prefix}")
    events = create(on_s3, USER_ACTIONS)
    # Six hours (three slots), few users: a hundred-odd objects keeps the S3 round-trips few.
    write(events, synthetic.user_actions(800, BASE_MS, 6 * HOUR_MS, users=20, seed=3))
    write(events, synthetic.user_actions(800, BASE_MS, 6 * HOUR_MS, users=20, seed=4, first_offset=800))
    yield on_s3, events, prefix
    client = s3.client(services)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=services.s3_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=services.s3_bucket, Key=obj["Key"])


def _objects(settings, prefix: str) -> list[dict]:
    from local_services import s3

    client = s3.client(settings)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix)
    return [o for page in pages for o in page.get("Contents", [])]


def test_user_query_on_s3_reads_one_bucket_per_partition(s3_lake):
    _, events, _ = s3_lake
    everything = queries.read(events, queries.plan(events))
    user = int(pc.mode(everything["user_id"])[0]["mode"].as_py())
    bucket = bucket_of(events, user)
    result = queries.user_events(events, user, DAY, DAY)
    assert result.rows.num_rows == pc.sum(pc.equal(everything["user_id"], user)).as_py() > 0
    assert set(result.rows["user_id"].to_pylist()) == {user}
    # one bucket per partition: exactly the slots of DAY where some row fell in the user's bucket
    day = everything.filter(pc.equal(everything["event_date"], DAY.isoformat()))
    in_bucket = buckets_of(day["user_id"].to_numpy(), 128) == bucket
    slots = {hour for hour, hit in zip(day["event_hour"].to_pylist(), in_bucket.tolist(), strict=True) if hit}
    assert result.stats.partitions == result.stats.buckets == len(slots)
    splits = queries.plan(events, [("event_date", "equal", DAY.isoformat())], bucket=bucket)
    assert splits and all(f"/bucket-{bucket}/" in f.file_path and f.file_path.startswith("s3://")
                          for s in splits for f in s.files)


def test_describe_on_s3_matches_the_object_listing(s3_lake, services):
    _, events, prefix = s3_lake
    d = describe(events, "lake.user_actions")
    data = [o for o in _objects(services, f"{prefix}/lake.db/user_actions/event_date=")
            if o["Key"].endswith(".parquet")]
    assert d.snapshots == 2 and d.rows == 1600 and d.partitions.num_rows == 3
    assert d.files == len(data) and d.bytes == sum(o["Size"] for o in data)


def test_clickhouse_paimon_s3_reads_the_same_rows(s3_lake, settings, tmp_path_factory):
    on_s3, events, _ = s3_lake
    source = table_function(on_s3, "user_actions")
    assert source.startswith("paimonS3('http")
    client = clickhouse_connect.get_client(dsn=chdb_settings(settings, tmp_path_factory).clickhouse_dsn)
    try:
        rows = client.query(f"SELECT event_hour, count(), uniqExact(event_id) FROM {source} GROUP BY ALL").result_rows
    finally:
        client.close()
    expected = {r["event_hour"]: r["rows"] for r in queries.partition_counts(events).rows.to_pylist()}
    assert {h: n for h, n, _ in rows} == expected
    assert all(n == distinct for _, n, distinct in rows)


def test_pypaimon_works_with_a_server_that_also_answers_virtual_hosts(services, tmp_path):
    """The shared server answers path-style requests only (MinIO's default, without MINIO_DOMAIN): every test above
    runs against it. A private server started with a virtual-host domain as well (MinIO with MINIO_DOMAIN) serves
    the same path-style client unchanged."""
    from dataclasses import replace

    from local_services import s3

    private = replace(services, data_dir=tmp_path, s3_endpoint=f"http://127.0.0.1:{free_port()}")
    s3.start(private, virtual_domain="localhost")
    try:
        s3.ensure_bucket(private)
        lake = warehouse(private, f"s3://{private.s3_bucket}/vhost")
        events = create(lake, USER_ACTIONS)
        write(events, synthetic.user_actions(200, BASE_MS, 2 * HOUR_MS, users=10, seed=5))
        rows = queries.read(events, queries.plan(events))
        assert rows.num_rows == 200 and pc.count_distinct(rows["event_id"]).as_py() == 200
        # one data file per (slot, bucket) the 200 rows fall in, one commit
        prefix = "vhost/lake.db/user_actions/"
        expected = {f"{prefix}event_date={d}/event_hour={h}/bucket-{b}" for d, h, b in zip(
            rows["event_date"].to_pylist(), rows["event_hour"].to_pylist(),
            buckets_of(rows["user_id"].to_numpy(), 128).tolist(), strict=True)}
        files = [o["Key"].rsplit("/", 1)[0] for o in _objects(private, prefix) if o["Key"].endswith(".parquet")]
        assert sorted(files) == sorted(expected)
    finally:
        s3.stop(private)
