"""Reaching the configured Kafka from a command: its topics, or one line that names what to fix.

librdkafka answers every failed metadata request with the same "Broker transport failure". The cause it knows only
reaches the client's error callback: a refused password or SASL mechanism, a failed TLS handshake. Without it a wrong
password reads "is the broker running?", which sends a user to the wrong place. A broker that accepts TCP yet answers
nothing and names no cause is most often a listener that expects another security protocol.
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

_AUTHENTICATION = -169  # librdkafka's RD_KAFKA_RESP_ERR__AUTHENTICATION
_SSL = -181  # RD_KAFKA_RESP_ERR__SSL
_PREFIX = re.compile(r"^\S+://\S+/(?:bootstrap|\d+): ")  # "sasl_plaintext://host:9092/bootstrap: "
_AFTER = re.compile(r" \(after \d+ms in state \w+\)$")


def admin_and_topics(settings: Settings, timeout_s: float) -> tuple[AdminClient, set[str]]:
    """An admin client on the configured Kafka and the topic names it lists; UserError naming the cause if it fails."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    errors: list = []
    # log_level 0: librdkafka would print a line per failed connect; the UserError says it once.
    admin = AdminClient({**settings.kafka_client_config(), "log_level": 0, "error_cb": errors.append,
                         "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000))})
    try:
        return admin, set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException:
        admin.poll(0.5)  # serves the error callback, where the cause waits
        raise UserError(explain_failure(settings, errors, timeout_s)) from None


def explain_failure(settings: Settings, errors: list, timeout_s: float) -> str:
    """The one line for a failed metadata request, from the client's reported errors (KafkaError objects)."""
    where = settings.kafka_bootstrap
    codes = {e.code(): _reason(e.str()) for e in reversed(errors)}  # the first of each code wins
    if _AUTHENTICATION in codes:
        return (f"kafka: {where} refused to authenticate user '{settings.kafka_sasl_username or ''}' "
                f"({codes[_AUTHENTICATION]}): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or "
                "KAFKA_SASL_PASSWORD_FILE) and KAFKA_SASL_MECHANISM")
    if _SSL in codes:
        return (f"kafka: the TLS handshake with {where} failed ({codes[_SSL]}): check KAFKA_SECURITY_PROTOCOL and "
                "KAFKA_SSL_CA_LOCATION")
    listening = [a for a in where.split(",") if _accepts_tcp(a)]
    if listening:
        return (f"kafka: {listening[0]} accepts connections but answered no metadata request within {timeout_s:g}s: "
                f"the broker may still be starting, or its listener expects another protocol than "
                f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol or 'PLAINTEXT'} (with SASL: also set "
                "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)")
    return (f"kafka: cannot reach a broker at {where} within {timeout_s:g}s: start it (pipeline services start kafka) "
            "or set KAFKA_BOOTSTRAP")


def _reason(text: str) -> str:
    return _AFTER.sub("", _PREFIX.sub("", text))


def _accepts_tcp(address: str) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False
