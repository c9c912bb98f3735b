#!/usr/bin/env bash
# run.sh — rolling-deploy read-storm benchmark: rpcx-style watchers vs scout (delay 0, delay 500).
#
# Why: issue 4 claims delayed, incremental pulls remove the M x N read storm of a rolling
# deploy; this counts the ZooKeeper reads each strategy costs on a real server and the time
# until every consumer holds the new set. Builds the rpcx-style watcher (rpcxwatch.c, reusing
# bench/propagation/zkpoll.h), starts ZooKeeper with scripts/zk.sh, runs storm.py (its header
# has the method), and on any exit stops every process it started (by pid) and ZooKeeper.
# Env: M (50), N (200), BATCH_PCT (25), PACE_MS (1000), WRITE_GAP_MS (0), ROUNDS (3),
#      DELAYS ("0 500"), SESSION_MS, CONVERGE_S, STAGGER_MS, STUCK_S, STRATEGIES (see storm.py),
#      CC, SCOUT (default build/scout), SCOUT_LUA_DIR
#      (default lua/ of this tree), ZK_HEAP (256m here), KEEP=1 keeps the temp dir (logs).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-storm.XXXXXX")
DRIVER=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null || true
        wait "$DRIVER" 2>/dev/null || true
    fi
    # consumers the driver started and could not stop (it was killed): only our pids,
    # and only while their command line still names our temp dir (pid reuse)
    if [ -f "$T/pids" ]; then
        while read -r pid; do
            if { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$T"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$T/pids"
    fi
    "$ROOT/scripts/zk.sh" stop "$T/zk" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "storm: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

${CC:-cc} -O2 -Wall -Wextra -o "$T/rpcxwatch" "$HERE/rpcxwatch.c" -I"$ROOT/bench/propagation" \
    -I/usr/include/zookeeper -lzookeeper_st
ZK=$(ZK_HEAP=${ZK_HEAP:-256m} "$ROOT/scripts/zk.sh" start "$T/zk")
echo "storm: ZooKeeper at $ZK (standalone, fsync off), temp $T" >&2
export SCOUT_LUA_DIR=${SCOUT_LUA_DIR:-$ROOT/lua}
/usr/bin/python3 "$HERE/storm.py" "$ZK" "$T" "$ROOT" "$T" &
DRIVER=$!
wait "$DRIVER"
