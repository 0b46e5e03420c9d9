#!/usr/bin/env bash
# One-time (and idempotent) set-up: Python venv + pinned packages, JVM jars from Maven Central.
# A second run only compares stamps and returns in about a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
CACHE="$ROOT/.cache"
mkdir -p "$CACHE/stamps"

die() { echo "setup: $*" >&2; exit 1; }
say() { [ -n "${SETUP_QUIET:-}" ] || echo "setup: $*"; }
stamp_ok() { [ -f "$CACHE/stamps/$1" ] && [ "$(cat "$CACHE/stamps/$1")" = "$2" ]; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

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
command -v mvn >/dev/null || die "Maven is missing: install it (apt-get install maven); it fetches the pinned jars"
command -v go >/dev/null || die "Go is missing: install it (apt-get install golang); it builds the local S3 server"

# 1. Python environment with the exact pins from pyproject.toml.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment in .venv"
  "$PY" -m venv "$VENV"
fi
py_hash=$(hash_of pyproject.toml)
if ! stamp_ok python "$py_hash"; then
  say "installing Python packages (first run takes a few minutes)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' >"$CACHE/pip.log" 2>&1 \
    || { tail -5 "$CACHE/pip.log" >&2; die "pip install failed; see $CACHE/pip.log (network access to the package index?)"; }
  echo "$py_hash" > "$CACHE/stamps/python"
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
#    when its sources change; ./test.sh runs its unit tests again offline.
fmt_hash=$(find flink_job/format/pom.xml flink_job/format/src -type f | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16)
if ! stamp_ok format "$fmt_hash" || [ -z "$(ls "$CACHE/jars/format"/*.jar 2>/dev/null)" ]; then
  say "building the job's value format (flink_job/format) with Maven"
  mvn -B -f flink_job/format/pom.xml package >"$CACHE/mvn-format.log" 2>&1 \
    || { grep -E "ERROR|FAIL" "$CACHE/mvn-format.log" | head -5 >&2;
         die "Maven could not build flink_job/format (compile error, failing unit test, or offline); see $CACHE/mvn-format.log"; }
  rm -rf "$CACHE/jars/format" && mkdir -p "$CACHE/jars/format"
  cp flink_job/format/target/user-action-format-*.jar "$CACHE/jars/format/"
  echo "$fmt_hash" > "$CACHE/stamps/format"
fi

# 4. The local S3 server, versitygw, built from the Go module proxy at a pinned version.
VERSITYGW_VERSION=v1.8.0
if ! stamp_ok versitygw "$VERSITYGW_VERSION" || [ ! -x "$CACHE/bin/versitygw" ]; then
  say "building the S3 server (versitygw $VERSITYGW_VERSION) with go install"
  GOBIN="$CACHE/bin" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" \
    >"$CACHE/go-versitygw.log" 2>&1 \
    || die "go install of versitygw failed (module download refused or offline); see $CACHE/go-versitygw.log"
  echo "$VERSITYGW_VERSION" > "$CACHE/stamps/versitygw"
fi

# 5. Extra set-up steps of the parts (browser for dashboard tests, vendored JS): scripts/setup.d/*.sh
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  ROOT="$ROOT" VENV="$VENV" CACHE="$CACHE" bash "$step" || die "set-up step $step failed"
done
say "ready (.venv, jars in .cache/jars, the job's format jar in .cache/jars/format, S3 server in .cache/bin)"
