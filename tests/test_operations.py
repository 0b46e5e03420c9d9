"""The monitoring of the compose stack, checked without a container runtime: Prometheus scrapes every process that
serves metrics (at the port and with the credentials that process uses), every alert rule and Grafana query parses as
PromQL (the promql-parser package: Prometheus's grammar), and every metric they name is one the project serves (the
ClickHouse service's names from a real service registry here; the producer's and Flink's from their running processes
in tests/test_producer_metrics.py and tests/test_flink_metrics.py, which import ``referenced_metrics``)."""

from __future__ import annotations

import json
import re

import promql_parser
import pytest
import yaml

from base.config import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
ALERTS = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
_NAME = re.compile(r"\b((?:pipeline|flink)_[A-Za-z0-9_]+)")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def alert_rules() -> list[dict]:
    return [rule for group in ALERTS["groups"] for rule in group["rules"]]


def prometheus_queries() -> list[tuple[str, str]]:
    """(where, expression) of every alert rule and every Prometheus query of the Grafana dashboards."""
    out = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") == "prometheus":
                    out.append((f"{path.name}: {panel['title']}", target["expr"]))
    return out


def referenced_metrics(prefix: str) -> dict[str, list[str]]:
    """Metric family name -> where it is used, for the names starting with ``prefix`` (suffixes such as _bucket or
    _total folded into the family name)."""
    out: dict[str, list[str]] = {}
    for where, expr in prometheus_queries():
        for name in _NAME.findall(expr):
            if name.startswith(prefix):
                out.setdefault(family(name), []).append(where)
    return out


def family(sample_name: str) -> str:
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def scrape_targets(job: str) -> list[str]:
    config = next(c for c in PROMETHEUS["scrape_configs"] if c["job_name"] == job)
    targets = [t for sc in config.get("static_configs", []) for t in sc["targets"]]
    targets += [f"{name}:{sd['port']}" for sd in config.get("dns_sd_configs", []) for name in sd["names"]]
    return targets


# -- the rules and queries ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("where,expr", prometheus_queries(), ids=lambda v: v if " " not in v else None)
def test_every_alert_and_dashboard_query_parses_as_promql(where: str, expr: str) -> None:
    promql_parser.parse(expr)  # raises with the position of a syntax error


def test_every_alert_has_a_severity_a_summary_and_a_threshold_documented() -> None:
    operations = (PROJECT_ROOT / "docs/operations.md").read_text()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in operations, f"{rule['alert']} is not explained in docs/operations.md"


def test_grafana_provisions_prometheus_and_each_dashboard_uses_a_provisioned_datasource() -> None:
    uids = set()
    for path in (DEPLOY / "grafana" / "provisioning" / "datasources").glob("*.yml"):
        uids |= {d["uid"] for d in yaml.safe_load(path.read_text())["datasources"]}
    assert {"prometheus", "clickhouse"} <= uids
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] in uids, (path.name, panel["title"])
    health = json.loads((DEPLOY / "grafana" / "dashboards" / "pipeline-health.json").read_text())
    titles = " | ".join(p["title"] for p in health["panels"]).lower()
    for subject in ("ingest rate vs processed rate", "lag", "checkpoint duration", "checkpoint size",
                    "checkpoint failures", "backpressure", "freshness", "rejected records by reason",
                    "lake files per open and closed slot", "maintenance"):
        assert subject in titles, f"the health dashboard has no panel on {subject}"


# -- what Prometheus scrapes ----------------------------------------------------------------------------------------
def test_prometheus_scrapes_flink_on_the_port_its_reporter_listens_on() -> None:
    props = dict(line.split(": ", 1) for line in
                 SERVICES["jobmanager"]["environment"]["FLINK_PROPERTIES"].strip().splitlines())
    assert props["metrics.reporter.prom.factory.class"] == \
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    port = props["metrics.reporter.prom.port"]
    assert scrape_targets("flink-jobmanager") == [f"jobmanager:{port}"]
    # every TaskManager replica: compose's DNS answers the service name with each container's address
    assert scrape_targets("flink-taskmanager") == [f"taskmanager:{port}"]
    assert SERVICES["taskmanager"]["deploy"]["replicas"] > 1


