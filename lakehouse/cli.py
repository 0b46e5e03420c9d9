"""``pipeline lake ...``: query, describe, maintain and reconcile the Paimon lakehouse."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from base.config import Settings
from base.errors import UserError
from lakehouse import output
from lakehouse.catalog import open_table
from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED

TABLE_NAMES = tuple(t.name for t in (USER_ACTIONS, USER_ACTIONS_REJECTED))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def _datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a time (YYYY-MM-DD or 'YYYY-MM-DD HH:MM', UTC)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=output.FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--output", metavar="PATH", help="write to PATH instead of stdout (required for parquet)")


def _table_arg(p: argparse.ArgumentParser, default: str = USER_ACTIONS.name) -> None:
    p.add_argument("--table", choices=TABLE_NAMES, default=default, help=f"Paimon table in lake (default: {default})")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="lake_action", required=True, metavar="ACTION")

    query = actions.add_parser("query", help="query the lake with partition and bucket pruning",
                               description="Query lake.user_actions / lake.user_actions_rejected via pypaimon.")
    kinds = query.add_subparsers(dest="query_kind", required=True, metavar="QUERY")
    user = kinds.add_parser("user", help="events of one user over a date range (reads one bucket per partition)")
    user.add_argument("--user-id", type=int, required=True, help="the user")
    user.add_argument("--from", dest="start", type=_date, required=True, help="first event_date, YYYY-MM-DD")
    user.add_argument("--to", dest="end", type=_date, help="last event_date (default: --from)")
    user.add_argument("--limit", type=int, help="at most this many events (oldest first)")
    user.add_argument("--no-pruning", action="store_true", help="read every file (to compare)")
    _output_args(user)
    parts = kinds.add_parser("partitions", help="rows, files and bytes per partition (from metadata)")
    _table_arg(parts)
    parts.add_argument("--from", dest="start", type=_date, help="first date")
    parts.add_argument("--to", dest="end", type=_date, help="last date")
    _output_args(parts)
    acts = kinds.add_parser("actions", help="events per action type in one 2-hour slot")
    acts.add_argument("--date", type=_date, required=True, help="event_date, YYYY-MM-DD")
    acts.add_argument("--hour", type=int, required=True, help="slot start hour, 0, 2, ..., 22 (UTC)")
    _output_args(acts)
    rej = kinds.add_parser("rejected", help="a sample of rejected records with their reasons, newest first")
    rej.add_argument("--limit", type=int, default=20, help="rows (default: 20)")
    rej.add_argument("--from", dest="start", type=_date, help="first ingest_date")
    rej.add_argument("--to", dest="end", type=_date, help="last ingest_date")
    _output_args(rej)

    desc = actions.add_parser("describe", help="schema, partitions, snapshots, files, sizes and small-file health")
    _table_arg(desc)
    desc.add_argument("--partitions", action="store_true", help="also list every partition")

    comp = actions.add_parser(
        "compact", help="compact small files of given partitions (Flink batch job, CALL sys.compact)",
        description="Rewrite small files into target-size files. Safe while the streaming job writes: "
        "Paimon's optimistic commit rejects a conflicting rewrite instead of corrupting data.")
    _table_arg(comp)
    comp.add_argument("--partition", action="append", default=[], metavar="SPEC",
                      help="col=value[,col=value], repeatable, e.g. event_date=2026-11-23,event_hour=4")
    comp.add_argument("--date", type=_date, help="shortcut: the partitions of this event_date")
    comp.add_argument("--hour", type=int, help="with --date: only this 2-hour slot")
    comp.add_argument("--all", action="store_true", help="compact the whole table")
    comp.add_argument("--minor", action="store_true",
                      help="minor compaction (picks files by compaction.* options) instead of full")

    snap = actions.add_parser(
        "expire-snapshots", help="expire old snapshots by retention (CALL sys.expire_snapshots)",
        description="Snapshots beyond --retain-max, or older than --older-than while more than --retain-min "
        "remain, are removed with the files only they reference.")
    _table_arg(snap)
    snap.add_argument("--retain-max", type=int, help="keep at most this many snapshots")
    snap.add_argument("--retain-min", type=int, help="always keep at least this many (default: table option)")
    snap.add_argument("--older-than", metavar="'YYYY-MM-DD HH:MM:SS'", help="expire snapshots older than this")
    snap.add_argument("--max-deletes", type=int, help="at most this many snapshots in one run")

    part = actions.add_parser(
        "expire-partitions", help="drop partitions older than an expiration time (CALL sys.expire_partitions)")
    _table_arg(part)
    part.add_argument("--expiration-time", required=True, metavar="DURATION",
                      help="e.g. '30 d': partitions whose date is older than now minus this are dropped")
    part.add_argument("--timestamp-pattern", help="partition time from partition values (default: $<date column>)")
    part.add_argument("--timestamp-formatter", default="yyyy-MM-dd", help="how to parse it (default: yyyy-MM-dd)")
    part.add_argument("--max-expires", type=int, help="at most this many partitions in one run")

    rec = actions.add_parser(
        "reconcile", help="recompute the aggregates from the lake and compare with ClickHouse (exit 1 on a diff)",
        description="Recompute user_aggregations (2 h), user_action_aggregations (2 h) and "
        "user_aggregations_realtime (5 min) from lake.user_actions for every window wholly inside "
        "[--from, --to) and compare with ClickHouse's deduplicated (FINAL) rows.")
    rec.add_argument("--from", dest="start", type=_datetime, required=True, help="UTC, 'YYYY-MM-DD[ HH:MM]'")
    rec.add_argument("--to", dest="end", type=_datetime, required=True, help="UTC, exclusive")
    rec.add_argument("--database", default="analytics", help="ClickHouse database (default: analytics)")
    rec.add_argument("--max-print", type=int, default=50, help="mismatching keys to print (default: 50)")

    tf = actions.add_parser("table-function", help="print the ClickHouse table function that reads a lake table")
    _table_arg(tf)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    action = args.lake_action
    if action == "query":
        return _query(args, settings)
    if action == "describe":
        from lakehouse.describe import describe

        d = describe(open_table(settings, args.table), f"lake.{args.table}")
        print("\n".join(d.lines()))
        if args.partitions:
            print("partitions")
            print("\n".join("  " + line for line in output.render_table(d.partitions)))
        return 0
    if action == "table-function":
        from lakehouse.clickhouse_paimon import table_function

        print(table_function(settings, args.table))
        return 0
    if action == "reconcile":
        return _reconcile(args, settings)
    return _maintain(args, settings)


def _query(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse import queries

    kind = args.query_kind
    if kind == "user":
        result = queries.user_events(open_table(settings, USER_ACTIONS.name), args.user_id, args.start,
                                     args.end or args.start, prune=not args.no_pruning, limit=args.limit)
    elif kind == "partitions":
        result = queries.partition_counts(open_table(settings, args.table), args.start, args.end)
    elif kind == "actions":
        result = queries.action_counts(open_table(settings, USER_ACTIONS.name), args.date, args.hour)
    else:
        result = queries.rejected_sample(open_table(settings, USER_ACTIONS_REJECTED.name), args.limit,
                                         args.start, args.end)
    output.write(result.rows, args.format, args.output)
    s = result.stats
    # On stderr, so CSV/JSON on stdout stays clean.
    print(f"read {s.files} files ({s.bytes} bytes, {s.rows} rows) in {s.partitions} partitions, "
          f"{s.buckets} buckets", file=sys.stderr)
    return 0


def _maintain(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.maintenance import Maintenance, parse_partition

    open_table(settings, args.table)  # a clear error before starting Flink
    m = Maintenance(settings)
    if args.lake_action == "compact":
        partitions = [parse_partition(p) for p in args.partition]
        if args.hour is not None and args.date is None:
            raise UserError("compact: --hour needs --date")
        if args.date is not None:
            if args.table != USER_ACTIONS.name:
                raise UserError("compact: --date/--hour apply to user_actions; use --partition ingest_date=...")
            spec: dict[str, str | int] = {"event_date": args.date.isoformat()}
            if args.hour is not None:
                spec["event_hour"] = args.hour
            partitions.append(spec)
        if not partitions and not args.all:
            raise UserError("compact: name partitions (--partition, --date [--hour]) or pass --all")
        rows = m.compact(args.table, partitions or None, full=not args.minor)
        print(f"compacted lake.{args.table} {', '.join(args.partition) or 'partitions'}: {_rows(rows)}")
    elif args.lake_action == "expire-snapshots":
        rows = m.expire_snapshots(args.table, args.retain_max, args.retain_min, args.older_than, args.max_deletes)
        print(f"expired snapshots of lake.{args.table}: {_rows(rows)}")
    else:
        pattern = args.timestamp_pattern or ("$event_date" if args.table == USER_ACTIONS.name else "$ingest_date")
        rows = m.expire_partitions(args.table, args.expiration_time, pattern, args.timestamp_formatter,
                                   args.max_expires)
        print(f"expired partitions of lake.{args.table}: {_rows(rows) or 'none'}")
    return 0


def _rows(rows: list[tuple]) -> str:
    return "; ".join(", ".join(str(v) for v in r) for r in rows)


def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.reconcile import reconcile

    table = open_table(settings, USER_ACTIONS.name)
    client = _clickhouse(settings)
    try:
        result = reconcile(table, client, args.start, args.end, database=args.database)
    finally:
        client.close()
    print("\n".join(result.lines(args.max_print)))
    return 0 if result.ok else 1


def _clickhouse(settings: Settings):
    try:  # the ClickHouse part's front door, which turns a busy chDB directory into a UserError
        from clickhouse.store import connect
    except ImportError:
        import clickhouse_connect

        return clickhouse_connect.get_client(dsn=settings.clickhouse_dsn)
    return connect(settings.clickhouse_dsn)


COMMANDS = {
    "lake": ("query, describe, maintain and reconcile the Paimon lakehouse", _add_arguments, _run),
}
