"""The read-only analytics queries behind the JSON API and the dashboard.

Every value from a request is a bound query parameter ({name:Type}); the only text put into SQL
is the database name, which comes from configuration and is checked as an identifier. Every
query reads the deduplicated state (FINAL).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from base.contract import AGGREGATES
from clickhouse.schema import TABLES, check_identifier

# Per-user windows: which table serves a requested granularity.
# The per-user aggregates of the contract by window label ("5m", "2h"): what the API's ?window= selects.
WINDOW_TABLES = {(f"{a.window_minutes}m" if a.window_minutes < 60 else f"{a.window_minutes // 60}h"): a.name
                 for a in sorted(AGGREGATES, key=lambda a: a.window_minutes) if a.key_columns == ("user_id",)}


def _rows(client: Client, sql: str, params: dict) -> list[dict]:
    result = client.query(sql, parameters=params)
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Queries:
    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.db = check_identifier(database, "database")

    def table_stats(self) -> list[dict]:
        """Rows stored per table (before deduplication, from the parts' metadata: instant) and freshness."""
        parts = _rows(
            self.client,
            "SELECT table, sum(rows) AS rows, count() AS parts FROM system.parts "
            "WHERE database = {db:String} AND active GROUP BY table",
            {"db": self.db},
        )
        by_table = {p["table"]: p for p in parts}
        # One round trip for the three maxima (answered from the parts' min/max metadata, not a scan).
        latest = {r["table"]: r["latest"] for r in _rows(
            self.client,
            " UNION ALL ".join(f"SELECT '{t}' AS table, max(window_end) AS latest FROM {self.db}.{t}" for t in TABLES),
            {},
        )}
        now = time.time()
        stats = []
        for table in TABLES:
            rows = int(by_table.get(table, {}).get("rows", 0))
            newest = latest.get(table) if rows else None
            stats.append({
                "table": table,
                "rows": rows,
                "parts": int(by_table.get(table, {}).get("parts", 0)),
                "latest_window_end": _iso(newest),
                "freshness_seconds": round(now - newest.replace(tzinfo=UTC).timestamp(), 1) if newest else None,
            })
        return stats

    def restatements(self, limit: int = 12) -> list[dict]:
        """The newest restated 2-hour slots: when each was last restated from the lake and what changed."""
        rows = _rows(
            self.client,
            f"SELECT slot_start, restated_at, lake_events, rows_upserted, rows_deleted "
            f"FROM {self.db}.restatements FINAL ORDER BY slot_start DESC LIMIT {{limit:UInt32}}",
            {"limit": limit},
        )
        return [{**r, "slot_start": _iso(r["slot_start"]), "restated_at": _iso(r["restated_at"]),
                 **{k: int(r[k]) for k in ("lake_events", "rows_upserted", "rows_deleted")}} for r in rows]

    def maintenance(self) -> dict | None:
        """The lake maintenance's last recorded pass and how many passes were recorded in the last 24 hours
        (analytics.maintenance_passes, written by the maintenance wherever it runs); None before the first."""
        rows = _rows(
            self.client,
            f"SELECT finished_at, duration_s, compacted_slots, snapshots_expired, partitions_expired, orphans_removed, "
            f"restated_slots, errors, error, open_slots, open_files, closed_slots, closed_files, uncompacted_slots, "
            f"(SELECT count() FROM {self.db}.maintenance_passes "
            f"WHERE finished_at > now() - INTERVAL 1 DAY) AS passes "
            f"FROM {self.db}.maintenance_passes ORDER BY finished_at DESC LIMIT 1", {})
        if not rows:
            return None
        last = rows[0]
        passes = int(last.pop("passes"))
        counts = ("compacted_slots", "snapshots_expired", "partitions_expired", "orphans_removed", "restated_slots",
                  "errors", "open_slots", "open_files", "closed_slots", "closed_files", "uncompacted_slots")
        return {"last_pass": {**last, "finished_at": _iso(last["finished_at"]), "duration_s": float(last["duration_s"]),
                              **{k: int(last[k]) for k in counts}, "error": last["error"] or None},
                "passes": passes}

    def dead_letters(self, limit: int = 10) -> dict:
        """The aggregate records that could not be loaded (analytics.aggregate_rejects): how many per topic and the
        newest few with their place in Kafka and reason."""
        counts = _rows(self.client, f"SELECT topic, count() AS records FROM {self.db}.aggregate_rejects FINAL "
                                    "GROUP BY topic ORDER BY topic", {})
        newest = _rows(
            self.client,
            f"SELECT topic, partition, offset, reason, rejected_at FROM {self.db}.aggregate_rejects FINAL "
            "ORDER BY rejected_at DESC, topic, partition, offset LIMIT {limit:UInt32}", {"limit": limit})
        return {"total": sum(int(c["records"]) for c in counts),
                "by_topic": {c["topic"]: int(c["records"]) for c in counts},
                "newest": [{**r, "partition": int(r["partition"]), "offset": int(r["offset"]),
                            "rejected_at": _iso(r["rejected_at"])} for r in newest]}

    def top_users(self, start: datetime, end: datetime, limit: int, window: str) -> list[dict]:
        table = WINDOW_TABLES[window]
        return _rows(
            self.client,
            f"SELECT user_id, sum(total_actions) AS actions FROM {self.db}.{table} FINAL "
            "WHERE window_start >= {start:DateTime64(3, 'UTC')} AND window_start < {end:DateTime64(3, 'UTC')} "
            "GROUP BY user_id ORDER BY actions DESC, user_id LIMIT {limit:UInt32}",
            {"start": start, "end": end, "limit": limit},
        )

    def user_activity(self, user_id: int, start: datetime, end: datetime) -> dict:
        params = {"user": user_id, "start": start, "end": end}
        series = _rows(
            self.client,
            f"SELECT window_start, total_actions AS actions FROM {self.db}.user_aggregations_realtime FINAL "
            "WHERE user_id = {user:UInt32} AND window_start >= {start:DateTime64(3, 'UTC')} "
            "AND window_start < {end:DateTime64(3, 'UTC')} ORDER BY window_start",
            params,
        )
        by_type = _rows(
            self.client,
            f"SELECT window_start, action_type, actions FROM {self.db}.user_action_aggregations FINAL "
            "WHERE user_id = {user:UInt32} AND window_start >= {start:DateTime64(3, 'UTC')} "
            "AND window_start < {end:DateTime64(3, 'UTC')} ORDER BY window_start, actions DESC, action_type",
            params,
        )
        windows: dict[str, dict] = {}
        for row in by_type:
            key = _iso(row["window_start"])
            w = windows.setdefault(key, {"window_start": key, "total_actions": 0, "by_action_type": {}})
            w["by_action_type"][row["action_type"]] = row["actions"]
            w["total_actions"] += row["actions"]
        return {
            "user_id": user_id,
            "realtime_5m": [{"window_start": _iso(r["window_start"]), "actions": r["actions"]} for r in series],
            "windows_2h": list(windows.values()),
            "total_actions_5m": sum(r["actions"] for r in series),
        }

    def action_types_over_time(self, start: datetime, end: datetime, limit: int) -> dict:
        """Per 2-hour window, actions of the ``limit`` busiest action types in the range."""
        rows = _rows(
            self.client,
            f"""
            WITH top AS (
                SELECT action_type FROM {self.db}.user_action_aggregations FINAL
                WHERE window_start >= {{start:DateTime64(3, 'UTC')}} AND window_start < {{end:DateTime64(3, 'UTC')}}
                GROUP BY action_type ORDER BY sum(actions) DESC, action_type LIMIT {{limit:UInt32}}
            )
            SELECT window_start, action_type, sum(actions) AS actions
            FROM {self.db}.user_action_aggregations FINAL
            WHERE window_start >= {{start:DateTime64(3, 'UTC')}} AND window_start < {{end:DateTime64(3, 'UTC')}}
              AND action_type IN (SELECT action_type FROM top)
            GROUP BY window_start, action_type ORDER BY window_start, action_type
            """,
            {"start": start, "end": end, "limit": limit},
        )
        series: dict[str, list] = {}
        for r in rows:
            series.setdefault(r["action_type"], []).append({"window_start": _iso(r["window_start"]),
                                                            "actions": r["actions"]})
        return {"series": series}

    def top_action_types(self, start: datetime, end: datetime, limit: int) -> list[dict]:
        return _rows(
            self.client,
            f"SELECT action_type, sum(actions) AS actions, uniqExact(user_id) AS users "
            f"FROM {self.db}.user_action_aggregations FINAL "
            "WHERE window_start >= {start:DateTime64(3, 'UTC')} AND window_start < {end:DateTime64(3, 'UTC')} "
            "GROUP BY action_type ORDER BY actions DESC, action_type LIMIT {limit:UInt32}",
            {"start": start, "end": end, "limit": limit},
        )

    def events_per_window(self, start: datetime, end: datetime, window: str) -> list[dict]:
        table = WINDOW_TABLES[window]
        rows = _rows(
            self.client,
            f"SELECT window_start, sum(total_actions) AS actions, count() AS users FROM {self.db}.{table} FINAL "
            "WHERE window_start >= {start:DateTime64(3, 'UTC')} AND window_start < {end:DateTime64(3, 'UTC')} "
            "GROUP BY window_start ORDER BY window_start",
            {"start": start, "end": end},
        )
        return [{**r, "window_start": _iso(r["window_start"])} for r in rows]

    def hourly(self, start: datetime, end: datetime) -> list[dict]:
        """Actions per hour of the day (UTC), from the 5-minute windows."""
        rows = _rows(
            self.client,
            f"SELECT toHour(window_start) AS hour, sum(total_actions) AS actions "
            f"FROM {self.db}.user_aggregations_realtime FINAL "
            "WHERE window_start >= {start:DateTime64(3, 'UTC')} AND window_start < {end:DateTime64(3, 'UTC')} "
            "GROUP BY hour ORDER BY hour",
            {"start": start, "end": end},
        )
        found = {r["hour"]: r["actions"] for r in rows}
        return [{"hour": h, "actions": int(found.get(h, 0))} for h in range(24)]

    def distribution(self, start: datetime, end: datetime, window: str) -> list[dict]:
        """Users by their total actions in the range, in power-of-two buckets [2^k, 2^(k+1))."""
        table = WINDOW_TABLES[window]
        rows = _rows(
            self.client,
            f"""
            SELECT toUInt64(exp2(floor(log2(total)))) AS low, count() AS users
            FROM (
                SELECT user_id, sum(total_actions) AS total FROM {self.db}.{table} FINAL
                WHERE window_start >= {{start:DateTime64(3, 'UTC')}} AND window_start < {{end:DateTime64(3, 'UTC')}}
                GROUP BY user_id HAVING total > 0
            )
            GROUP BY low ORDER BY low
            """,
            {"start": start, "end": end},
        )
        return [{"min_actions": r["low"], "max_actions": r["low"] * 2 - 1, "users": r["users"]} for r in rows]
