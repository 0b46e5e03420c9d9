"""`pipeline clickhouse ...`: schema, load, sql, serve, start, stop, status."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from base.config import Settings
from base.errors import UserError


def _add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--database", default="analytics", help="ClickHouse database (default: analytics)")
        sp.add_argument("--realtime-ttl-days", type=int, default=90, help="TTL of 5-minute rows (default: 90)")
        sp.add_argument("--window-ttl-days", type=int, default=365, help="TTL of 2-hour rows (default: 365)")
        return sp

    def loader(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--group", default="clickhouse-loader", help="Kafka consumer group")
        sp.add_argument("--batch-rows", type=int, default=200_000, help="insert when this many records wait")
        sp.add_argument("--max-latency", type=float, default=1.0, help="... or when the oldest waited this long (s)")

    s = common(sub.add_parser("schema", help="apply the schema (idempotent), or print a variant"))
    s.add_argument("--print", action="store_true", help="print the statements instead of running them")
    s.add_argument("--kafka-engine", action="store_true",
                   help="(server only) also create Kafka-engine tables + materialized views")
    s.add_argument("--kafka-brokers", help="brokers as the ClickHouse server sees them (default: KAFKA_BOOTSTRAP)")
    s.add_argument("--cluster", help="print/apply the cluster variant (Replicated + Distributed) ON CLUSTER NAME")
    loader(common(sub.add_parser("load", help="run the loader alone in the foreground")))
    q = sub.add_parser("sql", help="run ad-hoc SQL against the configured ClickHouse (CLI only)")
    q.add_argument("query", help="SQL text; '-' reads it from stdin")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--format", default="PrettyCompactMonoBlock", help="ClickHouse output format")
    fmt.add_argument("--json", dest="format", action="store_const", const="JSON",
                     help="one JSON document on stdout (ClickHouse's JSON format: meta, data, rows, statistics); the "
                          "same as --format JSON (--format JSONEachRow: one row per line)")
    sv = common(sub.add_parser("serve", help="loader + dashboard/API in the foreground"))
    loader(sv)
    sv.add_argument("--no-loader", action="store_true",
                    help="serve the API only; no DDL either, so a read-only ClickHouse user will do")
    sv.add_argument("--no-schema", action="store_true",
                    help="do not apply the schema at start (an administrator applies it: `clickhouse schema`), so the "
                         "loader needs no DDL privilege")
    with_help = ("also run NAME in this process, with its own flags, e.g. --with 'lake-maintenance --interval 60' "
                 "(the lake maintenance needs the process that owns an embedded chDB to restate); repeatable")
    sv.add_argument("--with", dest="companions", action="append", default=[], metavar="'NAME [FLAGS]'",
                    help=with_help)
    st = sub.add_parser("start", help="start the service in the background (PID file)")
    st.add_argument("--with", dest="companions", action="append", default=[], metavar="'NAME [FLAGS]'",
                    help=with_help)
    sub.add_parser("stop", help="stop the background service")
    from local_services.manage import EXIT_CODES_HELP

    status = sub.add_parser(
        "status", help="service state, tables, freshness, loader lag and the last restated slots",
        description="The service's state, then what its /api/status says (tables, freshness, loader, restated slots, "
        "dead letters); when the service is not running, the tables as ClickHouse has them.",
        epilog=f"{EXIT_CODES_HELP}: the service's state, whatever the tables say.")
    status.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout instead of text (log lines stay on stderr)")


def _schema_options(args: argparse.Namespace):
    from clickhouse.schema import SchemaOptions

    try:
        return SchemaOptions(args.database, args.realtime_ttl_days, args.window_ttl_days)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _loader_options(args: argparse.Namespace):
    from clickhouse.loader import LoaderOptions

    if args.batch_rows < 1 or args.max_latency <= 0:
        raise UserError("--batch-rows must be at least 1 and --max-latency positive")
    return LoaderOptions(group_id=args.group, batch_rows=args.batch_rows, max_latency_s=args.max_latency,
                         database=args.database)


def _run_until_signalled(loader) -> int:
    """The loader in a thread of its own until SIGINT/SIGTERM; what it consumed by then is inserted and committed.

    The main thread only waits, in half-second steps: a signal the kernel hands to another thread (librdkafka's,
    chDB's) only sets a flag that the main thread acts on when it next runs Python, and a main thread blocked in the
    loader's untimed waits (an insert's future) slept through Ctrl-C for over a minute."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    failed: list[BaseException] = []

    def run() -> None:
        try:
            loader.run(stop)
        except BaseException as exc:  # re-raised in the main thread: a UserError still prints its one line
            failed.append(exc)
            stop.set()

    thread = threading.Thread(target=run, name="loader")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if failed:
        raise failed[0]
    return 0


