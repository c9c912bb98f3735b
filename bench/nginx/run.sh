#!/usr/bin/env bash
# run.sh — nginx benchmark: a static upstream vs balancer_by_lua + resty.scout (swrr, chash), and a churning
# endpoint set served by scout vs render-and-`nginx -s reload`. bench.py's header has the method.
# Env: SECONDS_PER_RUN (2, each throughput run), ROUNDS (9), CONNS (32), THREADS (1), BACKENDS (4),
#      WORKERS (1, front nginx), DURATION (60, each churn run), DRAIN (0.5 s between deregistering and
#      stopping a backend), PARTS ("throughput churn"), WRK, SCOUT_BIN (default build/scout),
#      VERBOSE=1 prints wrk's own output, KEEP=1 keeps the agent's temp dir (its log).
# Needs nginx, libnginx-mod-http-lua, lua-resty-core, wrk, /usr/bin/python3 with kazoo, and `make` done.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
command -v "${WRK:-wrk}" >/dev/null || { echo "bench/nginx: wrk not found (apt-get install wrk)" >&2; exit 2; }
[ -x "${SCOUT_BIN:-$ROOT/build/scout}" ] || { echo "bench/nginx: build/scout missing (run make)" >&2; exit 2; }
exec /usr/bin/python3 "$HERE/bench.py"
