#!/usr/bin/env bash
# Refresh the console's vendored chart library (uPlot) from npm and record its SHA-256:
#   bash scripts/vendor-uplot.sh [version]
# writes src/cookiematch/web/console/static/{uplot.iife.min.js,uplot.min.css,uplot.LICENSE}
# and static/VENDORED (version and digests, checked by tests/web/console/test_static.py).
set -euo pipefail
VERSION="${1:-1.6.32}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/src/cookiematch/web/console/static"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack "uplot@$VERSION" --silent >/dev/null && tar xzf "uplot-$VERSION.tgz")
cp "$WORK/package/dist/uPlot.iife.min.js" "$DEST/uplot.iife.min.js"
cp "$WORK/package/dist/uPlot.min.css" "$DEST/uplot.min.css"
cp "$WORK/package/LICENSE" "$DEST/uplot.LICENSE"
{
  echo "uplot $VERSION"
  (cd "$DEST" && sha256sum uplot.iife.min.js uplot.min.css)
} > "$DEST/VENDORED"
cat "$DEST/VENDORED"
