#!/usr/bin/env bash
# make bench: cookiematch's hot endpoints against nginx's static 302 (wrk, same load, same run)
# and against the bare-granian ceiling, each with a verdict against its targets; the in-process
# bid-time look-up micro-benchmark, a short memory soak, and a chart.
# docs/performance.md explains the method and the results.
#
# Environment (defaults in brackets): BENCH_DURATION seconds per wrk run [3], BENCH_ROUNDS [3],
# BENCH_CONNECTIONS [64], BENCH_STORES [sqlite,redis], BENCH_WORKERS [1,2],
# BENCH_ROLES [exchange,buyer,dmp], BENCH_SOAK seconds [30] (the report used 300),
# BENCH_OUT [var/bench]. Extra arguments go to bench/http_bench.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${BENCH_OUT:-var/bench}
for tool in nginx wrk redis-server; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
        echo "bench needs $tool: WITH_BENCH=1 bash scripts/install-system-deps.sh" >&2; exit 1; }
done
mkdir -p "$OUT"
echo "== in-process bid-time look-ups"
"$PY" bench/lookup_bench.py --seconds "${BENCH_LOOKUP_SECONDS:-3}" --json "$OUT/lookups.json"
echo
echo "== HTTP: cookiematch vs nginx"
"$PY" bench/http_bench.py \
    --duration "${BENCH_DURATION:-3}" --rounds "${BENCH_ROUNDS:-3}" \
    --connections "${BENCH_CONNECTIONS:-64}" --stores "${BENCH_STORES:-sqlite,redis}" \
    --workers "${BENCH_WORKERS:-1,2}" --roles "${BENCH_ROLES:-exchange,buyer,dmp}" \
    --soak "${BENCH_SOAK:-30}" --out "$OUT" "$@"
"$PY" bench/chart.py "$OUT/latest.json" -o "$OUT/latest.svg"
