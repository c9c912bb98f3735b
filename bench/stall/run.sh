#!/usr/bin/env bash
# run.sh — loop-stall benchmark (issue 10): how long the agent's one loop is held, and how fast /v1/health answers,
# under each attack a local client can mount — an explain flood, slowloris, an idle-connection flood — next to an
# idle baseline, in one run against a real ZooKeeper. stall.py (its header has the method) prints the table; nothing
# here asserts a number.
# Env: CHILDREN (5000), FLOOD (300), SLOW (500), IDLE (2000), PHASE_S (5), SCOUT (default build/scout),
#      SCOUT_LUA_DIR (default lua/ of this tree), ZK_HEAP (256m), KEEP=1 keeps the temp dir (logs).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-stall.XXXXXX")
DRIVER=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
        kill -TERM "$DRIVER" 2>/dev/null || true
        wait "$DRIVER" 2>/dev/null || true
    fi
    # the agent, if the driver was killed before it could stop it: only our pid, and only
    # while its command line still names our temp dir (pid reuse)
    if [ -f "$T/pid" ]; then
        pid=$(cat "$T/pid")
        if { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$T"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    "$ROOT/scripts/zk.sh" stop "$T/zk" || true
    if [ "${KEEP:-0}" = 1 ]; then echo "stall: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ZK=$(ZK_HEAP=${ZK_HEAP:-256m} "$ROOT/scripts/zk.sh" start "$T/zk")
echo "stall: ZooKeeper at $ZK (standalone, fsync off), temp $T" >&2
export SCOUT_LUA_DIR=${SCOUT_LUA_DIR:-$ROOT/lua}
/usr/bin/python3 "$HERE/stall.py" "$ZK" "$T" "$ROOT" &
DRIVER=$!
wait "$DRIVER"
