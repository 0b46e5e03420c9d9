"""docker-compose.yml and deploy/, checked statically: no Docker engine runs on the development machines.

First the compose specification's own JSON schema (shipped in the compose-go Go module, the library Docker Compose
is built on; scripts/setup.sh --test fetches it), then one check per class of defect a deployment has hit or would
hit: an image tag that disagrees with what the project pins, a Python too old for requires-python, state written
outside a volume, a dependency on a health check that does not exist, a secret in a URL, a service that never
restarts or has no memory limit, a root container, a Kafka listener the host cannot use. What the checks cannot
prove (that the images build and the stack comes up) is listed in the README.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from base.config import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
RAW = yaml.safe_load(COMPOSE_FILE.read_text())
SCHEMA = PROJECT_ROOT / ".cache" / "compose-spec" / "compose-spec.json"
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
# One-shot jobs: they run to completion on every `up`, so they restart on failure only and need no health check.
ONE_SHOT = {"kafka-topics", "minio-init", "clickhouse-init"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ for a literal $."""
    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$$"
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = env.get(name, "")
        if op == ":-" and not value:
            return arg
        if op == ":?" and not value:
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return value
    return re.sub(r"\$\$|\$\{(\w+)(:-|:\?)?([^}]*)\}", one, text)


def example_env() -> dict[str, str]:
    """.env.example with a value in every empty line, as a user fills it in."""
    env = {}
    for line in (PROJECT_ROOT / ".env.example").read_text().splitlines():
        if re.fullmatch(r"[A-Z0-9_]+=.*", line):
            name, value = line.split("=", 1)
            env[name] = value or f"example-{name.lower()}"
    return env


COMPOSE = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), example_env()))
SERVICES = COMPOSE["services"]
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)


def dockerfile(name: str) -> str:
    return (PROJECT_ROOT / "deploy" / name / "Dockerfile").read_text()


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM "):]


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def flink_properties(service: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in environment(service)["FLINK_PROPERTIES"].strip().splitlines())


