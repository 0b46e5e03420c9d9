"""The compose stack's Kafka security, run: a broker configured from docker-compose.yml's own settings (the
apache/kafka image's convention: KAFKA_FOO_BAR -> foo.bar), on loopback ports, one node instead of three; then the
kafka-topics service's own command (topics and ACLs) run against it, with Kafka's own tools from the project's jars.

Then each user of the stack, through the real client the project uses (librdkafka):
- the producer writes the raw topic, and nothing else;
- the job (flink) reads the raw topic in its group and writes the aggregates, and nothing else;
- the loader reads the aggregates in its group, and nothing else;
- a client without credentials, or with a wrong password, gets nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from base.config import Settings
from local_services.process import ManagedProcess, port_open, require_java, wait_until
from tests.conftest import free_port
from tests.test_compose import COMPOSE, SERVICES, example_env

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

ROOT = Path(__file__).resolve().parents[2]
RAW = "user_actions_topic"
AGGREGATE = "user_aggregations"


def _property(name: str) -> str:
    """The apache/kafka image's mapping of an environment variable to a broker property."""
    return name.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "_").replace("_", ".")


def _server_properties(log_dir: Path, ports: dict[str, int]) -> str:
    env = {k: str(v) for k, v in SERVICES["kafka-1"]["environment"].items() if k.startswith("KAFKA_")}
    props = {_property(k): v for k, v in env.items() if k not in ("KAFKA_HEAP_OPTS",)}
    # What a container's network gives and one loopback node replaces; every security setting stays as compose has it.
    props.update({
        "node.id": "1",
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "advertised.listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items() if n != "CONTROLLER"),
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ports['CONTROLLER']}",
        "log.dirs": str(log_dir),
        "default.replication.factor": "1", "min.insync.replicas": "1", "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    })
    props.pop("controller.quorum.voters")
    return "".join(f"{k}={v}\n" for k, v in sorted(props.items()))


@pytest.fixture(scope="module")
def secured_broker(services: Settings, tmp_path_factory):
    home = tmp_path_factory.mktemp("kafka-sasl")
    java = require_java()
    jars = services.jars_dir / "kafka"
    ports = {"INTERNAL": free_port(), "EXTERNAL": free_port(), "CONTROLLER": free_port()}
    props = home / "server.properties"
    props.write_text(_server_properties(home / "log", ports))
    jvm = [java, "-Xmx512m", "-cp", f"{jars}/*"]
    fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "--standalone", "-t",
                          COMPOSE["services"]["kafka-1"]["environment"]["CLUSTER_ID"], "-c", str(props)],
                         capture_output=True, text=True, timeout=120)
    assert fmt.returncode == 0, fmt.stderr + fmt.stdout
    broker = ManagedProcess("kafka-sasl", home / "run", home / "logs")
    broker.start([*jvm, "kafka.Kafka", str(props)])
    try:
        wait_until(lambda: port_open("127.0.0.1", ports["INTERNAL"]), 90, "the SASL broker", broker)
        bin_dir = home / "bin"
        bin_dir.mkdir()
        for script, tool in (("kafka-topics.sh", "TopicCommand"), ("kafka-acls.sh", "AclCommand")):
            (bin_dir / script).write_text(f'#!/bin/sh\nexec {java} -cp "{jars}/*" org.apache.kafka.tools.{tool} "$@"\n')
            (bin_dir / script).chmod(0o755)
        command = SERVICES["kafka-topics"]["command"][0].replace("/opt/kafka/bin/", f"{bin_dir}/").replace(
            "B=kafka-1:9092,kafka-2:9092,kafka-3:9092", f"B=127.0.0.1:{ports['INTERNAL']}").replace(
            "--replication-factor 3", "--replication-factor 1").replace("min.insync.replicas=2", "min.insync.replicas=1"
        ).replace("/tmp/admin.properties", str(home / "admin.properties"))
        env = {**os.environ, **{k: str(v) for k, v in SERVICES["kafka-topics"]["environment"].items()}}
        done = subprocess.run(["/bin/sh", "-c", command.replace("$$", "$")], env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        yield f"127.0.0.1:{ports['INTERNAL']}"
    finally:
        broker.stop()


def _client(bootstrap: str, user: str | None, password: str | None = None) -> dict:
    if user is None:
        return {"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 5000}
    secret = password if password is not None else example_env()[f"KAFKA_{user.upper()}_PASSWORD"]
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": secret, "log_level": 0, "socket.timeout.ms": 5000}


def _probe(*args: str) -> str | None:
    """One access attempt in a process of its own (see tests/kafka_access_probe.py for why)."""
    done = subprocess.run([sys.executable, "-m", "tests.kafka_access_probe", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(config: dict, topic: str) -> str | None:
    """None if the record was acknowledged, else the error's name."""
    return _probe("write", json.dumps(config), topic)


def _read(config: dict, topic: str, group: str) -> str | None:
    """None if a record of ``topic`` was read in ``group``, else the error's name."""
    return _probe("read", json.dumps(config), topic, group)


def test_each_user_of_the_stack_may_do_its_part_and_nothing_else(secured_broker: str) -> None:
    producer, flink, loader = (_client(secured_broker, u) for u in ("producer", "flink", "loader"))
    assert _write(producer, RAW) is None
    assert _write(producer, AGGREGATE) == "TOPIC_AUTHORIZATION_FAILED"
    assert _read(producer, RAW, f"g-{uuid.uuid4().hex[:6]}") is not None

    assert _read(flink, RAW, "flink-user-actions") is None
    assert _write(flink, AGGREGATE) is None
    assert _write(flink, RAW) == "TOPIC_AUTHORIZATION_FAILED"
    assert _read(flink, RAW, "another-group") == "GROUP_AUTHORIZATION_FAILED"

    assert _read(loader, AGGREGATE, "clickhouse-loader") is None
    # no Write anywhere: the idempotent producer already fails to get a producer id
    assert _write(loader, AGGREGATE) in ("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED")
    assert _read(loader, RAW, "clickhouse-loader") is not None


def test_no_credentials_or_a_wrong_password_get_nothing(secured_broker: str) -> None:
    assert _write(_client(secured_broker, None), RAW) is not None
    wrong = _client(secured_broker, "producer", password="not-the-password")
    assert _write(wrong, RAW) is not None
    acl_lines = re.findall(r"--allow-principal User:(\w+)", SERVICES["kafka-topics"]["command"][0])
    assert sorted(set(acl_lines)) == ["flink", "loader", "producer"]


def _cli(secured: str, module: str, argv: list[str], tmp_path: Path, **kafka: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update({"KAFKA_BOOTSTRAP": secured, "DATA_DIR": str(tmp_path), **kafka})
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_a_refused_password_a_wrong_mechanism_or_no_sasl_each_get_one_line_naming_what_to_fix(
        secured_broker: str, tmp_path: Path) -> None:
    """librdkafka reports each of these as "Broker transport failure"; the commands say which setting is wrong."""
    sasl = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "producer"}
    produce = ["produce", "--count", "5", "--topic", RAW]
    wrong = "not-the-password-7f3e"
    cases = [
        ("pipeline", produce, {**sasl, "KAFKA_SASL_PASSWORD": wrong},
         ["refused to authenticate user 'producer'", "Invalid username or password", "KAFKA_SASL_PASSWORD"]),
        ("flink_job", ["--source-topic", RAW, "--bounded"], {**sasl, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                                             "KAFKA_SASL_PASSWORD": wrong},
         ["Unsupported SASL mechanism", "supported mechanisms: PLAIN", "KAFKA_SASL_MECHANISM"]),
        ("pipeline", produce, {}, ["accepts connections but answered no metadata request",
                                   "KAFKA_SECURITY_PROTOCOL=PLAINTEXT"]),
    ]
    for module, argv, kafka, words in cases:
        done = _cli(secured_broker, module, argv, tmp_path, **kafka)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: kafka: "), done.stderr[-2000:]
        assert all(w in lines[0] for w in words), lines[0]
        assert wrong not in done.stderr + done.stdout and "Traceback" not in done.stderr
