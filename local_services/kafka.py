"""Local KRaft Kafka 4.x brokers run with ``java -cp`` from the Maven jars, plus topic creation.

One broker per address in KAFKA_BOOTSTRAP: one by default, or e.g. three (127.0.0.1:9092,9094,9096) with
KAFKA_REPLICATION=3 for a cluster that keeps every acknowledged record when one broker dies. Each node is broker
and controller in one process (combined mode), with its own port, controller port (+1) and data directory.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Broker:
    """One local KRaft node (broker and controller in one process): node ids 1..N in KAFKA_BOOTSTRAP order."""

    node_id: int
    port: int  # client listener; the controller listener is port + 1

    @property
    def controller_port(self) -> int:
        return self.port + CONTROLLER_PORT_OFFSET

    @property
    def name(self) -> str:  # PID file, log file and data directory; the first keeps the single-broker names
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"


def brokers(settings: Settings) -> list[Broker]:
    """One broker per address in KAFKA_BOOTSTRAP (127.0.0.1:9092 alone by default; list three for a cluster)."""
    found = [Broker(i, port) for i, port in enumerate(settings.kafka_ports, start=1)]
    taken = sorted(p for b in found for p in (b.port, b.controller_port))
    if len(set(taken)) != len(taken):
        raise UserError(f"KAFKA_BOOTSTRAP: each local broker also takes its port + 1 (controller), so the ports of "
                        f"{settings.kafka_bootstrap} must be at least 2 apart (e.g. 9092,9094,9096)")
    return found


def process(settings: Settings, node_id: int = 1) -> ManagedProcess:
    return ManagedProcess(Broker(node_id, 0).name, settings.run_dir, settings.logs_dir)


def _home(settings: Settings, broker: Broker) -> Path:
    return settings.data_dir / broker.name


def _server_properties(settings: Settings, broker: Broker, cluster: list[Broker], log_dir: Path) -> str:
    port, controller = broker.port, broker.controller_port
    if len(cluster) == 1:  # a dynamic quorum of one, formatted --standalone
        quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}"
    else:  # a static quorum: every node votes, a majority (2 of 3) keeps the cluster's metadata writable
        quorum = "controller.quorum.voters=" + ",".join(f"{b.node_id}@127.0.0.1:{b.controller_port}" for b in cluster)
    # Internal topics (consumer offsets, transactions) replicated like the project's own topics, up to 3 copies.
    copies = min(3, len(cluster))
    return f"""\
