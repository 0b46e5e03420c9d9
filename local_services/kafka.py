"""A single-node KRaft Kafka 4.x broker run with ``java -cp`` from the Maven jars, plus topic creation."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from base.config import Settings
from base.contract import AGGREGATE_TOPICS, RAW_TOPIC
from base.errors import UserError
from local_services.process import (
    ManagedProcess,
    port_open,
    require_jars,
    require_java,
    require_port_free,
    status_line,
    stop_line,
    wait_until,
)

CONTROLLER_PORT_OFFSET = 1  # controller listener on the broker port + 1 (9093 by default)

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("kafka", settings.run_dir, settings.logs_dir)


def _server_properties(settings: Settings, log_dir: Path) -> str:
    port = settings.kafka_port
    controller = port + CONTROLLER_PORT_OFFSET
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions={settings.kafka_partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Room for the malformed-record catalogue's oversized records (near the broker limit).
message.max.bytes=1048588
log.retention.hours=168
"""


def healthy(settings: Settings, timeout: float = 2.0) -> bool:
    if not port_open("127.0.0.1", settings.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(settings.kafka_client_config()).list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def start(settings: Settings, timeout: float = 90.0) -> str:
    """Start the broker unless one already answers; returns a one-line status."""
    proc = process(settings)
    if proc.pid() is not None and healthy(settings):
        return f"kafka already running (pid {proc.pid()}) on {settings.kafka_bootstrap}"
    if healthy(settings):
        return f"kafka: using the broker already answering on {settings.kafka_bootstrap}"
    java = require_java()
    jars = settings.jars_dir / "kafka"
    require_jars(jars, "Kafka")
    require_port_free("kafka", settings.kafka_port)
    require_port_free("kafka controller", settings.kafka_port + CONTROLLER_PORT_OFFSET)

    home = settings.data_dir / "kafka"
    log_dir = home / "log"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(_server_properties(settings, log_dir))
    log4j = home / "log4j2.properties"
    log4j.write_text(LOG4J2)
    jvm = [java, "-Xms512m", "-Xmx1g", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*"]

    if not (log_dir / "meta.properties").exists():
        import subprocess

        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise UserError(f"kafka: formatting {log_dir} failed: {fmt.stderr.strip() or fmt.stdout.strip()}")

    pid = proc.start([*jvm, "kafka.Kafka", str(props)])
    wait_until(lambda: healthy(settings), timeout, "kafka", proc)
    return f"kafka started (pid {pid}) on {settings.kafka_bootstrap}; log {proc.log_file}"


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics (benchmarks clean up after themselves); ones already gone are fine."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:
            pass  # already gone


def ensure_topics(settings: Settings, topics: dict[str, int] | None = None) -> list[str]:
    """Create missing topics (raw + aggregates by default). Returns the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = topics or {name: settings.kafka_partitions for name in (RAW_TOPIC, *AGGREGATE_TOPICS)}
    admin = AdminClient(settings.kafka_client_config())
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except Exception as exc:
        raise UserError(f"kafka: cannot reach {settings.kafka_bootstrap} ({exc}); is it started?") from None
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=settings.kafka_replication)
        for name, parts in wanted.items()
        if name not in existing
    ]
    if not new:
        return []
    for name, fut in admin.create_topics(new).items():
        try:
            fut.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise UserError(f"kafka: creating topic {name} failed: {exc}") from None
    return [t.topic for t in new]


def stop(settings: Settings) -> str:
    return stop_line("kafka", process(settings), timeout=60)


def status(settings: Settings) -> str:
    return status_line("kafka", process(settings), healthy(settings), settings.kafka_bootstrap)


def end_offsets(settings: Settings, topic: str) -> int:
    """Records ever written to ``topic``: the sum of its partitions' end offsets."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": "pipeline-end-offsets"})
    try:
        parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in parts)
    finally:
        consumer.close()


def group_lag(settings: Settings, topic: str, group: str) -> int:
    """Records of ``topic`` that consumer ``group`` has not committed (all of them if it never committed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        lag = 0
        for tp in consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()
