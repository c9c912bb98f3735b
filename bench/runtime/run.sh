#!/usr/bin/env bash
# run.sh -- instructions per update of scout.runtime (bench/runtime/update.lua): each workload under callgrind at
# two sizes, the difference divided by the extra updates, so the start and the load cancel out. Knobs: N1, N2
# (updates of a change workload, 2000 / 6000), SERVICES (sync: 500 / 1500 services of ENDPOINTS=10),
# LUA_DIR (another tree's lua/, e.g. /tmp/old-main/lua, measured the same way beside this one). Not a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=$PWD
tmp=$(mktemp -d /tmp/scout-bench-rt-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
ir() {   # ir DIR MODE N [SERVICES]: total instructions of one run
  (cd "$1/.." && SERVICES=${4:-1000} valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" \
     luajit "$here/bench/runtime/update.lua" "$2" "$3" >/dev/null 2>&1)
  awk '/^summary:/ { print $2 }' "$tmp/cg"
}
for tree in "$here/lua" ${LUA_DIR:+"$LUA_DIR"}; do
  for mode in change-hook change-bare; do
    a=$(ir "$tree" $mode "${N1:-2000}"); b=$(ir "$tree" $mode "${N2:-6000}")
    echo "$tree $mode: $(( (b - a) / (${N2:-6000} - ${N1:-2000}) )) instructions an update"
  done
  a=$(ir "$tree" sync 1 500); b=$(ir "$tree" sync 1 1500)
  echo "$tree sync (10 endpoints a service): $(( (b - a) / 1000 )) instructions a service"
done
