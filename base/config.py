"""Configuration: read once from the environment, overridden by CLI flags, passed down.

This is the single place that reads the environment. Every variable is documented in
``VARIABLES`` (printed by ``pipeline config``) and in the README's configuration table.
Defaults serve only the loopback demo; no secret belongs in the repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from base import logs
from base.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A source checkout (./run.sh, ./test.sh) keeps data and fetched jars inside the project; an installed package
# (pip install ., the images) has no project directory: PROJECT_ROOT is then site-packages.
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()

DEFAULT_S3_BUCKET = "user-actions-paimon"

# Loopback-demo credentials for the local S3 server only; production sets its own.
_DEMO_S3_ACCESS_KEY = "local-demo-access"
_DEMO_S3_SECRET_KEY = "local-demo-secret-key"

@dataclass(frozen=True)
class Variable:
    """One environment variable: the Settings field it fills, its default, and the help line."""

    env: str
    field: str
    help: str
    default: object = None  # a value, or a callable of the fields read so far (derived defaults)
    secret: bool = False
    integer: bool = False  # a whole number although unset by default (an int default implies it)


# Every variable, declared once: from_env, to_env, describe and `pipeline --help` all read this table.
SETTINGS_VARIABLES: tuple[Variable, ...] = (
    Variable("DATA_DIR", "data_dir", "where local services keep data, logs and PID files (default: .data in a "
             "source checkout; ~/.local/share/user-actions-pipeline for an installed package)",
             lambda _: _default_data_dir()),
    Variable("KAFKA_BOOTSTRAP", "kafka_bootstrap", "Kafka bootstrap servers, host:port[,host:port] "
             "(default: 127.0.0.1:9092); `services start` runs one local broker per address listed",
             "127.0.0.1:9092"),
    Variable("KAFKA_PARTITIONS", "kafka_partitions", "partitions of user_actions_topic and the aggregate topics "
             "(default: 6)", 6),
    Variable("KAFKA_REPLICATION", "kafka_replication", "replication factor of created topics (default: 1)", 1),
    Variable("PAIMON_WAREHOUSE", "paimon_warehouse", "Paimon warehouse URI, file:///path or s3://bucket/path "
             "(default: file://$DATA_DIR/warehouse)", lambda read: f"file://{read['data_dir']}/warehouse"),
    Variable("S3_ENDPOINT", "s3_endpoint", "S3 API endpoint for s3:// warehouses (default: http://localhost:9000, "
             "the local server)", "http://localhost:9000"),
    Variable("S3_ACCESS_KEY", "s3_access_key", "S3 access key (default: the local demo server's key)",
             _DEMO_S3_ACCESS_KEY),
    Variable("S3_SECRET_KEY", "s3_secret_key", "S3 secret key (default: the local demo server's secret)",
             _DEMO_S3_SECRET_KEY, secret=True),
    Variable("CLICKHOUSE_URL", "clickhouse_url", "ClickHouse server URL, e.g. https://host:8443 (credentials in "
             "CLICKHOUSE_USER/CLICKHOUSE_PASSWORD); unset = embedded chDB under DATA_DIR"),
    Variable("CLICKHOUSE_USER", "clickhouse_user", "ClickHouse user name (default: the URL's, else 'default')"),
    Variable("CLICKHOUSE_PASSWORD", "clickhouse_password", "ClickHouse password, any characters (default: the "
             "URL's, else none)", secret=True),
    Variable("FLINK_REST_PORT", "flink_rest_port", "REST/web UI port of the local standalone Flink cluster; "
             "its JobManager's RPC takes the next port (default: 8081)", 8081),
    Variable("FLINK_REST_URL", "flink_rest_url", "REST API of the Flink cluster that `pipeline job --submit` "
             "submits to, e.g. http://jobmanager:8081 (default: the local one, http://127.0.0.1:$FLINK_REST_PORT)"),
    Variable("FLINK_PROPERTIES", "flink_properties", "Flink options, one 'key: value' per line, for the daemons "
             "of `pipeline flink-daemon` and the `flink run` client of `pipeline job --submit` (as in Flink's own "
             "images; default: none)"),
    Variable("FLINK_METRICS_PORT", "flink_metrics_port", "Flink's Prometheus endpoint on 127.0.0.1, /metrics: the "
             "port of the local mini-cluster (`pipeline job`, ./run.sh; flag --metrics-port), and the first of the "
             "local standalone cluster's range, one port each for the JobManager and its TaskManagers (default: "
             "unset, no reporter; under `flink run` the cluster's own config decides)", integer=True),
    Variable("JARS_DIR", "jars_dir", "the JVM jars: flink/ (connectors), format/ (the job's value format), kafka/ "
             "(default: .cache/jars in a source checkout, fetched by scripts/setup.sh; $DATA_DIR/jars for an "
             "installed package)", lambda read: _default_jars_dir(read["data_dir"])),
    Variable("DASHBOARD_PORT", "dashboard_port", "port of the ClickHouse service's dashboard and JSON API "
             "(default: 8050)", 8050),
    Variable("DASHBOARD_HOST", "dashboard_host", "interface the dashboard/API binds to (default: 127.0.0.1; "
             "beyond loopback it requires DASHBOARD_TOKEN)", "127.0.0.1"),
    Variable("DASHBOARD_TOKEN", "dashboard_token", "bearer token the dashboard/API require (Authorization: Bearer, "
             "or open /?token=... once in a browser); required when DASHBOARD_HOST is not loopback", secret=True),
    Variable("DASHBOARD_ALLOWED_HOSTS", "dashboard_allowed_hosts", "host names the dashboard/API answer to (Host "
             "header, against DNS rebinding), comma-separated (default: localhost, 127.0.0.1, ::1)",
             "localhost,127.0.0.1,::1"),
    Variable("DASHBOARD_QUERY_TIMEOUT", "dashboard_query_timeout", "seconds an API query may run before ClickHouse "
             "stops it (max_execution_time; default: 10)", 10),
    Variable("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol", "Kafka security.protocol: PLAINTEXT (default), "
             "SSL, SASL_PLAINTEXT or SASL_SSL"),
    Variable("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism", "Kafka sasl.mechanism, e.g. PLAIN, SCRAM-SHA-256, "
             "SCRAM-SHA-512 (default: unset)"),
    Variable("KAFKA_SASL_USERNAME", "kafka_sasl_username", "Kafka SASL user name (default: unset)"),
    Variable("KAFKA_SASL_PASSWORD", "kafka_sasl_password", "Kafka SASL password: from the environment or a secrets "
             "file, never the repo", secret=True),
    Variable("KAFKA_SSL_CA_LOCATION", "kafka_ssl_ca_location", "CA certificate file that signs the brokers' TLS "
             "certificates (default: system CAs)"),
    Variable("LOG_LEVEL", "log_level", "debug, info, warning or error: the least severe log line every part writes "
             "(default: info; libraries log warnings and above, everything at debug); flag --log-level", "info"),
    Variable("LOG_FORMAT", "log_format", "text ('time LEVEL logger: message') or json (one object per line: time, "
             "level, logger, message) for every part's log lines, on stderr (default: text); flag --log-format",
             "text"),
)
VARIABLES: dict[str, str] = {v.env: v.help for v in SETTINGS_VARIABLES}


# The TLS/SASL settings as (Settings field, librdkafka key, kafka-python keyword).
_KAFKA_SECURITY_KEYS = (
    ("kafka_security_protocol", "security.protocol", "security_protocol"),
    ("kafka_sasl_mechanism", "sasl.mechanism", "sasl_mechanism"),
    ("kafka_sasl_username", "sasl.username", "sasl_plain_username"),
    ("kafka_sasl_password", "sasl.password", "sasl_plain_password"),
    ("kafka_ssl_ca_location", "ssl.ca.location", "ssl_cafile"),
)


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
    clickhouse_user: str | None
    clickhouse_password: str | None
    flink_rest_port: int
    flink_rest_url: str | None
    flink_properties: str | None
    jars_dir: Path
    dashboard_port: int
    dashboard_host: str
    dashboard_token: str | None
    dashboard_allowed_hosts: str
    dashboard_query_timeout: int
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_ca_location: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    flink_metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); non-None overrides (CLI flags) win, also where
        other defaults derive from them (``--data-dir`` moves the default warehouse too).

        Any variable may instead be given as ``NAME_FILE``, the path of a file holding the value (the Docker and
        Kubernetes secrets convention); a trailing newline is dropped.
        """
        env = os.environ if env is None else env
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in overrides.items() if v is not None and k in known}
        read: dict[str, object] = {}
        for var in SETTINGS_VARIABLES:
            default = var.default(read) if callable(var.default) else var.default
            if var.field in given:
                read[var.field] = given[var.field]
            else:
                raw = _raw_value(env, var.env)
                if raw is None:
                    read[var.field] = default
                elif isinstance(default, int) or var.integer:
                    read[var.field] = _int(var.env, raw)
                else:
                    read[var.field] = raw
            if var.field in ("data_dir", "jars_dir"):  # resolved before the defaults derived from them
                read[var.field] = Path(read[var.field]).expanduser().resolve()
        settings = cls(**read)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The inverse of ``from_env``: these settings as environment variables, for a child process (unset
        optional values are left out, so the child reads them as unset too)."""
        out = {}
        for var in SETTINGS_VARIABLES:
            value = getattr(self, var.field)
            if value is not None:
                out[var.env] = str(value)
        return out

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
        if self.flink_metrics_port is not None and not 1 <= self.flink_metrics_port <= 65_000:
            raise UserError(f"FLINK_METRICS_PORT: {self.flink_metrics_port} is not a port of 1..65000 (a range "
                            "starts there)")
        logs.check(self.log_level, self.log_format)

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings for any Kafka client: bootstrap plus the TLS/SASL settings that are set."""
        return {"bootstrap.servers": self.kafka_bootstrap, **self._kafka_security(librdkafka=True)}

    def kafka_python_config(self) -> dict[str, object]:
        """The same settings as kafka-python keyword arguments (the producer's pure-Python backend)."""
        return {"bootstrap_servers": self.kafka_bootstrap.split(","), **self._kafka_security(librdkafka=False)}

    def _kafka_security(self, librdkafka: bool) -> dict[str, str]:
        return {(rdkafka if librdkafka else python): getattr(self, field)
                for field, rdkafka, python in _KAFKA_SECURITY_KEYS if getattr(self, field)}

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
        return self.kafka_ports[0]

    @property
    def kafka_topic_config(self) -> dict[str, str]:
        """Config of every topic the project creates: with replication, an acks=all write needs 2 in-sync copies
        (RF 3 survives one broker down without refusing writes; RF 2 keeps writing on 1)."""
        return {"min.insync.replicas": str(min(2, max(1, self.kafka_replication - 1)))}

    @property
    def kafka_ports(self) -> list[int]:
        """The port of each address in KAFKA_BOOTSTRAP: the local Kafka runs one broker on each."""
        return [int(server.strip().rpartition(":")[2]) for server in self.kafka_bootstrap.split(",")]

    @property
    def clickhouse_dsn(self) -> str:
        """One DSN for clickhouse_connect.get_client: a server URL or the embedded chDB directory.

        CLICKHOUSE_USER and CLICKHOUSE_PASSWORD go into the server URL percent-encoded (clickhouse-connect decodes
        them), so a password with any character (@ : / # ' ...) survives. Never print this: use ``mask_url``."""
        if not self.clickhouse_url:
            return f"chdb://{self.data_dir}/chdb"
        if self.clickhouse_user is None and self.clickhouse_password is None:
            return self.clickhouse_url
        parsed = urlparse(self.clickhouse_url)
        user = self.clickhouse_user if self.clickhouse_user is not None else unquote(parsed.username or "default")
        password = (self.clickhouse_password if self.clickhouse_password is not None
                    else unquote(parsed.password or ""))
        host = parsed.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        port = f":{parsed.port}" if parsed.port else ""
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}{port}"
        return parsed._replace(netloc=netloc).geturl()

    @property
    def flink_rest(self) -> str:
        """The Flink cluster's REST API: FLINK_REST_URL, or the local standalone cluster's."""
        return (self.flink_rest_url or f"http://127.0.0.1:{self.flink_rest_port}").rstrip("/")

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def describe(self) -> list[tuple[str, str]]:
        """(name, effective value) for display; secrets masked, unset values say what unset means."""
        out = []
        for var in SETTINGS_VARIABLES:
            value = getattr(self, var.field)
            if value is None:
                shown = {"clickhouse_url": f"(unset: embedded {self.clickhouse_dsn})",
                         "flink_rest_url": f"(unset: the local cluster, {self.flink_rest})",
                         "kafka_security_protocol": "(unset: PLAINTEXT)",
                         "flink_metrics_port": "(unset: no Flink metrics reporter)"}.get(var.field, "(unset)")
            elif var.secret:
                shown = "*" * 8
            elif var.field == "clickhouse_url":
                shown = mask_url(str(value))
            else:
                shown = str(value)
            out.append((var.env, shown))
        return out

