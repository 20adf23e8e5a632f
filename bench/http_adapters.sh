#!/usr/bin/env bash
# Requests/s of a trivial hot 302 route through the HTTP adapters, side by side, same wrk load:
#   raw-rsgi     a bare RSGI callable answering the same 302 (granian's ceiling, no cookiematch)
#   rsgi         cookiematch App via RSGIAdapter (production default)
#   asgi         cookiematch App via ASGIAdapter on granian's ASGI interface
# Usage: bench/http_adapters.sh [duration=10s] [connections=64] [rounds=1]   (1 granian worker)
# Rounds interleave the three servers, so background load hits them alike; compare ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DURATION=${1:-10s}
CONNS=${2:-64}
ROUNDS=${3:-1}
PORT=${PORT:-18999}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/bench_app.py" <<'PYEOF'
from cookiematch.web.http import Request, Response
from cookiematch.web.router import App

LOCATION = "https://buyer.example/cm?google_gid=CAESEHk3zSg&google_cver=1"
RAW = [("location", LOCATION), ("cache-control", "no-store")]


async def hot(request: Request) -> Response:
    return Response.redirect(LOCATION)


def make_app() -> App:
    app = App()
    app.route("/pixel", hot)
    return app


async def raw(scope, proto):
    proto.response_empty(302, RAW)
PYEOF

run() {  # name, command...
    local name=$1; shift
    PYTHONPATH="$WORK:src" "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/pixel" && break
        sleep 0.1
    done
    curl -s -o /dev/null -w "$name: %{http_code} %{redirect_url}\n" "http://127.0.0.1:$PORT/pixel"
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$PORT/pixel" >"$WORK/$name.wrk"
    kill -TERM "$pid"; wait "$pid" || true
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
    p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.wrk")
    p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.wrk")
    printf '%-10s %12s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99" >>"$WORK/summary"
}

SERVER=(-m cookiematch.web.server --factory bench_app:make_app --port "$PORT")
for _ in $(seq "$ROUNDS"); do
    run raw-rsgi "$PY" -m granian --interface rsgi --host 127.0.0.1 --port "$PORT" bench_app:raw
    run rsgi "$PY" "${SERVER[@]}" --interface rsgi
    run asgi "$PY" "${SERVER[@]}" --interface asgi
done
echo "wrk -t2 -c$CONNS -d$DURATION, 1 granian worker, $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$WORK/summary"
