#!/usr/bin/env bash
# ClickHouse part: the chart library for the dashboard (npm registry, vendored into the
# git-ignored .cache/vendor, served by the service itself: no CDN) and Chromium for the
# headless dashboard test (Debian package; Playwright drives it, `playwright install` is never run).
set -euo pipefail
: "${ROOT:?}" "${CACHE:?}"
CHARTJS_VERSION=4.5.1
STAMP="$CACHE/stamps/clickhouse"
WANT="chartjs-$CHARTJS_VERSION"
VENDOR="$CACHE/vendor/chart.js"

if [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] && [ -f "$VENDOR/chart.umd.min.js" ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi

if [ ! -f "$VENDOR/chart.umd.min.js" ]; then
  command -v npm >/dev/null || { echo "setup: npm is missing (apt-get install npm); it fetches chart.js" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "chart.js@$CHARTJS_VERSION" --silent >/dev/null && tar xzf "chart.js-$CHARTJS_VERSION.tgz")
  mkdir -p "$VENDOR"
  cp "$tmp/package/dist/chart.umd.min.js" "$tmp/package/LICENSE.md" "$VENDOR/"
  rm -rf "$tmp"
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium (Debian package) for the dashboard test"
  if ! apt-cache show chromium >/dev/null 2>&1; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >"$CACHE/apt-chromium.log" 2>&1 \
    || { echo "setup: apt-get install chromium failed; see $CACHE/apt-chromium.log" >&2; exit 1; }
fi
echo "$WANT" > "$STAMP"
