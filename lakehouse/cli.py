"""``pipeline lake ...``: query, describe, maintain and reconcile the Paimon lakehouse."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

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


JSON_HELP = "print one JSON document on stdout instead of text (log lines stay on stderr)"


def _output_args(p: argparse.ArgumentParser) -> None:
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--format", choices=output.FORMATS, default="table",
                     help="output format (default: table; jsonl: one JSON object per row and line)")
    fmt.add_argument("--json", action="store_true",
                     help='print one JSON document on stdout instead: {"rows": [one object per row], "read": {files, '
                          'bytes, rows, partitions, buckets}}, the figures the other formats print on stderr')
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

    desc = actions.add_parser(
        "describe", help="schema, snapshots, files, sizes, and per partition: files, average size, compacted or not",
        description="What a lake table holds and how healthy its layout is. Per partition: rows, files, average "
        "file size, the most files in one bucket, and whether the slot is open, compacted or NOT COMPACTED "
        "(closed: the newest event time is --grace minutes past its end); a warning names the command for "
        "each closed slot not compacted.")
    _table_arg(desc)
    desc.add_argument("--partitions", action="store_true", help="also list rows/files/bytes of every partition")
    desc.add_argument("--grace", type=int, default=10, metavar="MINUTES",
                      help="event-time minutes past a slot's end before it counts as closed (default: 10)")
    desc.add_argument("--json", action="store_true", help=f"{JSON_HELP}: the same figures, the health of every "
                      "partition and, with --partitions, their rows/files/bytes")

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
    rec.add_argument("--max-print", type=int, default=50,
                     help="mismatching keys to print, in text and --json (default: 50)")
    rec.add_argument("--json", action="store_true", help=f"{JSON_HELP}: per aggregate the keys compared and "
                     "matching, and the mismatching keys; the exit code is the same")

    rs = actions.add_parser(
        "restate", help="make ClickHouse's aggregates of closed slots equal the lake (late events included)",
        description="For every 2-hour slot wholly inside [--from, --to): recompute the three aggregates from "
        "lake.user_actions (as reconcile does) and write into ClickHouse only the keys that differ, with a newer "
        "version; keys ClickHouse has and the lake has not are deleted. Records the run in analytics.restatements. "
        "Afterwards `lake reconcile` over the same range is clean; a second run changes nothing.")
    rs.add_argument("--from", dest="start", type=_datetime, required=True, help="UTC, 'YYYY-MM-DD[ HH:MM]'")
    rs.add_argument("--to", dest="end", type=_datetime, required=True, help="UTC, exclusive")
    rs.add_argument("--database", default="analytics", help="ClickHouse database (default: analytics)")
    rs.add_argument("--dry-run", action="store_true", help="say what would change, write nothing")
    rs.add_argument("--force", action="store_true",
                    help="(admin) also restate a slot the lake holds no event of while ClickHouse has rows for it, "
                         "which deletes those rows: refused without it, since such a slot's lake partition was "
                         "most likely expired by retention")

    orphans = actions.add_parser(
        "remove-orphans", help="delete files no snapshot references (e.g. a killed writer's), or list them",
        description="Paimon's orphan-file cleaner: files in the table's directory that no snapshot, manifest or "
        "index references and that are older than --older-than-hours. A writer's uncommitted files are "
        "unreferenced too, so keep the age well above the checkpoint interval (default: 24 hours).")
    _table_arg(orphans)
    orphans.add_argument("--older-than-hours", type=float, default=24.0, metavar="HOURS",
                         help="only files older than this (default: 24)")
    orphans.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")

    mt = actions.add_parser(
        "maintain", help="the maintenance schedule: compact closed slots, expire, remove orphans, restate",
        description="Runs beside the streaming job until Ctrl-C (or one pass with --once): compacts each closed "
        "2-hour slot, expires snapshots and old partitions, removes orphan files, and restates each slot closed "
        "for --restate-grace minutes. ./run.sh starts it inside the ClickHouse service (which owns an embedded "
        "chDB); with CLICKHOUSE_URL it runs on its own.")
    _maintain_args(mt)

    tf = actions.add_parser("table-function", help="print the ClickHouse table function that reads a lake table")
    _table_arg(tf)


def _maintain_args(p: argparse.ArgumentParser) -> None:
    from lakehouse.maintainer import MaintenancePolicy

    d = MaintenancePolicy()
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--healthcheck", action="store_true",
                   help="do not run: exit 0 if the running schedule (same DATA_DIR and --interval) ended a pass "
                        "within the last three intervals, else 1")
    p.add_argument("--interval", type=float, default=d.interval_s, metavar="SECONDS",
                   help=f"between passes (default: {d.interval_s:.0f})")
    p.add_argument("--no-compact", action="store_true", help="leave compaction to the writer")
    p.add_argument("--compact-grace", type=int, default=d.compact_grace_min, metavar="MINUTES",
                   help=f"event-time minutes past a slot's end before it is compacted (default: {d.compact_grace_min})")
    p.add_argument("--snapshot-retain-hours", type=float, default=d.snapshot_retain_hours, metavar="HOURS",
                   help=f"expire snapshots older than this (default: {d.snapshot_retain_hours:g}) ...")
    p.add_argument("--snapshot-retain-max", type=int, default=d.snapshot_retain_max, metavar="N",
                   help=f"... or beyond the newest N (default: {d.snapshot_retain_max}) ...")
    p.add_argument("--snapshot-retain-min", type=int, default=d.snapshot_retain_min, metavar="N",
                   help=f"... keeping at least N (default: {d.snapshot_retain_min})")
    p.add_argument("--partition-retention-days", type=int, default=d.partition_retention_days, metavar="DAYS",
                   help="drop user_actions partitions older than this; 0 keeps them (default: 0)")
    p.add_argument("--rejected-retention-days", type=int, default=d.rejected_retention_days, metavar="DAYS",
                   help=f"drop user_actions_rejected partitions older than this (default: {d.rejected_retention_days})")
    p.add_argument("--orphan-age-hours", type=float, default=d.orphan_age_hours, metavar="HOURS",
                   help=f"hourly: delete unreferenced files older than this; 0 never (default: {d.orphan_age_hours:g})")
    p.add_argument("--no-restate", action="store_true", help="do not restate ClickHouse")
    p.add_argument("--restate-grace", type=int, default=d.restate_grace_min, metavar="MINUTES",
                   help=f"event-time minutes past a slot's end before it is restated (default: {d.restate_grace_min})")
    p.add_argument("--restate-lookback-hours", type=int, default=d.restate_lookback_hours, metavar="HOURS",
                   help=f"restate slots at most this old (default: {d.restate_lookback_hours})")
    p.add_argument("--database", default=d.database, help=f"ClickHouse database (default: {d.database})")


def maintenance_policy(args: argparse.Namespace):  # -> MaintenancePolicy
    """The policy the ``maintain`` flags describe (also used by the ClickHouse service's companion)."""
    from lakehouse.maintainer import MaintenancePolicy

    for name in ("interval", "snapshot_retain_hours", "orphan_age_hours", "compact_grace", "restate_grace",
                 "snapshot_retain_max", "partition_retention_days", "rejected_retention_days",
                 "restate_lookback_hours"):
        if getattr(args, name) < 0:
            raise UserError(f"maintain: --{name.replace('_', '-')} must not be negative")
    if args.snapshot_retain_min < 1:
        raise UserError("maintain: --snapshot-retain-min must be at least 1 (the latest snapshot stays)")
    return MaintenancePolicy(
        interval_s=args.interval, compact=not args.no_compact, compact_grace_min=args.compact_grace,
        snapshot_retain_hours=args.snapshot_retain_hours, snapshot_retain_max=args.snapshot_retain_max,
        snapshot_retain_min=args.snapshot_retain_min, partition_retention_days=args.partition_retention_days,
        rejected_retention_days=args.rejected_retention_days, orphan_age_hours=args.orphan_age_hours,
        restate=not args.no_restate, restate_grace_min=args.restate_grace,
        restate_lookback_hours=args.restate_lookback_hours, database=args.database)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    action = args.lake_action
    if action == "query":
        return _query(args, settings)
    if action == "describe":
        from lakehouse.describe import describe
        from lakehouse.health import table_health

        table = open_table(settings, args.table)
        d = describe(table, f"lake.{args.table}")
        health = table_health(table, args.grace * 60_000)
        if args.json:
            _print_json(describe_document(d, health, args.partitions))
            return 0
        print("\n".join(d.lines()))
        print("partition health")
        print("\n".join(health.lines()))
        if args.partitions:
            print("partitions")
            print("\n".join("  " + line for line in output.render_table(d.partitions)))
        return 0
    if action == "table-function":
        from lakehouse.clickhouse_paimon import table_function

        print(table_function(settings, args.table, reveal=False))
        if settings.warehouse_is_s3:
            print("(the S3 keys are references to your environment: e.g. `pipeline lake table-function | envsubst`)",
                  file=sys.stderr)
        return 0
    if action == "reconcile":
        return _reconcile(args, settings)
    if action == "restate":
        return _restate(args, settings)
    if action == "remove-orphans":
        return _remove_orphans(args, settings)
    if action == "maintain":
        return _maintain_loop(args, settings)
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
    s = result.stats
    if args.json:
        import json

        doc = json.dumps({"rows": result.rows.to_pylist(), "read": {
            "files": s.files, "bytes": s.bytes, "rows": s.rows, "partitions": s.partitions, "buckets": s.buckets}},
            indent=2, default=output._json_default, ensure_ascii=False) + "\n"
        if args.output:
            if not Path(args.output).parent.is_dir():
                raise UserError(f"--output {args.output}: directory {Path(args.output).parent} does not exist")
            Path(args.output).write_text(doc)
        else:
            sys.stdout.write(doc)
        return 0
    output.write(result.rows, args.format, args.output)
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
    if args.json:
        _print_json(reconcile_document(result, args.max_print))
    else:
        print("\n".join(result.lines(args.max_print)))
    return 0 if result.ok else 1


def reconcile_document(result, max_mismatches: int) -> dict:  # result: lakehouse.reconcile.ReconcileResult
    """`lake reconcile --json`: what its text says, as one document (times in ISO 8601, UTC)."""
    return {
        "from": result.start.isoformat(), "to": result.end.isoformat(), "events_scanned": result.events_scanned,
        "files_read": result.files_read, "seconds": round(result.seconds, 3), "ok": result.ok,
        "tables": [{"table": t.table, "windows_from": t.window_from.isoformat(), "windows_to": t.window_to.isoformat(),
                    "lake_keys": t.lake_keys, "clickhouse_keys": t.clickhouse_keys, "matching": t.matching,
                    "mismatches": len(t.mismatches)} for t in result.tables],
        "mismatch_count": len(result.mismatches),
        "mismatches": [{"table": m.table, "window_start": m.window_start.isoformat(), "user_id": m.user_id,
                        "action_type": m.action_type, "lake": m.lake, "clickhouse": m.clickhouse}
                       for m in result.mismatches[:max_mismatches]],
    }


def describe_document(d, health, partitions: bool) -> dict:  # lakehouse.describe.Description, health.TableHealth
    """`lake describe --json`: the figures of its text (sizes in bytes), every partition's health and, with
    ``partitions``, the rows/files/bytes of each."""
    doc = {
        "table": d.table, "partition_keys": d.partition_keys, "bucket": d.bucket, "bucket_key": d.bucket_key,
        "snapshots": d.snapshots, "latest_snapshot_id": d.latest_snapshot_id,
        "latest_snapshot_time_ms": d.latest_snapshot_time_ms, "partition_count": d.partitions.num_rows,
        "files": d.files, "rows": d.rows, "bytes": d.bytes, "avg_file_bytes": d.bytes // d.files if d.files else None,
        "target_file_size": d.target_file_size, "small_files": d.small_files,
        "size_histogram": [{"sizes": label, "files": n} for label, n in d.size_histogram],
        "schema": [{"name": f.name, "type": str(f.type)} for f in d.schema], "options": d.options,
        "health": {
            "frontier_ms": health.frontier_ms, "frontier_source": health.frontier_source, "grace_ms": health.grace_ms,
            "partitions": [{"partition": p.label, **p.spec, "rows": p.rows, "files": p.files, "bytes": p.bytes,
                            "avg_file_bytes": p.avg_file_bytes, "buckets": p.buckets,
                            "max_files_per_bucket": p.max_files_per_bucket, "max_time_ms": p.max_time_ms,
                            "state": ("compacted" if p.compacted else "not compacted") if p.closed else "open"}
                           for p in health.partitions],
            "closed_not_compacted": [{"partition": p.label, "command": p.compact_command()}
                                     for p in health.closed_uncompacted],
        },
    }
    if partitions:
        doc["partitions"] = d.partitions.to_pylist()
    return doc


def _print_json(document: object) -> None:
    import json

    print(json.dumps(document, indent=2, default=output._json_default, ensure_ascii=False))


def _restate(args: argparse.Namespace, settings: Settings) -> int:
    from lakehouse.restate import restate

    table = open_table(settings, USER_ACTIONS.name)
    client = _clickhouse(settings)
    try:
        result = restate(table, client, args.start, args.end, database=args.database, dry_run=args.dry_run,
                         force=args.force)
    finally:
        client.close()
    print("\n".join(result.lines()))
    return 0


def _remove_orphans(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from lakehouse.maintenance import Maintenance

    if args.older_than_hours < 0:
        raise UserError("remove-orphans: --older-than-hours must not be negative")
    open_table(settings, args.table)  # a clear error before starting Flink
    older = datetime.now(UTC) - timedelta(hours=args.older_than_hours)
    paths = Maintenance(settings).remove_orphan_files(args.table, older, dry_run=args.dry_run)
    for path in paths:
        print(path)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(paths)} orphan files of lake.{args.table} older than {older:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _maintain_loop(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from lakehouse.maintainer import Maintainer

    policy = maintenance_policy(args)
    if args.healthcheck:
        return 0 if Maintainer(settings, policy, None).healthy() else 1
    if args.once:  # a clear error before starting Flink; the schedule waits for the job to create the table
        open_table(settings, USER_ACTIONS.name)
    clients: list = []

    def clickhouse():  # connected on first restatement; an embedded chDB owned by the service is a UserError
        if not clients:
            clients.append(_clickhouse(settings))
        return clients[0]

    maintainer = Maintainer(settings, policy, clickhouse if policy.restate else None)
    try:
        if args.once:
            report = maintainer.tick()
            print(report.line())
            return 1 if report.errors else 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        maintainer.run(stop)
        return 0
    finally:
        for client in clients:
            client.close()


def maintenance_companion(argv: list[str], settings: Settings):  # -> clickhouse.service.Companion
    """``pipeline clickhouse serve --with 'lake-maintenance [maintain flags]'``: the maintenance schedule in
    the ClickHouse service's process, restating through that process's own clients (what ./run.sh starts:
    an embedded chDB directory has one owner)."""
    from lakehouse.maintainer import Maintainer

    parser = argparse.ArgumentParser(prog="lake-maintenance", add_help=False, exit_on_error=False)
    _maintain_args(parser)
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        raise UserError(f"lake-maintenance: {exc} (flags as for `pipeline lake maintain`)") from None
    if unknown:
        raise UserError(f"lake-maintenance: unknown flags {' '.join(unknown)} (flags as for `pipeline lake maintain`)")
    policy = maintenance_policy(args)

    def run(clickhouse, stop) -> None:
        Maintainer(settings, policy, clickhouse if policy.restate else None).run(stop)

    return run


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
