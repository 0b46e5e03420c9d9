#!/usr/bin/env bash
# The local demo. Does its own set-up (idempotent; only what the demo runs: no test tooling, no root, no npm),
# then starts the local services.
# Later parts extend it into the whole pipeline (see README).
set -euo pipefail
cd "$(dirname "$0")"
demo() { exec .venv/bin/python -c 'import sys; from pipeline.cli import run_sh; sys.exit(run_sh())' "$@"; }
# --help prints the usage alone, without set-up's lines, once set-up has made .venv
case " $* " in
  *" -h "* | *" --help "*) [ ! -x .venv/bin/python ] || demo "$@" ;;
esac
SETUP_QUIET=${SETUP_QUIET:-} scripts/setup.sh
demo "$@"
