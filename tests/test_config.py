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
    "FLINK_PROPERTIES": "taskmanager.numberOfTaskSlots: 4", "JARS_DIR": "/opt/jars", "DASHBOARD_PORT": "8051",
    "DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_TOKEN": "tok", "DASHBOARD_ALLOWED_HOSTS": "dash.example",
    "DASHBOARD_QUERY_TIMEOUT": "5", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "pw",
    "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
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
