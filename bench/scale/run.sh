#!/usr/bin/env bash
# run.sh — scale benchmark: one agent, 10,000 services x 10 endpoints (100k data watches).
#
# Why: issue 4's bench/scale targets (sync <= 5 s, RSS <= 150 MB, publish <= 20 ms, cold start
# <= 100 ms, sessions reconnect cleanly after a ZooKeeper restart) measured on a real server,
# next to a bare libzookeeper_st client doing the same reads (rawsync.c). Builds rawsync,
# starts ZooKeeper with scripts/zk.sh, runs scale.py (its header has the method), and on any
# exit stops every process it started (by pid) and ZooKeeper. About 2 minutes.
# Env: SERVICES (10000), ENDPOINTS (10), SESSIONS (agent default), SESSION_TIMEOUT_MS (10000),
#      CHANGES (100), MEM_EMPTY (1), MALLOC_STATS (1: malloc_stats() in the agent by gdb, after the memory rows),
#      STOP_AFTER=reconnect (phases 0-4 only: at 1M endpoints each later restart is a full sync),
#      STOP_AFTER=memory (phases 0-1: sync and the memory rows, about 1 minute),
#      LISTS=1 (one more memory row: every service's list asked once, what the kept JSON costs),
#      PERSIST_SAMPLES (5), COLD_ROUNDS (3), RECOVER_S (5),
#      PERF=1 (perf record the agent during the sync and the restart), CC,
#      SCOUT (default build/scout), SCOUT_LUA_DIR (default lua/ of this tree),
#      ZK_HEAP (512m here), KEEP=1 keeps the temp dir (agent logs, policy, perf-*.data/txt),
#      ZK_DATA=DIR: ZooKeeper's dataDir, kept after the run (e.g. /work/zk-data-100000x10, outside
#      the repo); a re-run on the same SERVICES x ENDPOINTS finds the registry there and skips the
#      populate (minutes at a million endpoints) and the services-only memory probe.
# PERCHANGE=1 runs perchange.py instead (issue 14 item 1: per-change CPU and loop time at 100, 1,000
#      and 10,000 services side by side, the loop's part of a snapshot write, the API stall during
#      writes, cold start; its header has the method; env SIZES, CHANGES, SNAPSHOT_SAMPLES).
# WRITESTALL=1 runs writestall.py instead (the API stall during snapshot writes and GET /v1/services, and
#      SIGTERM -> exit, for SCOUT_BASE and SCOUT alternating in one run; its header has the method).
# EXITPAIR=1 runs exitpair.py instead (SIGTERM -> exit of SCOUT_BASE and SCOUT synced side by side on a registry
#      a scale.py run left in ZK_DATA; its header has the method).
# SYNC=1 runs sync.py instead (issue 14: the initial sync, agent vs raw client with the same sessions,
#      wall and CPU, ROUNDS rounds; SCOUT_BASE=old/scout adds a before/after pair to the same run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-scale.XXXXXX")
DRIVER=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null || true
        wait "$DRIVER" 2>/dev/null || true
    fi
    # agents (and perf) the driver started and could not stop: only our pids, and only
    # while their command line still names our temp dir (pid reuse)
    if [ -f "$T/pids" ]; then
        while read -r pid; do
            if { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$T"; then
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done < "$T/pids"
    fi
    "$ROOT/scripts/zk.sh" stop "$T/zk" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "scale: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

${CC:-cc} -O2 -Wall -Wextra -o "$T/rawsync" "$HERE/rawsync.c" -I"$ROOT/bench/propagation" \
    -I/usr/include/zookeeper -lzookeeper_st -ljansson
SCOUT=${SCOUT:-$ROOT/build/scout}
[ -x "$SCOUT" ] || { echo "scale: $SCOUT not found (make, or set SCOUT=path)" >&2; exit 2; }
export SCOUT SCOUT_LUA_DIR=${SCOUT_LUA_DIR:-$ROOT/lua}
# 100k znodes and 100k watches: more heap than the 128m default
export ZK_HEAP=${ZK_HEAP:-512m}
if [ -n "${ZK_DATA:-}" ]; then
    # zk.sh writes dataDir=DIR/node1/data: make that the kept directory
    mkdir -p "$ZK_DATA" "$T/zk/node1"
    ln -s "$(cd "$ZK_DATA" && pwd)" "$T/zk/node1/data"
fi
ZK=$("$ROOT/scripts/zk.sh" start "$T/zk")
echo "scale: ZooKeeper at $ZK (standalone, fsync off), temp $T" >&2
if [ "${WRITESTALL:-0}" = 1 ]; then
    /usr/bin/python3 "$HERE/writestall.py" "$ZK" "$T/zk" "$T" "$ROOT" &
elif [ "${PERCHANGE:-0}" = 1 ]; then
    /usr/bin/python3 "$HERE/perchange.py" "$ZK" "$T/zk" "$T" "$ROOT" &
elif [ "${EXITPAIR:-0}" = 1 ]; then
    /usr/bin/python3 "$HERE/exitpair.py" "$ZK" "$T/zk" "$T" &
elif [ "${SYNC:-0}" = 1 ]; then
    /usr/bin/python3 "$HERE/sync.py" "$ZK" "$T/zk" "$T" "$ROOT" "$T/rawsync" &
else
    /usr/bin/python3 "$HERE/scale.py" "$ZK" "$T/zk" "$T" "$ROOT" "$T/rawsync" &
fi
DRIVER=$!
wait "$DRIVER"
