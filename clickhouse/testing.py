"""Helpers for tests and the benchmark: a process-wide scratch chDB directory and seeded data.

chDB hosts one engine directory per process, so every test module of one pytest process shares
one scratch directory (never the demo's) and isolates itself with its own database name.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from base.config import Settings

_SCRATCH: Path | None = None


def scratch_settings(settings: Settings) -> Settings:
    """``settings`` with DATA_DIR moved to a per-process temporary directory (embedded chDB in it),
    unless CLICKHOUSE_URL names a server, which is then used as is."""
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="chdb-test-"))
        atexit.register(shutil.rmtree, _SCRATCH, True)
    return replace(settings, data_dir=_SCRATCH)
