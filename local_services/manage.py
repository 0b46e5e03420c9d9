"""start / stop / status of the local services in dependency order (used by the CLI, run.sh, tests)."""

from __future__ import annotations

from collections.abc import Iterable

from base.config import Settings
from local_services import kafka, s3

SERVICES = ("kafka", "s3")


def start(settings: Settings, names: Iterable[str] = SERVICES) -> list[str]:
    lines: list[str] = []
    names = list(names)
    if "kafka" in names:
        lines.append(kafka.start(settings))
        created = kafka.ensure_topics(settings)
        if created:
            lines.append(f"kafka: created topics {', '.join(created)}")
    if "s3" in names:
        lines.append(s3.start(settings))
        if s3.ensure_bucket(settings):
            lines.append(f"s3: created bucket {settings.s3_bucket}")
    return lines


def stop(settings: Settings, names: Iterable[str] = SERVICES) -> list[str]:
    modules = {"kafka": kafka, "s3": s3}
    return [modules[n].stop(settings) for n in reversed(list(names))]


def status(settings: Settings, names: Iterable[str] = SERVICES) -> list[str]:
    modules = {"kafka": kafka, "s3": s3}
    return [modules[n].status(settings) for n in names]
