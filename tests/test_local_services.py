"""The local services are real: a Kafka broker both client libraries talk to, an S3 server with auth."""

from __future__ import annotations

import time

import pytest

from base.config import Settings
from base.contract import RAW_TOPIC
from base.errors import UserError
from local_services import kafka, s3

pytestmark = pytest.mark.integration


def test_raw_topic_has_six_partitions(services: Settings) -> None:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": services.kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.topics[RAW_TOPIC].partitions) == 6


def test_kafka_python_and_confluent_roundtrip_across_partitions(services: Settings, unique_name: str) -> None:
    from confluent_kafka import Consumer, Producer
    from kafka import KafkaConsumer, KafkaProducer

    kafka.ensure_topics(services, {unique_name: 6})
    # 60 records from each client library, keyed so that all 6 partitions are used.
    kp = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    for i in range(60):
        kp.send(unique_name, key=str(i).encode(), value=f"kp-{i}".encode(), partition=i % 6)
    kp.flush()
    kp.close()
    cp = Producer({"bootstrap.servers": services.kafka_bootstrap, "enable.idempotence": True})
    for i in range(60):
        cp.produce(unique_name, key=str(i).encode(), value=f"cp-{i}".encode(), partition=i % 6)
    assert cp.flush(30) == 0

    # Read back with the other library each way: until all 120 are read (a group join on a loaded box can take
    # seconds before the first record), then 2 s more to see that nothing beyond them arrives; 60 s at most.
    kc = KafkaConsumer(
        unique_name,
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"{unique_name}-kp",
    )
    got_kp: list[tuple[int, str]] = []
    deadline = time.monotonic() + 60
    while len(got_kp) < 120 and time.monotonic() < deadline:
        for records in kc.poll(timeout_ms=500).values():
            got_kp += [(m.partition, m.value.decode()) for m in records]
    for records in kc.poll(timeout_ms=2000).values():
        got_kp += [(m.partition, m.value.decode()) for m in records]
    kc.close()
    cc = Consumer(
        {
            "bootstrap.servers": services.kafka_bootstrap,
            "group.id": f"{unique_name}-cp",
            "auto.offset.reset": "earliest",
        }
    )
    cc.subscribe([unique_name])
    got_cp: list[tuple[int, str]] = []
    deadline, extra = time.monotonic() + 60, None
    while time.monotonic() < (deadline if extra is None else extra):
        msg = cc.poll(0.5)
        if msg is not None:
            assert msg.error() is None
            got_cp.append((msg.partition(), msg.value().decode()))
        if len(got_cp) >= 120 and extra is None:
            extra = time.monotonic() + 2
    cc.close()

    for got in (got_kp, got_cp):
        assert len(got) == 120
        assert {p for p, _ in got} == set(range(6))
        assert sorted(v for _, v in got) == sorted([f"kp-{i}" for i in range(60)] + [f"cp-{i}" for i in range(60)])


def test_s3_put_list_get_with_credentials(services: Settings, unique_name: str) -> None:
    client = s3.client(services)
    key = f"{unique_name}/hello.txt"
    client.put_object(Bucket=services.s3_bucket, Key=key, Body=b"hello lakehouse")
    listed = client.list_objects_v2(Bucket=services.s3_bucket, Prefix=f"{unique_name}/")
    assert [o["Key"] for o in listed["Contents"]] == [key]
    body = client.get_object(Bucket=services.s3_bucket, Key=key)["Body"].read()
    assert body == b"hello lakehouse"


