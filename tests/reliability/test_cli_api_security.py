"""Bad flags, bad URLs, unreachable services, hostile API parameters; and the security basics.

Invariants:
- a CLI given a bad flag, a bad URL or an unreachable service exits non-zero with one readable line on stderr
  (no traceback) and writes nothing;
- the API answers every write method with 405, unknown or SQL-shaped requests with 4xx, and changes nothing;
- every local service listens on loopback only; the demo credentials appear nowhere in the repository but
  base/config.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace

import pytest

from base.config import PROJECT_ROOT, Settings
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


def run_cli(argv: list[str], env: dict[str, str] | None = None,
            module: str = "pipeline") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


CLI_CASES = [
    # (argv, extra env, module, words in the error line)
    (["--kafka-bootstrap", "127.0.0.1:1", "produce", "--count", "1", "--topic", "{topic}"], {}, "pipeline",
     "cannot reach a broker"),
    (["--kafka-bootstrap", "not-a-host-port", "produce", "--count", "1"], {}, "pipeline", "not host:port"),
    (["--warehouse", "ftp://bucket/x", "config"], {}, "pipeline", "must start with file:// or s3://"),
    (["--warehouse", "s3:///no-bucket", "config"], {}, "pipeline", "names no bucket"),
    (["config"], {"S3_ENDPOINT": "javascript:alert(1)"}, "pipeline", "must be an http(s):// URL"),
    (["config"], {"KAFKA_PARTITIONS": "six"}, "pipeline", "not a whole number"),
    (["produce", "--rate", "-5"], {}, "pipeline", "--rate"),
    (["produce", "--count", "1e99999"], {}, "pipeline", "--count"),
    (["produce", "--invalid-fraction", "2"], {}, "pipeline", "--invalid-fraction"),
    (["produce", "--start-time", "'; DROP TABLE x; --"], {}, "pipeline", "--start-time"),
    (["clickhouse", "schema", "--database", "x; DROP DATABASE analytics"], {"CLICKHOUSE_URL": "http://127.0.0.1:1"},
     "pipeline", "database"),
    (["clickhouse", "schema"], {"CLICKHOUSE_URL": "http://127.0.0.1:1"}, "pipeline", "cannot connect"),
    (["--kafka-bootstrap", "127.0.0.1:1", "--source-topic", "{topic}", "--bounded"], {}, "flink_job",
     "cannot reach a broker"),
    (["--source-topic", "a'b", "--bounded"], {}, "flink_job", "quote"),
    (["--flink-conf", "rest.port", "--explain"], {}, "flink_job", "not KEY=VALUE"),
]


@pytest.mark.parametrize("argv, env, module, words", CLI_CASES,
                         ids=[f"{m}:{' '.join(a)[:40]}{'+env' if e else ''}" for a, e, m, _ in CLI_CASES])
def test_cli_errors_are_one_line_non_zero_and_write_nothing(services, unique_name, tmp_path, argv, env, module,
                                                            words) -> None:
    data_dir = tmp_path / "data"
    argv = [a.replace("{topic}", unique_name) for a in argv]
    proc = run_cli(argv, {"DATA_DIR": str(data_dir), **env}, module)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr  # README: 2 for a bad flag or an unreachable service
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") or ": error:" in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert not data_dir.exists() or not any(data_dir.rglob("*.parquet"))
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10).topics
    assert unique_name not in topics  # nothing was created on the way to the error


# -- the API, served by a real ClickHouse service process on its own port and scratch directory ------------------
# Rows the service starts with (seeded through the CLI before it owns the chDB directory), so "stored rows
# unchanged" compares real data: 2-hour rows of users 7 and 8 (user 7 in two versions: ReplacingMergeTree keeps
# version 2 already at insert), one per-action row and two 5-minute rows, all within the API's default 24 hours.
_TWO_H = "toStartOfInterval(now() - INTERVAL 3 HOUR, INTERVAL 2 HOUR) AS s, s + INTERVAL 2 HOUR"
_FIVE_M = "toStartOfInterval(now() - INTERVAL 1 HOUR, INTERVAL 5 MINUTE) AS s, s + INTERVAL 5 MINUTE"
SEED_SQL = [
    f"INSERT INTO analytics.user_aggregations SELECT {_TWO_H}, u, n, v "
    "FROM values('u UInt32, n UInt32, v UInt64', (7, 5, 1), (7, 6, 2), (8, 2, 1))",
    f"INSERT INTO analytics.user_action_aggregations SELECT {_TWO_H}, 7, 'app_open', 6, 2",
    f"INSERT INTO analytics.user_aggregations_realtime SELECT {_FIVE_M}, u, n, 1 "
    "FROM values('u UInt32, n UInt32', (7, 4), (8, 2))",
]
SEEDED_ROWS = {"user_aggregations": 2, "user_action_aggregations": 1, "user_aggregations_realtime": 2}
SEEDED_TOP_USERS = [(7, 6), (8, 2)]  # 2-hour totals: version 2 of user 7
TABLES = tuple(SEEDED_ROWS)
# Every stored row (not FINAL: what is on disk), without the window times (they follow now()): (user, count, version).
SEEDED = {"user_aggregations": [(7, 6, 2), (8, 2, 1)], "user_action_aggregations": [(7, 6, 2)],
          "user_aggregations_realtime": [(7, 4, 1), (8, 2, 1)]}


def stored(env: dict[str, str]) -> dict[str, list[dict]]:
    """Every row of the three tables as stored, all columns, read by the CLI (the service must be stopped: it owns
    the embedded chDB directory)."""
    rows = {}
    for table in TABLES:
        read = run_cli(["clickhouse", "sql", f"SELECT * FROM analytics.{table} ORDER BY ALL", "--format",
                        "JSONEachRow"], env)
        assert read.returncode == 0, read.stderr
        rows[table] = [json.loads(line) for line in read.stdout.splitlines()]
    return rows


@dataclass
class Served:
    settings: Settings
    url: str
    env: dict[str, str]
    before: dict[str, list[dict]]  # every stored row when the service started

    def stored_now(self) -> dict[str, list[dict]]:
        """Every stored row now: the service stopped for the CLI to read them, then started again."""
        from clickhouse import service_process

        service_process.stop(self.settings)
        try:
            return stored(self.env)
        finally:
            service_process.start(self.settings, extra_args=["--no-loader"])


@pytest.fixture(scope="module")
def service(services: Settings, tmp_path_factory):
    from clickhouse import service_process

    settings = replace(services, data_dir=tmp_path_factory.mktemp("ch-service"), dashboard_port=free_port(),
                       clickhouse_url=None)
    env = {**os.environ, **settings.to_env()}
    env.pop("CLICKHOUSE_URL", None)
    assert run_cli(["clickhouse", "schema"], env).returncode == 0
    for statement in SEED_SQL:
        seeded = run_cli(["clickhouse", "sql", statement], env)
        assert seeded.returncode == 0, seeded.stderr
    before = stored(env)
    count = {"user_aggregations": "total_actions", "user_action_aggregations": "actions",
             "user_aggregations_realtime": "total_actions"}
    assert {t: [(r["user_id"], r[count[t]], r["version"]) for r in rows] for t, rows in before.items()} == SEEDED
    service_process.start(settings, extra_args=["--no-loader"])
    try:
        yield Served(settings, service_process.url(settings), env, before)
    finally:
        service_process.stop(settings)


def request(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if resp.headers.get_content_type() == "application/json" else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def api_paths(base: str) -> list[str]:
    _, doc = request(base + "/openapi.json")
    return [p.replace("{user_id}", "42") for p in doc["paths"]]


def stored_rows(base: str) -> dict:
    status, body = request(base + "/api/status")
    assert status == 200
    return {t["table"]: t.get("rows") for t in body["tables"]}


def top_users(base: str) -> list[tuple[int, int]]:
    status, body = request(base + "/api/top-users?window=2h")
    assert status == 200, body
    return [(u["user_id"], u["actions"]) for u in body["users"]]


def assert_seed_intact(base: str) -> None:
    assert stored_rows(base) == SEEDED_ROWS
    assert top_users(base) == SEEDED_TOP_USERS


def test_api_is_read_only_every_write_method_is_405(service) -> None:
    base = service.url
    assert_seed_intact(base)
    for path in ["/", "/healthz", "/openapi.json", *api_paths(base)]:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            status, body = request(base + path, method, data=b"DROP DATABASE analytics")
            assert status == 405, (method, path, status)
            assert "read-only" in body["error"]
    assert_seed_intact(base)


HOSTILE = ["1;DROP TABLE analytics.user_aggregations", "1' OR '1'='1", "SELECT 1", "-1", "0", "99999999999999",
           "1e9", "%00", "2024-13-45T99:00:00Z", "1969-12-31T23:59:59Z", "x" * 5000]


def test_api_rejects_out_of_range_and_injection_shaped_parameters_with_4xx(service) -> None:
    base = service.url
    assert_seed_intact(base)
    checked = 0
    paths = api_paths(base)
    assert sorted(paths) == ["/api/action-types", "/api/action-types/series", "/api/distribution", "/api/events",
                             "/api/hourly", "/api/rejects", "/api/status", "/api/top-users",
                             "/api/users/42/activity"], paths
    for path in paths:
        for name in ("limit", "from", "to", "window", "sql", "query", "q"):
            for value in HOSTILE:
                status, body = request(f"{base}{path}?{urllib.parse.urlencode({name: value})}")
                if path == "/api/status" or name in ("sql", "query", "q"):
                    assert status == 400 and "unknown parameter" in body["error"], (path, name, value, body)
                else:
                    assert status == 400 and body["parameter"] == name, (path, name, value, status, body)
                checked += 1
        for raw_id in ("0", "-1", "4294967296", "1;DROP", "1%20OR%201=1", "SELECT", "", "1.5"):
            status, body = request(f"{base}/api/users/{raw_id}/activity")
            assert status == 400 and body["parameter"] == "user_id", (raw_id, status, body)
        # the server decodes %2F to a path separator: /api/users/../1/activity is no route at all
        status, body = request(f"{base}/api/users/%2F..%2F1/activity")
        assert status == 404 and body["error"].startswith("no endpoint"), (status, body)
    for path in ("/api/sql", "/api/query?q=SELECT%201", "/../base/config.py", "/static/../../pyproject.toml"):
        assert request(base + path)[0] == 404, path
    assert checked == len(paths) * 7 * len(HOSTILE) == 693
    assert_seed_intact(base)
    # every stored row of the three tables, all columns, exactly as before (and the 405 test's writes before it)
    assert service.stored_now() == service.before


# -- security basics -------------------------------------------------------------------------------------------------
def test_services_listen_on_loopback_only(services, service) -> None:
    from clickhouse import service_process
    from local_services import kafka, s3
    from tests.conftest import listening_addresses

    ch_settings = service.settings
    pids = {"kafka": kafka.process(services).pid(), "s3": s3.process(services).pid(),
            "clickhouse": service_process.process(ch_settings).pid()}
    for name, pid in pids.items():
        # the session fixtures start these with PID files; one started elsewhere cannot be checked: fail, not skip
        assert pid is not None, f"{name} runs without the project's PID file: stop it and let the tests start it"
        addresses = listening_addresses(pid)
        assert addresses, name
        for address in addresses:
            ip = address.rsplit(":", 1)[0]
            assert ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1"), (name, address)


def test_demo_credentials_only_in_config() -> None:
    from base import config

    for secret in (config._DEMO_S3_ACCESS_KEY, config._DEMO_S3_SECRET_KEY):
        found = subprocess.run(["git", "grep", "-l", "-F", secret, "--", ".", ":!base/config.py"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert found.returncode == 1 and not found.stdout, found.stdout  # 1 = no match


def test_kafka_security_settings_are_passed_through() -> None:
    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                  "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw",
                                  "KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem"})
    conf = settings.kafka_client_config()
    assert conf == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "pw",
                    "ssl.ca.location": "/etc/ssl/ca.pem"}
    assert "pw" not in dict(settings.describe()).values()
    assert Settings.from_env({}).kafka_client_config() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_flink_job_kafka_tables_get_the_security_settings() -> None:
    """The job's Kafka source and sinks carry the same settings, as the Java client (shaded in the connector)
    reads them; the login module named must exist in the connector jar."""
    import zipfile

    from flink_job import pipeline, sql_text
    from flink_job.job_config import JobConfig

    settings = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                  "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "p'w\"x",
                                  "KAFKA_SSL_CA_LOCATION": "/etc/ssl/ca.pem"})
    options = pipeline.kafka_security_options(settings)
    jaas = options.pop("properties.sasl.jaas.config")
    assert options == {"properties.security.protocol": "SASL_SSL", "properties.sasl.mechanism": "SCRAM-SHA-512",
                       "properties.ssl.truststore.type": "PEM", "properties.ssl.truststore.location": "/etc/ssl/ca.pem"}
    module = jaas.split()[0]
    assert jaas == f'{module} required username="svc" password="p\'w\\"x";'
    jar = next((Settings.from_env().jars_dir / "flink").glob("flink-sql-connector-kafka-*.jar"), None)
    assert jar is not None, "flink-sql-connector-kafka jar missing: scripts/setup.sh fetches it"
    assert module.replace(".", "/") + ".class" in zipfile.ZipFile(jar).namelist()

    params = pipeline.sql_params(settings, JobConfig(action_types=("click",)))
    rendered = [sql_text.render(path.read_text(), params) for path in sql_text.sql_files()]
    kafka_tables = [sql for sql in rendered if "'connector' = 'kafka'" in sql]
    assert len(kafka_tables) == 4  # the source and the three aggregate sinks
    for sql in kafka_tables:
        assert "'properties.security.protocol' = 'SASL_SSL'" in sql
        assert "password=\"p''w\\\"x\";'" in sql  # the quote doubled inside the SQL literal

    plain = pipeline.sql_params(Settings.from_env({}), JobConfig(action_types=("click",)))
    assert plain["kafka_source_security_options"] == "" and "security" not in plain["kafka_sink_options"]