process.roles=broker,controller
node.id={broker.node_id}
{quorum}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions={settings.kafka_partitions}
default.replication.factor={min(settings.kafka_replication, len(cluster))}
auto.create.topics.enable=false
offsets.topic.replication.factor={copies}
transaction.state.log.replication.factor={copies}
transaction.state.log.min.isr={min(2, copies)}
share.coordinator.state.topic.replication.factor={copies}
share.coordinator.state.topic.min.isr={min(2, copies)}
# A replica that missed writes never becomes leader: no acknowledged record is lost when a leader dies.
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
# Room for the malformed-record catalogue's oversized records (near the broker limit).
message.max.bytes=1048588
log.retention.hours=168
"""


def _answers(port: int, settings: Settings, timeout: float = 2.0) -> bool:
    """The broker on ``port`` answers a metadata request by itself (it has joined the cluster)."""
    if not port_open("127.0.0.1", port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        # log_level 0: a probe while another broker is down should not print librdkafka's connect errors
        AdminClient({**settings.kafka_client_config(), "bootstrap.servers": f"127.0.0.1:{port}",
                     "log_level": 0}).list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def _ready(settings: Settings, brokers: int) -> bool:
    """Every broker is in the cluster's metadata and a group coordinator answers. A fresh broker answers
    metadata before it can serve consumer groups (NOT_COORDINATOR while it creates __consumer_offsets), so a
    client started right after `start` would fail on its first commit."""
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
        if len(admin.list_topics(timeout=5).brokers) < brokers:
            return False
        for future in admin.describe_consumer_groups(["pipeline-readiness-probe"]).values():
            future.result(timeout=5)
        return True
    except Exception:
        return False


def healthy(settings: Settings, timeout: float = 2.0) -> bool:
    """Every broker listed in KAFKA_BOOTSTRAP answers."""
    return all(_answers(port, settings, timeout) for port in settings.kafka_ports)


def start(settings: Settings, timeout: float = 90.0) -> str:
    """Start the local brokers (one per KAFKA_BOOTSTRAP address) unless they already answer; one status line."""
    cluster = brokers(settings)
    procs = {b.node_id: process(settings, b.node_id) for b in cluster}
    if healthy(settings):
        pids = [procs[b.node_id].pid() for b in cluster]
        if all(pids):
            return f"kafka already running (pid {', '.join(map(str, pids))}) on {settings.kafka_bootstrap}"
        return f"kafka: using the broker already answering on {settings.kafka_bootstrap}"
    java = require_java()
    jars = settings.jars_dir / "kafka"
    require_jars(jars, "Kafka")
    down = [b for b in cluster if procs[b.node_id].pid() is None or not _answers(b.port, settings)]
    for b in down:
        if procs[b.node_id].pid() is None:
            require_port_free("kafka", b.port)
            require_port_free("kafka controller", b.controller_port)
    _check_formatted_shape(settings, cluster)
    cluster_id = _cluster_id(settings, cluster)
    started = []
    for b in down:
        if procs[b.node_id].pid() is None:
            started.append(_start_broker(settings, b, cluster, cluster_id, java, jars))
    # All at once, then wait: a static quorum elects a controller only once a majority of nodes runs.
    for b in cluster:
        wait_until(lambda b=b: _answers(b.port, settings), timeout, f"kafka broker {b.node_id}", procs[b.node_id])
    wait_until(lambda: _ready(settings, len(cluster)), timeout, "kafka (group coordinator)", procs[1])
    pids = ", ".join(str(procs[b.node_id].pid()) for b in cluster)
    where = "; ".join(str(procs[b.node_id].log_file) for b in started) or "-"
    return f"kafka started (pid {pids}) on {settings.kafka_bootstrap}; log {where}"


def _shape(cluster: list[Broker]) -> str:
    return ",".join(f"{b.node_id}@{b.port}" for b in cluster) + "\n"


def _check_formatted_shape(settings: Settings, cluster: list[Broker]) -> None:
    """A data directory formatted for another broker set (1 broker, then 3) cannot join it: say so plainly."""
    marker = _home(settings, cluster[0]) / "brokers"
    if marker.exists() and marker.read_text() != _shape(cluster):
        raise UserError(
            f"kafka: {settings.data_dir} holds a Kafka formatted for brokers {marker.read_text().strip()} "
            f"(node@port), not {_shape(cluster).strip()}: use another DATA_DIR, or remove "
            f"{settings.data_dir}/kafka* to start an empty cluster")
    if not marker.exists() and (_home(settings, cluster[0]) / "log" / "meta.properties").exists() and len(cluster) > 1:
        raise UserError(f"kafka: {settings.data_dir}/kafka holds a single-broker Kafka; use another DATA_DIR for "
                        f"{len(cluster)} brokers, or remove {settings.data_dir}/kafka* to start an empty cluster")


def _cluster_id(settings: Settings, cluster: list[Broker]) -> str:
    """The cluster id every node of this broker set is formatted with (kept beside the first node's data)."""
    home = _home(settings, cluster[0])
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cluster-id"
    if not path.exists():
        path.write_text(new_cluster_id())
        (home / "brokers").write_text(_shape(cluster))
    return path.read_text().strip()


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes in URL-safe base64, never starting with "-" (Kafka's own Uuid.randomUuid
    rule: the storage tool's parser would take such an id for an option; 1 start in 64 failed on it)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _start_broker(settings: Settings, broker: Broker, cluster: list[Broker], cluster_id: str, java: str,
                  jars: Path) -> Broker:
    home = _home(settings, broker)
    log_dir = home / "log"
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(_server_properties(settings, broker, cluster, log_dir))
    log4j = home / "log4j2.properties"
    log4j.write_text(LOG4J2)
    # 1 GiB heap per broker: three brokers, two TaskManagers and ClickHouse fit this 24 GiB box together.
    jvm = [java, "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*"]
    if not (log_dir / "meta.properties").exists():
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", *(["--standalone"] if len(cluster) == 1 else []),
             f"--cluster-id={cluster_id}", "-c", str(props)],  # "=": an id kept from before may start with "-"
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise UserError(f"kafka: formatting {log_dir} failed: {fmt.stderr.strip() or fmt.stdout.strip()}")
    process(settings, broker.node_id).start([*jvm, "kafka.Kafka", str(props)])
    return broker


