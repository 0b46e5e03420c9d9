"""Settings: every variable declared once, and to_env() is the inverse of from_env() (how children get them)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from base.config import SETTINGS_VARIABLES, VARIABLES, Settings
from base.errors import UserError

EVERYTHING = {
    "DATA_DIR": "/srv/pipeline", "KAFKA_BOOTSTRAP": "k1:9093,k2:9093", "KAFKA_PARTITIONS": "12",
    "KAFKA_REPLICATION": "3", "PAIMON_WAREHOUSE": "s3://lake/warehouse", "S3_ENDPOINT": "https://s3.example",
    "S3_ACCESS_KEY": "ak", "S3_SECRET_KEY": "sk", "CLICKHOUSE_URL": "http://u:p@ch:8123", "CLICKHOUSE_USER": "loader",
    "CLICKHOUSE_PASSWORD": "pw", "FLINK_REST_PORT": "8082", "FLINK_REST_URL": "http://jobmanager:8081",
    "FLINK_PROPERTIES": "taskmanager.numberOfTaskSlots: 4", "FLINK_METRICS_PORT": "9250", "JARS_DIR": "/opt/jars",
    "DASHBOARD_PORT": "8051",
    "DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_TOKEN": "tok", "DASHBOARD_ALLOWED_HOSTS": "dash.example",
    "DASHBOARD_QUERY_TIMEOUT": "5", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "pw",
    "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
}


def test_every_field_has_one_variable_and_help() -> None:
    assert sorted(v.field for v in SETTINGS_VARIABLES) == sorted(f.name for f in fields(Settings))
    assert list(VARIABLES) == [v.env for v in SETTINGS_VARIABLES] == list(EVERYTHING)
    assert all(VARIABLES.values())


def test_to_env_is_the_inverse_of_from_env() -> None:
    settings = Settings.from_env(EVERYTHING)
    assert settings.to_env() == EVERYTHING
    assert Settings.from_env(settings.to_env()) == settings
    defaults = Settings.from_env({})
    assert Settings.from_env(defaults.to_env()) == defaults
    assert "KAFKA_SASL_PASSWORD" not in defaults.to_env()  # unset stays unset in a child


def test_derived_default_and_flags_over_environment() -> None:
    settings = Settings.from_env({"DATA_DIR": "/srv/x"}, kafka_bootstrap="flag:1")
    assert settings.paimon_warehouse == "file:///srv/x/warehouse"
    assert settings.kafka_bootstrap == "flag:1"


def test_describe_masks_secrets() -> None:
    shown = dict(Settings.from_env(EVERYTHING).describe())
    assert shown["S3_SECRET_KEY"] == shown["KAFKA_SASL_PASSWORD"] == "********"
    assert shown["KAFKA_BOOTSTRAP"] == "k1:9093,k2:9093"


def test_a_bad_number_is_one_readable_error() -> None:
    with pytest.raises(UserError, match="KAFKA_PARTITIONS: 'many' is not a whole number"):
        Settings.from_env({"KAFKA_PARTITIONS": "many"})


def test_every_variable_can_come_from_a_secrets_file(tmp_path) -> None:
    """NAME_FILE (Docker and Kubernetes secrets): the file's content, without its trailing newline."""
    secret = tmp_path / "password"
    secret.write_text("p'@:/#w\n")
    settings = Settings.from_env({"CLICKHOUSE_PASSWORD_FILE": str(secret), "S3_SECRET_KEY_FILE": str(secret)})
    assert settings.clickhouse_password == settings.s3_secret_key == "p'@:/#w"
    with pytest.raises(UserError, match="CLICKHOUSE_PASSWORD and CLICKHOUSE_PASSWORD_FILE are both set"):
        Settings.from_env({"CLICKHOUSE_PASSWORD": "x", "CLICKHOUSE_PASSWORD_FILE": str(secret)})
    with pytest.raises(UserError, match="S3_SECRET_KEY_FILE: cannot read /no/such/file"):
        Settings.from_env({"S3_SECRET_KEY_FILE": "/no/such/file"})


def test_clickhouse_credentials_survive_any_character_and_are_never_shown() -> None:
    from urllib.parse import unquote, urlparse

    password = "p'@:/#?%w"
    settings = Settings.from_env({"CLICKHOUSE_URL": "https://ch.example:8443", "CLICKHOUSE_USER": "loader",
                                  "CLICKHOUSE_PASSWORD": password})
    dsn = urlparse(settings.clickhouse_dsn)
    assert (dsn.hostname, dsn.port, unquote(dsn.username), unquote(dsn.password)) == (
        "ch.example", 8443, "loader", password)
    shown = "\n".join(f"{k} {v}" for k, v in settings.describe())
    assert password not in shown and "p%27" not in shown
    in_url = dict(Settings.from_env({"CLICKHOUSE_URL": "http://u:secret@ch:8123"}).describe())["CLICKHOUSE_URL"]
    assert in_url == "http://u:***@ch:8123"


