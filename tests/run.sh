#!/usr/bin/env bash
# run.sh -- every test suite, one summed line at the end: `N passed, N failed[, N skipped]`.
#
# Suites: luacheck, C unit tests (normal and ASan+UBSan builds), Lua specs (busted under LuaJIT), integration
# tests against a real ZooKeeper (normal build, then the ASan+UBSan build), nginx tests against Debian's nginx with
# lua-nginx-module (both builds), `luarocks make` into a temp tree. Each suite prints its own closing
# count; this script reads it, adds them up and exits non-zero when anything failed. Run `make test`, which
# builds first. SUITES="lua c" limits the run; timing is never asserted here (benchmarks live in bench/).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3            # kazoo is packaged for Debian's python only
SUITES=${SUITES:-"lint c lua integration integration-asan nginx nginx-asan rockspec"}
total_pass=0 total_fail=0 total_skip=0
summary=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# record NAME PASSED FAILED SKIPPED
record() {
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3)); total_skip=$((total_skip + $4))
  summary+=("$(printf '%-18s %4d passed, %d failed, %d skipped' "$1" "$2" "$3" "$4")")
}

# run_counted NAME CMD...: the command's last `N passed, N failed[, N skipped]` line is its result; a command
# that exits non-zero without reporting a failure counts as one failure.
run_counted() {
  local name=$1; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  local line p=0 f=0 s=0
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p'); s=${s:-0}
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!!! $name exited $rc"; fi
  record "$name" "$p" "$f" "$s"
}

suite_lint() {
  echo "=== lint: luacheck lua tests/lua bench examples"
  if luacheck -q lua tests/lua bench examples; then record lint 1 0 0; else record lint 0 1 0; fi
}

suite_c() {
  local t
  for t in build/tests/test_*; do run_counted "c:$(basename "$t")" "$t"; done
  for t in build-asan/tests/test_*; do
    [ -x "$t" ] && run_counted "c-asan:$(basename "$t")" "$t"
  done
}

suite_lua() {
  echo "=== lua: busted --lua=luajit tests/lua"
  busted --lua=luajit -o TAP tests/lua 2>&1 | tee "$out"
  local p f s
  p=$(grep -cE '^ok [0-9]+' "$out" | head -1)
  s=$(grep -cE '^ok [0-9]+ .*# SKIP' "$out" | head -1)
  f=$(grep -cE '^not ok [0-9]+' "$out" | head -1)
  p=$((p - s))
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "!!! busted ran no spec"; fi
  record lua "$p" "$f" "$s"
}

suite_integration() {
  SCOUT_BIN=build/scout run_counted integration "$PY" tests/integration/run.py
}

suite_integration-asan() {
  # LuaJIT's allocator and the ZooKeeper client's one-time globals are not ours to fix: leaks are checked by
  # ASan for our code paths, with the suppressions in tests/lsan.supp.
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  SCOUT_BIN=build-asan/scout run_counted integration-asan "$PY" tests/integration/run.py
}

suite_nginx() {
  SCOUT_BIN=build/scout run_counted nginx "$PY" tests/nginx/run.py
}

suite_nginx-asan() {
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  SCOUT_BIN=build-asan/scout run_counted nginx-asan "$PY" tests/nginx/run.py
}

suite_rockspec() {
  run_counted rockspec tests/rockspec/run.sh
}

for s in $SUITES; do "suite_$s"; done

echo
echo "=== summary"
for l in "${summary[@]}"; do echo "$l"; done
line="$total_pass passed, $total_fail failed"
[ "$total_skip" -gt 0 ] && line="$line, $total_skip skipped"
echo "$line"
[ "$total_fail" -eq 0 ]
