"""start / stop / status of the local services in dependency order (used by the CLI, run.sh, tests).

``status`` follows the LSB convention of init scripts, shared by every ``status`` command of the CLI (``services``,
``flink-cluster``, ``clickhouse``): each process is *running* (it answers), *unhealthy* (its PID file names a live
process that does not answer) or *stopped*; the exit code is 0, 1 or 3 (``exit_code``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from base.config import Settings
from local_services import kafka, s3

SERVICES = ("kafka", "s3")

RUNNING, UNHEALTHY, STOPPED = "running", "unhealthy", "stopped"
EXIT_CODES = {RUNNING: 0, UNHEALTHY: 1, STOPPED: 3}
EXIT_CODES_HELP = ("Exit code of status (the LSB convention of init scripts): 0 running and answering, 3 not running, "
                   "1 unhealthy (a process of its PID file runs but does not answer, or only part of it runs)")


@dataclass(frozen=True)
class ProcessStatus:
    """One service process as `status` reports it: one probe, rendered as a text line or as JSON."""

    service: str  # kafka, s3, ...
    name: str  # the process: kafka, kafka-2, s3, ...
    pid: int | None  # the live process of its PID file (None: no PID file, or a stale one)
    healthy: bool  # it answers on ``address``
    address: str

    @property
    def state(self) -> str:
        return RUNNING if self.healthy else UNHEALTHY if self.pid is not None else STOPPED

    def line(self) -> str:
        return (f"{self.name}: {'pid ' + str(self.pid) if self.pid else 'no pid file'}, "
                f"{'healthy' if self.healthy else 'not answering'} on {self.address}")

    def as_dict(self) -> dict:
        return {**asdict(self), "state": self.state}


def combined_state(states: Iterable[str]) -> str:
    """The state of a service made of several processes (or of several services): running if all run, stopped if
    none does, else unhealthy."""
    states = set(states)
    if states <= {RUNNING}:
        return RUNNING
    if states == {STOPPED}:
        return STOPPED
    return UNHEALTHY


def exit_code(state: str) -> int:
    return EXIT_CODES[state]


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


def processes(settings: Settings, names: Iterable[str] = SERVICES) -> dict[str, list[ProcessStatus]]:
    """Service name -> the status of each of its processes (Kafka: one per broker in KAFKA_BOOTSTRAP)."""
    out: dict[str, list[ProcessStatus]] = {}
    for name in names:
        if name == "kafka":
            cluster = kafka.brokers(settings)
            out[name] = [ProcessStatus("kafka", b.name, kafka.process(settings, b.node_id).pid(),
                                       kafka._answers(b.port, settings),
                                       settings.kafka_bootstrap if len(cluster) == 1 else f"127.0.0.1:{b.port}")
                         for b in cluster]
        else:
            out[name] = [ProcessStatus("s3", "s3", s3.process(settings).pid(), s3.healthy(settings),
                                       settings.s3_endpoint)]
    return out


def report(settings: Settings, names: Iterable[str] = SERVICES) -> dict:
    """`services status --json`: the state of each service and of each of its processes, and the overall state
    (its exit code: 1 if any service is unhealthy, else 3 if any is stopped, else 0)."""
    found = processes(settings, names)
    services = [{"service": name, "state": combined_state(p.state for p in procs),
                 "processes": [p.as_dict() for p in procs]} for name, procs in found.items()]
    states = {s["state"] for s in services}
    overall = UNHEALTHY if UNHEALTHY in states else STOPPED if STOPPED in states else RUNNING
    return {"state": overall, "services": services}


def report_lines(report: dict) -> list[str]:
    """The text of `services status`: one line per service (a Kafka cluster's brokers joined by '; ')."""
    return ["; ".join(ProcessStatus(**{k: v for k, v in p.items() if k != "state"}).line() for p in s["processes"])
            for s in report["services"]]


def status(settings: Settings, names: Iterable[str] = SERVICES) -> list[str]:
    return report_lines(report(settings, names))
