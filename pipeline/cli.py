"""``pipeline``: one entry point with a subcommand per part of the system.

Every subcommand reads configuration once (environment, then flags) and turns a
``UserError`` into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from base import logs
from base.config import VARIABLES, Settings
from base.errors import UserError

PACKAGE = "user-actions-pipeline"
# The project's top-level packages: their loggers log at --log-level (libraries at warning and above).
PACKAGES = ("base", "local_services", "producer", "clickhouse", "lakehouse", "flink_job", "pipeline")
JSON_HELP = "print one JSON document on stdout instead of text (log lines stay on stderr)"

# Subcommands register here: name -> (help, add_arguments(parser), run(args, settings) -> exit code).
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]]


class OneLineArgumentParser(argparse.ArgumentParser):
    """A wrong flag is one line naming the fix, not the usage block (subparsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def print_json(document: object) -> None:
    """The one JSON document of a ``--json`` command, on stdout."""
    print(json.dumps(document, indent=2, default=str))


def _services_args(p: argparse.ArgumentParser) -> None:
    from local_services.manage import EXIT_CODES_HELP

    p.epilog = ("Kafka runs one KRaft broker per address in KAFKA_BOOTSTRAP, each with its port + 1 as controller "
                "port and $DATA_DIR/kafka[-N] as data: for a 3-broker cluster that keeps every acknowledged record "
                "when one broker dies, KAFKA_BOOTSTRAP=127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096 "
                f"KAFKA_REPLICATION=3 (topics then need 2 in-sync replicas). {EXIT_CODES_HELP}; with several "
                "services, 1 if any is unhealthy, else 3 if any is not running.")
    p.add_argument("action", choices=["start", "stop", "status"], help="what to do")
    p.add_argument("names", nargs="*", choices=["kafka", "s3", []], help="services (default: all)")
    p.add_argument("--json", action="store_true", help=f"status: {JSON_HELP}")


def _services_run(args: argparse.Namespace, settings: Settings) -> int:
    from local_services import manage

    names = args.names or list(manage.SERVICES)
    if args.json and args.action != "status":
        raise UserError(f"--json is for `services status`, not `services {args.action}`")
    if args.action == "status":
        report = manage.report(settings, names)
        if args.json:
            print_json(report)
        else:
            print("\n".join(manage.report_lines(report)))
        return manage.exit_code(report["state"])
    for line in getattr(manage, args.action)(settings, names):
        print(line)
    return 0


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help=f"{JSON_HELP}: an object of variable -> effective value")


def _config_run(args: argparse.Namespace, settings: Settings) -> int:
    if args.json:
        print_json(dict(settings.describe()))
        return 0
    width = max(len(k) for k in VARIABLES)
    for name, value in settings.describe():
        print(f"{name:<{width}}  {value}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    from pipeline.demo import add_arguments

    add_arguments(p)


def _demo_run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.demo import run

    return run(args, settings)


def commands() -> dict[str, Command]:
    """All subcommands: the shared ones below plus each part's ``COMMANDS`` (defined in its own cli module, so
    this file holds no per-part code)."""
    from clickhouse import cli as clickhouse_cli
    from flink_job import cli as flink_job_cli
    from lakehouse import cli as lakehouse_cli
    from producer import cli as producer_cli

    cmds: dict[str, Command] = {
        "services": ("start, stop or show the local Kafka and S3 servers", _services_args, _services_run),
        "config": ("print the effective configuration", _config_args, _config_run),
        "demo": ("run the whole pipeline locally with a live status and a summary (what ./run.sh calls)",
                 _demo_args, _demo_run),
    }
    from clickhouse.api import ROUTES
    from clickhouse.service import COMPANIONS
    from lakehouse import quality

    # The ClickHouse service may host the lake maintenance (it owns an embedded chDB) and answers the dashboard's
    # data-quality view from the lake; registered here, at the top, because the ClickHouse part sits below the
    # lakehouse and never imports it.
    COMPANIONS["lake-maintenance"] = lakehouse_cli.maintenance_companion
    ROUTES[quality.PATH] = quality.ROUTE
    for part in (producer_cli, flink_job_cli, lakehouse_cli, clickhouse_cli):
        cmds.update(part.COMMANDS)
    return cmds


def version() -> str:
    """The installed package's version (its metadata), as `pipeline --version` prints it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PACKAGE)
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser(demo_prog: str | None = None) -> argparse.ArgumentParser:
    """The `pipeline` parser; ``demo_prog``: the name the demo is started as (``./run.sh``), for its usage line."""
    env_help = "\n".join(f"  {k:<18} {v}" for k, v in VARIABLES.items())
    parser = OneLineArgumentParser(
        prog=demo_prog or "pipeline",
        description="Real-time user-action analytics: Kafka -> Flink -> Paimon + ClickHouse.",
        epilog=f"environment variables (flags override them):\n{env_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the installed package's version and exit")
    parser.add_argument("--data-dir", help="override DATA_DIR")
    parser.add_argument("--kafka-bootstrap", help="override KAFKA_BOOTSTRAP")
    parser.add_argument("--warehouse", dest="paimon_warehouse", help="override PAIMON_WAREHOUSE")
    parser.add_argument("--log-level", choices=logs.LEVELS, type=str.lower,
                        help="least severe log line of every part, on stderr; libraries log warnings and above, "
                             "everything at debug (default: LOG_LEVEL, else info)")
    parser.add_argument("--log-format", choices=logs.FORMATS, type=str.lower,
                        help="text, or json: one object per line with time, level, logger, message (default: "
                             "LOG_FORMAT, else text)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, run) in commands().items():
        if name == "demo" and demo_prog:
            from pipeline.demo import RUN_SH_DESCRIPTION

            p = sub.add_parser(name, help=help_text, prog=demo_prog, description=RUN_SH_DESCRIPTION)
        else:
            p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None, *, demo_prog: str | None = None) -> int:
    """Run one command; ``demo_prog``: see ``build_parser`` (``./run.sh`` starts the demo through ``run_sh``)."""
    parser = build_parser(demo_prog)
    args = parser.parse_args(argv)
    try:
        from pathlib import Path

        settings = Settings.from_env(
            data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
            kafka_bootstrap=args.kafka_bootstrap,
            paimon_warehouse=args.paimon_warehouse,
            log_level=args.log_level,
            log_format=args.log_format,
        )
        # Logging is configured here, once, for every part (none configures it itself); the settings carry the
        # level and format to the processes a command starts (LOG_LEVEL, LOG_FORMAT).
        logs.configure(settings.log_level, settings.log_format, own=PACKAGES)
        return args._run(args, settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run_sh(argv: Sequence[str] | None = None) -> int:
    """``./run.sh [flags]``: the demo under the name the user typed (its usage line and errors say ./run.sh)."""
    return main(["demo", *(sys.argv[1:] if argv is None else argv)], demo_prog="./run.sh")


if __name__ == "__main__":
    sys.exit(main())
