#!/usr/bin/env bash
# run.sh -- every test suite, one summed line at the end: `N passed, N failed[, N skipped]`.
#
# Suites: luacheck, C unit tests (normal and ASan+UBSan builds), Lua specs (busted under LuaJIT), integration
# tests against a real ZooKeeper (normal build, then the ASan+UBSan build), nginx tests against Debian's nginx with
# lua-nginx-module (both builds), `luarocks make` into a temp tree. Each suite prints its own closing
# count of tests (a C test is a named behaviour, not a check); this script reads it, checks each runner's exit
# status (and busted's plan), adds them up and exits non-zero when anything failed. Skips are counted and shown;
# a missing C test binary, a runner that crashed before its count or ran no test is a failure. Run `make test`,
# which builds first. SUITES="lua c" limits the run; timing is never asserted here (benchmarks live in bench/).
# c-valgrind (the C tests under memcheck, 1-5 minutes) is not in the default list: SUITES="c-valgrind" runs it.
# The suites that only need the CPU (lint, c, lua, rockspec) run beside those that wait on ZooKeeper and nginx,
# and each ASan run of integration and nginx beside its normal run (SIDE=0: the CPU-only ones in turn); each output
# is still printed whole, once it has ended. The integration runs list their 20 slowest tests.
# SIGTERM or SIGINT stops the run: every suite running is sent the signal (the Python runners stop what their
# tests started and print their count), the interrupted suites count as failed, the summary is printed and the
# exit status is 128+signal. So the runners run in the background, waited for: bash runs a trap only once a
# foreground command has ended.
set -uo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."

PY=/usr/bin/python3            # kazoo is packaged for Debian's python only
SUITES=${SUITES:-"lint c lua integration integration-asan nginx nginx-asan rockspec"}
total_pass=0 total_fail=0 total_skip=0
summary=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

records=()

# record NAME PASSED FAILED SKIPPED
record() {
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3)); total_skip=$((total_skip + $4))
  summary+=("$(printf '%-22s %4d passed, %d failed, %d skipped' "$1" "$2" "$3" "$4")")
  records+=("$1 $2 $3 $4")
}

# run_to OUT CMD...: CMD's output into OUT and onto stdout; returns its status. CMD runs in the background and is
# waited for, so that a signal reaches on_signal at once; `cur` is its pid meanwhile, `tails` the copies to stdout.
cur='' cur_name='' cur_out='' tails=''
run_to() {
  local o=$1 rc t; shift
  : >"$o"
  "$@" >"$o" 2>&1 &
  cur=$!
  tail -n +1 -f -s 0.05 --pid="$cur" "$o" &   # -s: it checks the pid this often (1 s by default, per suite)
  t=$!
  tails="$tails $t"
  wait "$cur"; rc=$?
  wait "$t"
  cur=
  return "$rc"
}

# run_counted NAME CMD...: the command's last `N passed, N failed[, N skipped]` line is its result. The exit
# status is checked too: non-zero with no failure reported counts one failure, and so does a command that prints
# no count at all (it crashed before its summary), whatever its status.
run_counted() {
  local name=$1 rc; shift
  echo "=== $name: $*"
  cur_name=$name cur_out=$out
  run_to "$out" "$@"; rc=$?
  cur_name=
  count_result "$name" "$rc" "$out"
}

# count_result NAME RC FILE: reads FILE's last count line and records it (run_counted's second half).
count_result() {
  local name=$1 rc=$2 out=$3
  local line p=0 f=0 s=0
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  else
    f=$((f + 1)); echo "!!! $name printed no 'N passed, N failed' line"
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!!! $name exited $rc"; fi
  if [ $((p + f + s)) -eq 0 ]; then f=1; echo "!!! $name ran no test"; fi
  record "$name" "$p" "$f" "$s"
}

suite_lint() {
  echo "=== lint: luacheck lua tests/lua bench examples"
  if luacheck -q lua tests/lua bench examples; then record lint 1 0 0; else record lint 0 1 0; fi
}

# Sanitizer settings for everything run from build-asan/: leaks are errors, with only the ZooKeeper client's
# own known leaks suppressed (tests/lsan.supp).
asan_env() {
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$@"
}

