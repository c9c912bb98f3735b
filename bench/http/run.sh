#!/usr/bin/env bash
# run.sh — the API server on http-parser (build/scout) against the libmicrohttpd prototype (build/scout-mhd, from
# bench/http/http_mhd.c) in one run: the same raw requests to both, then wrk on /v1/health and /v1/services/NAME.
# bench.py's header has the method; docs/http-server.md has a run's table and what it decided.
# Env: ENDPOINTS (100), CONNS (50), DURATION (8), ROUNDS (3), KEEP=1 keeps the temp dir (logs).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
"$HERE/build.sh" >/dev/null
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-http.XXXXXX")
cleanup() {
    "$ROOT/scripts/zk.sh" stop "$T/zk" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "http: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
ZK=$("$ROOT/scripts/zk.sh" start "$T/zk")
echo "http: ZooKeeper at $ZK, temp $T" >&2
export SCOUT_LUA_DIR=${SCOUT_LUA_DIR:-$ROOT/lua}
/usr/bin/python3 "$HERE/bench.py" "$ZK" "$T" "$ROOT"
