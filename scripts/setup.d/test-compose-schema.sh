#!/usr/bin/env bash
# Test tooling: the compose specification's JSON schema, as Docker Compose itself validates with it (it ships in the
# compose-go Go module, fetched through the Go module proxy at a pinned version), for tests/test_compose.py.
set -euo pipefail
: "${ROOT:?}" "${CACHE:?}"
COMPOSE_GO=github.com/compose-spec/compose-go/v2@v2.16.2
TARGET="$CACHE/compose-spec/compose-spec.json"
STAMP="$CACHE/stamps/compose-spec"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$COMPOSE_GO" ] && [ -f "$TARGET" ]; then
  exit 0
fi
dir=$(GOFLAGS=-mod=mod go mod download -json "$COMPOSE_GO" 2>"$CACHE/go-compose-spec.log" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
  || { echo "setup: go mod download $COMPOSE_GO failed; see $CACHE/go-compose-spec.log" >&2; exit 1; }
[ -f "$dir/schema/compose-spec.json" ] || { echo "setup: no schema/compose-spec.json in $COMPOSE_GO" >&2; exit 1; }
mkdir -p "$(dirname "$TARGET")"
install -m 644 "$dir/schema/compose-spec.json" "$TARGET"
echo "$COMPOSE_GO" > "$STAMP"