def _partitions(settings: Settings, topic: str) -> dict:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0})
    return admin.list_topics(topic, timeout=10).topics[topic].partitions


def leaders(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> node id of its leader, as the cluster reports it now (-1 while a partition has none)."""
    return {p: part.leader for p, part in _partitions(settings, topic).items()}


def in_sync_replicas(settings: Settings, topic: str) -> dict[int, list[int]]:
    """Partition -> node ids of its in-sync replicas."""
    return {p: list(part.isrs) for p, part in _partitions(settings, topic).items()}


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete topics (benchmarks clean up after themselves); ones already gone are fine."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config())
    for fut in admin.delete_topics(names, operation_timeout=30).values():
        try:
            fut.result(timeout=30)
        except Exception:
            pass  # already gone


def ensure_topics(settings: Settings, topics: dict[str, int] | None = None,
                  config: dict[str, str] | None = None) -> list[str]:
    """Create missing topics (raw + aggregates by default), with ``config`` over KAFKA_TOPIC_CONFIG. Returns the
    names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = topics or {name: settings.kafka_partitions for name in (RAW_TOPIC, *AGGREGATE_TOPICS)}
    admin = AdminClient(settings.kafka_client_config())
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except Exception as exc:
        raise UserError(f"kafka: cannot reach {settings.kafka_bootstrap} ({exc}); is it started?") from None
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=settings.kafka_replication,
                 config={**settings.kafka_topic_config, **(config or {})})
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
    """Stop every local broker by its PID file (also ones a previous, longer KAFKA_BOOTSTRAP started)."""
    nodes = {b.node_id for b in brokers(settings)}
    nodes |= {int(n) for p in settings.run_dir.glob("kafka-*.pid") if (n := p.stem.split("-")[1]).isdigit()}
    order = sorted(nodes, reverse=True)
    if len(order) == 1:
        return stop_line(process(settings, order[0]).name, process(settings, order[0]), timeout=60)
    # All at once: one by one, the last node waits for a quorum that has already gone (60 s each, then SIGKILL).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(order)) as pool:
        lines = list(pool.map(lambda n: stop_line(process(settings, n).name, process(settings, n), timeout=60), order))
    return "; ".join(lines)


def status(settings: Settings) -> str:
    cluster = brokers(settings)
    if len(cluster) == 1:
        return status_line("kafka", process(settings), healthy(settings), settings.kafka_bootstrap)
    return "; ".join(status_line(b.name, process(settings, b.node_id), _answers(b.port, settings),
                                 f"127.0.0.1:{b.port}") for b in cluster)


def partition_ends(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> its end offset (the records ever written to it)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_client_config(), "group.id": "pipeline-end-offsets"})
    try:
        parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in sorted(parts)}
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> int:
    """Records ever written to ``topic``: the sum of its partitions' end offsets."""
    return sum(partition_ends(settings, topic).values())


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
