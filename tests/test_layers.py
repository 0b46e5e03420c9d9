"""The layers of docs/design.md hold: import-linter's contracts in pyproject.toml (front end > parts > base, nothing
in the product imports scripts/ or tests/) are kept, and a forbidden import would break them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from base.config import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept() -> None:
    result = _lint(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The check is real: base importing the front end (a copy of the tree) fails it."""
    for name in ("base", "local_services", "producer", "clickhouse", "lakehouse", "flink_job", "pipeline",
                 "scripts", "tests"):
        shutil.copytree(PROJECT_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    errors = tmp_path / "base" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport pipeline.cli  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "base -> pipeline" in result.stdout or "base.errors -> pipeline.cli" in result.stdout, result.stdout[-2000:]