# One binary per tests/c/test_*.c, in both builds: one that is missing (not built, or the ASan build not made)
# is a failed test, not a silent skip.
suite_c() {
  local src t dir label
  for dir in build build-asan; do
    label=c; [ "$dir" = build-asan ] && label=c-asan
    for src in tests/c/test_*.c; do
      t=$dir/tests/$(basename "$src" .c)
      if [ ! -x "$t" ]; then
        echo "!!! $label: $t is missing (make tests-c; make asan)"
        record "$label:$(basename "$t")" 0 1 0
      elif [ "$dir" = build-asan ]; then
        run_counted "$label:$(basename "$t")" asan_env "$t"
      else
        run_counted "$label:$(basename "$t")" "$t"
      fi
    done
  done
}

# The C unit tests under valgrind's memcheck (tests/valgrind.sh c, SCOUT_TEST_QUICK=1): its count line sums the
# binaries' tests, and a binary with a valgrind error (invalid access, uninitialised value used, definite leak)
# counts one failure more. Not in the default SUITES: 74 s of CPU, 58-91 s of wall clock on a quiet 2-core machine
# (load 1.4-4) but 4-5 minutes at load 8-20. `make valgrind` runs it, and the agent under memcheck.
suite_c-valgrind() {
  run_counted c-valgrind tests/valgrind.sh c
}

