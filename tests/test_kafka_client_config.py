"""One way to reach Kafka: every client is built from the configured settings, TLS/SASL included.

Against a secured cluster a client built from a bare ``bootstrap.servers`` fails to connect; this checks the
configuration functions carry every security setting, and that no product module or script builds a Kafka
client any other way (a structural check over the source, so a new client cannot slip past it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from base.config import PROJECT_ROOT, Settings

SECURED = {
    "KAFKA_BOOTSTRAP": "broker-1.example:9093,broker-2.example:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "pipeline",
    "KAFKA_SASL_PASSWORD": 'p"ss\\word',
    "KAFKA_SSL_CA_LOCATION": "/etc/ssl/kafka-ca.pem",
}
CLIENT_CLASSES = {"Producer", "Consumer", "AdminClient", "KafkaProducer", "KafkaConsumer", "KafkaAdminClient",
                  "Loader"}
CONFIG_SOURCES = ("kafka_client_config(", "kafka_python_config(", "self.kafka_config")


@pytest.fixture
def secured() -> Settings:
    return Settings.from_env(SECURED)


def test_librdkafka_config_carries_every_security_setting(secured: Settings) -> None:
    assert secured.kafka_client_config() == {
        "bootstrap.servers": SECURED["KAFKA_BOOTSTRAP"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "pipeline",
        "sasl.password": 'p"ss\\word',
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
    }


def test_kafka_python_config_carries_every_security_setting(secured: Settings) -> None:
    assert secured.kafka_python_config() == {
        "bootstrap_servers": ["broker-1.example:9093", "broker-2.example:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pipeline",
        "sasl_plain_password": 'p"ss\\word',
        "ssl_cafile": "/etc/ssl/kafka-ca.pem",
    }


def test_flink_job_kafka_tables_carry_the_security_settings(secured: Settings) -> None:
    from flink_job import pipeline, sql_text
    from flink_job.job_config import JobConfig

    params = pipeline.sql_params(secured, JobConfig(action_types=("a", "b")))
    kafka_tables = [stmt for path in sql_text.sql_files()
                    for stmt in sql_text.statements(sql_text.render(path.read_text(), params))
                    if "'connector' = 'kafka'" in stmt]
    assert len(kafka_tables) == 4  # the source and the three aggregate sinks
    for ddl in kafka_tables:
        assert "'properties.security.protocol' = 'SASL_SSL'" in ddl
        assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in ddl
        assert ("org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required "
                "username=\"pipeline\" password=\"p\\\"ss\\\\word\";") in ddl.replace("''", "'")
        assert "'properties.ssl.truststore.location' = '/etc/ssl/kafka-ca.pem'" in ddl


def test_librdkafka_accepts_the_secured_config_for_each_client_kind(secured: Settings) -> None:
    """Constructing a client does not connect: this proves the keys are ones librdkafka knows (no SSL here, so
    no CA file is needed)."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    conf = {k: v for k, v in secured.kafka_client_config().items() if k != "ssl.ca.location"}
    conf["security.protocol"] = "SASL_PLAINTEXT"
    Producer(conf)
    Consumer({**conf, "group.id": "config-check"}).close()
    AdminClient(conf)


def _client_constructions() -> list[tuple[str, int, str]]:
    """(file, line, source) of every Kafka client construction in product code and scripts."""
    found = []
    for package in ("base", "producer", "flink_job", "lakehouse", "clickhouse", "local_services", "pipeline",
                    "scripts"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            text = path.read_text()
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.Call):
                    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                    if name in CLIENT_CLASSES:
                        found.append((str(path.relative_to(PROJECT_ROOT)), node.lineno,
                                      ast.get_source_segment(text, node) or ""))
    return found


def test_every_kafka_client_is_built_from_the_configured_settings() -> None:
    constructions = _client_constructions()
    files = {f for f, _, _ in constructions}
    # the ones this guards: producer delivery, the loader, the local services, and the commands' reachability check
    # (topic creation and the job's preflight build their admin client there)
    guarded = {"producer/delivery.py", "base/kafka_access.py", "clickhouse/loader.py", "local_services/kafka.py"}
    assert guarded <= files, files
    bare = [f"{f}:{line}: {src.splitlines()[0]}" for f, line, src in constructions
            if not any(s in src for s in CONFIG_SOURCES)]
    assert not bare, "Kafka clients built without Settings.kafka_client_config()/kafka_python_config():\n" + \
        "\n".join(bare)


def test_the_structural_check_catches_a_bare_bootstrap(tmp_path: Path) -> None:
    src = 'from confluent_kafka import Producer\np = Producer({"bootstrap.servers": settings.kafka_bootstrap})\n'
    call = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call))
    assert not any(s in ast.get_source_segment(src, call) for s in CONFIG_SOURCES)
