#!/usr/bin/env bash
# run.sh -- cold start from the disk snapshot with ZooKeeper down (issue 14: <= 100 ms at 10,000 services), in
# seconds instead of bench/scale's two-minute populate: mksnap.c writes the policy and the snapshot with the
# agent's own snapshot writer, coldstart.py (its header has the method) starts the agent ROUNDS times against a
# closed port and prints the time to the first answer, the agent's CPU and the phases from its "ready in" line;
# then readsnap.c: the CPU of a process that only reads the snapshot, the floor under serving it before the policy.
# Env: SERVICES (10000), ENDPOINTS (10), META (0: meta entries per endpoint), JOURNAL=1 (a journal beside the
# snapshot, as large as the agent lets it grow: mksnap.c), ROUNDS (7), SCOUT (default build/scout), CC, KEEP=1 keeps the temp dir.
# Every loop iteration over 2 ms of CPU, for any two binaries alike: build each with itertrace.sh SRC OUT (a bench-only
# patch of agent/loop.c) and run with SCOUT=OUT SCOUT_ITER_TRACE=1.
# Not a test: it prints, and fails only when the snapshot is never served.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCOUT=${SCOUT:-$ROOT/build/scout}
[ -x "$SCOUT" ] || { echo "coldstart: $SCOUT not found (make, or set SCOUT=path)" >&2; exit 2; }
OBJ=$ROOT/build/obj
for o in publish/snapshot_write.o publish/snapshot_encode.o publish/snapshot_read.o publish/snapshot_rd.o publish/snapshot_journal.o publish/snapshot_merge.o publish/file_replace.o endpoint.o log.o heap.o; do
    [ -f "$OBJ/$o" ] || { echo "coldstart: $OBJ/$o not built (make)" >&2; exit 2; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-coldstart.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "coldstart: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
${CC:-cc} -O2 -Wall -Wextra -iquote "$ROOT/agent" -o "$T/mksnap" "$HERE/mksnap.c" \
    "$OBJ/publish/snapshot_write.o" "$OBJ/publish/snapshot_encode.o" "$OBJ/publish/snapshot_journal.o" "$OBJ/publish/snapshot_rd.o" \
    "$OBJ/publish/file_replace.o" "$OBJ/endpoint.o" "$OBJ/log.o" "$OBJ/heap.o" -ljansson
# the floor under an early answer: a process that only reads the snapshot
${CC:-cc} -O2 -Wall -Wextra -iquote "$ROOT/agent" -o "$T/readsnap" "$HERE/readsnap.c" \
    "$OBJ/publish/snapshot_read.o" "$OBJ/publish/snapshot_rd.o" "$OBJ/publish/snapshot_merge.o" "$OBJ/publish/snapshot_journal.o" \
    "$OBJ/publish/snapshot_write.o" "$OBJ/publish/snapshot_encode.o" "$OBJ/publish/file_replace.o" "$OBJ/endpoint.o" "$OBJ/log.o" "$OBJ/heap.o" -ljansson
# a port nothing listens on: ZooKeeper is down for the whole run
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$T/mksnap" "$T" "${SERVICES:-10000}" "${ENDPOINTS:-10}" "127.0.0.1:$PORT"
SERVICES=${SERVICES:-10000} ENDPOINTS=${ENDPOINTS:-10} SCOUT_LUA_DIR=${SCOUT_LUA_DIR:-$ROOT/lua} \
    READSNAP=$T/readsnap /usr/bin/python3 "$HERE/coldstart.py" "$SCOUT" "$T" "127.0.0.1:$PORT"
