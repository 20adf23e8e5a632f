#!/usr/bin/env bash
# Installs the system packages cookiematch's tests and benchmarks use, when they are missing:
# redis-server (store tests), chromium (cross-site cookie flows in a real browser), node and
# npm (the IAB's reference encoders the consent decoders are tested against), promtool
# (from the prometheus package: deploy/'s rules and every role's /metrics are checked with it),
# a Java runtime (Spark, the DMP's second analytics engine, runs on the JVM: Java 17 or later),
# nginx with its Lua module (the edge: docs/edge.md; the module pulls in lua-resty-core and
# LuaJIT), and wrk and HAProxy (benchmarks, WITH_BENCH=1: HAProxy is run by
# bench/edge_hop_bench.py as a child process with its own configuration; its system service is
# not used). Debian/Ubuntu only; elsewhere, install them by hand.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing+=(libnginx-mod-http-lua)
if [ -z "${JAVA_HOME:-}" ] && ! command -v java >/dev/null 2>&1; then
  missing+=(openjdk-17-jre-headless)
fi
if [ "${WITH_BENCH:-0}" = "1" ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (no apt-get here: install them by hand)" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing system packages: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
