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
    expected = {"kafka", "minio", "minio-init", "jobmanager", "taskmanager", "job-submitter", "clickhouse",
                "grafana", "producer", "lake-maintenance"}
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
    assert env["KAFKA_BOOTSTRAP"] == "kafka:9092"
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
