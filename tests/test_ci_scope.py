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


def test_no_test_takes_a_fixed_port() -> None:
    """The suite runs in two workers at once (and beside an engineer's own services): a test that listens on a fixed
    port collides with the other worker's, so every port a test gives a process comes from free_port(). Checked in
    the source: an integer port number (1024 and up) bound to a name or keyword with "port" in it, or to bind()."""
    import ast

    fixed = []
    for path in sorted((PROJECT_ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[tuple[str, ast.AST]] = []
            if isinstance(node, ast.keyword) and node.arg:
                targets.append((node.arg, node.value))
            elif isinstance(node, ast.Assign):
                targets += [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "bind" and node.args:
                targets += [("port", elt) for elt in getattr(node.args[0], "elts", [])]
            fixed += [f"{path.relative_to(PROJECT_ROOT)}:{value.lineno} {name} = {value.value}"
                      for name, value in targets
                      if "port" in name.lower() and isinstance(value, ast.Constant) and type(value.value) is int
                      and 1024 <= value.value <= 65_535]
    assert not fixed, f"fixed ports in tests (use tests.conftest.free_port()): {fixed}"