# busted's TAP: one `ok`/`not ok` line per spec (pending ones are `ok N - # SKIP`), then the plan `1..N`. Its exit
# status is checked, and the plan must be there and match the lines: a crash half-way fails the suite.
suite_lua() {
  echo "=== lua: busted --lua=luajit tests/lua"
  cur_name=lua cur_out=$out
  run_to "$out" busted --lua=luajit -o TAP tests/lua
  local rc=$?
  local p f s plan
  cur_name=
  p=$(grep -cE '^ok [0-9]+' "$out")
  s=$(grep -cE '^ok [0-9]+ .*# SKIP' "$out")
  f=$(grep -cE '^not ok [0-9]+' "$out")
  plan=$(sed -nE 's/^1\.\.([0-9]+)$/\1/p' "$out" | tail -n 1)
  if [ -z "$plan" ]; then
    f=$((f + 1)); echo "!!! busted printed no plan (1..N): it stopped half-way"
  elif [ "$plan" -ne $((p + f)) ]; then
    f=$((f + 1)); echo "!!! busted planned $plan specs but reported $((p + f))"
  fi
  p=$((p - s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!!! busted exited $rc"; fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!!! busted ran no spec"; fi
  record lua "$p" "$f" "$s"
}

# The ASan run of a suite goes beside its normal run when both are asked for: every test starts its own
# ZooKeeper, nginx and agent on free ports in temp dirs, and most of a test's time is waiting for an event, so the
# two share the machine's two cores well. The ASan run's output is shown after the normal one, whole.
declare -A BESIDE=()
beside='' beside_out='' beside_pid=''
in_suites() { [[ " $SUITES " == *" $1 "* ]]; }

# both NAME CMD...: NAME (build/scout) in the foreground and NAME-asan (build-asan/scout) beside it.
both() {
  local name=$1 out_asan rc; shift
  if ! in_suites "$name-asan"; then
    SCOUT_BIN=build/scout run_counted "$name" "$@"
    return
  fi
  out_asan=$(mktemp)
  beside=$name-asan beside_out=$out_asan
  SCOUT_BIN=build-asan/scout asan_env "$@" >"$out_asan" 2>&1 &
  beside_pid=$!
  SCOUT_BIN=build/scout run_counted "$name" "$@"
  wait "$beside_pid"; rc=$?
  beside='' beside_pid=''
  echo "=== $name-asan (ran beside $name): asan_env $*"
  cat "$out_asan"
  count_result "$name-asan" "$rc" "$out_asan"
  rm -f "$out_asan"
  BESIDE[$name-asan]=1
}

suite_integration() {
  both integration "$PY" tests/integration/run.py --durations 20
}

suite_integration-asan() {
  [ -n "${BESIDE[integration-asan]:-}" ] && return
  SCOUT_BIN=build-asan/scout run_counted integration-asan asan_env "$PY" tests/integration/run.py --durations 20
}

suite_nginx() {
  both nginx "$PY" tests/nginx/run.py
}

suite_nginx-asan() {
  [ -n "${BESIDE[nginx-asan]:-}" ] && return
  SCOUT_BIN=build-asan/scout run_counted nginx-asan asan_env "$PY" tests/nginx/run.py
}

suite_rockspec() {
  run_counted rockspec tests/rockspec/run.sh
}

# The suites that only need the CPU (no ZooKeeper, nginx or agent; temp files and port-0 sockets of their own) run
# beside the ones that mostly wait on events (a ZooKeeper, an agent, nginx), as one child run of this script: its
# output is printed whole once it has ended (between two of the others, or at the end), and its per-suite results
# and exit status are added here. SIDE=0 runs every suite in turn.
SIDE_SUITES=${SIDE_SUITES:-"lint c c-valgrind lua rockspec"}
side=() fore=()
for s in $SUITES; do
  if [ "${SIDE:-1}" = 1 ] && [ -z "${RUN_SUMMARY_FILE:-}" ] && [[ " $SIDE_SUITES " == *" $s "* ]]; then
    side+=("$s")
  else
    fore+=("$s")
  fi
done
if [ ${#fore[@]} -eq 0 ]; then fore=("${side[@]}"); side=(); fi

side_pid=
if [ ${#side[@]} -gt 0 ]; then
  side_out=$(mktemp) side_sum=$(mktemp)
  trap 'rm -f "$out" "$side_out" "$side_sum"' EXIT
  SUITES="${side[*]}" RUN_SUMMARY_FILE=$side_sum "$SELF" >"$side_out" 2>&1 &
  side_pid=$!
  echo "=== ${side[*]}: running beside ${fore[*]}, shown once done"
fi

# finish: the summary (a side run writes its records for its parent instead).
finish() {
  if [ -n "${RUN_SUMMARY_FILE:-}" ]; then
    for l in "${records[@]}"; do echo "$l"; done >"$RUN_SUMMARY_FILE"
    return
  fi
  echo
  echo "=== summary"
  for l in "${summary[@]}"; do echo "$l"; done
  echo "$total_pass passed, $total_fail failed, $total_skip skipped"
}

# side_done: prints the side run's output and adds its results (waits for it first).
side_done() {
  local rc name p f s n=0 bad=0
  wait "$side_pid" 2>/dev/null; rc=$?        # 127 after on_signal's wait: the records still tell
  side_pid=
  echo "=== ${side[*]} (ran beside ${fore[*]}): SUITES=\"${side[*]}\" tests/run.sh"
  cat "$side_out"
  while read -r name p f s; do
    record "$name" "$p" "$f" "$s"; n=$((n + 1)); bad=$((bad + f))
  done <"$side_sum"
  if [ "$n" -eq 0 ]; then record "${side[*]}" 0 1 0; echo "!!! the run of ${side[*]} recorded no suite"
  elif [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then record "${side[*]}" 0 1 0; echo "!!! the run of ${side[*]} exited $rc"
  fi
}

# descendants PID: every process under PID, children first
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done
}

# on_signal NAME NUMBER: SIGTERM goes to every process this run started (but the copies to stdout; TERM, not INT:
# a background job ignores SIGINT), each suite running ends (the Python runners clean up first) and counts as
# failed, the summary is printed.
on_signal() {
  trap '' TERM INT
  echo "!!! tests/run.sh: $1: stopping the suites running"
  local p
  for p in $(descendants $$); do
    [[ " $tails " == *" $p "* ]] || kill -s TERM "$p" 2>/dev/null
  done
  wait
  [ -n "$cur_name" ] && count_result "$cur_name" 1 "$cur_out"
  if [ -n "$beside" ]; then
    echo "=== $beside (ran beside, interrupted)"; cat "$beside_out"; count_result "$beside" 1 "$beside_out"
    rm -f "$beside_out"
  fi
  [ -n "$side_pid" ] && side_done
  record "interrupted:$1" 0 1 0
  finish
  exit $((128 + $2))
}
trap 'on_signal TERM 15' TERM
trap 'on_signal INT 2' INT

for s in "${fore[@]}"; do
  "suite_$s"
  if [ -n "$side_pid" ] && ! kill -0 "$side_pid" 2>/dev/null; then side_done; fi
done
[ -n "$side_pid" ] && side_done

finish
[ "$total_fail" -eq 0 ]