def mounts(service: str) -> dict[str, str]:
    """Container path -> source (named volume or host path) of the service's volumes."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def named_volume_at(service: str, path: str) -> bool:
    """``path`` lies on a named volume mounted by ``service``."""
    return any(path == target or path.startswith(target.rstrip("/") + "/")
               for target, source in mounts(service).items() if source in (COMPOSE.get("volumes") or {}))


# -- 1. the compose specification's schema ------------------------------------------------------------------------
def test_the_file_is_valid_against_the_compose_specification_schema() -> None:
    import jsonschema

    assert SCHEMA.is_file(), f"{SCHEMA} is missing: run scripts/setup.sh --test (it fetches the compose-go module)"
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message[:300]}" for e in errors)


def test_every_variable_the_file_interpolates_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    used |= {spec["environment"] for spec in COMPOSE["secrets"].values() if "environment" in spec}
    documented = set(example_env()) | {"KAFKA_CLUSTER_ID"}  # optional, commented in .env.example
    assert used <= documented, used - documented


# -- 2. versions: what runs is what the project pins ---------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RAW["services"]))
def test_every_image_is_pinned_to_an_exact_version(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo and tag, f"{name}: image {image!r} has no tag"
    assert tag != "latest" and re.fullmatch(r"v?\d+(\.\d+){2,3}|\d{4}-\d\d-\d\d", tag), \
        f"{name}: {image!r} floats: pin a full version (x.y.z), not a major or minor line"


def _pin(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return name.split("[")[0].strip(), version.split(";")[0].split("#")[0].strip()


def test_flink_runs_the_version_the_python_client_pins() -> None:
    """One Flink everywhere: the image's runtime is the apache-flink wheel's own distribution (the pin in
    pyproject.toml, held by constraints.txt), not a Flink image of some other version beside it."""
    flink_pin = dict(map(_pin, PYPROJECT["project"]["optional-dependencies"]["flink"]))["apache-flink"]
    constraints = dict(_pin(line) for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
                       if "==" in line and not line.startswith("#"))
    assert constraints["apache-flink"] == flink_pin
    text = dockerfile("flink")
    assert not re.search(r"^FROM flink:", text, re.M), "a Flink base image would be a second Flink version"
    assert re.search(r"pip install [^\n]*-c constraints\.txt '\.\[flink\]'", text)
    for path in (COMPOSE_FILE, *sorted((PROJECT_ROOT / "deploy").rglob("*"))):
        if path.is_file():
            # Flink's own artifacts: jars and plugins named flink-<module>-<version>, images flink:<version>
            for found in re.findall(r"\bflink(?:-[a-z0-9]+)+-(\d+\.\d+\.\d+)|(?<![\w/-])flink:(\d+\.\d+\.\d+)",
                                    path.read_text()):
                version = found[0] or found[1]
                assert version == flink_pin, f"{path}: Flink {version} beside the pinned {flink_pin}"


def test_kafka_image_is_the_version_the_local_broker_runs() -> None:
    pom = (PROJECT_ROOT / "scripts" / "maven" / "kafka" / "pom.xml").read_text()
    local = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    images = {SERVICES[s]["image"] for s in SERVICES if SERVICES[s]["image"].startswith("apache/kafka:")}
    assert images == {f"apache/kafka:{local}"}, images


@pytest.mark.parametrize("name", ["app", "flink"])
def test_the_python_of_each_image_satisfies_requires_python(name: str) -> None:
    from packaging.specifiers import SpecifierSet

    base = re.search(r"^FROM python:(\d+\.\d+\.\d+)", final_stage(dockerfile(name)), re.M)
    assert base, f"deploy/{name}/Dockerfile does not start from a pinned python:x.y.z image"
    assert base.group(1) in SpecifierSet(PYPROJECT["project"]["requires-python"]), base.group(1)


def test_minio_is_built_from_a_release_with_the_cve_2025_62506_fix() -> None:
    """MinIO publishes source only since October 2025; its last image predates the fix (2025-10-15)."""
    text = dockerfile("minio")
    pinned = re.search(r"go install github\.com/minio/minio@v0\.0\.0-(\d{8})\d{6}-[0-9a-f]{12}", text)
    assert pinned and pinned.group(1) >= "20251015", "pin MinIO at or after RELEASE.2025-10-15T17-29-55Z"


def test_each_image_installs_only_what_its_role_runs() -> None:
    app, flink = final_stage(dockerfile("app")), final_stage(dockerfile("flink"))
    assert re.search(r"pip install [^\n]*-c constraints\.txt \.(\s|$)", app), "the app image: the core only"
    for text in (app, flink):
        assert "embedded" not in text and "dev]" not in text
    assert "[flink" not in app


# -- 3. state lives on volumes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["kafka-1", "kafka-2", "kafka-3"])
def test_kafka_writes_its_log_dirs_to_its_volume(name: str) -> None:
    log_dirs = environment(name).get("KAFKA_LOG_DIRS")
    assert log_dirs, f"{name}: KAFKA_LOG_DIRS unset: the image writes to /tmp/kraft-combined-logs"
    assert named_volume_at(name, log_dirs), f"{name}: {log_dirs} is not on a volume"


def test_every_stateful_service_keeps_its_state_on_a_volume() -> None:
    minio_data = SERVICES["minio"]["command"][1]
    assert named_volume_at("minio", minio_data)
    assert named_volume_at("clickhouse", "/var/lib/clickhouse")
    assert named_volume_at("grafana", "/var/lib/grafana")
    for name in ("jobmanager", "taskmanager", "job-submitter"):
        for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
            uri = flink_properties(name)[key]
            assert uri.startswith("file://") and named_volume_at(name, uri[len("file://"):]), (name, key, uri)


def test_every_named_volume_is_used() -> None:
    used = {source for name in SERVICES for source in mounts(name).values()}
    assert set(COMPOSE["volumes"]) <= used, set(COMPOSE["volumes"]) - used


# -- 4. operations: health, restarts, memory, users ----------------------------------------------------------------
def test_every_service_healthy_dependency_has_a_health_check() -> None:
    for name, svc in SERVICES.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep} to be healthy: it has no healthcheck"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check_a_restart_policy_and_a_memory_limit(name: str) -> None:
    svc = SERVICES[name]
    if "demo" not in svc.get("profiles", []):  # the demo producer serves nothing to check
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
    assert svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"), f"{name}: no memory limit"


def _bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", text.strip().lower()).groups()
    return int(number) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def test_memory_limits_leave_room_for_the_configured_heaps() -> None:
    def limit(name: str) -> int:
        return _bytes(SERVICES[name]["deploy"]["resources"]["limits"]["memory"])

    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        heap = _bytes(re.search(r"-Xmx(\S+)", environment(broker)["KAFKA_HEAP_OPTS"]).group(1))
        assert limit(broker) >= heap + (256 << 20), broker
    props = flink_properties("jobmanager")
    assert limit("jobmanager") >= _bytes(props["jobmanager.memory.process.size"])
    assert limit("taskmanager") >= _bytes(props["taskmanager.memory.process.size"]) + (256 << 20)


@pytest.mark.parametrize("name", ["app", "flink", "minio"])
def test_the_project_images_do_not_run_as_root(name: str) -> None:
    users = re.findall(r"^USER (\S+)", final_stage(dockerfile(name)), re.M)
    assert users and users[-1] not in ("root", "0"), f"deploy/{name}/Dockerfile runs as {users or 'root'}"


def test_the_demo_producer_is_not_part_of_the_production_stack() -> None:
    assert SERVICES["producer"].get("profiles") == ["demo"]


# -- 5. network: loopback only, a Kafka the host can use, Flink's REST API kept inside ------------------------------
@pytest.mark.parametrize("name", sorted(RAW["services"]))
def test_published_ports_are_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name}: {port} would listen on every interface"


def test_each_published_kafka_port_is_advertised_to_the_host_as_localhost() -> None:
    for name in ("kafka-1", "kafka-2", "kafka-3"):
        env = environment(name)
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        (published,) = SERVICES[name]["ports"]
        _, host_port, container_port = str(published).split(":")
        listener = next(n for n, address in listeners.items() if address.endswith(f":{container_port}"))
        assert advertised[listener] == f"localhost:{host_port}", (name, listener, advertised)


def test_flink_rest_api_is_not_published_and_takes_no_jar_uploads() -> None:
    assert "ports" not in SERVICES["jobmanager"]
    props = flink_properties("jobmanager")
    assert props["web.submit.enable"] == "false" and props["web.cancel.enable"] == "false"


# -- 6. secrets -----------------------------------------------------------------------------------------------------
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY)$")


@pytest.mark.parametrize("name", sorted(RAW["services"]))
def test_no_secret_is_written_in_the_file_or_put_in_a_url(name: str) -> None:
    raw_env = RAW["services"][name].get("environment") or {}
    if isinstance(raw_env, str):  # an alias of a shared block
        raw_env = RAW[raw_env]
    for key, value in environment(name).items():  # as interpolated: a password from .env inside a URL breaks it
        assert not re.search(r"://[^/\s@]*:[^/\s@]*@", value), f"{name}: {key} has credentials in a URL"
    for key, value in raw_env.items():
        value = str(value)
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            assert value.startswith("${"), f"{name}: {key} has a literal value; take it from .env"


@pytest.mark.parametrize("name", sorted(RAW["services"]))
def test_every_secret_file_a_service_reads_is_mounted(name: str) -> None:
    mounted = set(SERVICES[name].get("secrets", []))
    assert mounted <= set(COMPOSE["secrets"]), mounted - set(COMPOSE["secrets"])
    for key, value in environment(name).items():
        if key.endswith("_FILE") and value.startswith("/run/secrets/"):
            assert value.rsplit("/", 1)[1] in mounted, f"{name}: {key} reads a secret it does not mount"


# -- 7. the project's own commands are real ------------------------------------------------------------------------
def test_project_commands_parse_with_the_real_cli() -> None:
    from pipeline.cli import build_parser

    parser = build_parser()
    for svc in SERVICES.values():
        image = svc["image"]
        if image.startswith(("user-actions/app:", "user-actions/flink:")):
            parser.parse_args(svc["command"])
            test = svc.get("healthcheck", {}).get("test", [])
            if test[:2] == ["CMD", "pipeline"]:
                parser.parse_args(test[2:])


def test_mounted_files_and_build_contexts_exist() -> None:
    for name, svc in SERVICES.items():
        for source in mounts(name).values():
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), f"{name}: mounts missing {source}"
        build = svc.get("build")
        if build:
            context = PROJECT_ROOT / build["context"]
            text = (context / build.get("dockerfile", "Dockerfile")).read_text()
            for line in text.splitlines():
                if line.startswith("COPY ") and "--from=" not in line:
                    for src in shlex.split(line)[1:-1]:
                        assert (context / src).exists(), f"{name}: COPY source {src} missing"


def test_grafana_reads_its_secrets_from_files_and_queries_the_deduplicated_tables() -> None:
    datasource = (PROJECT_ROOT / "deploy/grafana/provisioning/datasources/clickhouse.yml").read_text()
    assert "$__file{/run/secrets/clickhouse_grafana_password}" in datasource and "username: grafana" in datasource
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in environment("grafana")
    dash = json.loads((PROJECT_ROOT / "deploy/grafana/dashboards/user-actions.json").read_text())
    sqls = [t["rawSql"] for p in dash["panels"] for t in p["targets"]]
    assert len(sqls) == 4 and all("FINAL" in s for s in sqls)


def test_docker_ignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".cache", ".env"} <= set(ignored)
    assert Path(".cache/jars") not in map(Path, ignored)


# -- 8. least privilege: each component with its own users, allowed only its part ------------------------------------
def test_each_component_reaches_clickhouse_as_its_own_user_with_only_its_grants() -> None:
    import xml.etree.ElementTree as ET

    users = {u.tag: u for u in ET.parse(PROJECT_ROOT / "deploy/clickhouse/users.d/pipeline-users.xml")
             .getroot().find("users")}
    grants = {name: " ".join(q.text for q in user.find("grants")) for name, user in users.items()}
    assert grants == {"loader": "GRANT SELECT, INSERT, ALTER DELETE ON analytics.*",
                      "api": "GRANT SELECT ON analytics.*", "grafana": "GRANT SELECT ON analytics.*"}
    assert all(user.find("password").get("from_env") for user in users.values())  # no password in the file
    profiles = {p.tag: p for p in ET.parse(PROJECT_ROOT / "deploy/clickhouse/users.d/pipeline-users.xml")
                .getroot().find("profiles")}
    assert users["api"].findtext("profile") == "api_reader" and profiles["api_reader"].findtext("readonly") == "2"
    assert profiles["api_reader"].findtext("max_execution_time") and profiles["grafana_reader"].findtext("readonly")
    as_user = {name: environment(name).get("CLICKHOUSE_USER") for name in SERVICES}
    assert as_user["clickhouse-init"] == "analytics"  # the administrator: the schema, nothing else
    assert (as_user["loader"], as_user["lake-maintenance"], as_user["dashboard"]) == ("loader", "loader", "api")
    assert SERVICES["loader"]["command"][-1] == "--no-schema" and "--no-loader" in SERVICES["dashboard"]["command"]
    # (the server itself creates the administrator from the same variable)
    assert {n for n, u in as_user.items() if u == "analytics"} == {"clickhouse", "clickhouse-init"}


def _kafka_users() -> set[str]:
    jaas = environment("kafka-1")["KAFKA_LISTENER_NAME_INTERNAL_PLAIN_SASL_JAAS_CONFIG"]
    return set(re.findall(r'\buser_(\w+)="', jaas))


def _acls() -> dict[str, set[tuple[str, str]]]:
    """principal -> {(operation, resource)} from the kafka-topics command's kafka-acls calls."""
    out: dict[str, set[tuple[str, str]]] = {}
    for call in SERVICES["kafka-topics"]["command"][0].split(";"):
        if "kafka-acls.sh" not in call:
            continue
        words = call.split()
        principal = words[words.index("--allow-principal") + 1].removeprefix("User:")
        operations = [words[i + 1] for i, w in enumerate(words) if w == "--operation"]
        resources = [f"{w[2:]}:{words[i + 1]}" for i, w in enumerate(words) if w in ("--topic", "--group")]
        out.setdefault(principal, set()).update((o, r) for o in operations for r in resources)
    return out


