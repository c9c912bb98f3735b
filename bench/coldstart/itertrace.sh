#!/usr/bin/env bash
# itertrace.sh SRC OUT -- a copy of the agent built from the source tree SRC (a checkout, or /tmp/old-main) with
# one bench-only change to agent/loop.c: with SCOUT_ITER_TRACE set, every loop iteration that took more than 1 ms of
# the loop thread's CPU is logged ("trace: iteration wall W ms cpu C ms note [...]"), so that coldstart.py can list
# every iteration of a start over ~2 ms, for any two binaries alike (the agent itself only keeps the longest wall
# time, scout_loop_stall_max_seconds).  Not part of the agent: a getenv per iteration has no place in it.
# Writes the binary to OUT; SRC is not touched.
set -euo pipefail
SRC=$(cd "$1" && pwd)
OUT=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/scout-bench-itertrace.XXXXXX")
trap 'rm -rf "$T"' EXIT
(cd "$SRC" && tar cf - --exclude=.git --exclude=build --exclude=build-asan .) | tar xf - -C "$T"
/usr/bin/python3 - "$T/agent/loop.c" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
a = "    w->t0 = scout_now_ns();\n"
b = "    now = scout_now_ns();\n    w->ref_held"
assert s.count(a) == 1 and s.count(b) == 1, "agent/loop.c changed: update itertrace.sh"
s = s.replace(a, a + "    if (getenv(\"SCOUT_ITER_TRACE\") != NULL)\n        trace_c0 = thread_cpu_ns();\n")
s = s.replace("static void\non_begin(", "static int64_t trace_c0;\n\nstatic void\non_begin(")
s = s.replace(b, """    now = scout_now_ns();
    if (getenv("SCOUT_ITER_TRACE") != NULL) {
        double cpu_ms = (double)(thread_cpu_ns() - trace_c0) / 1e6;
        if (cpu_ms > 1.0)
            scout_log(SCOUT_LOG_WARN, "trace", "iteration wall %.2f ms cpu %.2f ms note [%s] %.2f",
                      (double)(now - w->t0) / 1e6, cpu_ms, note_what, note_secs * 1e3);
    }
    w->ref_held""")
open(p, "w").write(s)
PY
make -C "$T" -j2 build/scout >/dev/null
cp "$T/build/scout" "$OUT"
echo "itertrace: $OUT"