@pytest.mark.parametrize("service", ["loader", "dashboard"])
def test_prometheus_reaches_each_clickhouse_service_through_its_access_rules(service: str) -> None:
    """/metrics is behind the dashboard token: Prometheus sends it from the secret, the service listens beyond its
    loopback (which requires the token) and answers the Host header Prometheus sends."""
    env = SERVICES[service]["environment"]
    assert env["DASHBOARD_HOST"] == "0.0.0.0" and env["DASHBOARD_TOKEN_FILE"] == "/run/secrets/dashboard_token"
    assert "dashboard_token" in SERVICES[service]["secrets"]
    assert service in env["DASHBOARD_ALLOWED_HOSTS"].split(",")
    config = next(c for c in PROMETHEUS["scrape_configs"] if c["job_name"] == service)
    assert config["authorization"]["credentials_file"] == "/run/secrets/dashboard_token"
    assert "dashboard_token" in SERVICES["prometheus"]["secrets"]
    assert scrape_targets(service) == [f"{service}:8050"]


def test_prometheus_scrapes_the_demo_producer_on_its_metrics_port_and_does_not_page_when_it_is_off() -> None:
    command = SERVICES["producer"]["command"]
    port = command[command.index("--metrics-port") + 1]
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert scrape_targets("producer") == [f"producer:{port}"]
    down = next(r for r in alert_rules() if r["alert"] == "TargetDown")
    assert 'job!="producer"' in down["expr"]


def test_prometheus_loads_the_mounted_rules_and_keeps_its_data_on_a_volume() -> None:
    mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    for rule_file in PROMETHEUS["rule_files"]:
        assert (PROJECT_ROOT / mounts[rule_file]).is_file(), rule_file
    assert mounts["/prometheus"] in COMPOSE["volumes"]
    assert any("--storage.tsdb.path=/prometheus" == arg for arg in SERVICES["prometheus"]["command"])


# -- the metrics named are the metrics served -------------------------------------------------------------------------
def test_every_clickhouse_service_metric_the_rules_name_is_served(settings, unique_name) -> None:
    """A real service registry over an embedded ClickHouse holding a loaded batch, a restatement and a maintenance
    pass: the families it serves include every ``pipeline_`` name of the rules and dashboards (but the producer's)."""
    from datetime import UTC, datetime

    from prometheus_client.parser import text_string_to_metric_families

    from clickhouse.loader import LoaderMetrics
    from clickhouse.metrics import ServiceMetrics
    from clickhouse.schema import SchemaOptions
    from clickhouse.store import ThreadClients, apply_schema
    from clickhouse.testing import scratch_settings
    from lakehouse.maintainer import Maintainer, MaintenancePolicy, TickReport

    clients = ThreadClients(scratch_settings(settings).clickhouse_dsn)
    try:
        client = clients.get()
        apply_schema(client, SchemaOptions(database=unique_name))
        now = datetime.now(UTC)
        client.insert(f"{unique_name}.restatements", [[now, now, 10, 2, 1]],
                      column_names=["slot_start", "restated_at", "lake_events", "rows_upserted", "rows_deleted"])
        client.insert(f"{unique_name}.user_aggregations_realtime", [[now, now, 1, 1, 1]],
                      column_names=["window_start", "window_end", "user_id", "total_actions", "version"])
        Maintainer(settings, MaintenancePolicy(database=unique_name), clickhouse=clients.get)._record(TickReport(), 1.0)
        loader = LoaderMetrics()
        loader.inserted(5, 1, "user_aggregations", "user_aggregations", 0.02)
        loader.set(partition_lag={("user_aggregations", 0): 3})
        metrics = ServiceMetrics(clients, unique_name, loader, lambda: True)
        metrics.observe("/api/status", 200, 0.01)
        served = {f.name for f in text_string_to_metric_families(metrics.render().decode())}
    finally:
        clients.close()
    wanted = {name: where for name, where in referenced_metrics("pipeline_").items()
              if not name.startswith("pipeline_producer_")}
    assert wanted, "the rules name no ClickHouse service metric"
    missing = {name: where for name, where in wanted.items() if name not in served}
    assert not missing, f"named in the rules/dashboards but not served: {missing}"


def test_the_operations_page_lists_every_metric_family_the_rules_use() -> None:
    operations = (PROJECT_ROOT / "docs/operations.md").read_text()
    for name in {**referenced_metrics("pipeline_"), **referenced_metrics("flink_")}:
        assert name in operations, f"{name} is used by the rules or dashboards but not listed in docs/operations.md"