def test_kafka_authenticates_everyone_and_each_user_may_do_only_its_part() -> None:
    env = environment("kafka-1")
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(",", ":").split(":")[1::2]) == {"SASL_PLAINTEXT"}
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:broker;User:admin"
    assert _kafka_users() == {"broker", "admin", "producer", "flink", "loader"}
    aggregates = {"topic:user_aggregations", "topic:user_action_aggregations", "topic:user_aggregations_realtime"}
    assert _acls() == {
        "producer": {("Write", "topic:user_actions_topic"), ("Describe", "topic:user_actions_topic")},
        "flink": {("Read", "topic:user_actions_topic"), ("Describe", "topic:user_actions_topic"),
                  ("Read", "group:flink-user-actions"),
                  *((op, t) for op in ("Write", "Describe") for t in aggregates)},
        "loader": {*((op, t) for op in ("Read", "Describe") for t in aggregates), ("Read", "group:clickhouse-loader")},
    }
    as_user = {name: environment(name).get("KAFKA_SASL_USERNAME") for name in SERVICES}
    assert (as_user["producer"], as_user["job-submitter"], as_user["loader"]) == ("producer", "flink", "loader")
    for name, user in as_user.items():
        if user:
            assert environment(name)["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/kafka_{user}_password", name


def test_only_minio_and_its_init_job_hold_the_root_keys() -> None:
    holders = {name for name, svc in SERVICES.items() if {"minio_root_user", "minio_root_password"} & set(
        svc.get("secrets", []))}
    assert holders == {"minio", "minio-init"}
    lake_users = {name for name, svc in SERVICES.items() if "s3_secret_key" in svc.get("secrets", [])}
    assert lake_users == {"job-submitter", "lake-maintenance", "minio-init"}
    # the dashboard reads the rejected table as a user whose policy allows reading the bucket and nothing else
    readers = {name for name, svc in SERVICES.items() if "s3_reader_secret_key" in svc.get("secrets", [])}
    assert readers == {"dashboard", "minio-init"}
    assert environment("dashboard")["S3_SECRET_KEY_FILE"] == "/run/secrets/s3_reader_secret_key"
    policy = json.loads((PROJECT_ROOT / "deploy/minio/lake-read-policy.json").read_text())
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert actions == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}


def test_the_dashboard_exposed_beyond_loopback_carries_a_token() -> None:
    env = environment("dashboard")
    assert env["DASHBOARD_HOST"] == "0.0.0.0" and env["DASHBOARD_TOKEN_FILE"] == "/run/secrets/dashboard_token"
    assert "dashboard_token" in SERVICES["dashboard"]["secrets"]
