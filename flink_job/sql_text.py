"""The pipeline's SQL lives in flink_job/sql/*.sql, run in file-name order; this fills in named parameters.

Parameters are written ``{{name}}`` (SQL and JSON paths use ``$`` and braces, so no format strings); every
placeholder must be given, and nothing else is substituted.
"""

from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def sql_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def render(text: str, params: dict[str, str]) -> str:
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in params})
    if missing:
        raise KeyError(f"SQL parameters not given: {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: params[m.group(1)], text)


def statements(text: str) -> list[str]:
    """Split a file into statements on ';' at a line end; drop comment-only chunks."""
    out = []
    for chunk in re.split(r";\s*$", text, flags=re.MULTILINE):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(chunk.strip())
    return out


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
