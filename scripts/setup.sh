#!/usr/bin/env bash
# One-time (and idempotent) set-up, as any user (root only lets --test install Chromium itself). Two modes:
#   scripts/setup.sh          what the demo runs (./run.sh): .venv with '.[flink,embedded]', the JVM jars, the job's
#                             value format, the S3 server
#   scripts/setup.sh --test   the same plus the test tooling (./test.sh): '.[dev]' and the steps of
#                             scripts/setup.d/test-*.sh (Chromium for the dashboard test)
# Every pip install is pinned by constraints.txt. Each mode has its own stamps, so ./run.sh after ./test.sh installs
# nothing and ./test.sh after ./run.sh only adds the test tooling; a second run returns in about a second.
# Prerequisites, exactly the README's list: Python 3.11, a JDK 17, Maven, Go.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"

die() { echo "setup: $*" >&2; exit 1; }
say() { [ -n "${SETUP_QUIET:-}" ] || echo "setup: $*"; }

MODE=demo
case "${1:-}" in
  "") ;;
  --test) MODE=test ;;
  -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | cut -c3-; exit 0 ;;
  *) die "unknown argument '$1' (usage: scripts/setup.sh [--test])" ;;
esac
[ $# -le 1 ] || die "too many arguments (usage: scripts/setup.sh [--test])"
mkdir -p "$CACHE/stamps"

stamp_ok() { [ -f "$CACHE/stamps/$1" ] && [ "$(cat "$CACHE/stamps/$1")" = "$2" ]; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# 0. Prerequisites: exactly the README's list, each with the one line that says what to install.
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
[ -n "$PY" ] || die "Python 3.11 is missing: install python3.11 (PyFlink 2.0 wheels need it) or set PYTHON=/path/to/python3.11"
command -v java >/dev/null || die "Java is missing: install a JDK 17 (apt-get install openjdk-17-jdk-headless)"
java_major=$(java -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\).*/\1/p' | head -1)
[ "$java_major" = 17 ] \
  || die "Java 17 is needed, the java on PATH is version ${java_major:-unknown}: put a JDK 17's bin first in PATH"
[ -x "$(dirname "$(readlink -f "$(command -v java)")")/javac" ] \
  || die "the java on PATH is a JRE, Maven needs a JDK 17 to build the job's format (apt-get install openjdk-17-jdk-headless)"
command -v mvn >/dev/null || die "Maven is missing: install it (apt-get install maven); it fetches the pinned jars"
command -v go >/dev/null || die "Go is missing: install it (apt-get install golang); it builds the local S3 server"

# 1. Python environment: the project's extras for the mode, every package pinned by constraints.txt. The test
#    environment contains the demo's, so a valid test stamp satisfies the demo too.
[ -f constraints.txt ] || die "constraints.txt is missing (scripts/refresh_constraints.sh rebuilds it)"
py_hash() { { cat pyproject.toml constraints.txt; echo "extras=$1"; } | sha256sum | cut -c1-16; }
DEMO_EXTRAS=flink,embedded
TEST_EXTRAS=flink,embedded,dev
if [ "$MODE" = test ]; then extras=$TEST_EXTRAS; else extras=$DEMO_EXTRAS; fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in .venv"
  "$PY" -m venv "$VENV" || die "$PY -m venv failed (on Debian: apt-get install python3.11-venv)"
fi
if ! stamp_ok "python-$MODE" "$(py_hash "$extras")" && ! stamp_ok python-test "$(py_hash "$TEST_EXTRAS")"; then
  say "installing Python packages .[$extras] (first run takes a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >"$CACHE/pip.log" 2>&1 \
    || { tail -5 "$CACHE/pip.log" >&2; die "pip could not upgrade itself; see $CACHE/pip.log (network access to the package index?)"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -e ".[$extras]" >>"$CACHE/pip.log" 2>&1 \
    || { tail -5 "$CACHE/pip.log" >&2; die "pip install failed; see $CACHE/pip.log (network access to the package index?)"; }
  py_hash "$extras" > "$CACHE/stamps/python-$MODE"
fi

# 2. JVM artifacts, pinned in scripts/maven/*/pom.xml, copied into .cache/jars/<name>.
for pom in scripts/maven/*/pom.xml; do
  name=$(basename "$(dirname "$pom")")
  h=$(hash_of "$pom")
  if ! stamp_ok "jars-$name" "$h" || [ -z "$(ls "$CACHE/jars/$name"/*.jar 2>/dev/null)" ]; then
    say "fetching $name jars with Maven"
    rm -rf "$CACHE/jars/$name"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$CACHE/jars/$name" \
      >"$CACHE/mvn-$name.log" 2>&1 \
      || die "Maven could not fetch the $name jars (download refused or offline); see $CACHE/mvn-$name.log"
    echo "$h" > "$CACHE/stamps/jars-$name"
  fi
done

# 3. The Flink job's value format (flink_job/format, the project's one Java module): compiled, unit-tested and
#    packaged by Maven (dependencies pinned in its pom.xml), the jar copied into .cache/jars/format. Rebuilt only
#    when its sources change; ./test.sh runs its unit tests again offline. Its second jar (classifier "metrics", the
#    loopback Prometheus reporter) goes into the Flink plugins root .cache/jars/plugins (FLINK_PLUGINS_DIR of the
#    local mini-cluster and standalone cluster), in one plugin folder with the wheel's flink-metrics-prometheus,
#    whose classes it extends and so whose class loader it needs.
fmt_hash=$(find flink_job/format/pom.xml flink_job/format/src -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
prom_jar=$(ls "$VENV"/lib/python3*/site-packages/pyflink/plugins/metrics-prometheus/flink-metrics-prometheus-*.jar \
  2>/dev/null | head -1)
[ -n "$prom_jar" ] || die "the apache-flink wheel in .venv has no plugins/metrics-prometheus jar (reinstall: rm -rf .venv)"
PLUGIN="$CACHE/jars/plugins/metrics-prometheus"
if ! stamp_ok format "$fmt_hash" || [ -z "$(ls "$CACHE/jars/format"/*.jar 2>/dev/null)" ] \
   || [ -z "$(ls "$PLUGIN"/user-action-format-*-metrics.jar 2>/dev/null)" ]; then
  say "building the job's value format (flink_job/format) with Maven"
  # The reporter compiles against flink-metrics-prometheus of the wheel's Flink, which the registry reachable here
  # does not serve (2.0.0 yes, 2.0.2 no): when Maven cannot fetch it, the wheel's own copy (the very jar the plugin
  # folder runs) is installed into the local Maven repository under its coordinates.
  prom_version=$(basename "$prom_jar" .jar); prom_version=${prom_version#flink-metrics-prometheus-}
  mvn -q -B dependency:get -Dartifact="org.apache.flink:flink-metrics-prometheus:$prom_version" -Dtransitive=false \
    >"$CACHE/mvn-format.log" 2>&1 \
    || mvn -q -B org.apache.maven.plugins:maven-install-plugin:3.1.2:install-file -Dfile="$prom_jar" \
         -DgroupId=org.apache.flink -DartifactId=flink-metrics-prometheus -Dversion="$prom_version" -Dpackaging=jar \
         >>"$CACHE/mvn-format.log" 2>&1 \
    || die "Maven could neither fetch nor install flink-metrics-prometheus $prom_version; see $CACHE/mvn-format.log"
  mvn -B -f flink_job/format/pom.xml package >>"$CACHE/mvn-format.log" 2>&1 \
    || { grep -E "ERROR|FAIL" "$CACHE/mvn-format.log" | head -5 >&2;
         die "Maven could not build flink_job/format (compile error, failing unit test, or offline); see $CACHE/mvn-format.log"; }
  rm -rf "$CACHE/jars/format" "$PLUGIN" && mkdir -p "$CACHE/jars/format" "$PLUGIN"
  for jar in flink_job/format/target/user-action-format-*.jar; do
    case "$jar" in
      *-metrics.jar) cp "$jar" "$PLUGIN/" ;;  # never on the job's class path (see pom.xml)
      *) cp "$jar" "$CACHE/jars/format/" ;;
    esac
  done
  echo "$fmt_hash" > "$CACHE/stamps/format"
