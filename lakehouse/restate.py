"""Restatement: make ClickHouse's aggregates of closed 2-hour slots equal the lake, exactly.

Events behind the watermark are in ``lake.user_actions`` but not in the aggregates the job emitted
(the job drops them from its windows by design). For each slot, this recomputes the three
aggregates from the lake with reconciliation's own code (``reconcile.lake_counts`` /
``clickhouse_counts`` / ``differences``), then writes only the keys that differ:

- a key whose count differs, or that ClickHouse lacks: inserted with the lake's count and a newer
  ``version`` (now, and above every version already in the slot), so the ReplacingMergeTree keeps it
  and every FINAL read sees it;
- a key ClickHouse has and the lake has not (the lake is the record of what happened): deleted.

Then one row in ``restatements`` says when the slot was restated and what changed. A second run over
the same slot finds no difference and writes no aggregate row. A slot is the unit: every 2-hour and
5-minute window lies wholly inside one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from base.errors import UserError
from lakehouse.reconcile import (
    AGGREGATES,
    SLOT_MS,
    Aggregate,
    clickhouse_counts,
    differences,
    epoch_ms,
    lake_counts,
    lake_events,
    utc,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from pypaimon.table.file_store_table import FileStoreTable

RESTATEMENTS_TABLE = "restatements"
DELETE_CHUNK = 500  # keys per DELETE statement


@dataclass(frozen=True)
class SlotRestatement:
    slot_start: datetime
    lake_events: int
    upserted: dict[str, int]  # per aggregate table
    deleted: dict[str, int]
    version: int

    @property
    def changed(self) -> int:
        return sum(self.upserted.values()) + sum(self.deleted.values())

    def line(self) -> str:
        parts = ", ".join(f"{t} +{self.upserted[t]}/-{self.deleted[t]}" for t in self.upserted)
        return (f"slot {self.slot_start:%Y-%m-%d %H:%M}: {self.lake_events} lake events; "
                f"{self.changed} keys restated ({parts})")


@dataclass(frozen=True)
class RestateResult:
    slots: list[SlotRestatement] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.slots)

    def lines(self) -> list[str]:
        verb = "would restate" if self.dry_run else "restated"
        return [s.line() for s in self.slots] + [
            f"{verb} {self.changed} keys in {len(self.slots)} slots in {self.seconds:.2f} s"]


def slots_in(start: datetime, end: datetime) -> list[int]:
    """Start (epoch ms) of every 2-hour slot wholly inside [start, end)."""
    start_ms, end_ms = epoch_ms(start), epoch_ms(end)
    first = -(-start_ms // SLOT_MS) * SLOT_MS
    slots = list(range(first, end_ms - SLOT_MS + 1, SLOT_MS))
    if not slots:
        raise UserError(f"restate: [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) holds no whole 2-hour slot "
                        "(slots start at even hours, UTC)")
    return slots


def restate(lake_table: FileStoreTable, client: Client, start: datetime, end: datetime,
            database: str = "analytics", dry_run: bool = False,
            aggregates: tuple[Aggregate, ...] = AGGREGATES, force: bool = False) -> RestateResult:
    """Restate every 2-hour slot wholly inside [start, end) (UTC). A slot the lake holds no event of while
    ClickHouse has rows for it is refused (its partition was most likely expired by retention: restating it would
    delete those rows) unless ``force``; nothing is written for any slot then."""
    if not database.isidentifier():
        raise UserError(f"restate: database '{database}' is not a plain identifier")
    began = time.perf_counter()
    slots = slots_in(start, end)
    if not force:
        for slot in slots:
            _refuse_if_the_lake_lost_it(lake_table, client, slot, database, aggregates)
    done = [restate_slot(lake_table, client, slot, database, dry_run, aggregates) for slot in slots]
    return RestateResult(done, time.perf_counter() - began, dry_run)


def restate_slot(lake_table: FileStoreTable, client: Client, slot_ms: int, database: str = "analytics",
                 dry_run: bool = False, aggregates: tuple[Aggregate, ...] = AGGREGATES) -> SlotRestatement:
    events, _files = lake_events(lake_table, slot_ms, slot_ms + SLOT_MS)
    plans = []
    newest = 0
    for agg in aggregates:
        lake = lake_counts(agg, events, slot_ms, slot_ms + SLOT_MS)
        ch = clickhouse_counts(agg, client, database, slot_ms, slot_ms + SLOT_MS, like=lake)
        if ch.num_rows:
            newest = max(newest, pc.max(ch["version"]).as_py())
        bad, _matching = differences(agg, lake, ch)
        plans.append((agg, bad.filter(pc.is_valid(bad["lake"])), bad.filter(pc.is_null(bad["lake"]))))
    # Newer than anything the job or an earlier restatement wrote for this slot, even with clock skew.
    version = max(int(time.time() * 1000), newest + 1)
    if not dry_run:
        for agg, upsert, delete in plans:
            if upsert.num_rows:
                client.insert_arrow(f"{database}.{agg.table}", _rows(agg, upsert, version))
            _delete(client, database, agg, delete)
    result = SlotRestatement(
        slot_start=utc(slot_ms), lake_events=events.num_rows,
        upserted={agg.table: upsert.num_rows for agg, upsert, _ in plans},
        deleted={agg.table: delete.num_rows for agg, _, delete in plans}, version=version)
    if not dry_run:
        client.insert_arrow(f"{database}.{RESTATEMENTS_TABLE}", pa.table({
            "slot_start": pa.array([slot_ms], pa.timestamp("ms", tz="UTC")),
            "restated_at": pa.array([version], pa.timestamp("ms", tz="UTC")),
            "lake_events": pa.array([events.num_rows], pa.uint64()),
            "rows_upserted": pa.array([sum(result.upserted.values())], pa.uint64()),
            "rows_deleted": pa.array([sum(result.deleted.values())], pa.uint64()),
        }))
    return result


def _refuse_if_the_lake_lost_it(lake_table: FileStoreTable, client: Client, slot_ms: int, database: str,
                                aggregates: tuple[Aggregate, ...]) -> None:
    events, _files = lake_events(lake_table, slot_ms, slot_ms + SLOT_MS)
    if events.num_rows:
        return
    in_slot = ("window_start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
               "AND window_start < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')")
    held = sum(client.query(f"SELECT count() FROM {database}.{agg.table} FINAL WHERE {in_slot}",
                            parameters={"lo": slot_ms, "hi": slot_ms + SLOT_MS}).result_rows[0][0]
               for agg in aggregates)
    if held:
        raise UserError(f"restate: the lake holds no event of slot {utc(slot_ms):%Y-%m-%d %H:%M} while ClickHouse "
                        f"has {held} rows for it (its partition expired by retention?): restating would delete them; "
                        "nothing was written. Leave the slot out of --from/--to, or add --force to delete them")


def restated_slots(client: Client, database: str, since: datetime) -> dict[int, int]:
    """{slot start ms: restated_at ms} of every slot restated since ``since``."""
    rows = client.query(
        f"SELECT toUnixTimestamp64Milli(slot_start), toUnixTimestamp64Milli(max(restated_at)) "
        f"FROM {database}.{RESTATEMENTS_TABLE} WHERE slot_start >= fromUnixTimestamp64Milli({{s:Int64}}, 'UTC') "
        f"GROUP BY slot_start", parameters={"s": epoch_ms(since)}).result_rows
    return {int(s): int(r) for s, r in rows}


def _rows(agg: Aggregate, upsert: pa.Table, version: int) -> pa.Table:
    """The upserted keys in the aggregate table's insert layout (the loader's own schema)."""
    from clickhouse.records import KINDS

    schema = KINDS[agg.table].insert_schema
    starts = upsert["window_start"]
    columns = {
        "window_start": starts.cast(pa.timestamp("ms", tz="UTC")),
        "window_end": pc.add(starts, agg.window_ms).cast(pa.timestamp("ms", tz="UTC")),
        **{k: upsert[k] for k in agg.keys},
        agg.count: upsert["lake"],
        "version": pa.array([version] * upsert.num_rows, pa.int64()),
    }
    return pa.table({name: columns[name] for name in schema.names}).cast(schema)


def _delete(client: Client, database: str, agg: Aggregate, delete: pa.Table) -> None:
    """Lightweight DELETE of keys ClickHouse has and the lake has not, a chunk of keys per statement."""
    rows = delete.to_pylist()
    for i in range(0, len(rows), DELETE_CHUNK):
        keys = ", ".join(
            "(" + ", ".join([str(int(r["window_start"])), *(_sql_value(r[k]) for k in agg.keys)]) + ")"
            for r in rows[i:i + DELETE_CHUNK])
        columns = ", ".join(["toUnixTimestamp64Milli(window_start)", *agg.keys])
        client.command(f"DELETE FROM {database}.{agg.table} WHERE ({columns}) IN ({keys})")


def _sql_value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
