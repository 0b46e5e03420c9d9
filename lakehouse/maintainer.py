"""Continuous lake maintenance beside the streaming job: ``pipeline lake maintain``.

Every ``interval`` it looks at the lake's layout (``health.table_health``) and:

1. compacts every *closed* 2-hour slot that is not compacted yet (full compaction, one batch Flink job
   per slot through ``CALL sys.compact``). The streaming writer keeps compacting the open slot itself
   (``compaction.min.file-num``), so it never stops; it stops touching a slot once the slot is closed,
   so the two never compact the same bucket at the same time. A late event written into a compacted
   slot adds one file to its bucket; the slot stays "compacted" until a bucket holds more than two;
2. expires snapshots of both tables by the retention (``CALL sys.expire_snapshots``);
3. drops partitions older than the retention in days, if one is set (``CALL sys.expire_partitions``);
4. removes orphan files (no snapshot references them, e.g. left by a killed writer) older than
   ``orphan_age`` (``CALL sys.remove_orphan_files``), at most once per ``orphan_every``;
5. restates every slot closed for ``restate_grace`` (event time) that has not been restated yet
   (``restate.restate_slot``), if it can reach ClickHouse;
6. then records what the pass did in ClickHouse's ``maintenance_passes`` (when it restates, so it has ClickHouse),
   which the ClickHouse service shows in /metrics, /api/status and the dashboard wherever the schedule runs.

Why a scheduled batch compaction of closed slots and not Paimon's dedicated compaction job
(``write-only`` writer + a second streaming job): see the README ("Lake maintenance"); in short, on
the measured box the dedicated job is a second always-on JVM and a second source of commits on the
open slot, while closed slots are compacted once, with no conflict with the writer, by a job that
exists only while it works.

Every step is a separate Paimon commit (optimistic, conflict-checked): one that fails is logged and
tried again at the next tick; the loop never stops the writer and never stops itself on an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from base.config import Settings
from base.errors import UserError
from lakehouse.catalog import open_table
from lakehouse.health import SLOT_MS, table_health
from lakehouse.tables import USER_ACTIONS, USER_ACTIONS_REJECTED

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from lakehouse.maintenance import Maintenance

log = logging.getLogger("lakehouse.maintain")
PASSES_TABLE = "maintenance_passes"  # clickhouse/schema/analytics.sql
PASSES_COLUMNS = ("finished_at", "duration_s", "compacted_slots", "snapshots_expired", "partitions_expired",
                  "orphans_removed", "restated_slots", "errors", "error", "open_slots", "open_files", "closed_slots",
                  "closed_files", "uncompacted_slots")
# Its own level: importing PyFlink (Beam) raises the root logger's to WARNING, which hid every pass's summary.
log.setLevel(logging.INFO)
MINUTE_MS = 60_000


@dataclass(frozen=True)
class MaintenancePolicy:
    """What the schedule does and when. Defaults are sized for 2-hour slots and 60 s checkpoints."""

    interval_s: float = 300.0  # a slot is compacted within ~5 minutes of closing
    compact: bool = True
    compact_grace_min: int = 10  # event-time minutes past a slot's end before it counts as closed
    snapshot_retain_hours: float = 1.0  # the table's snapshot.time-retained: readers in flight need no more
    snapshot_retain_max: int = 200  # the table's snapshot.num-retained.max
    snapshot_retain_min: int = 10  # the table's snapshot.num-retained.min
    partition_retention_days: int = 0  # 0 = keep raw partitions forever (the lake is the record)
    rejected_retention_days: int = 30
    orphan_age_hours: float = 24.0  # Paimon's own default: never races a write in flight
    orphan_every_s: float = 3600.0
    restate: bool = True
    restate_grace_min: int = 60  # event-time minutes past a slot's end before it is restated
    restate_lookback_hours: int = 48  # slots older than this are left alone (restate them by hand)
    database: str = "analytics"


@dataclass
class TickReport:
    """What one pass did, for logs and tests."""

    compacted: list[str] = field(default_factory=list)  # partition labels
    snapshots_expired: int = 0
    partitions_expired: int = 0
    orphans_removed: int = 0
    restated: list[str] = field(default_factory=list)  # slot starts, 'YYYY-MM-DD HH:MM'
    errors: list[str] = field(default_factory=list)
    # The raw table's layout after the pass: slots and data files, open and closed, and closed slots still waiting
    # for compaction (the health dashboard's "lake files per open and closed slot").
    layout: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"compacted {len(self.compacted)} slots, expired {self.snapshots_expired} snapshots and "
                f"{self.partitions_expired} partitions, removed {self.orphans_removed} orphan files, "
                f"restated {len(self.restated)} slots" + (f", {len(self.errors)} errors" if self.errors else ""))


class Maintainer:
    """One maintenance schedule over the warehouse of ``settings``; ``tick()`` is one pass."""

    def __init__(self, settings: Settings, policy: MaintenancePolicy | None = None,
                 clickhouse: Callable[[], Client] | None = None, flink: Maintenance | None = None) -> None:
        self.settings = settings
        self.policy = policy or MaintenancePolicy()
        self.clickhouse = clickhouse  # None: restatement off (no ClickHouse this process may use)
        self._flink = flink  # a running batch Flink runtime to share, else started on first use
        self._last_orphans: float | None = None  # monotonic time of the last orphan cleanup

    @property
    def flink(self) -> Maintenance:
        if self._flink is None:  # the local Flink runtime starts on first use, then is reused
            from lakehouse.maintenance import Maintenance

            self._flink = Maintenance(self.settings)
        return self._flink

    def tick(self) -> TickReport:
        report = TickReport()
        started = time.monotonic()
        p = self.policy
        try:
            for table in (USER_ACTIONS.name, USER_ACTIONS_REJECTED.name):
                open_table(self.settings, table)
        except UserError:  # the streaming job creates both tables when it starts
            log.info("maintain: waiting for the Flink job to create lake.%s and lake.%s", USER_ACTIONS.name,
                     USER_ACTIONS_REJECTED.name)
            return report
        if p.compact:
            self._step(report, "compact", lambda: self._compact(report))
        for table in (USER_ACTIONS.name, USER_ACTIONS_REJECTED.name):
            self._step(report, f"expire snapshots of {table}", lambda t=table: self._expire_snapshots(report, t))
        for table, days in ((USER_ACTIONS.name, p.partition_retention_days),
                            (USER_ACTIONS_REJECTED.name, p.rejected_retention_days)):
            if days > 0:
                self._step(report, f"expire partitions of {table}",
                           lambda t=table, d=days: self._expire_partitions(report, t, d))
        if p.orphan_age_hours > 0 and (self._last_orphans is None
                                       or time.monotonic() - self._last_orphans >= p.orphan_every_s):
            self._last_orphans = time.monotonic()
            for table in (USER_ACTIONS.name, USER_ACTIONS_REJECTED.name):
                self._step(report, f"remove orphan files of {table}", lambda t=table: self._orphans(report, t))
        if p.restate and self.clickhouse is not None:
            self._step(report, "restate", lambda: self._restate(report))
        self._step(report, "read the layout", lambda: self._layout(report))
        log.info("maintain: %s", report.line())
        if p.restate and self.clickhouse is not None:
            self._record(report, time.monotonic() - started)
        return report

    def _layout(self, report: TickReport) -> None:
        health = table_health(open_table(self.settings, USER_ACTIONS.name), self.policy.compact_grace_min * MINUTE_MS)
        open_, closed = [p for p in health.partitions if not p.closed], [p for p in health.partitions if p.closed]
        report.layout = {"open_slots": len(open_), "open_files": sum(p.files for p in open_),
                         "closed_slots": len(closed), "closed_files": sum(p.files for p in closed),
                         "uncompacted_slots": len(health.closed_uncompacted)}

    def _record(self, report: TickReport, duration_s: float) -> None:
        """One row in maintenance_passes; a pass whose record fails is only logged (the work itself is done)."""
        layout = [report.layout.get(k, 0) for k in PASSES_COLUMNS[9:]]
        try:
            self.clickhouse().insert(f"{self.policy.database}.{PASSES_TABLE}", [[
                datetime.now(UTC), round(duration_s, 3), len(report.compacted), report.snapshots_expired,
                report.partitions_expired, report.orphans_removed, len(report.restated), len(report.errors),
                "; ".join(report.errors)[:2000], *layout]], column_names=list(PASSES_COLUMNS))
        except Exception as exc:  # noqa: BLE001 - the schedule outlives ClickHouse being away
            log.warning("maintain: could not record the pass in %s.%s: %s", self.policy.database, PASSES_TABLE, exc)

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval_s`` until ``stop`` is set."""
        log.info("maintain: every %.0f s on %s (compact %s, restate %s)", self.policy.interval_s,
                 self.settings.paimon_warehouse, "on" if self.policy.compact else "off",
                 "on" if self.policy.restate and self.clickhouse else "off")
        while not stop.is_set():
            self.tick()
            self.beat()
            stop.wait(self.policy.interval_s)

    @property
    def heartbeat_file(self):  # -> Path
        return self.settings.run_dir / "lake-maintenance.heartbeat"

    def beat(self) -> None:
        """Touch the heartbeat after a pass (failed steps included: they are retried and logged); its age is the
        health check of a running schedule (``pipeline lake maintain --healthcheck``)."""
        self.heartbeat_file.parent.mkdir(parents=True, exist_ok=True)
        self.heartbeat_file.write_text(f"{time.time():.0f}\n")

    def healthy(self) -> bool:
        """A pass ended within the last three intervals (plus a minute for a long pass)."""
        try:
            age = time.time() - self.heartbeat_file.stat().st_mtime
        except FileNotFoundError:
            return False
        return age <= 3 * self.policy.interval_s + 60

    # -- steps ---------------------------------------------------------------------------------------
    def _step(self, report: TickReport, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except UserError as exc:  # a missing table, a conflicting commit: tried again next tick
            report.errors.append(f"{what}: {exc}")
            log.warning("maintain: %s: %s", what, exc)
        except Exception as exc:  # the schedule outlives any one failure
            report.errors.append(f"{what}: {exc}")
            log.exception("maintain: %s failed", what)

    def _compact(self, report: TickReport) -> None:
        health = table_health(open_table(self.settings, USER_ACTIONS.name), self.policy.compact_grace_min * MINUTE_MS)
        for p in health.closed_uncompacted:
            try:
                self.flink.compact(USER_ACTIONS.name, [p.spec], full=True)
            except UserError as exc:
                # Paimon refuses the commit ("File deletion conflicts detected") when the writer compacted one
                # of the slot's buckets meanwhile (late events took it to five files): the writer wins, the
                # slot is compacted at a later pass.
                report.errors.append(f"compact {p.label}: {exc}")
                log.warning("maintain: compaction of %s did not commit, retried next pass (a conflict with the "
                            "writer's own compaction of a bucket that late events reached): %s", p.label, exc)
                continue
            report.compacted.append(p.label)
            log.info("maintain: compacted %s (%d files, up to %d per bucket)", p.label, p.files,
                     p.max_files_per_bucket)

    def _expire_snapshots(self, report: TickReport, table: str) -> None:
        p = self.policy
        older = datetime.now(UTC) - timedelta(hours=p.snapshot_retain_hours)
        rows = self.flink.expire_snapshots(table, retain_max=p.snapshot_retain_max, retain_min=p.snapshot_retain_min,
                                           older_than=f"{older:%Y-%m-%d %H:%M:%S}")
        report.snapshots_expired += _first_int(rows)

    def _expire_partitions(self, report: TickReport, table: str, days: int) -> None:
        pattern = "$event_date" if table == USER_ACTIONS.name else "$ingest_date"
        rows = self.flink.expire_partitions(table, f"{days} d", pattern)
        report.partitions_expired += len([r for r in rows if r and "=" in str(r[0])])  # else "No expired partitions."

    def _orphans(self, report: TickReport, table: str) -> None:
        older = datetime.now(UTC) - timedelta(hours=self.policy.orphan_age_hours)
        report.orphans_removed += len(self.flink.remove_orphan_files(table, older, dry_run=False))

    def _restate(self, report: TickReport) -> None:
        from lakehouse.restate import restate_slot, restated_slots

        p = self.policy
        health = table_health(open_table(self.settings, USER_ACTIONS.name), p.restate_grace_min * MINUTE_MS)
        due = sorted(s.slot_end_ms - SLOT_MS for s in health.partitions if s.closed and s.slot_end_ms)
        if health.frontier_ms is not None:
            horizon = health.frontier_ms - p.restate_lookback_hours * 3_600_000
            due = [s for s in due if s >= horizon]
        if not due:
            return
        client = self.clickhouse()
        done = restated_slots(client, p.database, datetime.fromtimestamp(due[0] / 1000, UTC))
        table = open_table(self.settings, USER_ACTIONS.name)
        for slot in due:
            if slot in done:
                continue
            result = restate_slot(table, client, slot, p.database)
            report.restated.append(f"{result.slot_start:%Y-%m-%d %H:%M}")
            log.info("maintain: restated %s", result.line())


def _first_int(rows: list[tuple]) -> int:
    try:
        return int(rows[0][0]) if rows else 0
    except (TypeError, ValueError):
        return 0
