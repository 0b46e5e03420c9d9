"""What the maintenance records and what /metrics, /api/status and `clickhouse status` make of it, on a real
(embedded) ClickHouse: one pass recorded by the maintainer's own code, read back by the service's."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clickhouse.cli import status_lines
from clickhouse.metrics import ServiceMetrics
from clickhouse.queries import Queries
from clickhouse.schema import SchemaOptions
from clickhouse.store import ThreadClients, apply_schema
from clickhouse.testing import scratch_settings
from lakehouse.maintainer import Maintainer, MaintenancePolicy, TickReport


@pytest.fixture
def clients(settings):
    clients = ThreadClients(scratch_settings(settings).clickhouse_dsn)
    yield clients
    clients.close()


def samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode()) for s in family.samples}


def test_a_recorded_pass_reaches_metrics_status_and_text(settings, clients, unique_name):
    apply_schema(clients.get(), SchemaOptions(database=unique_name))
    metrics = ServiceMetrics(clients, unique_name, loader=None)
    before = samples(metrics)
    assert before[("pipeline_clickhouse_up", ())] == 1 and before[("pipeline_loader_up", ())] == 0
    assert ("pipeline_maintenance_last_pass_timestamp_seconds", ()) not in before  # no pass yet: no series
    assert Queries(clients.get(), unique_name).maintenance() is None

    maintainer = Maintainer(settings, MaintenancePolicy(database=unique_name), clickhouse=clients.get)
    report = TickReport(compacted=["2026-03-01/00", "2026-03-01/02"], snapshots_expired=7, orphans_removed=3,
                        restated=["2026-03-01 00:00"], errors=["expire partitions of user_actions: conflict"],
                        layout={"open_slots": 1, "open_files": 40, "closed_slots": 5, "closed_files": 128 * 5,
                                "uncompacted_slots": 0})
    maintainer._record(TickReport(), 0.5)
    maintainer._record(report, 12.25)

    status = Queries(clients.get(), unique_name).maintenance()
    last = status["last_pass"]
    assert status["passes"] == 2
    assert {k: v for k, v in last.items() if k != "finished_at"} == {
        "duration_s": 12.25, "compacted_slots": 2, "snapshots_expired": 7, "partitions_expired": 0,
        "orphans_removed": 3, "restated_slots": 1, "errors": 1, "error": "expire partitions of user_actions: conflict",
        "open_slots": 1, "open_files": 40, "closed_slots": 5, "closed_files": 640, "uncompacted_slots": 0}

    time.sleep(0.1)
    metrics = ServiceMetrics(clients, unique_name, loader=None)  # a fresh one: no cached scrape
    m = samples(metrics)
    assert abs(m[("pipeline_maintenance_last_pass_timestamp_seconds", ())] - time.time()) < 60
    assert m[("pipeline_maintenance_last_pass_duration_seconds", ())] == 12.25
    assert m[("pipeline_maintenance_passes_24h", ())] == 2
    assert {labels[0][1]: v for (name, labels), v in m.items() if name == "pipeline_maintenance_last_pass"} == {
        "compacted_slots": 2, "snapshots_expired": 7, "partitions_expired": 0, "orphans_removed": 3,
        "restated_slots": 1, "errors": 1}
    assert {labels[0][1]: v for (name, labels), v in m.items() if name == "pipeline_lake_files"} == {
        "open": 40, "closed": 640}
    assert {labels[0][1]: v for (name, labels), v in m.items() if name == "pipeline_lake_slots"} == {
        "open": 1, "closed": 5, "uncompacted": 0}

    text = status_lines({"service": {"service": "clickhouse", "name": "clickhouse", "pid": None, "healthy": False,
                                     "address": "http://127.0.0.1:8050"},
                         "status": {"tables": [], "maintenance": status}, "status_error": None})
    line = next(line for line in text if line.startswith("lake maintenance"))
    assert "compacted 2 slots" in line and "restated 1 slots" in line and "1 errors (expire partitions" in line
    assert "1 open slots (40 files), 5 closed (640 files), 0 closed and waiting" in text[text.index(line) + 1]


def test_clickhouse_unreachable_is_a_metric_not_a_failed_scrape(settings):
    clients = ThreadClients("http://127.0.0.1:9/")  # nothing listens on the discard port
    m = samples(ServiceMetrics(clients, "analytics", loader=None))
    assert m[("pipeline_clickhouse_up", ())] == 0
    assert not any(name.startswith("pipeline_table_") for name, _ in m)
