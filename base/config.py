"""Configuration: read once from the environment, overridden by CLI flags, passed down.

This is the single place that reads the environment. Every variable is documented in
``VARIABLES`` (printed by ``pipeline config``) and in the README's configuration table.
Defaults serve only the loopback demo; no secret belongs in the repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlparse

from base.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_S3_BUCKET = "user-actions-paimon"

# Loopback-demo credentials for the local S3 server only; production sets its own.
_DEMO_S3_ACCESS_KEY = "local-demo-access"
_DEMO_S3_SECRET_KEY = "local-demo-secret-key"

VARIABLES: dict[str, str] = {
    "DATA_DIR": "where local services keep data, logs and PID files (default: ./.data in the project)",
    "KAFKA_BOOTSTRAP": "Kafka bootstrap servers, host:port[,host:port] (default: 127.0.0.1:9092)",
    "KAFKA_PARTITIONS": "partitions of user_actions_topic and the aggregate topics (default: 6)",
    "KAFKA_REPLICATION": "replication factor of created topics (default: 1)",
    "PAIMON_WAREHOUSE": "Paimon warehouse URI, file:///path or s3://bucket/path "
    "(default: file://$DATA_DIR/warehouse)",
    "S3_ENDPOINT": "S3 API endpoint for s3:// warehouses (default: http://localhost:9000, the local server)",
    "S3_ACCESS_KEY": "S3 access key (default: the local demo server's key)",
    "S3_SECRET_KEY": "S3 secret key (default: the local demo server's secret)",
    "CLICKHOUSE_URL": "ClickHouse DSN, e.g. http://user:pass@host:8123; unset = embedded chDB under DATA_DIR",
    "FLINK_REST_PORT": "REST/web UI port of the local standalone Flink cluster (default: 8081)",
    "DASHBOARD_PORT": "port of the ClickHouse service's dashboard and JSON API (default: 8050)",
    "DASHBOARD_HOST": "interface the dashboard/API binds to (default: 127.0.0.1; 0.0.0.0 only inside a container)",
    "KAFKA_SECURITY_PROTOCOL": "Kafka security.protocol: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL",
    "KAFKA_SASL_MECHANISM": "Kafka sasl.mechanism, e.g. PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (default: unset)",
    "KAFKA_SASL_USERNAME": "Kafka SASL user name (default: unset)",
    "KAFKA_SASL_PASSWORD": "Kafka SASL password: from the environment or a secrets file, never the repo",
    "KAFKA_SSL_CA_LOCATION": "CA certificate file that signs the brokers' TLS certificates (default: system CAs)",
}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    kafka_bootstrap: str
    kafka_partitions: int
    kafka_replication: int
    paimon_warehouse: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    clickhouse_url: str | None
    flink_rest_port: int
    dashboard_port: int
    dashboard_host: str
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); non-None overrides (CLI flags) win."""
        env = os.environ if env is None else env
        data_dir = Path(env.get("DATA_DIR") or PROJECT_ROOT / ".data").expanduser().resolve()
        settings = cls(
            data_dir=data_dir,
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP") or "127.0.0.1:9092",
            kafka_partitions=_int(env, "KAFKA_PARTITIONS", 6),
            kafka_replication=_int(env, "KAFKA_REPLICATION", 1),
            paimon_warehouse=env.get("PAIMON_WAREHOUSE") or f"file://{data_dir}/warehouse",
            s3_endpoint=env.get("S3_ENDPOINT") or "http://localhost:9000",
            s3_access_key=env.get("S3_ACCESS_KEY") or _DEMO_S3_ACCESS_KEY,
            s3_secret_key=env.get("S3_SECRET_KEY") or _DEMO_S3_SECRET_KEY,
            clickhouse_url=env.get("CLICKHOUSE_URL") or None,
            flink_rest_port=_int(env, "FLINK_REST_PORT", 8081),
            dashboard_port=_int(env, "DASHBOARD_PORT", 8050),
            dashboard_host=env.get("DASHBOARD_HOST") or "127.0.0.1",
            kafka_security_protocol=env.get("KAFKA_SECURITY_PROTOCOL") or None,
            kafka_sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
            kafka_sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            kafka_sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            kafka_ssl_ca_location=env.get("KAFKA_SSL_CA_LOCATION") or None,
        )
        known = {f.name for f in fields(cls)}
        changes = {k: v for k, v in overrides.items() if v is not None and k in known}
        settings = replace(settings, **changes)
        settings.validate()
        return settings

    def validate(self) -> None:
        for server in self.kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise UserError(f"KAFKA_BOOTSTRAP: '{server}' is not host:port (e.g. 127.0.0.1:9092)")
        scheme = urlparse(self.paimon_warehouse).scheme
        if scheme not in ("file", "s3"):
            raise UserError(
                f"PAIMON_WAREHOUSE: '{self.paimon_warehouse}' must start with file:// or s3://"
            )
        if scheme == "s3" and not urlparse(self.paimon_warehouse).netloc:
            raise UserError(f"PAIMON_WAREHOUSE: '{self.paimon_warehouse}' names no bucket (s3://bucket/path)")
        endpoint = urlparse(self.s3_endpoint)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise UserError(f"S3_ENDPOINT: '{self.s3_endpoint}' must be an http(s):// URL")
        if self.kafka_partitions < 1 or self.kafka_replication < 1:
            raise UserError("KAFKA_PARTITIONS and KAFKA_REPLICATION must be at least 1")

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings for any Kafka client: bootstrap plus the TLS/SASL settings that are set."""
        conf = {"bootstrap.servers": self.kafka_bootstrap}
        for key, value in (("security.protocol", self.kafka_security_protocol),
                           ("sasl.mechanism", self.kafka_sasl_mechanism),
                           ("sasl.username", self.kafka_sasl_username),
                           ("sasl.password", self.kafka_sasl_password),
                           ("ssl.ca.location", self.kafka_ssl_ca_location)):
            if value:
                conf[key] = value
        return conf

    def kafka_python_config(self) -> dict[str, object]:
        """The same settings as kafka-python keyword arguments (the producer's pure-Python backend)."""
        conf: dict[str, object] = {"bootstrap_servers": self.kafka_bootstrap.split(",")}
        for key, value in (("security_protocol", self.kafka_security_protocol),
                           ("sasl_mechanism", self.kafka_sasl_mechanism),
                           ("sasl_plain_username", self.kafka_sasl_username),
                           ("sasl_plain_password", self.kafka_sasl_password),
                           ("ssl_cafile", self.kafka_ssl_ca_location)):
            if value:
                conf[key] = value
        return conf

    def kafka_java_properties(self, class_prefix: str = "") -> dict[str, str]:
        """The same TLS/SASL settings as Kafka's Java client properties (the Flink job's Kafka tables).

        ``class_prefix``: where a bundle relocates Kafka's classes (flink-sql-connector-kafka shades them under
        ``org.apache.flink.kafka.shaded.``), so the JAAS login module is named as the bundle knows it.
        A CA file is read as a PEM trust store (Java client 2.7+), the same file librdkafka takes.
        """
        props: dict[str, str] = {}
        if self.kafka_security_protocol:
            props["security.protocol"] = self.kafka_security_protocol
        if self.kafka_sasl_mechanism:
            props["sasl.mechanism"] = self.kafka_sasl_mechanism
            module = ("plain.PlainLoginModule" if self.kafka_sasl_mechanism.upper() == "PLAIN"
                      else "scram.ScramLoginModule")
            user = (self.kafka_sasl_username or "").replace("\\", "\\\\").replace('"', '\\"')
            password = (self.kafka_sasl_password or "").replace("\\", "\\\\").replace('"', '\\"')
            props["sasl.jaas.config"] = (f"{class_prefix}org.apache.kafka.common.security.{module} required "
                                         f'username="{user}" password="{password}";')
        if self.kafka_ssl_ca_location:
            props["ssl.truststore.type"] = "PEM"
            props["ssl.truststore.location"] = self.kafka_ssl_ca_location
        return props

    # Derived values, so callers never re-parse the raw strings.
    @property
    def warehouse_is_s3(self) -> bool:
        return self.paimon_warehouse.startswith("s3://")

    @property
    def s3_bucket(self) -> str:
        if self.warehouse_is_s3:
            return urlparse(self.paimon_warehouse).netloc
        return DEFAULT_S3_BUCKET

    @property
    def s3_port(self) -> int:
        parsed = urlparse(self.s3_endpoint)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rpartition(":")[2])

    @property
    def clickhouse_dsn(self) -> str:
        """One DSN for clickhouse_connect.get_client: a server URL or the embedded chDB directory."""
        return self.clickhouse_url or f"chdb://{self.data_dir}/chdb"

    @property
    def jars_dir(self) -> Path:
        return PROJECT_ROOT / ".cache" / "jars"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def describe(self) -> list[tuple[str, str]]:
        """(name, effective value) for display; secrets masked."""
        return [
            ("DATA_DIR", str(self.data_dir)),
            ("KAFKA_BOOTSTRAP", self.kafka_bootstrap),
            ("KAFKA_PARTITIONS", str(self.kafka_partitions)),
            ("KAFKA_REPLICATION", str(self.kafka_replication)),
            ("PAIMON_WAREHOUSE", self.paimon_warehouse),
            ("S3_ENDPOINT", self.s3_endpoint),
            ("S3_ACCESS_KEY", self.s3_access_key),
            ("S3_SECRET_KEY", "*" * 8),
            ("CLICKHOUSE_URL", self.clickhouse_url or f"(unset: embedded {self.clickhouse_dsn})"),
            ("FLINK_REST_PORT", str(self.flink_rest_port)),
            ("DASHBOARD_PORT", str(self.dashboard_port)),
            ("DASHBOARD_HOST", self.dashboard_host),
            ("KAFKA_SECURITY_PROTOCOL", self.kafka_security_protocol or "(unset: PLAINTEXT)"),
            ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism or "(unset)"),
            ("KAFKA_SASL_USERNAME", self.kafka_sasl_username or "(unset)"),
            ("KAFKA_SASL_PASSWORD", "*" * 8 if self.kafka_sasl_password else "(unset)"),
            ("KAFKA_SSL_CA_LOCATION", self.kafka_ssl_ca_location or "(unset)"),
        ]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}: '{raw}' is not a whole number") from None
