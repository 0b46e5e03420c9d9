"""``pipeline job`` (and ``python -m flink_job``): run the Flink job locally or submit it to a cluster.

Under ``flink run -py flink_job/__main__.py`` the same entry point runs inside Flink's Python driver; it then
submits the job and returns without waiting (Flink sets PYFLINK_GATEWAY_PORT for that driver).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from base.config import Settings, under_flink_run
from base.errors import UserError
from flink_job.job_config import STATE_BACKENDS, WINDOWS, JobConfig


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    d = JobConfig()
    p.add_argument("--bounded", action="store_true", help="read to the current end offsets, then finish")
    p.add_argument("--startup-mode", default=d.startup_mode,
                   choices=["group-offsets", "earliest-offset", "latest-offset"], help="where to start reading")
    p.add_argument("--source-topic", default=d.source_topic)
    p.add_argument("--user-aggregations-topic", default=d.user_aggregations_topic)
    p.add_argument("--user-action-aggregations-topic", default=d.user_action_aggregations_topic)
    p.add_argument("--realtime-aggregations-topic", default=d.realtime_aggregations_topic)
    p.add_argument("--group-id", default=d.group_id, help="Kafka consumer group (offsets committed on checkpoints)")
    p.add_argument("--parallelism", type=int, default=None,
                   help="default: the cluster's (flink run -p, parallelism.default), else 2")
    p.add_argument("--watermark-delay", type=int, default=d.watermark_delay_seconds,
                   help="bounded out-of-orderness of event time, seconds")
    p.add_argument("--idle-timeout", default=d.idle_timeout, help="idle-partition timeout, e.g. '30 s'")
    p.add_argument("--max-event-ahead", type=_minutes, default=d.max_event_ahead_minutes, metavar="DURATION",
                   help="reject an event whose timestamp is this far ahead of its Kafka record's time or more, e.g. "
                        "10m, 2h (default: 10m)")
    p.add_argument("--max-event-behind", type=_minutes, default=d.max_event_behind_minutes, metavar="DURATION",
                   help="reject an event this far behind its Kafka record's time or more, e.g. 48h, 30d (default: "
                        "48h, the restatement's look-back; raise it for a backfill of older events)")
    p.add_argument("--checkpoint-interval", default=None,
                   help="e.g. '60 s' (default: the cluster's execution.checkpointing.interval, else 60 s)")
    p.add_argument("--state-backend", default=None, choices=STATE_BACKENDS,
                   help="default: the cluster's state.backend.type, else rocksdb")
    p.add_argument("--checkpoint-dir", default=None, metavar="URI",
                   help="root of the job's checkpoints; they go to URI/<group-id>/<job-id>/chk-N (default: the "
                        "cluster's execution.checkpointing.dir, else file://$DATA_DIR/flink/checkpoints)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--restore-from", default=None, metavar="PATH",
                       help="restore from this retained checkpoint (.../chk-N) or savepoint (default: the newest "
                            "retained checkpoint or savepoint of this job's consumer group, if any)")
    start.add_argument("--fresh", action="store_true",
                       help="do not resume from a retained checkpoint: start from the Kafka group's offsets")
    p.add_argument("--job-name", default=d.job_name)
    p.add_argument("--flink-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Flink option for this job, over the project's defaults (repeatable), e.g. "
                        "rest.port=8082 or state.backend.rocksdb.timer-service.factory=HEAP")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve the mini-cluster's metrics in the Prometheus format on http://127.0.0.1:PORT/metrics "
                        "(default: FLINK_METRICS_PORT, else none; a cluster's reporter is in its own config)")
    p.add_argument("--windows", default=d.windows, choices=WINDOWS,
                   help="how the three window aggregates are computed: operator (one keyed Java operator for all "
                        "three, the default: half the windows' CPU) or sql (three TUMBLE window operators, the "
                        "pure-SQL reference); the same rows either way; README \"Benchmarks\" compares them. A "
                        "checkpoint restores only into the variant that wrote it")
    p.add_argument("--explain", action="store_true", help="print the execution plan instead of running")
    p.add_argument("--submit", action="store_true",
                   help="submit with `flink run` to the cluster at FLINK_REST_URL (the local one of `pipeline "
                        "flink-cluster start` by default), unless a job of the same name runs there already")
    p.add_argument("--stop", action="store_true",
                   help="stop the running job of this name on the cluster at FLINK_REST_URL with a savepoint into "
                        "its savepoint folder (the next --submit resumes from it: how to upgrade the job)")
    p.add_argument("--check-running", action="store_true",
                   help="do not submit: exit 0 if a job of this name is running on the cluster at FLINK_REST_URL, "
                        "3 if not (the submitter's health check)")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="with --submit: keep checking every SECONDS and submit again whenever the job is not "
                        "running (e.g. after a JobManager restart); runs until stopped")


def job_config(args: argparse.Namespace) -> JobConfig:
    return JobConfig(
        source_topic=args.source_topic,
        user_aggregations_topic=args.user_aggregations_topic,
        user_action_aggregations_topic=args.user_action_aggregations_topic,
        realtime_aggregations_topic=args.realtime_aggregations_topic,
        group_id=args.group_id,
        bounded=args.bounded,
        startup_mode=args.startup_mode,
        parallelism=args.parallelism,
        watermark_delay_seconds=args.watermark_delay,
        max_event_ahead_minutes=args.max_event_ahead,
        max_event_behind_minutes=args.max_event_behind,
        idle_timeout=args.idle_timeout,
        checkpoint_interval=args.checkpoint_interval,
        state_backend=args.state_backend,
        checkpoint_dir=args.checkpoint_dir,
        restore_from=args.restore_from,
        resume=not args.fresh,
        job_name=args.job_name,
        flink_conf=tuple(_key_value(kv) for kv in args.flink_conf),
        windows=args.windows,
    )


def _minutes(text: str) -> int:
    """'10m', '48h', '30d' or a number of minutes -> minutes."""
    match = re.fullmatch(r"\s*(\d+)\s*(m|min|h|d)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 10m, 48h or 30d")
    return int(match.group(1)) * {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440}[match.group(2)]


def _key_value(text: str, flag: str = "--flink-conf") -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{flag}: '{text}' is not KEY=VALUE")
    return key.strip(), value.strip()


def run_job(args: argparse.Namespace, settings: Settings) -> int:
    from flink_job import pipeline, preflight

    job = job_config(args)
    if args.metrics_port is not None:
        if args.submit or args.stop or args.check_running or under_flink_run():
            raise UserError("--metrics-port is for the local mini-cluster: a cluster's reporter is in its own "
                            "config (FLINK_PROPERTIES, or `flink-cluster start` with FLINK_METRICS_PORT)")
        settings = replace(settings, flink_metrics_port=args.metrics_port)
        settings.validate()
    if args.watch is not None and not args.submit:
        raise UserError("--watch needs --submit")
    if args.stop:
        from flink_job.environment import checkpoint_folders
        from local_services import flink_cluster

        target = checkpoint_folders(settings, job, flink_cluster.client_config(settings))[1]
        print(f"job {job.job_name}: stopped with a savepoint at "
              f"{flink_cluster.stop_with_savepoint(settings, job.job_name, target)}")
        return 0
    if args.check_running:
        from local_services import flink_cluster

        found = flink_cluster.active_job(settings, job.job_name)
        if found is None or found["state"] != "RUNNING":
            print(f"job {job.job_name}: not running on {settings.flink_rest}"
                  + (f" ({found['state'].lower()})" if found else ""))
            return 3
        print(f"job {job.job_name}: running on {settings.flink_rest} ({found['jid']})")
        return 0
    if args.submit:
        from local_services import flink_cluster

        return flink_cluster.ensure_submitted(settings, job, watch=args.watch)
    if args.explain:
        print(pipeline.explain(settings, job))
        return 0
    preflight.check(settings, job)
    wait = not under_flink_run()
    result = pipeline.run(settings, job, wait=wait)
    job_id = result.get_job_client().get_job_id() if result.get_job_client() else "?"
    print(f"job {job.job_name} ({job_id}) " + ("finished" if wait and job.bounded else "submitted"))
    return 0


def _job_args(p: argparse.ArgumentParser) -> None:
    add_job_arguments(p)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    from local_services.manage import EXIT_CODES_HELP

    p.epilog = (f"{EXIT_CODES_HELP}. Running: the REST API answers and a TaskManager has registered; unhealthy: the "
                "JobManager or a TaskManager of a PID file runs but the cluster does not answer so.")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--json", action="store_true",
                   help="status: print one JSON document on stdout instead of text (log lines stay on stderr)")
    p.add_argument("--taskmanagers", type=int, default=1, metavar="N",
                   help="start: TaskManagers (2 slots each; 8 GiB for one, 5 GiB each for more). With 2, a job "
                        "whose TaskManager dies is restarted by Flink from its last checkpoint on the other")
    p.add_argument("-D", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="start: a Flink option for the cluster's config.yaml, over the project's (repeatable), e.g. "
                        "-D state.backend.type=hashmap")


def _cluster_run(args: argparse.Namespace, settings: Settings) -> int:
    from local_services import flink_cluster

    if args.json and args.action != "status":
        raise UserError(f"--json is for `flink-cluster status`, not `flink-cluster {args.action}`")
    if args.action == "start":
        options = dict(_key_value(kv, "-D") for kv in args.options)
        print(flink_cluster.start(settings, taskmanagers=args.taskmanagers, options=options))
    elif args.action == "stop":
        print(flink_cluster.stop(settings))
    else:
        from local_services import manage

        status = cluster_status(settings)
        if args.json:
            import json

            print(json.dumps(status, indent=2))
        else:
            print(cluster_status_line(status))
        return manage.exit_code(status["state"])
    return 0


def cluster_status(settings: Settings) -> dict:
    """`flink-cluster status`: the local cluster's processes by their PID files and whether it answers (REST API up,
    a TaskManager registered), with its state (running, unhealthy, stopped) as in `services status`."""
    from local_services import flink_cluster, manage

    jm = flink_cluster.jobmanager(settings).pid()
    tms = [(tm.name, tm.pid()) for tm in flink_cluster.taskmanagers(settings)]
    registered = len(flink_cluster.registered_taskmanagers(settings))
    healthy = registered >= 1
    alive = jm is not None or any(pid is not None for _, pid in tms)
    return {"service": "flink-cluster", "state": manage.RUNNING if healthy else manage.UNHEALTHY if alive
            else manage.STOPPED, "healthy": healthy, "address": flink_cluster.rest_url(settings),
            "jobmanager_pid": jm, "taskmanagers": [{"name": name, "pid": pid} for name, pid in tms if pid is not None],
            "registered_taskmanagers": registered}


def cluster_status_line(status: dict) -> str:
    pids = [tm["pid"] for tm in status["taskmanagers"]] or [None]
    which = f"taskmanager pid {pids[0]}" if len(pids) == 1 else f"taskmanager pids {', '.join(map(str, pids))}"
    state = "healthy" if status["healthy"] else "not answering"
    return f"flink cluster: jobmanager pid {status['jobmanager_pid']}, {which}, {state} on {status['address']}"


def _daemon_args(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Options come from FLINK_PROPERTIES ('key: value' lines, as in Flink's own images) over the project's "
                "cluster defaults; the process becomes the JVM (same PID), logs to the console and stops on SIGTERM. "
                "docker-compose.yml runs the JobManager and TaskManagers with it, and so does `pipeline flink-cluster "
                "start` on this machine.")
    p.add_argument("role", choices=["jobmanager", "taskmanager"])
    p.add_argument("--name", help="its config folder $DATA_DIR/flink/conf/NAME (default: flink-ROLE)")
    p.add_argument("--conf-dir", type=Path, help="write the config here instead (e.g. a folder of the container's own)")
    p.add_argument("-D", dest="dynamic", action="append", default=[], metavar="KEY=VALUE",
                   help="one more Flink option, over FLINK_PROPERTIES (repeatable)")
    p.add_argument("--healthcheck", action="store_true",
                   help="do not start: exit 0 if this daemon is healthy (the JobManager answers at FLINK_REST_URL; a "
                        "TaskManager is registered there under its host name), else 1")


def _daemon_run(args: argparse.Namespace, settings: Settings) -> int:
    from local_services import flink_cluster

    if args.healthcheck:
        resource = next((d.partition("=")[2] for d in args.dynamic if d.startswith("taskmanager.resource-id=")), None)
        return 0 if flink_cluster.daemon_healthy(settings, args.role, resource) else 1
    flink_cluster.run_daemon(settings, args.role, name=args.name, conf=args.conf_dir, dynamic=args.dynamic)


COMMANDS = {
    "job": ("run the Flink job (Kafka -> Paimon + aggregates) in a local mini-cluster, or --submit it",
            _job_args, run_job),
    "flink-cluster": ("start, stop or show the local standalone Flink cluster", _cluster_args, _cluster_run),
    "flink-daemon": ("run a Flink JobManager or TaskManager in the foreground (the compose image's entry point)",
                     _daemon_args, _daemon_run),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flink_job [flags]``: the job entry point, also used by `flink run -py`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m flink_job", description=COMMANDS["job"][0])
    parser.add_argument("--kafka-bootstrap")
    parser.add_argument("--warehouse", dest="paimon_warehouse")
    add_job_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(kafka_bootstrap=args.kafka_bootstrap, paimon_warehouse=args.paimon_warehouse)
        return run_job(args, settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
