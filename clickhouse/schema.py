"""The schema files and their (checked) substitution into runnable statements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from base.contract import AGGREGATE_TOPICS, AGGREGATES, AGGREGATES_BY_NAME

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
ANALYTICS_SQL = SCHEMA_DIR / "analytics.sql"
KAFKA_ENGINE_SQL = SCHEMA_DIR / "kafka_engine.sql"
KAFKA_ENGINE_CHECKED_SQL = SCHEMA_DIR / "kafka_engine_checked.sql"
CLUSTER_SQL = SCHEMA_DIR / "cluster.sql"

DEFAULT_DATABASE = "analytics"
TABLES = AGGREGATE_TOPICS  # one table per aggregate of the contract, named like its topic

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_BROKERS = re.compile(r"^[A-Za-z0-9_.\-]+:\d+(,[A-Za-z0-9_.\-]+:\d+)*$")


@dataclass(frozen=True)
class SchemaOptions:
    """What the schema files leave open. TTLs are in days (0 is rejected: a TTL must be positive)."""

    database: str = DEFAULT_DATABASE
    realtime_ttl_days: int = AGGREGATES_BY_NAME["user_aggregations_realtime"].ttl_days
    window_ttl_days: int = AGGREGATES_BY_NAME["user_aggregations"].ttl_days

    def __post_init__(self) -> None:
        check_identifier(self.database, "database")
        for name in ("realtime_ttl_days", "window_ttl_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 < value <= 36500:
                raise ValueError(f"{name} must be a whole number of days between 1 and 36500, not {value!r}")


def check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{what} '{name}' is not a plain identifier (letters, digits, _)")
    return name


def statements(path: Path, **values: object) -> list[str]:
    """The file's statements with ${name} substituted; every value was checked by the caller."""
    text = Template(path.read_text()).substitute({k: str(v) for k, v in values.items()})
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def analytics_statements(options: SchemaOptions) -> list[str]:
    return statements(
        ANALYTICS_SQL,
        db=options.database,
        realtime_ttl_days=options.realtime_ttl_days,
        window_ttl_days=options.window_ttl_days,
    )


def kafka_engine_statements(options: SchemaOptions, kafka_brokers: str, consumer_group: str) -> list[str]:
    """For each aggregate of the contract: its Kafka-engine queue and the two views that split what it reads
    between the aggregate table and the dead-letter table (kafka_engine.sql)."""
    if not _BROKERS.match(kafka_brokers):
        raise ValueError(f"kafka brokers '{kafka_brokers}' must be host:port[,host:port]")
    check_identifier(consumer_group.replace("-", "_"), "consumer group")
    out: list[str] = []
    for spec in AGGREGATES:
        action = "action_type" in spec.key_columns
        values = {
            "db": options.database, "name": spec.name, "count_column": spec.count_column,
            "window_minutes": spec.window_minutes, "kafka_brokers": kafka_brokers, "consumer_group": consumer_group,
            "action_type_column": "\n    action_type   String," if action else "",
            "action_type_select": " action_type AS at," if action else "",
            "action_type_final": " at AS action_type," if action else "",
            "action_type_reason": "\n        at = '', 'empty action_type'," if action else "",
        }
        checked = _without_comments(Template(KAFKA_ENGINE_CHECKED_SQL.read_text()).substitute(values))
        out += statements(KAFKA_ENGINE_SQL, **values, checked=checked)
    return out


def _without_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


def cluster_statements(options: SchemaOptions, cluster: str) -> list[str]:
    check_identifier(cluster, "cluster")
    return statements(
        CLUSTER_SQL,
        db=options.database,
        cluster=cluster,
        realtime_ttl_days=options.realtime_ttl_days,
        window_ttl_days=options.window_ttl_days,
    )
