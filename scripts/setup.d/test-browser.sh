#!/usr/bin/env bash
# Test-only step (scripts/setup.sh --test, i.e. ./test.sh): Debian's Chromium for the headless dashboard test
# (tests/test_dashboard.py; Playwright drives /usr/bin/chromium, `playwright install` is never run). Nothing else
# needs a browser. Installed with apt-get only when running as root; as any other user a missing Chromium is one line
# of advice, never a failed set-up (the dashboard test then fails, naming the same command).
set -euo pipefail
: "${CACHE:?}"
CHROMIUM=/usr/bin/chromium

[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup: the dashboard browser test needs Chromium: run \`sudo apt-get install chromium\` once; the other tests do not need it" >&2
  exit 0
fi
echo "setup: installing chromium (Debian package) for the dashboard test"
if ! apt-cache show chromium >/dev/null 2>&1; then
  apt-get update -qq >"$CACHE/apt-chromium.log" 2>&1 \
    || { echo "setup: apt-get update failed; see $CACHE/apt-chromium.log" >&2; exit 1; }
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >>"$CACHE/apt-chromium.log" 2>&1 \
  || { echo "setup: apt-get install chromium failed; see $CACHE/apt-chromium.log" >&2; exit 1; }
