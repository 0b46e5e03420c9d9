#!/usr/bin/env bash
# For maintainers: refresh the Chart.js build that the dashboard serves. It lives in the repository as package data
# of `clickhouse` (clickhouse/static/vendor/chart.js/, served by clickhouse/api.py; no CDN), so neither ./run.sh nor
# ./test.sh needs npm. This script (npm required) fetches the npm tarball with `npm pack`, copies its minified UMD
# build and its licence there, and writes VERSION beside them: the version, the tarball's sha256 and the sha256 of
# each copied file (check with: cd clickhouse/static/vendor/chart.js && grep -v '^#' VERSION | sha256sum -c).
#
#   scripts/vendor_chartjs.sh            # the pinned version below (4.5.1)
#   scripts/vendor_chartjs.sh 4.5.2      # another one: update CHARTJS_VERSION below too, then commit the files
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHARTJS_VERSION=4.5.1
version="${1:-$CHARTJS_VERSION}"
DEST=clickhouse/static/vendor/chart.js

die() { echo "vendor_chartjs: $*" >&2; exit 1; }
command -v npm >/dev/null || die "npm is missing (apt-get install npm); it fetches the chart.js tarball"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "chart.js@$version" --silent >/dev/null) || die "npm pack chart.js@$version failed"
tgz="$tmp/chart.js-$version.tgz"
tar xzf "$tgz" -C "$tmp"
licence=("$tmp"/package/LICENSE*)
[ "${#licence[@]}" -eq 1 ] && [ -f "${licence[0]}" ] || die "expected exactly one LICENSE file in the tarball"
[ -f "$tmp/package/dist/chart.umd.min.js" ] || die "the tarball has no dist/chart.umd.min.js"

mkdir -p "$DEST"
rm -f "$DEST"/*
cp "$tmp/package/dist/chart.umd.min.js" "${licence[0]}" "$DEST/"
{
  echo "# chart.js $version: npm pack chart.js@$version, tarball sha256 $(sha256sum "$tgz" | cut -d' ' -f1)"
  echo "# written by scripts/vendor_chartjs.sh; the sha256 of each file below (sha256sum -c format)"
  (cd "$DEST" && sha256sum chart.umd.min.js "$(basename "${licence[0]}")")
} > "$DEST/VERSION.tmp"
mv "$DEST/VERSION.tmp" "$DEST/VERSION"
echo "vendor_chartjs: chart.js $version in $DEST"
