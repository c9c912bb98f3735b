"""report.py -- rows of the scale benchmark's table that are computed apart (memory per endpoint)
and the table printed early when STOP_AFTER ends the run.

Why a module: what scale.py prints is kept apart from how it measures."""

import os
import time

from config import SERVICES, ENDPOINTS, FAILURES
from measure import loadavg


def memory_rows(mem, empty, raw_hwm_kb):
    """Table rows: bytes per endpoint, total and by layer, against the raw client (rawsync's
    VmHWM at the same size: the ZooKeeper client's own buffers and watch tables, nothing
    kept). With `empty`, the services' fixed cost is shown apart and taken out."""
    n = float(SERVICES * ENDPOINTS)
    per = lambda kb: kb * 1024.0 / n
    rows = [("memory per endpoint: VmRSS / endpoints",
             "%.0f B (%.1f MB)" % (per(mem["rss"]), mem["rss"] / 1024.0), "",
             "%.2fx the raw client's %.0f B (VmHWM %.1f MB)"
             % (mem["rss"] / max(raw_hwm_kb, 1), per(raw_hwm_kb), raw_hwm_kb / 1024.0))]
    rows.append(("  by layer: malloc [heap] / other anon / Lua VM",
                 "%.0f / %.0f / %.0f B" % (per(mem["heap"]), per(max(mem["anon"] - mem["lua"] / 1024.0, 0)),
                                           mem["lua"] / n), "",
                 "Lua %.1f MB incl. garbage not yet collected; anon %.1f MB holds LuaJIT's arena"
                 % (mem["lua"] / 1048576.0, mem["anon"] / 1024.0)))
    if empty:
        d = lambda k: mem[k] - empty[k]
        rows.append(("  services alone (same policy, no endpoints)",
                     "%.1f MB RSS, Lua %.1f MB" % (empty["rss"] / 1024.0, empty["lua"] / 1048576.0), "",
                     "%.0f B per service (%d services; binary and libraries included)"
                     % (empty["rss"] * 1024.0 / SERVICES, SERVICES)))
        rows.append(("  per endpoint, services' cost taken out",
                     "%.0f B (RSS)" % per(d("rss")), "",
                     "malloc %.0f B, Lua %.0f B, other %.0f B"
                     % (per(d("heap")), d("lua") / n, per(d("rss") - d("heap")) - d("lua") / n)))
    return rows



def malloc_row(ms):
    """The row of measure.malloc_stats: malloc's bytes in use (steady from run to run) and what
    its arenas hold beyond them (free holes: the part of VmRSS that moves)."""
    if ms is None:
        return ("  malloc in use (malloc_stats)", "n/a", "", "no gdb, or the call failed")
    n = float(SERVICES * ENDPOINTS)
    return ("  malloc in use: main arena / all + mapped",
            "%.2f / %.2f MB" % (ms["arena_used"] / 1048576.0, ms["used"] / 1048576.0), "",
            "%.0f B per endpoint; free in the main arena %.2f MB (holes: what moves VmRSS)"
            % (ms["used"] / n, (ms["arena_system"] - ms["arena_used"]) / 1048576.0))


def print_rows_so_far(rows, notes, warns, populate_s, raw, nsess, t_run):
    """STOP_AFTER=reconnect: the table of phases 0-4 (sync, memory, publish, reconnect,
    SIGTERM), for sizes where each later restart is another full sync (1M endpoints)."""
    print()
    print("scale: %d services x %d endpoints = %d data znodes, %d sessions; %d CPUs, load avg %s; "
          "phases up to STOP_AFTER=%s" % (SERVICES, ENDPOINTS, SERVICES * ENDPOINTS,
                                                     nsess, os.cpu_count(), loadavg(), os.environ.get("STOP_AFTER")))
    print("populate: %.2f s; baseline rawsync %.2f s, VmHWM %.1f MB"
          % (populate_s, raw["total_s"], raw["hwm_kb"] / 1024.0))
    print()
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(" | ".join([r[i].ljust(widths[i]) for i in range(3)] + [r[3]]))
    print()
    for n in notes:
        print("- " + n)
    for shape, cnt in sorted(warns.items(), key=lambda kv: -kv[1])[:8]:
        print("- WARN/ERROR x%d: %s" % (cnt, shape[:140]))
    print("- wall %.0f s" % (time.monotonic() - t_run))
    for f in FAILURES:
        print("FAILED: " + f.splitlines()[0])
    return 1 if FAILURES else 0