def _refuse_if_service_owns_chdb(settings: Settings) -> None:
    from clickhouse import service_process
    from clickhouse.store import is_embedded

    if is_embedded(settings.clickhouse_dsn) and service_process.process(settings).pid() is not None:
        raise UserError(
            "the ClickHouse service owns the embedded chDB directory; stop it first "
            "(pipeline clickhouse stop), or query it through its API"
        )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from clickhouse import service_process

    if args.action == "start":
        print(service_process.start(settings, [arg for spec in args.companions for arg in ("--with", spec)]))
        return 0
    if args.action == "stop":
        print(service_process.stop(settings))
        return 0
    if args.action == "status":
        return _status(args, settings)

    from clickhouse.store import connect

    if args.action == "schema":
        return _schema(args, settings)
    if args.action == "sql":
        _refuse_if_service_owns_chdb(settings)
        text = sys.stdin.read() if args.query == "-" else args.query
        from clickhouse_connect.driver.exceptions import ClickHouseError

        try:
            out = connect(settings.clickhouse_dsn).raw_query(text, fmt=args.format)
        except ClickHouseError as exc:
            raise UserError(str(exc).splitlines()[0]) from None
        sys.stdout.write(out.decode(errors="replace"))
        return 0
    if args.action == "load":
        from clickhouse.loader import Loader
        from clickhouse.store import ThreadClients, apply_schema

        _refuse_if_service_owns_chdb(settings)
        clients = ThreadClients(settings.clickhouse_dsn)
        apply_schema(clients.get(), _schema_options(args))
        return _run_until_signalled(Loader(settings.kafka_client_config(), clients.get, _loader_options(args)))
    if args.action == "serve":
        from clickhouse.service import Service, companion

        _refuse_if_service_owns_chdb_other_than_me(settings)
        companions = [companion(spec, settings) for spec in args.companions]
        Service(settings, _schema_options(args), None if args.no_loader else _loader_options(args),
                host=settings.dashboard_host, companions=companions,
                manage_schema=not (args.no_loader or args.no_schema)).serve_forever()
        return 0
    raise UserError(f"unknown action {args.action}")


def service_status(settings: Settings) -> dict:
    """`clickhouse status`: the service process (state as in `services status`) and what its /api/status says; when
    the service does not answer, the tables read from ClickHouse directly (unless the service owns the embedded
    chDB). ``status`` is None when nothing could be read, and ``status_error`` says why."""
    from clickhouse import service_process
    from local_services.manage import ProcessStatus

    service = ProcessStatus("clickhouse", "clickhouse service", service_process.process(settings).pid(),
                            service_process.healthy(settings), service_process.url(settings))
    status, error = None, None
    if service.healthy:
        status = service_process.fetch_status(settings)
        if status is None:
            error = ("the service answers but its /api/status does not (no analytics schema yet? run: pipeline "
                     f"clickhouse schema; see {service_process.process(settings).log_file})")
    else:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        from clickhouse.queries import Queries
        from clickhouse.store import connect

        try:
            _refuse_if_service_owns_chdb(settings)
            queries = Queries(connect(settings.clickhouse_dsn), "analytics")
            status = {"tables": queries.table_stats(), "restatements": queries.restatements(),
                      "dead_letters": queries.dead_letters(), "maintenance": queries.maintenance()}
        except UserError as exc:
            error = str(exc)
        except ClickHouseError as exc:
            error = (f"clickhouse: no analytics schema yet ({str(exc).splitlines()[0][:120]}); "
                     "run: pipeline clickhouse schema")
    return {"state": service.state, "service": service.as_dict(), "status": status, "status_error": error}