def under_flink_run() -> bool:
    """True inside ``flink run -py`` (Flink's Python driver hands the script a gateway port): the job then submits
    to a cluster and yields to its configuration (flink_job/environment.py)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


def search_path() -> str:
    """This process's PATH, for a child given an environment of its own rather than this one (the S3 server)."""
    return os.environ.get("PATH", "")


def _raw_value(env: Mapping[str, str], name: str) -> str | None:
    """``NAME`` from the environment, or the content of the file that ``NAME_FILE`` names; empty = unset."""
    value, path = env.get(name) or None, env.get(f"{name}_FILE") or None
    if value is not None and path is not None:
        raise UserError(f"{name} and {name}_FILE are both set: set one of them")
    if path is None:
        return value
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from None
    return text.rstrip("\r\n") or None


def _default_data_dir() -> Path:
    if IN_CHECKOUT:
        return PROJECT_ROOT / ".data"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "user-actions-pipeline"


def _default_jars_dir(data_dir: object) -> Path:
    return PROJECT_ROOT / ".cache" / "jars" if IN_CHECKOUT else Path(str(data_dir)) / "jars"


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ***, for anything printed or logged."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    host = parsed.hostname or ""
    netloc = f"{parsed.username}:***@{host}" + (f":{parsed.port}" if parsed.port else "")
    return parsed._replace(netloc=netloc).geturl()


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}: '{raw}' is not a whole number") from None
