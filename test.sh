#!/usr/bin/env bash
# The test command: installs what it needs (idempotent; the demo's set-up plus the test tooling: scripts/setup.sh
# --test), lints, then runs the whole suite against real local services that the suite starts itself. Extra args go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
.venv/bin/ruff check .
# The Java value format's unit tests (flink_job/format), offline: set-up fetched what Maven needs.
mvn -o -q -B -f flink_job/format/pom.xml test
# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
.venv/bin/python -m pytest "$@"
