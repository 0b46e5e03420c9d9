"""The target topic: name check, reachability check, creation with the configured partitions."""

from __future__ import annotations

import re

from base.config import Settings
from base.errors import UserError
from base.kafka_access import admin_and_topics

_LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def check_topic_name(name: str) -> str:
    """Kafka's own rule: 1..249 characters of [A-Za-z0-9._-], and not '.' or '..'."""
    if not _LEGAL.match(name) or name in (".", ".."):
        raise UserError(f"--topic: '{name}' is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
    return name


def ensure_topic(settings: Settings, topic: str, partitions: int, timeout_s: float = 5.0) -> bool:
    """Create ``topic`` if missing; True if it was created. A broker not reached -> UserError naming why."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    check_topic_name(topic)
    admin, existing = admin_and_topics(settings, timeout_s)
    if topic in existing:
        return False
    new = NewTopic(topic, num_partitions=partitions, replication_factor=settings.kafka_replication,
                   config=settings.kafka_topic_config)
    try:
        admin.create_topics([new])[topic].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return False
        raise UserError(f"kafka: creating topic {topic} failed: {exc.args[0].str() if exc.args else exc}") from None
    return True
