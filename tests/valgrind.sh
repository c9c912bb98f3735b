#!/usr/bin/env bash
# valgrind.sh -- the C unit tests and the agent under valgrind's memcheck (`make valgrind`).
#
# Why: the ASan suites miss what only memcheck sees (uninitialised bytes that reach a branch or a syscall), and
# "valgrind-clean" is the project's quality bar. Every build/tests/test_* binary runs under memcheck with
# SCOUT_TEST_QUICK=1 (the scale tests shrink); then the agent itself (build/scout, SCOUT_WRAP in
# tests/integration/scoutharness.py) through a few integration tests: start, sync, a change, a reload, a hook
# error, shutdown. The agent frees everything at exit under valgrind (agent.c, RUNNING_ON_VALGRIND), so the leak
# check means something. Errors: invalid reads/writes, uninitialised values used, definite leaks; library
# reports that are not ours are suppressed narrowly in tests/valgrind.supp.
#
# Usage: tests/valgrind.sh [c] [integration]   (both by default)
# Prints one line per binary or test module (ok, or FAIL and the valgrind report), then
# `N passed, N failed[, N skipped]` summed over the tests run; a binary with valgrind errors counts one failure
# more. Exits non-zero on any failure. VG_KEEP=1 keeps the logs (their dir is printed); BUILD (build) is where the
# test binaries and the agent are, VG_IT_TESTS the integration modules.
set -uo pipefail
cd "$(dirname "$0")/.."

PARTS=${*:-"c integration"}
BUILD=${BUILD:-build}
SUPP=$PWD/tests/valgrind.supp
# VG_FLAGS adds options (--track-origins=yes says where an uninitialised value came from; twice as slow).
read -ra extra <<<"${VG_FLAGS:-}"
VG=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=30 --suppressions="$SUPP" "${extra[@]}")
# The integration tests picked (MODULE or MODULE:NAME_SUBSTRING): the agent starts, syncs, serves blocking queries
# and takes changes (discovery), reloads good and bad policies (reload, bad_reload), meets hooks that raise, loop or
# hit their budget or heap cap (hooks, hook_backoff), restarts from its disk snapshot (coldstart), renders a file
# and runs its command on a writer thread (render:once_per_real_change), registers and deregisters
# (register:sigterm); every agent is stopped with SIGTERM and frees everything. Not the scale tests (3,000
# endpoints), nor test_api's chash pick, whose 1 s selector budget the slowdown itself exceeds.
IT_TESTS=${VG_IT_TESTS:-"test_discovery.py test_reload.py test_bad_reload.py test_hooks.py test_hook_backoff.py
  test_coldstart.py test_render.py:once_per_real_change test_register.py:sigterm"}

logs=$(mktemp -d /tmp/scout-vg-XXXXXX)
if [ -z "${VG_KEEP:-}" ]; then trap 'rm -rf "$logs"' EXIT; else echo "logs in $logs"; fi
pass=0 fail=0 skip=0 t0=$SECONDS

# add_count FILE: adds FILE's last `N passed, N failed[, N skipped]` line; 1 when there is none.
add_count() {
  local line p f s
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  [ -n "$line" ] || return 1
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
  pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + ${s:-0}))
}

# vg_errors LOG...: the valgrind reports in the logs (every ==PID== block of a run with errors), or nothing.
vg_errors() {
  local l
  for l in "$@"; do
    grep -qE '^==[0-9]+== ERROR SUMMARY: [1-9]' "$l" || continue
    echo "--- $l"
    grep -E '^==[0-9]+==' "$l" | grep -vE '^==[0-9]+== (Memcheck|Copyright|Using Valgrind|Command|Parent PID|$)'
  done
}

part_c() {
  local t name out rc s
  for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    out=$logs/$name.out
    s=$SECONDS
    SCOUT_TEST_QUICK=1 nice -n 10 "${VG[@]}" --log-file="$logs/$name.vg" "$t" >"$out" 2>&1; rc=$?
    if ! add_count "$out"; then
      fail=$((fail + 1)); echo "FAIL c:$name ($((SECONDS - s))s): no 'N passed, N failed' line (exit $rc)"
      tail -n 20 "$out"; vg_errors "$logs/$name.vg"
    elif [ "$rc" -eq 99 ] || grep -qE '^==[0-9]+== ERROR SUMMARY: [1-9]' "$logs/$name.vg"; then
      fail=$((fail + 1)); echo "FAIL c:$name ($((SECONDS - s))s): valgrind errors"
      vg_errors "$logs/$name.vg"
    elif [ "$rc" -ne 0 ]; then
      echo "FAIL c:$name ($((SECONDS - s))s): exit $rc"; grep -E '^FAIL|check failed' "$out" | head -n 20
      grep -qE '^[0-9]+ passed, 0 failed' "$out" && fail=$((fail + 1))
    else
      echo "ok   c:$name ($((SECONDS - s))s): $(tail -n 1 "$out")"
    fi
  done
}

# The harness runs the agent as `$SCOUT_WRAP build/scout ...`; a valgrind report in an agent's log fails the
# test that stopped it (scoutharness.py), and --log-file keeps one log per agent process besides.
part_integration() {
  local spec m k out rc s n
  for spec in $IT_TESTS; do
    m=${spec%%:*} k=(); [ "$m" != "$spec" ] && k=(-k "${spec#*:}")
    out=$logs/$m.out
    mkdir -p "$logs/$m.vg"
    s=$SECONDS
    SCOUT_WRAP="nice -n 10 ${VG[*]} --log-file=$logs/$m.vg/agent.%p.log" SCOUT_TIMEOUT_SCALE=${VG_TIMEOUT_SCALE:-4} \
      SCOUT_FREE_AT_EXIT=1 SCOUT_BIN=$BUILD/scout /usr/bin/python3 tests/integration/run.py "${k[@]}" "$m" >"$out" 2>&1; rc=$?
    if ! add_count "$out"; then
      fail=$((fail + 1)); echo "FAIL integration:$spec ($((SECONDS - s))s): no count line (exit $rc)"; tail -n 30 "$out"
    elif [ -n "$(vg_errors "$logs/$m.vg"/*.log)" ]; then
      fail=$((fail + 1)); echo "FAIL integration:$spec ($((SECONDS - s))s): valgrind errors"
      vg_errors "$logs/$m.vg"/*.log
    elif [ "$rc" -ne 0 ]; then
      echo "FAIL integration:$spec ($((SECONDS - s))s): exit $rc"; grep -E '^(FAIL|ERROR)' "$out" | head -n 20
      grep -qE '^[0-9]+ passed, 0 failed' "$out" && fail=$((fail + 1))
    else
      # agents killed on purpose, and the children a render command or check forks, print no heap summary
      n=$(grep -l 'HEAP SUMMARY' "$logs/$m.vg"/*.log 2>/dev/null | wc -l)
      echo "ok   integration:$spec ($((SECONDS - s))s, $n agents leak-checked at exit): $(tail -n 1 "$out")"
    fi
  done
}

for p in $PARTS; do "part_$p"; done
echo "valgrind: $((SECONDS - t0))s for: $PARTS"
if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
