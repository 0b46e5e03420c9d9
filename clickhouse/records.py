"""Aggregate records from Kafka (JSON values) to Arrow tables ready for insert, tolerating bad ones.

Fast path: the batch's values joined as newline-delimited JSON and parsed by pyarrow's C++ JSON
reader with an explicit schema, then checked column-wise. When that parse fails (a window time
in epoch millis, a pretty-printed value, broken JSON, a wrong type, a number too large), the batch goes through
the careful path: each record on its own with orjson, so only the bad ones are rejected, each with its reason.
Nothing a record holds can make ``parse`` raise: every value is range-checked before an Arrow array is built, and
an array that still fails is rebuilt record by record.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from base.contract import AGGREGATES

TIME = pa.timestamp("ms", tz="UTC")
MAX_USER_ID = 2**32 - 1
MAX_COUNT = 2**32 - 1
MAX_VERSION = 2**63 - 1  # epoch millis of emission; the Arrow parse reads it as int64
# DateTime64(3) holds 1900..2299; aggregates are of event times since 1970.
MIN_TIME_MS = 0
MAX_TIME_MS = 10_413_792_000_000  # 2300-01-01 00:00:00 UTC


@dataclass(frozen=True)
class Kind:
    """The columns of one aggregate table, in ClickHouse order."""

    table: str
    count_column: str
    has_action_type: bool
    window_ms: int

    @property
    def columns(self) -> list[str]:
        cols = ["window_start", "window_end", "user_id"]
        if self.has_action_type:
            cols.append("action_type")
        return [*cols, self.count_column, "version"]

    @property
    def parse_schema(self) -> pa.Schema:
        types = {"window_start": TIME, "window_end": TIME, "user_id": pa.int64(), "action_type": pa.string(),
                 self.count_column: pa.int64(), "version": pa.int64()}
        return pa.schema([(c, types[c]) for c in self.columns])

    @property
    def insert_schema(self) -> pa.Schema:
        types = {"window_start": TIME, "window_end": TIME, "user_id": pa.uint32(), "action_type": pa.string(),
                 self.count_column: pa.uint32(), "version": pa.uint64()}
        return pa.schema([(c, types[c]) for c in self.columns])


# One record kind per aggregate of the contract (topic name = table name).
KINDS = {a.name: Kind(a.name, a.count_column, "action_type" in a.key_columns, a.window_minutes * 60_000)
         for a in AGGREGATES}
assert all(list(KINDS[a.name].columns) == list(a.columns) for a in AGGREGATES), "columns differ from the contract"


@dataclass
class ParsedBatch:
    table: pa.Table
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)


def parse(values: list[bytes], kind: Kind) -> ParsedBatch:
    """Valid records as an Arrow table in ``kind.insert_schema``; the rest as (index, reason). Never raises for what
    a record holds."""
    if not values:
        return ParsedBatch(kind.insert_schema.empty_table())
    try:
        table = _parse_fast(values, kind)
    except (pa.ArrowException, ValueError, OverflowError):
        table = None
    if table is None or table.num_rows != len(values):
        return _parse_careful(values, kind)
    try:
        valid = _valid_mask(table, kind)
        rejects: list[tuple[int, str]] = []
        if not pc.all(valid).as_py():
            invalid = pc.indices_nonzero(pc.invert(valid)).to_pylist()
            rejects = [(i, _reason(table.slice(i, 1).to_pylist()[0], kind)) for i in invalid]
            table = table.filter(valid)
        return ParsedBatch(table.cast(kind.insert_schema), rejects)
    except (pa.ArrowException, ValueError, OverflowError, TypeError):
        return _parse_careful(values, kind)


def _parse_fast(values: list[bytes], kind: Kind) -> pa.Table | None:
    blob = b"\n".join(values)
    if blob.count(b"\n") != len(values) - 1:  # a value spanning lines: row count would not match
        return None
    options = pajson.ParseOptions(explicit_schema=kind.parse_schema, unexpected_field_behavior="ignore")
    return pajson.read_json(io.BytesIO(blob), parse_options=options,
                            read_options=pajson.ReadOptions(block_size=max(1 << 20, len(blob) + 1)))


def _valid_mask(table: pa.Table, kind: Kind) -> pa.Array:
    checks = [pc.is_valid(table[c]) for c in kind.columns]
    checks += [
        pc.greater(table["user_id"], 0), pc.less_equal(table["user_id"], MAX_USER_ID),
        pc.greater_equal(table[kind.count_column], 0), pc.less_equal(table[kind.count_column], MAX_COUNT),
        pc.greater_equal(table["version"], 0),
        pc.greater_equal(pc.cast(table["window_start"], pa.int64()), MIN_TIME_MS),
        pc.less(pc.cast(table["window_end"], pa.int64()), MAX_TIME_MS),
        pc.equal(pc.subtract(pc.cast(table["window_end"], pa.int64()), pc.cast(table["window_start"], pa.int64())),
                 kind.window_ms),
    ]
    if kind.has_action_type:
        checks.append(pc.greater(pc.utf8_length(table["action_type"]), 0))
    mask = checks[0]
    for check in checks[1:]:
        mask = pc.and_kleene(mask, check)
    return pc.fill_null(mask, False).combine_chunks()


def _reason(row: dict, kind: Kind) -> str:
    """Why a record that parsed as JSON is not a valid aggregate (same rules as _valid_mask)."""
    for column in kind.columns:
        if row.get(column) is None:
            return f"missing or null field '{column}'"
    start, end = (_millis(row[c]) for c in ("window_start", "window_end"))
    if not 0 < row["user_id"] <= MAX_USER_ID:
        return f"user_id {row['user_id']} out of range 1..{MAX_USER_ID}"
    if not 0 <= row[kind.count_column] <= MAX_COUNT:
        return f"{kind.count_column} {row[kind.count_column]} out of range 0..{MAX_COUNT}"
    if not 0 <= row["version"] <= MAX_VERSION:
        return f"version {row['version']} out of range 0..{MAX_VERSION}"
    if kind.has_action_type and not row["action_type"]:
        return "empty action_type"
    if not (MIN_TIME_MS <= start and end < MAX_TIME_MS):
        return "window time out of range 1970..2299"
    if end - start != kind.window_ms:
        return f"window is not {kind.window_ms // 60_000} minutes (window_end - window_start = {end - start} ms)"
    return "invalid record"


def _millis(value: object) -> int:
    """Epoch millis of a parsed window time (an int from the careful path, a datetime from Arrow's)."""
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return int(value)


def _parse_careful(values: list[bytes], kind: Kind) -> ParsedBatch:
    rows: list[tuple[int, dict]] = []
    rejects: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        try:
            rows.append((i, _record(value, kind)))
        except Exception as exc:  # whatever a record holds, it is rejected with a reason, never raised
            rejects.append((i, str(exc) or type(exc).__name__))
    try:
        table = _table([row for _, row in rows], kind)
    except (pa.ArrowException, OverflowError, ValueError, TypeError):
        # Not expected after the range checks: find the record an array cannot hold, alone.
        kept = []
        for i, row in rows:
            try:
                _table([row], kind)
                kept.append(row)
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
                rejects.append((i, f"cannot be stored: {exc}"))
        table = _table(kept, kind)
        rejects.sort()
    return ParsedBatch(table, rejects)


def _table(rows: list[dict], kind: Kind) -> pa.Table:
    arrays = [pa.array([row[c] for row in rows], type=kind.parse_schema.field(c).type) for c in kind.columns]
    return pa.Table.from_arrays(arrays, schema=kind.parse_schema).cast(kind.insert_schema)


def _record(value: bytes, kind: Kind) -> dict:
    doc = orjson.loads(value)
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object but {type(doc).__name__}")
    row: dict = {}
    for c in kind.columns:
        if doc.get(c) is None:
            raise ValueError(f"missing or null field '{c}'")
    row["window_start"] = to_epoch_millis(doc["window_start"], "window_start")
    row["window_end"] = to_epoch_millis(doc["window_end"], "window_end")
    row["user_id"] = _whole(doc["user_id"], "user_id")
    row[kind.count_column] = _whole(doc[kind.count_column], kind.count_column)
    row["version"] = _whole(doc["version"], "version")
    if kind.has_action_type:
        if not isinstance(doc["action_type"], str) or not doc["action_type"]:
            raise ValueError("action_type must be a non-empty string")
        row["action_type"] = doc["action_type"]
    return _reason_check(row, kind)


def _reason_check(row: dict, kind: Kind) -> dict:
    reason = _reason(row, kind)
    if reason != "invalid record":
        raise ValueError(reason)
    return row


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"{name} must be a whole number, not {value!r}")


def to_epoch_millis(value: object, name: str) -> int:
    """'yyyy-MM-dd HH:mm:ss[.SSS]' (UTC; ISO forms with T/Z/offset too) or epoch millis -> epoch millis."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a time, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} {value!r} is not a time")
    if isinstance(value, int | float):
        if not MIN_TIME_MS <= value < MAX_TIME_MS:
            raise ValueError(f"{name} {value!r} out of range 1970..2299 (epoch millis)")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return to_epoch_millis(int(text), name)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name} '{value}' is neither 'yyyy-MM-dd HH:mm:ss[.SSS]' nor epoch millis") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            millis = round(parsed.timestamp() * 1000)
        except (OverflowError, ValueError):
            raise ValueError(f"{name} '{value}' out of range 1970..2299") from None
        return to_epoch_millis(millis, name)
    raise ValueError(f"{name} must be a time string or epoch millis, not {type(value).__name__}")
