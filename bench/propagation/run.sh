#!/usr/bin/env bash
# run.sh — propagation benchmark: raw ZooKeeper C client vs kazoo vs scout.
#
# Why: the numbers the core agent issue asks for (write-to-publication latency,
# CPU, peak RSS, ZooKeeper requests per change) measured the same way for all
# three against one throwaway server. Builds the C helpers, starts ZooKeeper
# with scripts/zk.sh, runs bench.py (see its header for the method), cleans up.
# Env: CHANGES (2000 per observer), CHILDREN (50), ROUNDS (5), WARMUP (1000),
#      TIMEOUT_MS (5000 per change), CC, KEEP=1 keeps the temp dir (logs),
#      SCOUT (default build/scout), SCOUT_BASE (a second agent binary, e.g. the one
#      before a change, measured in the same run: before/after under one load),
#      PARKED=N (one more row: the blocking-query consumer with N more parked
#      clients, parkers.py, beside it: the agent's cost per waiter),
#      LAT_DIR (append raw latencies, ns, per observer), GAP_MS (a pause after
#      each change: a quiet registry's pace), SHM=1 (scout also writes a
#      shared-memory snapshot), CONSUMER=py (the blocking-query consumer in
#      Python, blockwatch.py, instead of the C one, blockwatch.c; CONSUMER=both
#      adds a row for the Python one).
# scout is skipped with a message when build/scout does not exist.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-prop.XXXXXX")
cleanup() {
    "$ROOT/scripts/zk.sh" stop "$T/zk" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in rawwatch writer; do
    ${CC:-cc} -O2 -Wall -Wextra -o "$T/$p" "$HERE/$p.c" -I/usr/include/zookeeper -lzookeeper_st
done
${CC:-cc} -O2 -Wall -Wextra -o "$T/blockwatch" "$HERE/blockwatch.c" -lcurl -ljansson
ZK=$("$ROOT/scripts/zk.sh" start "$T/zk")
echo "bench: ZooKeeper at $ZK (standalone, fsync off), temp $T" >&2
/usr/bin/python3 "$HERE/bench.py" "$ZK" "$T" "$ROOT" "$T"
