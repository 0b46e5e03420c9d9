#!/usr/bin/env bash
# Rebuild constraints.txt (the exact pins of the whole environment) from pyproject.toml alone: resolves
# '.[flink,embedded,dev]' in a throwaway venv, without the old constraints, adds the packages that only other Python
# 3.11 patch releases need (a dependency whose marker is false here but true for some 3.11.x, e.g. redis's
# async-timeout below 3.11.3), and writes `pip freeze` of it (the project itself and pip/setuptools/wheel left out)
# under the header below. Run it after changing a pin in pyproject.toml, review the diff, then run ./test.sh.
# Needs Python 3.11 (PYTHON=/path/to/python3.11 to choose one) and the package index.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "refresh_constraints: $PY is not Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/pip" --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
"${pip[@]}" install -q "$ROOT[flink,embedded,dev]"
# Requirements of the installed packages that another Python 3.11 patch release would add (extras aside).
"$tmp/venv/bin/python" - >"$tmp/other-3.11.txt" <<'PYTHON'
from importlib.metadata import distributions
from pip._vendor.packaging.requirements import Requirement

for dist in distributions():
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            continue
        if any(req.marker.evaluate({"python_full_version": f"3.11.{patch}", "python_version": "3.11", "extra": ""})
               for patch in range(30)):
            print(f"{req.name}{req.specifier}")
PYTHON
if [ -s "$tmp/other-3.11.txt" ]; then
  "${pip[@]}" install -q -r "$tmp/other-3.11.txt"
fi
"$tmp/venv/bin/pip" check
{
  cat <<'HEADER'
# Exact pins of the whole resolved environment (every package that pyproject.toml's dependencies and its extras
# flink, embedded and dev pull in), so that every install is reproducible: scripts/setup.sh installs with
#   pip install -c constraints.txt -e '.[flink,embedded]'          (./run.sh, the demo)
#   pip install -c constraints.txt -e '.[flink,embedded,dev]'      (./test.sh, the tests)
# Made with `pip freeze --exclude-editable` of a venv holding '.[flink,embedded,dev]' (the project itself and
# pip/setuptools/wheel left out), plus the packages that only some Python 3.11 patch releases need (async-timeout:
# redis wants it below 3.11.3, e.g. Debian 12's 3.11.2). Refresh after changing a pin in pyproject.toml:
# scripts/refresh_constraints.sh (resolves in a throwaway venv from pyproject.toml alone and rewrites this file).
HEADER
  "${pip[@]}" freeze --exclude-editable | grep -viE '^(pip|setuptools|wheel|user-actions-pipeline)( |==|@)'
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "refresh_constraints: wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins); review it with git diff"