fi
cmp -s "$prom_jar" "$PLUGIN/$(basename "$prom_jar")" || cp "$prom_jar" "$PLUGIN/"

# 4. The local S3 server, versitygw, built from the Go module proxy at a pinned version. Pure Go (CGO_ENABLED=0), so
#    the build is the same with or without a C compiler on the machine (the README asks for Go only), and -trimpath,
#    so it does not depend on where the module cache is (nor does the build cache's reuse).
VERSITYGW_VERSION=v1.8.0
VERSITYGW_STAMP="$VERSITYGW_VERSION cgo=0 trimpath"
if ! stamp_ok versitygw "$VERSITYGW_STAMP" || [ ! -x "$CACHE/bin/versitygw" ]; then
  say "building the S3 server (versitygw $VERSITYGW_VERSION) with go install"
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install -trimpath "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >"$CACHE/go-versitygw.log" 2>&1 \
    || die "go install of versitygw failed (module download refused or offline); see $CACHE/go-versitygw.log"
  echo "$VERSITYGW_STAMP" > "$CACHE/stamps/versitygw"
fi

# 5. Extra set-up steps of the parts, scripts/setup.d/*.sh; those named test-*.sh (the browser for the dashboard
#    test) only with --test.
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  case "$(basename "$step")" in test-*) [ "$MODE" = test ] || continue ;; esac
  ROOT="$ROOT" VENV="$VENV" CACHE="$CACHE" bash "$step" || die "set-up step $step failed"
done
if [ "$MODE" = test ]; then
  say "ready for the tests (.venv with .[$extras], jars in .cache/jars, the job's format jar in .cache/jars/format, Flink plugins in .cache/jars/plugins, S3 server in .cache/bin)"
else
  say "ready (.venv with .[$extras], jars in .cache/jars, the job's format jar in .cache/jars/format, Flink plugins in .cache/jars/plugins, S3 server in .cache/bin)"
fi
