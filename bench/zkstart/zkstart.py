#!/usr/bin/env python3
"""zkstart — the CPU one throwaway ZooKeeper costs the test suite, scripts/zk.sh against a baseline zk.sh.

Why: the two integration passes of `make test` start ~650 servers on the two cores they share, and CPU, not waiting,
sets their wall time (docs/performance/suite.md). A start is zk.sh's own work (ports, config, the wait until the
server serves) plus the JVM's; a stop is zk.sh's wait for the JVM to exit. This starts and stops a standalone
server ROUNDS times with each script, interleaved (this tree's, then BASE's, then this tree's...), so both see the
same load, and prints the means and this tree's ratio to BASE. It asserts nothing.

Method: zk.sh's CPU is the CPU of the children this process waited for (getrusage RUSAGE_CHILDREN around each call:
bash and all it forked); the JVM's is /proc/PID/stat utime+stime once the start returned (it serves), in clock ticks.
BASE's zk.sh (`git show BASE:scripts/zk.sh`) runs from a temp tree whose build/ is this tree's, so both map the same
class-data sharing archive (build/zk-cds.jsa: start one server first if it is missing).

    bench/zkstart/zkstart.py [ROUNDS (8)] [BASE (main)]
"""

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def java_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def one(zk_sh, tmp):
    d = tempfile.mkdtemp(prefix="zk-", dir=tmp)
    c0, t0 = children_cpu(), time.monotonic()
    subprocess.run([zk_sh, "start", d], check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    c1 = children_cpu()
    with open(os.path.join(d, "node1", "pid")) as f:
        ticks = java_ticks(int(f.read()))
    subprocess.run([zk_sh, "stop", d], check=True)
    c2 = children_cpu()
    shutil.rmtree(d)
    return {"start": c1 - c0, "stop": c2 - c1, "java": ticks, "wall": wall}


def main(argv):
    rounds = int(argv[0]) if argv else 8
    base = argv[1] if len(argv) > 1 else "main"
    tmp = tempfile.mkdtemp(prefix="scout-bench-zkstart.")
    try:
        old = os.path.join(tmp, "base")
        os.makedirs(os.path.join(old, "scripts"))
        os.symlink(os.path.join(ROOT, "build"), os.path.join(old, "build"))
        with open(os.path.join(old, "scripts", "zk.sh"), "wb") as f:
            f.write(subprocess.run(["git", "-C", ROOT, "show", "%s:scripts/zk.sh" % base], check=True,
                                   stdout=subprocess.PIPE).stdout)
        os.chmod(os.path.join(old, "scripts", "zk.sh"), 0o755)
        scripts = {"this tree": os.path.join(ROOT, "scripts", "zk.sh"), base: os.path.join(old, "scripts", "zk.sh")}
        runs = {k: [] for k in scripts}
        for _ in range(rounds):
            for k, sh in scripts.items():
                runs[k].append(one(sh, tmp))
        print("zkstart: %d starts and stops each, interleaved; load average %s" % (
            rounds, open("/proc/loadavg").read().split()[0]))
        print("%-28s %10s %10s %10s %10s" % ("", base, "this tree", "ratio", ""))
        for key, what in (("start", "zk.sh start, CPU s"), ("stop", "zk.sh stop, CPU s"),
                          ("java", "JVM to serving, CPU ticks"), ("wall", "start to serving, wall s")):
            b = sum(r[key] for r in runs[base]) / rounds
            n = sum(r[key] for r in runs["this tree"]) / rounds
            print("%-28s %10.3f %10.3f %10.2f" % (what, b, n, n / b if b else float("nan")))
        b = sum(r["start"] + r["stop"] for r in runs[base]) / rounds
        n = sum(r["start"] + r["stop"] for r in runs["this tree"]) / rounds
        print("%-28s %10.3f %10.3f %10.2f" % ("zk.sh start+stop, CPU s", b, n, n / b if b else float("nan")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
