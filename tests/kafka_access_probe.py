"""One Kafka access attempt (write a record, or read one in a group) in a process of its own.

Run as ``python -m tests.kafka_access_probe write|read CONFIG_JSON TOPIC [GROUP]``; prints the outcome as JSON:
null when the access succeeded, else the error's name (TOPIC_AUTHORIZATION_FAILED, ...).

Why a process: librdkafka's Python binding can leave an exception set while a client whose access was refused is torn
down (a TypeError surfaced at the test's next builtin call as "SystemError: ... returned a result with an exception
set"). Here the outcome is printed and the process ends with ``os._exit`` before any client is torn down, so nothing
of the kind can reach the test.
"""

from __future__ import annotations

import json
import os
import re
import sys


def _name(error) -> str:
    """The error's name, or its text where the client has no name for it."""
    try:
        return error.name()
    except (SystemError, TypeError):  # some delivery reports carry the code only in their text
        found = re.search(r"code=(\w+)", str(error))
        return found.group(1) if found else str(error)


def write(config: dict, topic: str, keep: list) -> str | None:
    from confluent_kafka import KafkaException, Producer

    errors: list = []
    producer = Producer({**config, "message.timeout.ms": 10000, "enable.idempotence": True})
    keep.append(producer)
    try:
        producer.produce(topic, key=b"k", value=b"v", on_delivery=lambda err, _m: errors.append(err))
        producer.flush(20)
    except (KafkaException, SystemError) as exc:  # fatal: e.g. no right to write at all (no idempotent producer id)
        cause = exc if isinstance(exc, KafkaException) else exc.__cause__
        return _name(cause.args[0]) if isinstance(cause, KafkaException) else str(exc)
    if errors == [None]:
        return None
    return _name(errors[0]) if errors else "no delivery report"


def read(config: dict, topic: str, group: str, keep: list) -> str | None:
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    keep.append(consumer)
    try:
        consumer.subscribe([topic])
        for _ in range(30):
            message = consumer.poll(1.0)
            if message is None:
                continue
            return _name(message.error()) if message.error() else None
        return "nothing read"
    except KafkaException as exc:
        return _name(exc.args[0])
    finally:
        consumer.close()  # leaves the group now, so the next member of the group is not kept waiting


def main(argv: list[str]) -> None:
    action, config, topic, *group = argv
    keep: list = []  # the clients live until os._exit: their teardown is what can misbehave
    outcome = write(json.loads(config), topic, keep) if action == "write" else read(json.loads(config), topic,
                                                                                    group[0], keep)
    os.write(1, (json.dumps(outcome) + "\n").encode())
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
