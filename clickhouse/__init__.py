"""Everything on the ClickHouse side: schema, loader from the aggregate topics, dashboard and JSON API.

All of it goes through one ``clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)``: a
server when CLICKHOUSE_URL is set, otherwise the embedded chDB directory under DATA_DIR.
"""
