"""Writing query results: an aligned table on the terminal, CSV, JSON lines or Parquet."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from base.errors import UserError

FORMATS = ("table", "csv", "jsonl", "parquet")
MAX_CELL = 60  # terminal cells longer than this are cut, so a JSON column doesn't wrap every line


def write(rows: pa.Table, fmt: str = "table", output: str | Path | None = None) -> None:
    """Write ``rows`` in ``fmt`` to ``output`` (a path), or to stdout when ``output`` is None."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and output is None:
        raise UserError("--format parquet needs --output PATH (Parquet is binary)")
    if output is None:
        sys.stdout.flush()
        _write(rows, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    path = Path(output)
    if not path.parent.is_dir():
        raise UserError(f"--output {path}: directory {path.parent} does not exist")
    with path.open("wb") as sink:
        _write(rows, fmt, sink)


def _write(rows: pa.Table, fmt: str, sink: BinaryIO) -> None:
    if fmt == "table":
        sink.write(("\n".join(render_table(rows)) + "\n").encode())
    elif fmt == "csv":
        import pyarrow.csv as csv

        csv.write_csv(rows, sink)
    elif fmt == "jsonl":
        for record in rows.to_pylist():
            sink.write((json.dumps(record, default=_json_default, ensure_ascii=False) + "\n").encode())
    else:
        import pyarrow.parquet as pq

        pq.write_table(rows, sink, compression="zstd")


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # datetimes as ISO-like text


def render_table(rows: pa.Table) -> list[str]:
    """Aligned text lines: header, rule, one line per row, and a row count."""
    names = rows.column_names
    cells = [[_cell(v) for v in rows.column(name).to_pylist()] for name in names]
    widths = [max([len(name)] + [len(c) for c in column]) for name, column in zip(names, cells, strict=True)]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) for t in rows.schema.types]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(names), line(["-" * w for w in widths])]
    out.extend(line([column[i] for column in cells]) for i in range(rows.num_rows))
    out.append(f"({rows.num_rows} row{'s' if rows.num_rows != 1 else ''})")
    return out


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."
