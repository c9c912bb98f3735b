#!/usr/bin/env bash
# run.sh -- what the JIT buys scout's own Lua (issue 14, item 4): bench.lua times the codecs, routing, selectors
# and the policy loader with the JIT off and on in one process; then `scout check` of a 10,000-service policy
# (the agent's whole load path, C included) runs with SCOUT_JIT=off and on, CPU seconds, best of RUNS.
# Knobs: SERVICES (10000), RUNS (5), SECONDS per bench.lua cell (0.5). Not a test: no thresholds.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVICES=${SERVICES:-10000} luajit bench/jit/bench.lua "${SECONDS_PER_CELL:-0.5}"
scout=${SCOUT_BIN:-build/scout}
[ -x "$scout" ] || { echo "bench/jit: $scout not built (make), skipping scout check"; exit 0; }
tmp=$(mktemp -d /tmp/scout-bench-jit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
{
  echo 'zookeeper { servers = "127.0.0.1:2181" }'
  for ((i = 1; i <= ${SERVICES:-10000}; i++)); do
    printf 'service "svc-%05d" { path = "/bench/svc-%05d", codec = "plain" }\n' "$i" "$i"
  done
} > "$tmp/policy.lua"
best() {   # best CPU time (user+sys, ms) of RUNS runs of `scout check` with SCOUT_JIT=$1
  local b=999999 t
  for ((r = 0; r < ${RUNS:-5}; r++)); do
    t=$( { SCOUT_JIT=$1 /usr/bin/time -f '%U %S' "$scout" check "$tmp/policy.lua" >/dev/null; } 2>&1 | tail -1 |
         awk '{printf "%d", ($1 + $2) * 1000}')
    [ "$t" -lt "$b" ] && b=$t
  done
  echo "$b"
}
off=$(best off); on=$(best on)
printf '%-44s %12s %12s %9s\n' "scout check, ${SERVICES:-10000} services (CPU, best)" "JIT off ms" "JIT on ms" "off/on"
awk -v a="$off" -v b="$on" 'BEGIN { printf "%-44s %12d %12d %8.2fx\n", "  process: start, load, validate, exit", a, b, a / (b > 0 ? b : 1) }'