def test_a_flag_moves_the_defaults_derived_from_it() -> None:
    settings = Settings.from_env({}, data_dir="/srv/flag")
    assert settings.paimon_warehouse == "file:///srv/flag/warehouse"


PRODUCT_PACKAGES = ("base", "local_services", "producer", "clickhouse", "lakehouse", "flink_job", "pipeline")


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) of every read of the process environment in ``source``: ``os.environ[...]``,
    ``os.environ.get(...)``, ``NAME in os.environ``, ``os.getenv(...)``, any use of ``os.environ``/``os.environb``
    (also imported by name) other than passing the whole of it to a child, ``{**os.environ, ...}``."""
    import ast

    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    by_name = {alias.asname or alias.name: alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "os" for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            name = node.attr
        elif isinstance(node, ast.Name) and node.id in by_name and isinstance(node.ctx, ast.Load):
            name = by_name[node.id]
        else:
            continue
        if name == "getenv":
            found.append((node.lineno, "os.getenv"))
        elif name in ("environ", "environb"):
            parent = parents.get(node)
            whole = isinstance(parent, ast.Dict) and any(
                key is None and value is node for key, value in zip(parent.keys, parent.values, strict=True))
            if not whole:
                found.append((node.lineno, f"os.{name} used as {type(parent).__name__}"))
    return found


def test_only_base_config_reads_the_environment() -> None:
    """README: base/config.py is the only module that reads the environment (passing all of it to a child process,
    ``{**os.environ, ...}``, is not reading a variable). A new ``os.environ[...]``, ``os.environ.get(...)`` or
    ``os.getenv(...)`` anywhere else in the product fails here."""
    from base.config import PROJECT_ROOT

    reads = [f"{path.relative_to(PROJECT_ROOT)}:{line}: {what}"
             for package in PRODUCT_PACKAGES for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
             if path != PROJECT_ROOT / "base" / "config.py"
             for line, what in environment_reads(path.read_text())]
    assert reads == [], "read the environment in base/config.py (a helper there), not here:\n" + "\n".join(reads)
    # the check itself finds each form
    forms = ("import os\nos.environ['A']\nos.environ.get('B')\n'C' in os.environ\nos.getenv('D')\nenv = os.environ\n"
             "from os import environ as e, getenv\ne.get('E')\ngetenv('F')\nchild = {**os.environ, 'G': '1'}\n")
    assert sorted(line for line, _ in environment_reads(forms)) == [2, 3, 4, 5, 6, 8, 9]
    assert environment_reads((PROJECT_ROOT / "base" / "config.py").read_text())  # where the reads are


# --- the scriptable CLI: --json, --version, one log format (issue #25) ---------------------------------------------

def pipeline(*args: str, env: dict[str, str] | None = None):
    """The `pipeline` console script as a user types it (a real process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from base.config import PROJECT_ROOT

    return subprocess.run([str(Path(sys.executable).parent / "pipeline"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=PROJECT_ROOT, timeout=60)


def test_log_level_and_format_are_settings_checked_once() -> None:
    assert (Settings.from_env({}).log_level, Settings.from_env({}).log_format) == ("info", "text")
    with pytest.raises(UserError, match="LOG_LEVEL: 'loud' is not one of debug, info, warning, error"):
        Settings.from_env({"LOG_LEVEL": "loud"})
    with pytest.raises(UserError, match="LOG_FORMAT: 'xml' is not one of text, json"):
        Settings.from_env({"LOG_FORMAT": "xml"})


def test_config_json_carries_the_values_of_the_text(tmp_path) -> None:
    """`pipeline config --json`: one JSON object on stdout, variable -> the value the text shows (secrets masked);
    the log flags are settings like any other, flags over the environment."""
    import json

    env = {"DATA_DIR": str(tmp_path), "S3_SECRET_KEY": "do-not-show", "LOG_LEVEL": "warning"}
    text = pipeline("--log-format", "json", "config", env=env)
    doc = pipeline("--log-format", "json", "config", "--json", env=env)
    assert text.returncode == doc.returncode == 0, text.stderr + doc.stderr
    shown = json.loads(doc.stdout)
    assert list(shown) == list(VARIABLES)
    assert [line.split(None, 1) for line in text.stdout.splitlines()] == [[k, v] for k, v in shown.items()]
    assert shown["DATA_DIR"] == str(tmp_path) and shown["S3_SECRET_KEY"] == "********"
    assert (shown["LOG_LEVEL"], shown["LOG_FORMAT"]) == ("warning", "json")
    assert "do-not-show" not in doc.stdout + text.stdout


def test_version_is_the_installed_package_version() -> None:
    from importlib.metadata import version

    out = pipeline("--version")
    assert out.returncode == 0 and out.stdout == f"pipeline {version('user-actions-pipeline')}\n", out


@pytest.fixture
def restored_logging():
    """Logging as it was before the test (configure() changes the root logger of this process)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("base", "local_services", "producer", "clickhouse", "lakehouse", "flink_job", "pipeline",
             "urllib3.connectionpool", "clickhouse_connect")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def test_json_logs_are_one_object_per_line_and_the_level_filters(restored_logging, capsys) -> None:
    """--log-format json: every line parses alone (time, level, logger, message; a traceback inside the object);
    the project's loggers log at --log-level, libraries at warning and above; configuring twice leaves one
    handler."""
    import json
    import logging
    import re

    from base import logs
    from pipeline.cli import PACKAGES

    logs.configure("info", "json", own=PACKAGES)
    logs.configure("info", "json", own=PACKAGES)
    own, library = logging.getLogger("lakehouse.maintain"), logging.getLogger("kafka.conn")
    own.debug("not shown at info")
    own.info("two\nlines")
    library.info("a library's info: not shown")
    library.warning("a library's warning")
    try:
        raise ValueError("boom")
    except ValueError:
        own.exception("failed")
    out, err = capsys.readouterr()
    assert out == ""
    records = [json.loads(line) for line in err.splitlines()]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "lakehouse.maintain", "two\nlines"), ("WARNING", "kafka.conn", "a library's warning"),
        ("ERROR", "lakehouse.maintain", "failed")]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)
    assert "ValueError: boom" in records[2]["exception"]

    logs.configure("debug", "text", own=PACKAGES)
    library.debug("everything at debug")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG kafka\.conn: everything at debug\n",
                        capsys.readouterr().err)


def test_log_format_reaches_a_real_process_through_flag_or_environment(tmp_path) -> None:
    """A part's log line (a garbled PID file, reported by local_services while `services status` runs) comes out in
    the format of --log-format or LOG_FORMAT, on stderr; stdout holds the status alone."""
    import json
    import re

    from tests.conftest import free_port

    env = {"DATA_DIR": str(tmp_path), "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    pid_file = tmp_path / "run" / "s3.pid"
    pid_file.parent.mkdir()
    pid_file.write_text("garbled")
    by_flag = pipeline("--log-format", "json", "services", "status", "s3", env=env)
    pid_file.write_text("garbled")
    by_env = pipeline("services", "status", "s3", env={**env, "LOG_FORMAT": "json"})
    for run in (by_flag, by_env):
        assert run.returncode == 3 and run.stdout == f"s3: no pid file, not answering on {env['S3_ENDPOINT']}\n"
        [record] = [json.loads(line) for line in run.stderr.splitlines()]
        assert (record["level"], record["logger"]) == ("WARNING", "local_services.process")
        assert record["message"].startswith(f"unreadable PID file {pid_file}")
    pid_file.write_text("garbled")
    text = pipeline("services", "status", "s3", env=env)
    assert re.fullmatch(r"\S+ \S+ WARNING local_services\.process: unreadable PID file \S+ \('garbled'\), removed\n",
                        text.stderr), text.stderr
    pid_file.write_text("garbled")
    quiet = pipeline("--log-level", "error", "services", "status", "s3", env=env)
    assert quiet.returncode == 3 and quiet.stderr == ""


def test_no_part_configures_logging() -> None:
    """One log format: only the front end configures logging (base/logs.py's configure, from pipeline/cli.py); a
    part calling logging.basicConfig, logging.config or configure itself fails here."""
    import re

    from base.config import PROJECT_ROOT

    found = [f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}"
             for package in PRODUCT_PACKAGES for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
             if path not in (PROJECT_ROOT / "base" / "logs.py", PROJECT_ROOT / "pipeline" / "cli.py")
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"basicConfig|logging\.config|dictConfig|fileConfig|logs\.configure", line)]
    assert found == [], "configure logging in pipeline/cli.py only (base/logs.py), not here:\n" + "\n".join(found)
