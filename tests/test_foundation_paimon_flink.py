"""Paimon tables on file:// and s3:// warehouses, and a real Flink mini-cluster job with the fetched jars."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from base.config import Settings
from lakehouse import catalog as lake_catalog

pytestmark = pytest.mark.integration

SCHEMA = pa.schema([("user_id", pa.int64()), ("event_date", pa.string()), ("event_hour", pa.int32())])


def _write_and_read(settings: Settings, table_name: str) -> tuple[pa.Table, object]:
    from pypaimon.schema.schema import Schema

    catalog = lake_catalog.open_catalog(settings)
    schema = Schema.from_pyarrow_schema(
        SCHEMA, partition_keys=["event_date", "event_hour"], options={"bucket": "128", "bucket-key": "user_id"}
    )
    ident = f"{lake_catalog.DATABASE}.{table_name}"
    catalog.create_table(ident, schema, False)
    table = catalog.get_table(ident)
    rows = pa.Table.from_pydict(
        {"user_id": [1, 2, 3, 4], "event_date": ["2026-11-23"] * 3 + ["2026-11-24"], "event_hour": [0, 0, 2, 22]},
        SCHEMA,
    )
    builder = table.new_batch_write_builder()
    write, commit = builder.new_write(), builder.new_commit()
    write.write_arrow(rows)
    commit.commit(write.prepare_commit())
    write.close()
    commit.close()
    read = table.new_read_builder()
    return read.new_read().to_arrow(read.new_scan().plan().splits()), table


def test_pypaimon_partitioned_128_bucket_table_on_file_warehouse(tmp_path, settings: Settings) -> None:
    local = replace(settings, paimon_warehouse=f"file://{tmp_path}/wh")
    result, table = _write_and_read(local, "foundation_file")
    assert sorted(result.column("user_id").to_pylist()) == [1, 2, 3, 4]
    assert table.options.bucket() == 128
    partitions = sorted(p.name for p in (tmp_path / "wh" / "lake.db" / "foundation_file").glob("event_date=*"))
    assert partitions == ["event_date=2026-11-23", "event_date=2026-11-24"]
    buckets = list((tmp_path / "wh" / "lake.db" / "foundation_file").glob("event_date=*/event_hour=*/bucket-*"))
    assert len(buckets) == 4 and all(0 <= int(b.name.split("-")[1]) < 128 for b in buckets)


def test_pypaimon_table_on_s3_warehouse(services: Settings, unique_name: str) -> None:
    from local_services import s3

    on_s3 = replace(services, paimon_warehouse=f"s3://{services.s3_bucket}/{unique_name}")
    result, _ = _write_and_read(on_s3, "foundation_s3")
    assert sorted(result.column("user_id").to_pylist()) == [1, 2, 3, 4]
    keys = [
        o["Key"]
        for o in s3.client(services).list_objects_v2(Bucket=services.s3_bucket, Prefix=unique_name)["Contents"]
    ]
    # one data file per written (partition, bucket): each row's, as Paimon hashes user_id into 128 buckets
    from lakehouse.bucketing import buckets_of

    rows = result.sort_by("user_id")
    expected = {f"{unique_name}/lake.db/foundation_s3/event_date={d}/event_hour={h}/bucket-{b}"
                for d, h, b in zip(rows["event_date"].to_pylist(), rows["event_hour"].to_pylist(),
                                   buckets_of(rows["user_id"].to_numpy(), 128).tolist(), strict=True)}
    data_files = [k for k in keys if k.endswith(".parquet")]
    assert sorted(k.rsplit("/", 1)[0] for k in data_files) == sorted(expected), keys


def test_flink_minicluster_reads_kafka_bounded_into_paimon(services: Settings, unique_name: str, tmp_path) -> None:
    from confluent_kafka import Producer

    from local_services import kafka
    from local_services.flink_runtime import create_table_env

    kafka.ensure_topics(services, {unique_name: 6})
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    for user_id in range(1, 101):
        producer.produce(unique_name, key=str(user_id), value=str(user_id))
    assert producer.flush(30) == 0

    on_s3 = replace(services, paimon_warehouse=f"s3://{services.s3_bucket}/{unique_name}")
    t_env = create_table_env(on_s3, streaming=False, parallelism=2)
    t_env.execute_sql(lake_catalog.flink_create_catalog_sql(on_s3))
    t_env.execute_sql(f"CREATE DATABASE IF NOT EXISTS {lake_catalog.CATALOG_NAME}.lake")
    t_env.execute_sql(
        f"CREATE TABLE {lake_catalog.CATALOG_NAME}.lake.smoke (user_id BIGINT, event_date STRING, "
        "event_hour INT) PARTITIONED BY (event_date, event_hour) WITH ('bucket' = '128', 'bucket-key' = 'user_id')"
    )
    t_env.execute_sql(
        f"""CREATE TEMPORARY TABLE src (v STRING) WITH (
        'connector' = 'kafka', 'topic' = '{unique_name}',
        'properties.bootstrap.servers' = '{services.kafka_bootstrap}',
        'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset',
        'value.format' = 'raw')"""
    )
    t_env.execute_sql(
        f"INSERT INTO {lake_catalog.CATALOG_NAME}.lake.smoke "
        "SELECT CAST(v AS BIGINT), '2026-11-23', 0 FROM src"
    ).wait()

    # Read back with pypaimon: exactly the 100 users, in 128-bucket layout, on the real S3 server.
    table = lake_catalog.open_catalog(on_s3).get_table("lake.smoke")
    read = table.new_read_builder()
    rows = read.new_read().to_arrow(read.new_scan().plan().splits())
    assert sorted(rows.column("user_id").to_pylist()) == list(range(1, 101))
