#!/usr/bin/env bash
# run.sh -- a full read of a 10,000-service shared-memory snapshot (10 endpoints, 2 meta each: ~12 MB), the
# library's copy(): copy, checksum(s), validate.  Writes the snapshot twice with the agent's own writer
# (build/tests/shm_writer_tool): format version 1 and version 2, the same body.  Reads the v1 file with
# SCOUT_BASE_LIB (default /tmp/old-main/build/libscout.so, if present: the library before version 2) and both
# files with this tree's build/libscout.so, interleaved, and prints each one's CPU per read and its ratio to the
# base.  Env: SERVICES (10000), ROUNDS (50 reads per run), RUNS (3 runs of each, interleaved).
# Needs `make all tests-c`.  Never fails on a number.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T=$(mktemp -d /dev/shm/scout-bench-shmread.XXXXXX)
trap 'rm -rf "$T"' EXIT
SERVICES=${SERVICES:-10000}
ROUNDS=${ROUNDS:-50}
RUNS=${RUNS:-3}
BASE=${SCOUT_BASE_LIB:-/tmp/old-main/build/libscout.so}
NEW=$ROOT/build/libscout.so
TOOL=$ROOT/build/tests/shm_writer_tool

${CC:-cc} -O2 -Wall -Wextra -o "$T/shmread" "$HERE/shmread.c" -ldl
printf 'bulk %d 10 t1\npublish\n' "$SERVICES" | "$TOOL" "$T/v1" --format 1 >/dev/null
printf 'bulk %d 10 t1\npublish\n' "$SERVICES" | "$TOOL" "$T/v2" >/dev/null

declare -A best
row() {     # label lib file
    local out b
    out=$("$T/shmread" "$2" "$3" "$ROUNDS")
    b=$(sed -n 's/.*best \([0-9]*\) us.*/\1/p' <<<"$out")
    echo "$1: $out"
    if [ -z "${best[$1]:-}" ] || [ "$b" -lt "${best[$1]}" ]; then best[$1]=$b; fi
}
for _ in $(seq "$RUNS"); do
    [ -f "$BASE" ] && row "base lib, v1 file" "$BASE" "$T/v1"
    row "new lib, v1 file" "$NEW" "$T/v1"
    row "new lib, v2 file" "$NEW" "$T/v2"
done
ref=${best["base lib, v1 file"]:-${best["new lib, v1 file"]}}
echo
if [ -f "$BASE" ]; then echo "best CPU per full read (ratio to $BASE on the v1 file):"
else echo "best CPU per full read (ratio to the new lib on the v1 file; no $BASE):"; fi
for k in "base lib, v1 file" "new lib, v1 file" "new lib, v2 file"; do
    [ -n "${best[$k]:-}" ] && awk -v k="$k" -v b="${best[$k]}" -v r="$ref" \
        'BEGIN { printf "  %-18s %6d us  %.2fx\n", k, b, b / r }'
done