def status_lines(report: dict) -> list[str]:
    """The human-readable text of `clickhouse status` (the same figures as its --json)."""
    from local_services.manage import ProcessStatus

    service = ProcessStatus(**{k: v for k, v in report["service"].items() if k != "state"})
    out = [service.line()]
    status = report["status"]
    if status is None:
        return [*out, f"tables not read: {report['status_error']}"]
    if "database" in status:
        out.append(f"database {status['database']}, now {status.get('now')}, latest window end "
                   f"{status.get('latest_window_end') or '-'}")
    else:
        out.append("(the service is not running: the tables as ClickHouse has them)")
    rows = [("table", "rows", "parts", "latest window end", "freshness")]
    for t in status.get("tables") or []:
        fresh = t.get("freshness_seconds")
        rows.append((t["table"], str(t["rows"]), str(t["parts"]), t.get("latest_window_end") or "-",
                     "-" if fresh is None else f"{fresh} s"))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    out += [f"  {a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d:<{w[3]}}  {e}".rstrip() for a, b, c, d, e in rows]
    loader = status.get("loader")
    if loader is not None:
        state = "running" if loader.get("running") else "not running"
        out.append(f"loader {state}" + (f", group {loader['group_id']}" if loader.get("group_id") else ""))
        shown = {k: v for k, v in loader.items() if k not in ("running", "group_id")}
        width = max((len(k) for k in shown), default=0)
        out += [f"  {k:<{width}}  {_value(v)}" for k, v in shown.items()]
    restated = status.get("restatements") or []
    out.append("restated slots (newest first)" + ("" if restated else ": none"))
    out += [f"  {r['slot_start']}  restated {r['restated_at']}: {r['lake_events']} lake events, "
            f"{r['rows_upserted']} rows upserted, {r['rows_deleted']} deleted" for r in restated]
    dead = status.get("dead_letters") or {}
    out.append(f"dead letters {dead.get('total', 0)}" + "".join(
        f", {topic} {n}" for topic, n in (dead.get("by_topic") or {}).items()))
    out += [f"  {d['rejected_at']}  {d['topic']} partition {d['partition']} offset {d['offset']}: {d['reason']}"
            for d in dead.get("newest") or []]
    last = (status.get("maintenance") or {}).get("last_pass")
    if last is None:
        out.append("lake maintenance: no pass recorded")
    else:
        out.append(f"lake maintenance: last pass {last['finished_at']} ({last['duration_s']:.1f} s, "
                   f"{status['maintenance']['passes']} passes in 24 h): compacted {last['compacted_slots']} slots, "
                   f"expired {last['snapshots_expired']} snapshots and {last['partitions_expired']} partitions, "
                   f"removed {last['orphans_removed']} orphan files, restated {last['restated_slots']} slots, "
                   f"{last['errors']} errors" + (f" ({last['error']})" if last['error'] else ""))
        out.append(f"  lake.user_actions then: {last['open_slots']} open slots ({last['open_files']} files), "
                   f"{last['closed_slots']} closed ({last['closed_files']} files), {last['uncompacted_slots']} closed "
                   "and waiting for compaction")
    return out


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items()) or "-"
    return str(value)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from local_services.manage import exit_code

    report = service_status(settings)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(status_lines(report)))
    return exit_code(report["state"])


def _refuse_if_service_owns_chdb_other_than_me(settings: Settings) -> None:
    import os

    from clickhouse import service_process

    pid = service_process.process(settings).pid()
    if pid is not None and pid != os.getpid():
        raise UserError(f"the ClickHouse service is already running (pid {pid}); stop it with pipeline clickhouse stop")


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    from clickhouse import schema
    from clickhouse.store import connect, is_embedded

    options = _schema_options(args)
    try:
        if args.cluster:
            stmts = schema.cluster_statements(options, args.cluster)
        else:
            stmts = schema.analytics_statements(options)
        if args.kafka_engine:
            stmts += schema.kafka_engine_statements(options, args.kafka_brokers or settings.kafka_bootstrap,
                                                    "clickhouse-kafka-engine")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.print:
        print(";\n\n".join(stmts) + ";")
        return 0
    if (args.kafka_engine or args.cluster) and is_embedded(settings.clickhouse_dsn):
        raise UserError("--kafka-engine and --cluster need a ClickHouse server: set CLICKHOUSE_URL "
                        "(or use --print to see the statements)")
    _refuse_if_service_owns_chdb(settings)
    client = connect(settings.clickhouse_dsn)
    for stmt in stmts:
        client.command(stmt)
    print(f"schema applied: {len(stmts)} statements on {options.database}")
    return 0


COMMANDS = {
    "clickhouse": ("ClickHouse: schema, loader, dashboard/API service, ad-hoc SQL", _add_arguments, _run),
}
