"""CI runs every test, the slow fault suite included: .ci/run is exactly ./test.sh, which runs pytest with no marker
selection, and pytest's own options deselect nothing and refuse unknown markers (README "Reliability")."""

from __future__ import annotations

import shlex
import tomllib

from base.config import PROJECT_ROOT


def test_ci_runs_the_test_command_and_it_deselects_nothing() -> None:
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith("#")][-1] == "exec ./test.sh"
    test_sh = (PROJECT_ROOT / "test.sh").read_text().splitlines()
    pytest_lines = [line for line in test_sh if "pytest" in line and not line.lstrip().startswith("#")]
    assert pytest_lines == ['.venv/bin/python -m pytest "$@"'], pytest_lines
    addopts = shlex.split(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
                          ["tool"]["pytest"]["ini_options"]["addopts"])
    assert "--strict-markers" in addopts
    assert not {"-m", "-k", "--deselect", "--ignore"} & set(addopts), addopts
    assert not any(o.startswith(("-m", "--deselect=", "--ignore=")) for o in addopts), addopts