def test_s3_refuses_wrong_credentials(services: Settings) -> None:
    from dataclasses import replace

    from botocore.exceptions import ClientError

    wrong = replace(services, s3_secret_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        s3.client(wrong).list_objects_v2(Bucket=services.s3_bucket)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_second_start_reuses_running_services(services: Settings) -> None:
    from local_services import manage

    lines = manage.start(services)
    # one line per service, each saying it reused the running one (nothing started twice)
    assert [line.split()[0].rstrip(":") for line in lines] == ["kafka", "s3"], lines
    assert all(" already running (" in line or "using the broker already answering" in line for line in lines), lines


def test_a_cluster_id_starting_with_a_dash_formats_and_new_ones_never_do(services: Settings, tmp_path) -> None:
    """1 random cluster id in 64 starts with "-", which Kafka's storage tool took for an option: a broker's first start
    failed ("--cluster-id: expected one argument"), and every start after it, on the id kept on disk. New ids never
    start with "-" (Kafka's own rule), and a kept one is passed as --cluster-id=ID and formats."""
    from dataclasses import replace

    from scripts.faults import free_loopback_port

    assert not any(kafka.new_cluster_id().startswith("-") for _ in range(5_000))
    own = replace(services, data_dir=tmp_path / "data", kafka_bootstrap=f"127.0.0.1:{free_loopback_port(span=2)}")
    kept = "-ezV3q0RSw6JD4NNX_cSOA"  # the id that failed a CI run's first start
    (own.data_dir / "kafka").mkdir(parents=True)
    (own.data_dir / "kafka" / "cluster-id").write_text(kept)
    try:
        assert "started" in kafka.start(own)
        meta = (own.data_dir / "kafka" / "log" / "meta.properties").read_text()
        assert f"cluster.id={kept}\n" in meta, meta
        assert kafka.ensure_topics(own, {"dash": 1}) == ["dash"]
    finally:
        kafka.stop(own)


def test_start_on_busy_port_is_one_clear_line(tmp_path) -> None:
    import socket

    from local_services.process import require_port_free

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            require_port_free("kafka", port)


def test_services_status_and_table_function_through_the_cli(services: Settings, capsys) -> None:
    """`pipeline services status` and `pipeline lake table-function`, as a user types them."""
    from pipeline import cli

    assert cli.main(["services", "status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["kafka", "s3"]
    assert all(", healthy on " in line and "pid " in line for line in lines), lines
    assert cli.main(["--warehouse", "file:///srv/lake/wh", "lake", "table-function"]) == 0
    assert capsys.readouterr().out.strip() == "paimonLocal('/srv/lake/wh/lake.db/user_actions/')"



def test_services_start_status_stop_through_the_cli(services: Settings, tmp_path) -> None:
    """`pipeline services start|status|stop` as a user types them, on a private DATA_DIR and free ports (the
    session's shared services are never touched), with three Kafka addresses in KAFKA_BOOTSTRAP and replication
    3: three brokers start, the topics have three replicas and need two in sync, and stop ends every process by
    its PID file. The same data directory then refuses to start as a single broker, in one line."""
    import os
    import re
    import subprocess
    import sys
    from dataclasses import replace
    from pathlib import Path

    from confluent_kafka.admin import AdminClient, ConfigResource

    from base.config import PROJECT_ROOT
    from base.contract import RAW_TOPIC
    from local_services import kafka, manage
    from local_services.process import port_open
    from scripts.faults import free_loopback_port
    from tests.conftest import pid_running

    kafka_port, s3_port = free_loopback_port(span=6), free_loopback_port()
    ports = [kafka_port, kafka_port + 2, kafka_port + 4]
    own = replace(services, data_dir=tmp_path / "data", kafka_bootstrap=",".join(f"127.0.0.1:{p}" for p in ports),
                  kafka_replication=3, s3_endpoint=f"http://localhost:{s3_port}")

    def cli(*args: str, settings: Settings = own) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "pipeline"), "services", *args], capture_output=True,
                              text=True, env={**os.environ, **settings.to_env()}, cwd=PROJECT_ROOT, timeout=180)

    try:
        started = cli("start")
        assert started.returncode == 0, started.stderr
        status = cli("status")
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert [re.sub(r"pid \d+", "pid N", line) for line in lines] == [
            "; ".join(f"{name}: pid N, healthy on 127.0.0.1:{port}"
                      for name, port in zip(("kafka", "kafka-2", "kafka-3"), ports, strict=True)),
            f"s3: pid N, healthy on http://localhost:{s3_port}"]
        pids = [int(pid) for pid in re.findall(r"pid (\d+)", status.stdout)]
        assert len(pids) == 4 and all(pid_running(pid) for pid in pids)
        assert set(kafka.in_sync_replicas(own, RAW_TOPIC)[0]) == {1, 2, 3}
        admin = AdminClient(own.kafka_client_config())  # kept alive until the future resolves
        topic_config = next(iter(admin.describe_configs([ConfigResource("topic", RAW_TOPIC)]).values())).result()
        assert topic_config["min.insync.replicas"].value == "2"
        # README: internal topics 3 copies, unclean leader election off. The consumer offsets topic exists (start
        # waits for the group coordinator): each of its partitions on all three brokers, all in sync.
        offsets = admin.list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"].partitions
        assert offsets and {p: sorted(m.replicas) for p, m in offsets.items()} == {p: [1, 2, 3] for p in offsets}
        assert all(sorted(m.isrs) == [1, 2, 3] for m in offsets.values())
        assert topic_config["unclean.leader.election.enable"].value == "false"
        broker_config = {name: entry.value for name, entry in next(iter(admin.describe_configs(
            [ConfigResource("broker", "1")]).values())).result().items()}
        assert {k: broker_config[k] for k in ("offsets.topic.replication.factor",
                                              "transaction.state.log.replication.factor",
                                              "share.coordinator.state.topic.replication.factor",
                                              "unclean.leader.election.enable")} == {
            "offsets.topic.replication.factor": "3", "transaction.state.log.replication.factor": "3",
            "share.coordinator.state.topic.replication.factor": "3", "unclean.leader.election.enable": "false"}
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "s3 stopped\nkafka-3 stopped; kafka-2 stopped; kafka stopped\n", stopped.stdout
    assert not any(pid_running(pid) for pid in pids)
    assert not any(port_open("127.0.0.1", port) for port in [*ports, s3_port])
    after = cli("status").stdout.splitlines()
    assert [line.split(",")[0] for line in after] == ["kafka: no pid file", "s3: no pid file"]
    single = cli("start", "kafka", settings=replace(own, kafka_bootstrap=f"127.0.0.1:{kafka_port}"))
    assert single.returncode == 2 and single.stderr.strip() == (
        f"error: kafka: {own.data_dir} holds a Kafka formatted for brokers 1@{ports[0]},2@{ports[1]},3@{ports[2]} "
        f"(node@port), not 1@{kafka_port}: use another DATA_DIR, or remove {own.data_dir}/kafka* to start an "
        "empty cluster"), single.stderr
    assert all(", healthy on " in line for line in manage.status(services))  # the session's own are still up


