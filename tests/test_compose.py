"""docker-compose.yml cannot run here (no Docker engine), so it is checked statically."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from base.config import PROJECT_ROOT, VARIABLES

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_is_a_mapping_of_the_expected_services() -> None:
    expected = {"kafka-1", "kafka-2", "kafka-3", "minio", "minio-init", "jobmanager", "taskmanager", "job-submitter",
                "clickhouse", "grafana", "producer", "lake-maintenance"}
    assert expected <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_are_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name}: {port} would listen on every interface"


def test_pipeline_environment_uses_only_documented_variables() -> None:
    env = COMPOSE["x-pipeline-env"]
    assert set(env) <= set(VARIABLES), set(env) - set(VARIABLES)
    # Ports in the shared environment agree with the services that provide them.
    assert env["KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    assert env["S3_ENDPOINT"] == "http://minio:9000"
    assert "clickhouse:8123" in env["CLICKHOUSE_URL"]


def test_no_secret_is_written_in_the_file() -> None:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    for key in ("S3_SECRET_KEY", "CLICKHOUSE_PASSWORD", "MINIO_ROOT_PASSWORD", "GF_SECURITY_ADMIN_PASSWORD"):
        for value in re.findall(rf"^\s*{key}:\s*(\S+)", text, re.M):
            assert value.startswith("${"), f"{key} has a literal value {value!r}; take it from the environment"


def test_mounted_files_and_build_contexts_exist() -> None:
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), f"{name}: mounts missing {source}"
        build = svc.get("build")
        if build:
            dockerfile = PROJECT_ROOT / build["context"] / build["dockerfile"]
            assert dockerfile.exists(), f"{name}: missing {dockerfile}"
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for src in line.split()[1:-1]:
                        if not src.startswith(".cache/"):  # fetched by scripts/setup.sh
                            assert (PROJECT_ROOT / src).exists(), f"{dockerfile}: COPY source {src} missing"


def test_app_commands_parse_with_the_real_cli() -> None:
    """The producer/dashboard commands are real subcommands with real flags of `pipeline`."""
    from pipeline.cli import build_parser

    parser = build_parser()
    for name in ("producer", "dashboard"):
        parser.parse_args(SERVICES[name]["command"])
    maintain = SERVICES["lake-maintenance"]["command"]
    assert maintain[:3] == ["python", "-m", "pipeline"]
    parser.parse_args(maintain[3:])


def test_one_broker_or_one_taskmanager_can_be_lost() -> None:
    """The shapes the failover tests exercise locally (tests/reliability/test_multi_node_failover.py)."""
    brokers = sorted(name for name in SERVICES if re.fullmatch(r"kafka-\d", name))
    assert brokers == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {SERVICES[b]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({SERVICES[b]["environment"]["CLUSTER_ID"] for b in brokers}) == 1  # one cluster
    assert COMPOSE["x-pipeline-env"]["KAFKA_REPLICATION"] == "3"
    assert SERVICES["kafka-1"]["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    create = SERVICES["kafka-topics"]["command"][0]
    assert "--replication-factor 3" in create and "--config min.insync.replicas=2" in create

    def props(name: str) -> dict[str, str]:
        text = SERVICES[name]["environment"]["FLINK_PROPERTIES"]
        return dict(line.split(": ", 1) for line in text.strip().splitlines())

    jm, tm = props("jobmanager"), props("taskmanager")
    assert jm["restart-strategy.type"] == "exponential-delay"
    submit = SERVICES["job-submitter"]["command"]
    parallelism = int(submit[submit.index("--parallelism") + 1])
    # after losing one TaskManager the other still has a slot for every subtask
    assert SERVICES["taskmanager"]["deploy"]["replicas"] >= 2
    assert int(tm["taskmanager.numberOfTaskSlots"]) >= parallelism
    checkpoints = submit[submit.index("--checkpoint-dir") + 1]
    assert checkpoints == jm["execution.checkpointing.dir"] and checkpoints.startswith("s3://")
    for name in ("jobmanager", "taskmanager"):
        assert SERVICES[name]["environment"]["ENABLE_BUILT_IN_PLUGINS"].startswith("flink-s3-fs-hadoop-")
        assert props(name)["s3.endpoint"] == "http://minio:9000"


def test_job_submitter_runs_the_job_file_that_exists() -> None:
    command = SERVICES["job-submitter"]["command"]
    assert command[:2] == ["flink", "run"]
    job_file = command[command.index("-py") + 1]
    assert (PROJECT_ROOT / Path(job_file).relative_to("/opt/job")).exists()


def test_grafana_dashboard_queries_the_deduplicated_tables() -> None:
    import json

    dash = json.loads((PROJECT_ROOT / "deploy/grafana/dashboards/user-actions.json").read_text())
    sqls = [t["rawSql"] for p in dash["panels"] for t in p["targets"]]
    assert len(sqls) == 4 and all("FINAL" in s for s in sqls)
