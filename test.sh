#!/usr/bin/env bash
# The test command: installs what it needs (idempotent; the demo's set-up plus the test tooling: scripts/setup.sh
# --test), lints, then runs the whole suite against real local services that the suite starts itself. Extra args go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
# The suite starts Kafka and S3 once and reuses running ones. Those it starts are stopped (by their PID files) when
# this script ends, however it ends, so no broker outlives the run and holds the ports a later run or ./run.sh needs;
# ones already running before (./run.sh, `pipeline services start`) are left as they were.
started_here=()
for service in kafka s3; do
  .venv/bin/pipeline services status "$service" >/dev/null 2>&1 || started_here+=("$service")
done
stop_started_here() {
  if [ ${#started_here[@]} -gt 0 ]; then
    .venv/bin/pipeline services stop "${started_here[@]}" || echo "test.sh: could not stop ${started_here[*]}" >&2
  fi
}
trap stop_started_here EXIT
.venv/bin/ruff check .
# The Java value format's unit tests (flink_job/format), offline: set-up fetched what Maven needs.
mvn -o -q -B -f flink_job/format/pom.xml test
# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass.
.venv/bin/python -m pytest "$@"