def _status(settings: Settings, *args: str):
    """`pipeline services status ARGS` as a user types it, with ``settings`` as its environment."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from base.config import PROJECT_ROOT

    return subprocess.run([str(Path(sys.executable).parent / "pipeline"), "services", "status", *args],
                          capture_output=True, text=True, env={**os.environ, **settings.to_env()}, cwd=PROJECT_ROOT,
                          timeout=60)


def _text_of(doc: dict) -> list[str]:
    """The text lines `services status` prints, rebuilt from its --json document: the same figures."""
    def line(p: dict) -> str:
        return (f"{p['name']}: {'pid ' + str(p['pid']) if p['pid'] else 'no pid file'}, "
                f"{'healthy' if p['healthy'] else 'not answering'} on {p['address']}")

    return ["; ".join(line(p) for p in s["processes"]) for s in doc["services"]]


def test_services_status_json_and_lsb_exit_codes(services: Settings, tmp_path) -> None:
    """`services status [--json]` exits 0 when every service runs, 3 when one is not running, 1 when a process of a
    PID file lives but does not answer (LSB); --json is one document with the figures of the text."""
    import json
    import subprocess
    from dataclasses import replace

    from local_services.process import write_pid_file
    from scripts.faults import free_loopback_port

    running_text, running_json = _status(services), _status(services, "--json")
    assert running_text.returncode == running_json.returncode == 0, running_text.stdout + running_text.stderr
    doc = json.loads(running_json.stdout)
    assert doc["state"] == "running" and [s["service"] for s in doc["services"]] == ["kafka", "s3"]
    assert all(p["healthy"] and p["state"] == "running" for s in doc["services"] for p in s["processes"])
    assert _text_of(doc) == running_text.stdout.splitlines()

    # Nothing on a private DATA_DIR and free ports: not running, 3.
    idle = replace(services, data_dir=tmp_path / "data", kafka_bootstrap=f"127.0.0.1:{free_loopback_port(span=2)}",
                   s3_endpoint=f"http://127.0.0.1:{free_loopback_port()}")
    stopped_text, stopped_json = _status(idle), _status(idle, "--json")
    assert stopped_text.returncode == stopped_json.returncode == 3
    doc = json.loads(stopped_json.stdout)
    assert doc["state"] == "stopped" and {s["state"] for s in doc["services"]} == {"stopped"}
    assert _text_of(doc) == stopped_text.stdout.splitlines() == [
        f"kafka: no pid file, not answering on {idle.kafka_bootstrap}",
        f"s3: no pid file, not answering on {idle.s3_endpoint}"]

    # The S3 server's PID file names a live process that answers nothing: unhealthy, 1 (also for all services).
    stuck = subprocess.Popen(["sleep", "60"])
    try:
        write_pid_file(idle.run_dir / "s3.pid", stuck.pid)
        for names in (["s3"], []):
            text, as_json = _status(idle, *names), _status(idle, *names, "--json")
            assert text.returncode == as_json.returncode == 1, text.stdout
            doc = json.loads(as_json.stdout)
            assert doc["state"] == "unhealthy" and doc["services"][-1] == {
                "service": "s3", "state": "unhealthy", "processes": [
                    {"service": "s3", "name": "s3", "pid": stuck.pid, "healthy": False, "address": idle.s3_endpoint,
                     "state": "unhealthy"}]}
            assert _text_of(doc) == text.stdout.splitlines()
            assert text.stdout.splitlines()[-1] == f"s3: pid {stuck.pid}, not answering on {idle.s3_endpoint}"
    finally:
        stuck.kill()
        stuck.wait()
    assert _status(idle, "--json").returncode == 3  # the process gone, its PID file is stale: not running
