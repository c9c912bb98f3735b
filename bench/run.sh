#!/usr/bin/env bash
# run.sh -- every benchmark, for `make bench`. Benchmarks print ratios against a baseline measured in the same
# run (the raw ZooKeeper client, a bare array loop); nothing here is a test and nothing asserts a time.
#   BENCH="propagation select" limits the set; each bench's own knobs are documented at its top.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-"propagation select jit storm scale coldstart nginx stall http"}
for b in $BENCH; do
  echo "=== bench/$b"
  case "$b" in
    propagation) bench/propagation/run.sh ;;
    select)      luajit bench/select/bench.lua ;;
    jit)         bench/jit/run.sh ;;
    storm)       bench/storm/run.sh ;;
    scale)       bench/scale/run.sh ;;
    coldstart)   bench/coldstart/run.sh ;;
    nginx)       bench/nginx/run.sh ;;
    stall)       bench/stall/run.sh ;;
    http)        bench/http/run.sh ;;
    zkstart)     /usr/bin/python3 bench/zkstart/zkstart.py ;;     # the test suite's cost of a ZooKeeper; not in the default set
    *)           echo "unknown bench: $b" >&2; exit 2 ;;
  esac
  echo
done
