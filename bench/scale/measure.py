"""measure.py -- what the scale benchmark reads about a process: /proc (RSS, CPU, run-queue wait,
[heap] against anonymous mappings), the load average, perf recordings and the memory probe.

Why a module: every phase of scale.py and perchange.py measures the same way; nothing here
starts or stops an agent."""

import os
import re
import shutil
import signal
import subprocess
import time

from config import PERF


def status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith(key + ":"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def schedstat(pid):
    """(on-CPU s, run-queue wait s) of the process's main thread."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            a = f.read().split()
        return int(a[0]) / 1e9, int(a[1]) / 1e9
    except OSError:
        return 0.0, 0.0


def cpu_s(pid):
    """utime + stime of all threads, seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            p = f.read().rsplit(")", 1)[1].split()
        return (int(p[11]) + int(p[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def smaps_split(pid):
    """(kB in [heap], kB in all anonymous mappings, kB in the largest one): malloc's main
    arena vs the rest; the largest anonymous mapping is LuaJIT's GC arena."""
    heap = anon = big = 0
    name = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for ln in f:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", ln):
                    p = ln.split()
                    name = p[5] if len(p) > 5 else ""
                elif ln.startswith("Rss:"):
                    kb = int(ln.split()[1])
                    if name == "[heap]":
                        heap += kb
                    elif name == "":
                        anon += kb
                        big = max(big, kb)
    except OSError:
        pass
    return heap, anon, big


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def perf_start(pid, tmp, tag):
    if not PERF:
        return None
    p = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                          "-o", os.path.join(tmp, "perf-%s.data" % tag), "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(tmp, "pids"), "a") as f:
        f.write("%d\n" % p.pid)
    time.sleep(0.3)                 # attached before what it should see
    return p


def perf_stop(p, tmp, tag, what):
    """Stop the recording; the top of `perf report --children` as one note."""
    if p is None:
        return None
    p.send_signal(signal.SIGINT)
    p.wait(timeout=60)
    data = os.path.join(tmp, "perf-%s.data" % tag)

    def report(*args):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none"] + list(args),
                           capture_output=True, text=True)
        return r.stdout, [ln.strip()[:120] for ln in r.stdout.splitlines()
                          if ln.strip() and not ln.startswith("#")]

    out1, children = report("--children", "--percent-limit", "4")
    out2, self_ = report("--no-children", "--percent-limit", "2")
    with open(os.path.join(tmp, "perf-%s.txt" % tag), "w") as f:
        f.write(out1 + out2)
    return ("perf, %s (perf-%s.txt with KEEP=1; libzookeeper_st is stripped, its static "
            "functions show as offsets):\n  self:\n%s\n  children:\n%s"
            % (what, tag, "\n".join("    " + ln for ln in self_[:12]),
               "\n".join("    " + ln for ln in children[:25])))


# -- memory (issue 14 item 3): bytes per endpoint, by layer ----------------------

def memory_probe(agent):
    """What agent holds now: VmRSS, VmHWM, [heap] (malloc's main arena), all anonymous
    mappings (LuaJIT's arena, thread arenas, big mallocs), kB; and the Lua VM's own
    count (scout_lua_memory_bytes: live objects plus garbage not yet collected), bytes."""
    heap, anon, _ = smaps_split(agent.pid)
    try:
        lua = agent.metrics().get("scout_lua_memory_bytes", 0.0)
    except OSError:
        lua = 0.0
    return {"rss": status_kb(agent.pid, "VmRSS"), "hwm": status_kb(agent.pid, "VmHWM"),
            "heap": heap, "anon": anon, "lua": lua}


def malloc_stats(agent):
    """malloc's own count of what it handed out, which VmRSS does not give: VmRSS also holds the
    free holes the sync's garbage left between live chunks, and moves ~1 MB from run to run with
    where they fall (docs/performance/memory.md); the bytes in use do not.  glibc's malloc_stats()
    is called inside the agent by gdb (it prints to the agent's stderr, its log here) and parsed:
    {"arena_used", "arena_system", "used", "system"} in bytes (the main arena; all arenas plus
    mapped chunks).  The agent is stopped for the call (~1 s), so this is read after every other
    figure.  None without gdb (scripts/setup.sh installs it) or when the call fails.  Not a
    metric of the agent's own: glibc walks every free chunk under the arena's lock for it, 3-5 ms
    at 10,000 x 10, which a scrape must not hold the loop for."""
    if shutil.which("gdb") is None:
        return None
    try:
        off = os.path.getsize(agent.logfile)
        subprocess.run(["gdb", "-p", str(agent.pid), "-batch", "-ex", "call (void)malloc_stats()"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        with open(agent.logfile, "rb") as f:
            f.seek(off)
            txt = f.read().decode(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    a0 = re.search(r"Arena 0:\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", txt)
    tot = re.search(r"Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", txt)
    if not a0 or not tot:
        return None
    return {"arena_system": int(a0.group(1)), "arena_used": int(a0.group(2)),
            "system": int(tot.group(1)), "used": int(tot.group(2))}
