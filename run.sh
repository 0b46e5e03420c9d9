#!/usr/bin/env bash
# The local demo. Does its own set-up (idempotent; only what the demo runs: no test tooling, no root, no npm),
# then starts the local services.
# Later parts extend it into the whole pipeline (see README).
set -euo pipefail
cd "$(dirname "$0")"
SETUP_QUIET=${SETUP_QUIET:-} scripts/setup.sh
exec .venv/bin/python -m pipeline demo "$@"
