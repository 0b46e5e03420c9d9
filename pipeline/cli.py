"""``pipeline``: one entry point with a subcommand per part of the system.

Every subcommand reads configuration once (environment, then flags) and turns a
``UserError`` into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from base.config import VARIABLES, Settings
from base.errors import UserError

# Subcommands register here: name -> (help, add_arguments(parser), run(args, settings) -> exit code).
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Settings], int]]


class OneLineArgumentParser(argparse.ArgumentParser):
    """A wrong flag is one line naming the fix, not the usage block (subparsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _services_args(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Kafka runs one KRaft broker per address in KAFKA_BOOTSTRAP, each with its port + 1 as controller "
                "port and $DATA_DIR/kafka[-N] as data: for a 3-broker cluster that keeps every acknowledged record "
                "when one broker dies, KAFKA_BOOTSTRAP=127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096 "
                "KAFKA_REPLICATION=3 (topics then need 2 in-sync replicas).")
    p.add_argument("action", choices=["start", "stop", "status"], help="what to do")
    p.add_argument("names", nargs="*", choices=["kafka", "s3", []], help="services (default: all)")


def _services_run(args: argparse.Namespace, settings: Settings) -> int:
    from local_services import manage

    names = args.names or list(manage.SERVICES)
    for line in getattr(manage, args.action)(settings, names):
        print(line)
    return 0


def _config_args(p: argparse.ArgumentParser) -> None:
    pass


def _config_run(args: argparse.Namespace, settings: Settings) -> int:
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
    from clickhouse.service import COMPANIONS

    # The ClickHouse service may host the lake maintenance (it owns an embedded chDB); registered here, at
    # the top, because the ClickHouse part sits below the lakehouse and never imports it.
    COMPANIONS["lake-maintenance"] = lakehouse_cli.maintenance_companion
    for part in (producer_cli, flink_job_cli, lakehouse_cli, clickhouse_cli):
        cmds.update(part.COMMANDS)
    return cmds


def build_parser() -> argparse.ArgumentParser:
    env_help = "\n".join(f"  {k:<18} {v}" for k, v in VARIABLES.items())
    parser = OneLineArgumentParser(
        prog="pipeline",
        description="Real-time user-action analytics: Kafka -> Flink -> Paimon + ClickHouse.",
        epilog=f"environment variables (flags override them):\n{env_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", help="override DATA_DIR")
    parser.add_argument("--kafka-bootstrap", help="override KAFKA_BOOTSTRAP")
    parser.add_argument("--warehouse", dest="paimon_warehouse", help="override PAIMON_WAREHOUSE")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_args, run) in commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from pathlib import Path

        settings = Settings.from_env(
            data_dir=Path(args.data_dir).resolve() if args.data_dir else None,
            kafka_bootstrap=args.kafka_bootstrap,
            paimon_warehouse=args.paimon_warehouse,
        )
        return args._run(args, settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
